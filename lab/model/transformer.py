"""The transformer language model (Flax NNX), configured by a frozen `ModelConfig`.

`arch="decoder"` is a GPT-style causal LM; `arch="encoder"` is the same stack with bidirectional
attention (a masked LM); `arch="encdec"` is an encoder stack (bidirectional, `n_layers`) and a
decoder stack (causal self-attention + cross-attention to the encoder output, `dec_layers`)
sharing one token embedding (and learned position table) and one head. Positions are those of a
training window (see `lab.model.objectives`): the source occupies positions < seq_len // 2, right-
aligned against it; the decoder's tokens start at position seq_len // 2. Cross-attention sees
every source token (no window, no RoPE). Parameter counts and FLOPs of exactly this computation are in
`lab.costs`, which reads only the config; a test checks both against the real parameter tree and
XLA's own FLOP count.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from lab.config import ModelConfig
from lab.model.attention_chunked import ATTENTION_RESIDUALS
from lab.model.layers import Block, Norm, next_key, param, sinusoidal_table
from lab.model.quant import dequantize
from lab.model.unroll import unroll
from lab.sharding import constrain

_SAVE = jax.checkpoint_policies
# save_matmuls: the weight matmuls' outputs, and what the chunked attention's backward reads (its
# output and row log-sum-exp; without them the backward would run the attention forward again)
REMAT_POLICIES = {
    "full": None,
    "save_matmuls": _SAVE.save_from_both_policies(
        _SAVE.dots_with_no_batch_dims_saveable, _SAVE.save_only_these_names(*ATTENTION_RESIDUALS)
    ),
}


def stacked_blocks(cfg: ModelConfig, n_layers: int, rngs: nnx.Rngs, **block_kwargs) -> Block:
    """One Block whose parameters carry a leading [n_layers] axis (logical name `layers`), each
    layer initialised from its own key (nnx.vmap over the creation)."""
    keys = jax.random.split(next_key(rngs), n_layers)
    blocks = nnx.vmap(lambda key: Block(cfg, rngs=nnx.Rngs(params=key), **block_kwargs), in_axes=0, out_axes=0)(
        keys
    )
    for _, variable in nnx.iter_graph(blocks):
        if isinstance(variable, nnx.Param):
            variable.set_metadata(logical_axes=("layers", *variable.get_metadata("logical_axes")))
    return blocks


def scan_layers(blocks: Block, x_BxTxD, layer_fn, xs=None, remat: str = "none"):
    """(x after every layer, stacked per-layer outputs): a `jax.lax.scan` over the stacked layers
    of `blocks`; `layer_fn(block, x, xs_l) -> (x, ys_l)` runs one layer. `remat` (model.remat)
    wraps the layer in `jax.checkpoint`: full keeps only its input, save_matmuls also its weight
    matmuls' outputs (and the chunked attention's output and log-sum-exp), for the backward pass."""
    graphdef, state = nnx.split(blocks)

    def body(x_BxTxD, layer):
        state_l, xs_l = layer  # quantized weights (lab.model.quant) become float here, one layer at a time
        x_BxTxD, ys_l = layer_fn(nnx.merge(graphdef, dequantize(state_l)), x_BxTxD, xs_l)
        return constrain(x_BxTxD, ("batch", "seq", "act_embed")), ys_l

    if remat != "none":
        body = jax.checkpoint(body, policy=REMAT_POLICIES[remat], prevent_cse=False)
    return jax.lax.scan(body, x_BxTxD, (state, xs), unroll=unroll())


class Transformer(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        cfg.validate()
        if cfg.vocab_size <= 0:
            raise ValueError("model.vocab_size is unresolved (0): set it, or let the run take it from the corpus")
        self.cfg = cfg
        V, D, T = cfg.vocab_size, cfg.d_model, cfg.seq_len
        self.embed = param(rngs, (V, D), ("vocab", "embed"), cfg)
        if cfg.pos_encoding == "learned":
            self.pos_embed = param(rngs, (T, D), ("pos", "embed"), cfg)
        encdec = cfg.arch == "encdec"
        if encdec:
            self.enc_blocks = stacked_blocks(cfg, cfg.n_layers, rngs, n_residual=cfg.n_layers)
            self.enc_norm = Norm(cfg, rngs=rngs)
        L = cfg.dec_layers if encdec else cfg.n_layers
        self.blocks = stacked_blocks(cfg, L, rngs, cross=encdec, n_residual=L)
        self.final_norm = Norm(cfg, rngs=rngs)
        if not cfg.tie_embeddings:
            self.head = param(rngs, (D, V), ("embed", "vocab"), cfg)

    def embed_tokens(self, tokens_BxT, positions_T):
        cfg = self.cfg
        # Gather rows from a table whole along its width (vocab stays split over `tensor`): a
        # table also split along the width makes XLA replicate it for the gather.
        table_VxD = constrain(self.embed[...], ("vocab", None))
        x_BxTxD = table_VxD[tokens_BxT].astype(cfg.dtype)
        if cfg.pos_encoding == "learned":
            x_BxTxD = x_BxTxD + self.pos_embed[...][positions_T].astype(cfg.dtype)
        elif cfg.pos_encoding == "sinusoidal":
            x_BxTxD = x_BxTxD + sinusoidal_table(cfg.seq_len, cfg.d_model)[positions_T].astype(cfg.dtype)
        return constrain(x_BxTxD, ("batch", "seq", "act_embed"))

    def logits(self, x_BxTxD):
        """Output head in float32 (tied: the transposed token embedding)."""
        x_BxTxD = self.final_norm(x_BxTxD)
        w_DxV = self.embed[...].T if self.cfg.tie_embeddings else self.head[...]
        logits_BxTxV = jnp.einsum("btd,dv->btv", x_BxTxD, w_DxV.astype(x_BxTxD.dtype))
        return constrain(logits_BxTxV, ("batch", "seq", "act_vocab")).astype(jnp.float32)

    @property
    def target_start(self) -> int:
        """encdec: the window position of the decoder's first token (the source ends before it)."""
        return self.cfg.seq_len // 2

    def self_stack(self, blocks, x_BxTxD, positions_T, *, causal: bool):
        """x after a stack of self-attention blocks (no cross-attention)."""
        layer = lambda block, x, _: (block(x, positions_T, causal=causal), None)
        return scan_layers(blocks, x_BxTxD, layer, remat=self.cfg.remat)[0]

    def encode(self, source_BxS):
        """encdec: the encoder's output [B, S, D] (bidirectional, final encoder norm applied)."""
        positions_S = jnp.arange(source_BxS.shape[1]) + self.target_start - source_BxS.shape[1]
        x_BxSxD = self.embed_tokens(source_BxS, positions_S)
        return self.enc_norm(self.self_stack(self.enc_blocks, x_BxSxD, positions_S, causal=False))

    def cross_kv(self, enc_BxSxD):
        """encdec: every decoder layer's cross-attention keys and values of the encoder output,
        stacked: ([L, B, S, K, E], [L, B, S, K, E])."""
        kv = lambda block, x, _: (x, block.cross_attn.project_kv(enc_BxSxD))
        return scan_layers(self.blocks, enc_BxSxD, kv)[1]

    def decode(self, tokens_BxT, enc_BxSxD):
        """encdec: logits [B, T, V] of the causal decoder reading the encoded source."""
        positions_T = jnp.arange(tokens_BxT.shape[1]) + self.target_start
        x_BxTxD = self.embed_tokens(tokens_BxT, positions_T)

        def layer(block, x_BxTxD, _):
            cross_kv = block.cross_attn.project_kv(enc_BxSxD)
            return block(x_BxTxD, positions_T, causal=True, cross_kv=cross_kv), None

        return self.logits(scan_layers(self.blocks, x_BxTxD, layer, remat=self.cfg.remat)[0])

    def __call__(self, tokens_BxT, source_BxS=None):
        """Logits [B, T, V] for every position (causal for the decoder); encdec: the decoder's
        logits for target tokens_BxT given source_BxS."""
        if self.cfg.arch == "encdec":
            return self.decode(tokens_BxT, self.encode(source_BxS))
        positions_T = jnp.arange(tokens_BxT.shape[1])
        x_BxTxD = self.embed_tokens(tokens_BxT, positions_T)
        return self.logits(self.self_stack(self.blocks, x_BxTxD, positions_T, causal=self.cfg.arch == "decoder"))
