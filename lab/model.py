"""The transformer language model (Flax NNX), configured by a frozen `ModelConfig`.

`arch="decoder"` is a GPT-style causal LM; `arch="encoder"` is the same stack with bidirectional
attention (a masked LM); `arch="encdec"` is an encoder stack (bidirectional, `n_layers`) and a
decoder stack (causal self-attention + cross-attention to the encoder output, `dec_layers`)
sharing one token embedding (and learned position table) and one head. Positions are those of a
training window (see `lab.objectives`): the source occupies positions < seq_len // 2, right-
aligned against it; the decoder's tokens start at position seq_len // 2. Cross-attention sees
every source token (no window, no RoPE). Parameter counts and FLOPs of exactly this computation are in
`lab.costs`, which reads only the config; a test checks both against the real parameter tree and
XLA's own FLOP count.
"""

from __future__ import annotations

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

    @property
    def target_start(self) -> int:
        """encdec: the window position of the decoder's first token (the source ends before it)."""
        return self.cfg.seq_len // 2

    def encode(self, source_BxS):
        """encdec: the encoder's output [B, S, D] (bidirectional, final encoder norm applied)."""
        cfg = self.cfg
        index_S = jnp.arange(source_BxS.shape[1])
        mask_SxS = attention_mask(index_S, index_S, causal=False, window=cfg.attn_window,
                                  global_tokens=cfg.attn_global_tokens)
        positions_S = index_S + self.target_start - source_BxS.shape[1]
        x_BxSxD = self.embed_tokens(source_BxS, positions_S)
        for block in self.enc_blocks:
            x_BxSxD = constrain(block(x_BxSxD, mask_SxS, positions_S), ("batch", "seq", "act_embed"))
        return self.enc_norm(x_BxSxD)

    def cross_kv(self, enc_BxSxD):
        """encdec: each decoder layer's cross-attention keys and values of the encoder output."""
        return [block.cross_attn.project_kv(enc_BxSxD) for block in self.blocks]

    def decode(self, tokens_BxT, enc_BxSxD):
        """encdec: logits [B, T, V] of the causal decoder reading the encoded source."""
        cfg = self.cfg
        index_T = jnp.arange(tokens_BxT.shape[1])
        mask_TxT = attention_mask(index_T, index_T, causal=True, window=cfg.attn_window,
                                  global_tokens=cfg.attn_global_tokens)
        cross_mask_TxS = jnp.ones((tokens_BxT.shape[1], enc_BxSxD.shape[1]), bool)
        positions_T = index_T + self.target_start
        x_BxTxD = self.embed_tokens(tokens_BxT, positions_T)
        for block, cross_kv in zip(self.blocks, self.cross_kv(enc_BxSxD)):
            x_BxTxD = block(x_BxTxD, mask_TxT, positions_T, cross_kv=cross_kv, cross_mask_TxS=cross_mask_TxS)
            x_BxTxD = constrain(x_BxTxD, ("batch", "seq", "act_embed"))
        return self.logits(x_BxTxD)

    def __call__(self, tokens_BxT, source_BxS=None):
        """Logits [B, T, V] for every position (causal for the decoder); encdec: the decoder's
        logits for target tokens_BxT given source_BxS."""
        cfg = self.cfg
        if cfg.arch == "encdec":
            return self.decode(tokens_BxT, self.encode(source_BxS))
        positions_T = jnp.arange(tokens_BxT.shape[1])
        mask_TxT = attention_mask(
            positions_T, positions_T, causal=cfg.arch == "decoder",
            window=cfg.attn_window, global_tokens=cfg.attn_global_tokens,
        )
        x_BxTxD = self.embed_tokens(tokens_BxT, positions_T)
        for block in self.blocks:
            x_BxTxD = constrain(block(x_BxTxD, mask_TxT, positions_T), ("batch", "seq", "act_embed"))
        return self.logits(x_BxTxD)
