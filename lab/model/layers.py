"""Transformer building blocks in Flax NNX: norms, positional encodings, attention, MLP (the
attention kernels themselves are in `lab.model.attention`).

Tensor names carry their shapes (B batch, T query positions, S key positions, D model width,
H query heads, K key/value heads, G = H // K query heads per kv head, E head dim, F MLP width,
V vocabulary). Every parameter is created with `logical_axes` metadata — the names the single
sharding policy in `lab.sharding` maps onto mesh axes.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from lab.config import ModelConfig, resolve_impl
from lab.model.attention import dot_attention, self_attention
from lab.sharding import constrain


def next_key(rngs: nnx.Rngs):
    """`rngs.params()` — the same key, the same counter step — in time independent of model size.

    `rngs.params()` advances its counter with `count[...] += 1`; under a trace (`nnx.eval_shape`,
    `jax.jit` of the initialiser) that assignment reads `.sharding` of a tracer, and jax builds the
    AttributeError it raises by scanning every equation traced so far. Each draw then costs
    O(model size) and building an L-layer model O(L²): 200 layers took 24 s. `set_value` stores
    the new count without that check."""
    stream = rngs.params
    key = jax.random.fold_in(stream.key[...], stream.count[...])
    stream.count.set_value(stream.count[...] + 1)
    return key


def param(rngs: nnx.Rngs, shape, axes, cfg: ModelConfig, std: float | None = None, init: str = "normal"):
    """A parameter with logical axis names; `std` defaults to the config's init_std."""
    dtype = jnp.dtype(cfg.param_dtype)
    if init == "ones":
        value = jnp.ones(shape, dtype)
    elif init == "zeros":
        value = jnp.zeros(shape, dtype)
    else:
        std = cfg.init_std if std is None else std
        value = std * jax.random.normal(next_key(rngs), shape, dtype)
    assert len(axes) == len(shape), (axes, shape)
    return nnx.Param(value, logical_axes=tuple(axes))


class Norm(nnx.Module):
    """LayerNorm (scale + bias) or RMSNorm (scale only), computed in float32."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.kind = cfg.norm
        self.scale = param(rngs, (cfg.d_model,), ("norm",), cfg, init="ones")
        if cfg.norm == "layernorm":
            self.bias = param(rngs, (cfg.d_model,), ("norm",), cfg, init="zeros")

    def __call__(self, x_BxTxD):
        x = x_BxTxD.astype(jnp.float32)
        if self.kind == "layernorm":
            x = x - x.mean(-1, keepdims=True)
        x = x * jax.lax.rsqrt((x * x).mean(-1, keepdims=True) + 1e-6)
        x = x * self.scale[...].astype(jnp.float32)
        if self.kind == "layernorm":
            x = x + self.bias[...].astype(jnp.float32)
        return x.astype(x_BxTxD.dtype)


def sinusoidal_table(length: int, dim: int):
    """The fixed sin/cos table of Vaswani et al. (no parameters)."""
    pos_T = jnp.arange(length, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)
    table = jnp.zeros((length, dim), jnp.float32)
    table = table.at[:, 0::2].set(jnp.sin(pos_T * freq))
    table = table.at[:, 1::2].set(jnp.cos(pos_T * freq[: dim // 2]))
    return table


def apply_rope(x_BxTxHxE, positions_T, theta: float):
    """Rotary position embedding on the last axis (pairs split as halves, GPT-NeoX style)."""
    half = x_BxTxHxE.shape[-1] // 2
    freq = theta ** (-jnp.arange(half, dtype=jnp.float32) / half)
    angle_TxE2 = positions_T.astype(jnp.float32)[:, None] * freq[None, :]
    cos, sin = jnp.cos(angle_TxE2)[None, :, None, :], jnp.sin(angle_TxE2)[None, :, None, :]
    x1, x2 = x_BxTxHxE[..., :half].astype(jnp.float32), x_BxTxHxE[..., half:].astype(jnp.float32)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxTxHxE.dtype)


class Attention(nnx.Module):
    """Multi-head attention with grouped key/value heads (MHA when K == H, MQA when K == 1).

    Self-attention when called with one input; cross-attention when `kv_BxSxD` is given.
    """

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, out_std: float):
        D, H, K, E = cfg.d_model, cfg.n_heads, cfg.kv_heads, cfg.head_dim
        self.cfg = cfg
        self.impl = resolve_impl(cfg.attn_impl, cfg.dtype, E)
        self.wq = param(rngs, (D, H, E), ("embed", "heads", "head_dim"), cfg)
        self.wk = param(rngs, (D, K, E), ("embed", "kv_heads", "head_dim"), cfg)
        self.wv = param(rngs, (D, K, E), ("embed", "kv_heads", "head_dim"), cfg)
        self.wo = param(rngs, (H, E, D), ("heads", "head_dim", "embed"), cfg, std=out_std)

    def project_kv(self, kv_BxSxD, positions_S=None):
        """Keys and values [B, S, K, E] of a source sequence (RoPE applied to keys)."""
        dt = kv_BxSxD.dtype
        k_BxSxKxE = jnp.einsum("bsd,dke->bske", kv_BxSxD, self.wk[...].astype(dt))
        v_BxSxKxE = jnp.einsum("bsd,dke->bske", kv_BxSxD, self.wv[...].astype(dt))
        if positions_S is not None and self.cfg.pos_encoding == "rope":
            k_BxSxKxE = apply_rope(k_BxSxKxE, positions_S, self.cfg.rope_theta)
        return k_BxSxKxE, v_BxSxKxE

    def __call__(self, x_BxTxD, positions_T=None, *, causal: bool = False, kv=None, mask_TxS=None):
        """Self-attention under the config's window / global-token rule (blockwise where that reads
        fewer keys), or, given `kv` = (k_BxSxKxE, v_BxSxKxE) from `project_kv` (cross-attention or a
        KV cache), attention over those keys where `mask_TxS` allows (None: all of them)."""
        cfg, dt = self.cfg, x_BxTxD.dtype
        q_BxTxHxE = jnp.einsum("btd,dhe->bthe", x_BxTxD, self.wq[...].astype(dt))
        q_BxTxHxE = constrain(q_BxTxHxE, ("batch", "seq", "act_heads", None))
        if positions_T is not None and cfg.pos_encoding == "rope":
            q_BxTxHxE = apply_rope(q_BxTxHxE, positions_T, cfg.rope_theta)
        if kv is None:
            k_BxTxKxE, v_BxTxKxE = self.project_kv(x_BxTxD, positions_T)
            out_BxTxHxE = self_attention(
                q_BxTxHxE,
                k_BxTxKxE,
                v_BxTxKxE,
                causal=causal,
                window=cfg.attn_window,
                global_tokens=cfg.attn_global_tokens,
                impl=self.impl,
            )
        else:
            mask = None if mask_TxS is None else mask_TxS[None, None]
            out_BxTxHxE = dot_attention(q_BxTxHxE, *kv, mask, impl=self.impl)
        return jnp.einsum("bthe,hed->btd", out_BxTxHxE, self.wo[...].astype(dt))


class MLP(nnx.Module):
    """GELU MLP (D -> F -> D) or SwiGLU (gate and up projections, D -> F twice, F -> D)."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, out_std: float):
        D, F = cfg.d_model, cfg.ffn_dim
        self.kind = cfg.mlp
        self.w_in = param(rngs, (D, F), ("embed", "mlp"), cfg)
        if cfg.mlp == "swiglu":
            self.w_gate = param(rngs, (D, F), ("embed", "mlp"), cfg)
        self.w_out = param(rngs, (F, D), ("mlp", "embed"), cfg, std=out_std)

    def __call__(self, x_BxTxD):
        # Matmuls on [B·T, D] rows: the weight gradients then contract a 2-D operand's leading
        # axis in place, where [B, T, D] made XLA's CPU backend copy a transpose of the
        # activations for each (2.5x less CPU time for this MLP's backward, small preset).
        B, T, D = x_BxTxD.shape
        dt, x_NxD = x_BxTxD.dtype, x_BxTxD.reshape(B * T, D)
        h_NxF = constrain(x_NxD @ self.w_in[...].astype(dt), ("batch", "act_mlp"))
        if self.kind == "swiglu":
            h_NxF = jax.nn.silu(x_NxD @ self.w_gate[...].astype(dt)) * h_NxF
        else:
            h_NxF = jax.nn.gelu(h_NxF)
        return (h_NxF @ self.w_out[...].astype(dt)).reshape(B, T, D)


class Block(nnx.Module):
    """Pre-norm residual block: self-attention, optional cross-attention, MLP."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, cross: bool = False, n_residual: int):
        out_std = cfg.init_std / math.sqrt(2 * n_residual)  # GPT-2: scale residual outputs by depth
        self.attn_norm = Norm(cfg, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs, out_std=out_std)
        self.cross = cross
        if cross:
            self.cross_norm = Norm(cfg, rngs=rngs)
            self.cross_attn = Attention(cfg, rngs=rngs, out_std=out_std)
        self.mlp_norm = Norm(cfg, rngs=rngs)
        self.mlp = MLP(cfg, rngs=rngs, out_std=out_std)

    def __call__(self, x_BxTxD, positions_T, *, causal: bool = True, cache=None, cross_kv=None):
        """x after the block. With `cache` = (k_BxCxKxE, v_BxCxKxE, mask_TxC) (generation), self-
        attention reads the C cached keys and this call's T new ones under mask_TxC (C + T
        columns), and the result is (x, (k_BxTxKxE, v_BxTxKxE)): the new keys/values to store."""
        h_BxTxD = self.attn_norm(x_BxTxD)
        if cache is None:
            x_BxTxD = x_BxTxD + self.attn(h_BxTxD, positions_T, causal=causal)
        else:
            k_BxCxKxE, v_BxCxKxE, mask_TxC = cache
            new = self.attn.project_kv(h_BxTxD, positions_T)
            kv = (
                jnp.concatenate([k_BxCxKxE, new[0].astype(k_BxCxKxE.dtype)], axis=1),
                jnp.concatenate([v_BxCxKxE, new[1].astype(v_BxCxKxE.dtype)], axis=1),
            )
            x_BxTxD = x_BxTxD + self.attn(h_BxTxD, positions_T, kv=kv, mask_TxS=mask_TxC)
        if self.cross:
            x_BxTxD = x_BxTxD + self.cross_attn(self.cross_norm(x_BxTxD), kv=cross_kv)
        x_BxTxD = x_BxTxD + self.mlp(self.mlp_norm(x_BxTxD))
        return x_BxTxD if cache is None else (x_BxTxD, new)
