"""The transformer language model (Flax NNX), configured by a frozen `ModelConfig`.

`arch="decoder"` is a GPT-style causal LM; `arch="encoder"` is the same stack with bidirectional
attention (a masked LM). Parameter counts and FLOPs of exactly this computation are in
`lab.costs`, which reads only the config; a test checks both against the real parameter tree and
XLA's own FLOP count.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lab.config import ModelConfig
from lab.layers import Block, Norm, attention_mask, param, sinusoidal_table
from lab.sharding import constrain


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
            self.enc_blocks = nnx.List([Block(cfg, rngs=rngs, n_residual=cfg.n_layers) for _ in range(cfg.n_layers)])
            self.enc_norm = Norm(cfg, rngs=rngs)
        L = cfg.dec_layers if encdec else cfg.n_layers
        self.blocks = nnx.List([Block(cfg, rngs=rngs, cross=encdec, n_residual=L) for _ in range(L)])
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

    def __call__(self, tokens_BxT):
        """Logits [B, T, V] for every position (causal for the decoder)."""
        cfg = self.cfg
        positions_T = jnp.arange(tokens_BxT.shape[1])
        mask_TxT = attention_mask(
            positions_T, positions_T, causal=cfg.arch == "decoder",
            window=cfg.attn_window, global_tokens=cfg.attn_global_tokens,
        )
        x_BxTxD = self.embed_tokens(tokens_BxT, positions_T)
        for block in self.blocks:
            x_BxTxD = constrain(block(x_BxTxD, mask_TxT, positions_T), ("batch", "seq", "act_embed"))
        return self.logits(x_BxTxD)


def init_model(cfg: ModelConfig, seed: int) -> Transformer:
    return Transformer(cfg, rngs=nnx.Rngs(params=seed))
