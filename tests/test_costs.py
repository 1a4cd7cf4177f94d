"""Cost accounting: parameter counts against the real tree, FLOPs against XLA's own count."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lab.config import ModelConfig
from lab.costs import model_costs
from lab.model.objectives import make_loss_fn
from lab.model.transformer import Transformer
from lab.model.unroll import unrolled_loops

CONFIGS = {
    "tied_rope_layernorm": ModelConfig(vocab_size=256, d_model=128, n_layers=2, n_heads=4, seq_len=128),
    "untied_learned_gqa_swiglu_rms": ModelConfig(
        vocab_size=300,
        d_model=64,
        n_layers=3,
        n_heads=4,
        n_kv_heads=2,
        seq_len=64,
        tie_embeddings=False,
        pos_encoding="learned",
        mlp="swiglu",
        norm="rmsnorm",
        d_ff=160,
    ),
    "encdec_untied_learned_gqa": ModelConfig(
        arch="encdec",
        vocab_size=256,
        d_model=128,
        n_layers=2,
        n_dec_layers=3,
        n_heads=4,
        n_kv_heads=2,
        seq_len=64,
        tie_embeddings=False,
        pos_encoding="learned",
    ),
    # blockwise sparse attention: T a multiple of W, and not (with global tokens)
    "decoder_window": ModelConfig(vocab_size=256, d_model=128, n_layers=2, n_heads=4, seq_len=256, attn_window=32),
    "decoder_window_global_ragged": ModelConfig(
        vocab_size=256,
        d_model=128,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        seq_len=200,
        attn_window=24,
        attn_global_tokens=4,
    ),
    "encoder_window_global": ModelConfig(
        arch="encoder",
        vocab_size=256,
        d_model=128,
        n_layers=2,
        n_heads=4,
        seq_len=256,
        attn_window=32,
        attn_global_tokens=4,
    ),
    "encdec_window": ModelConfig(
        arch="encdec",
        vocab_size=256,
        d_model=128,
        n_layers=2,
        n_heads=4,
        seq_len=256,
        attn_window=16,
        attn_global_tokens=2,
    ),
}


def param_groups(model):
    _, state = nnx.split(model, nnx.Param)
    flat = {"/".join(map(str, p)): v[...].size for p, v in nnx.to_flat_state(state)}
    emb = flat.get("embed", 0) + flat.get("pos_embed", 0)
    head = flat.get("head", 0)
    return sum(flat.values()), emb, head


@pytest.mark.parametrize("name", CONFIGS)
def test_param_counts_match_tree(name):
    cfg = CONFIGS[name]
    total, emb, head = param_groups(Transformer(cfg, rngs=nnx.Rngs(0)))
    c = model_costs(cfg)
    assert c.params_total == total
    assert c.params_embedding == emb
    assert c.params_head == head
    assert c.params_non_embedding == total - emb - head


@pytest.mark.parametrize("name", CONFIGS)
def test_flops_exact_matches_xla(name):
    """XLA counts every FLOP of a forward+backward step; ours counts the matmuls only, so ours is
    a lower bound that must be within 5% (the rest is softmax, norms, activations). The loss is
    the training objective's, so encdec is counted over its source/target split."""
    cfg = CONFIGS[name]
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model, nnx.Param)
    B = 4
    batch = jnp.zeros((B, cfg.seq_len + 1), jnp.int32)

    loss_fn = make_loss_fn(graphdef, cfg)  # next-token, or encdec's source/target split

    def loss(params, batch):
        return loss_fn(params, batch, jax.random.key(0))[0]  # the key draws MLM masks (encoder)

    def xla_flops(fn):
        with unrolled_loops():  # XLA counts a loop body once
            ca = jax.jit(fn).lower(params, batch).compile().cost_analysis()
        return (ca[0] if isinstance(ca, list) else ca)["flops"]

    ours = model_costs(cfg).flops_exact * B * cfg.seq_len
    train = xla_flops(jax.grad(loss))
    forward = xla_flops(loss)
    assert 1.0 <= train / ours < 1.05, train / ours
    assert 1.0 <= forward / (ours / 3) < 1.05, forward / (ours / 3)


def test_conventions():
    cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=3, n_heads=4, seq_len=32)
    c = model_costs(cfg)
    # standard MHA + GELU MLP: 12·L·d² matmul weights plus 2 layernorms (2d each) per layer + final norm
    assert c.params_non_embedding == 12 * 3 * 64**2 + 3 * 4 * 64 + 2 * 64
    assert c.params_embedding == 256 * 64 and c.params_head == 0
    assert c.flops_6n == 6 * c.params_non_embedding
    assert c.flops_6n_total == 6 * c.params_total
    assert c.flops_deepseek == 72 * 3 * 64**2 + 12 * 3 * 64 * 32
    # exact = 3 × (2 × matmul params + attention 4·T·d per layer + head 2·d·V)
    assert c.flops_exact == 3 * (2 * 12 * 3 * 64**2 + 4 * 32 * 64 * 3 + 2 * 64 * 256)
    totals = c.totals(1000)
    assert totals["flops_exact"] == 1000 * c.flops_exact and totals["tokens"] == 1000
    untied = model_costs(dataclasses.replace(cfg, tie_embeddings=False))
    assert untied.params_head == 64 * 256 and untied.params_total == c.params_total + 64 * 256


def test_encdec_conventions():
    """Encoder on S = T/2 tokens, decoder (with cross-attention) on T - S, per window token."""
    D, T, V, Le, Ld = 64, 32, 256, 2, 3
    cfg = ModelConfig(arch="encdec", vocab_size=V, d_model=D, n_layers=Le, n_dec_layers=Ld, n_heads=4, seq_len=T)
    c = model_costs(cfg)
    # encoder layer 12·d² + 2 layernorms; decoder layer 16·d² (cross-attention) + 3 layernorms; 2 final norms
    assert c.params_non_embedding == Le * (12 * D**2 + 4 * D) + Ld * (16 * D**2 + 6 * D) + 4 * D
    S = Tt = T // 2
    forward = (
        2 * Le * 12 * D**2 * S
        + 2 * Ld * (14 * D**2 * Tt + 2 * D**2 * S)  # cross K/V on the source
        + Le * 4 * S * S * D
        + Ld * 4 * (Tt * Tt + Tt * S) * D
        + 2 * D * V * Tt
    )
    assert c.flops_exact == pytest.approx(3 * forward / T, rel=1e-12)
    assert c.flops_head == pytest.approx(3 * 2 * D * V * Tt / T, rel=1e-12)
    assert c.flops_deepseek == 72 * (Le + Ld) * D**2 + 12 * (Le + Ld) * D * T


def test_windowed_attention_flops_grow_as_t_times_window():
    """Blockwise sliding window: T·(2W + g) + g·T score pairs (causal), T·(3W + g) + g·T
    (bidirectional), T rounded up to whole blocks; dense when the blocks would read every key."""
    D, L, W, g = 64, 3, 16, 2
    for T in (64, 256, 1024):
        base = ModelConfig(vocab_size=256, d_model=D, n_layers=L, n_heads=4, seq_len=T)
        dense = model_costs(base)
        window = model_costs(dataclasses.replace(base, attn_window=W, attn_global_tokens=g))
        assert dense.flops_attention == 3 * L * 4 * T * D
        assert window.flops_attention == pytest.approx(3 * L * 4 * D * ((2 * W + g) + g), rel=1e-12)
        assert dense.flops_exact - window.flops_exact == pytest.approx(
            dense.flops_attention - window.flops_attention
        )
        encoder = model_costs(dataclasses.replace(base, arch="encoder", attn_window=W, attn_global_tokens=g))
        assert encoder.flops_attention == pytest.approx(3 * L * 4 * D * ((3 * W + g) + g), rel=1e-12)
    ragged = model_costs(
        ModelConfig(vocab_size=256, d_model=D, n_layers=1, n_heads=4, seq_len=100, attn_window=16)
    )
    assert ragged.flops_attention == pytest.approx(3 * 4 * D * (112 * 32) / 100, rel=1e-12)  # 7 blocks of 16
    wide = ModelConfig(vocab_size=256, d_model=D, n_layers=1, n_heads=4, seq_len=32, attn_window=16)
    assert (
        model_costs(wide).flops_attention == model_costs(dataclasses.replace(wide, attn_window=0)).flops_attention
    )
