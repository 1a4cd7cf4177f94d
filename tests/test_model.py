"""The transformer: shapes, causality, bidirectionality, masks."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lab.config import ModelConfig
from lab.model.attention import attention_mask
from lab.model.objectives import cross_entropy
from lab.model.transformer import Transformer

BASE = ModelConfig(vocab_size=32, d_model=32, n_layers=2, n_heads=4, seq_len=16)

VARIANTS = {
    "rope": BASE,
    "learned": dataclasses.replace(BASE, pos_encoding="learned"),
    "sinusoidal": dataclasses.replace(BASE, pos_encoding="sinusoidal"),
    "gqa_swiglu_rms_untied": dataclasses.replace(
        BASE, n_kv_heads=2, mlp="swiglu", norm="rmsnorm", tie_embeddings=False
    ),
    "mqa": dataclasses.replace(BASE, n_kv_heads=1),
    "bf16": dataclasses.replace(BASE, dtype="bfloat16"),
    "window_global_gqa": dataclasses.replace(BASE, n_kv_heads=2, attn_window=4, attn_global_tokens=2),
    "remat_full": dataclasses.replace(BASE, remat="full"),
}


def tokens(seed=0, B=2, T=16, V=32):
    return jax.random.randint(jax.random.key(seed), (B, T), 0, V)


@pytest.mark.parametrize("name", VARIANTS)
def test_shapes_and_initial_loss(name):
    cfg = VARIANTS[name]
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    x = tokens()
    logits = model(x)
    assert logits.shape == (2, 16, 32) and logits.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(logits)))
    # small init: the initial loss is close to the uniform ln V
    _, loss = cross_entropy(logits[:, :-1], x[:, 1:])
    assert abs(float(loss) - np.log(32)) < 0.1


@pytest.mark.parametrize("name", ["rope", "learned", "sinusoidal", "gqa_swiglu_rms_untied"])
def test_decoder_is_causal(name):
    """Changing token j changes no logit at a position before j, and does change position j."""
    model = Transformer(VARIANTS[name], rngs=nnx.Rngs(1))
    x = tokens(1)
    j = 9
    y = x.at[:, j].set((x[:, j] + 5) % 32)
    a, b = model(x), model(y)
    np.testing.assert_array_equal(np.asarray(a[:, :j]), np.asarray(b[:, :j]))
    assert float(jnp.abs(a[:, j:] - b[:, j:]).max()) > 1e-4


def test_encoder_is_bidirectional():
    model = Transformer(dataclasses.replace(BASE, arch="encoder"), rngs=nnx.Rngs(2))
    x = tokens(2)
    y = x.at[:, 12].set((x[:, 12] + 3) % 32)
    assert float(jnp.abs(model(x)[:, :12] - model(y)[:, :12]).max()) > 1e-4


def test_sliding_window_limits_receptive_field():
    """With one layer and window w, position t sees only tokens t-w+1..t."""
    cfg = dataclasses.replace(BASE, n_layers=1, attn_window=4)
    model = Transformer(cfg, rngs=nnx.Rngs(3))
    x = tokens(3)
    y = x.at[:, 2].set((x[:, 2] + 7) % 32)
    diff = np.abs(np.asarray(model(x) - model(y))).max(axis=(0, 2))
    assert diff[:2].max() == 0 and diff[2:6].min() > 1e-5 and diff[6:].max() == 0


def test_attention_mask_variants():
    pos = jnp.arange(6)
    causal = np.asarray(attention_mask(pos, pos, causal=True))
    np.testing.assert_array_equal(causal, np.tril(np.ones((6, 6), bool)))
    win = np.asarray(attention_mask(pos, pos, causal=True, window=2, global_tokens=1))
    assert win[5].tolist() == [True, False, False, False, True, True]  # global token 0, then t-1, t
    assert win[0].tolist() == [True] + [False] * 5
    bi = np.asarray(attention_mask(pos, pos, causal=False, window=2))
    assert bi[2].tolist() == [False, True, True, True, False, False]


def test_same_seed_same_init_different_seed_different():
    a = nnx.to_pure_dict(nnx.split(Transformer(BASE, rngs=nnx.Rngs(0)), nnx.Param)[1])
    b = nnx.to_pure_dict(nnx.split(Transformer(BASE, rngs=nnx.Rngs(0)), nnx.Param)[1])
    c = nnx.to_pure_dict(nnx.split(Transformer(BASE, rngs=nnx.Rngs(1)), nnx.Param)[1])
    np.testing.assert_array_equal(a["embed"], b["embed"])
    assert not np.allclose(a["embed"], c["embed"])


def test_every_parameter_has_logical_axes():
    _, state = nnx.split(Transformer(VARIANTS["gqa_swiglu_rms_untied"], rngs=nnx.Rngs(0)), nnx.Param)
    for path, var in nnx.to_flat_state(state):
        axes = var.get_metadata()["logical_axes"]
        assert len(axes) == var[...].ndim, path


def test_remat_policies_give_the_same_gradients():
    """model.remat changes what the backward pass recomputes, not what it computes."""
    from lab.model.objectives import make_loss_fn

    batch = jax.random.randint(jax.random.key(4), (2, 17), 0, 32)
    grads = {}
    for remat in ("none", "full", "save_matmuls"):
        cfg = dataclasses.replace(BASE, n_layers=3, attn_window=4, attn_global_tokens=1, remat=remat)
        graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(5)), nnx.Param)
        loss = lambda p: make_loss_fn(graphdef, cfg)(p, batch, None)[0]
        grads[remat] = jax.tree.leaves(jax.jit(jax.grad(loss))(params))
    for remat in ("full", "save_matmuls"):
        for a, b in zip(grads["none"], grads[remat]):
            np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-7)
    assert max(float(jnp.abs(g).max()) for g in grads["none"]) > 1e-4
