"""Post-training weight-only quantization (int8, int4) of the matmul weights.

Symmetric, per output channel: a weight w with contracted (input) axes C gets one float32 scale
s = max_C |w| / q_max per output channel, and integers q = round(w / s) in [-q_max, q_max]
(q_max = 127 for int8, 7 for int4), so |q·s - w| <= s/2 element-wise and nothing is clipped.
int8 codes are stored as int8 in the weight's shape (1 byte each); int4 codes are packed two per
byte (uint8, low nibble first, over the flattened weight) — half a byte each. The scales add
4 bytes per output channel (1/|C| of the float32 size): e.g. 1/64 at d_model = 64.

Quantized: the attention projections (wq, wk, wv: contracted over the model width; wo: over
heads × head dim), the MLP (w_in, w_gate, w_out), the untied head [D, V] (over D) and the token
embedding [V, D] (per vocabulary row: the output channels of the tied head, and one scale per
looked-up row). Kept in float: norms and the learned position table (no matmul).

    qparams = quantize(params, bits=8)                      # a pytree of QTensor and float leaves
    logits = apply(graphdef, qparams, tokens_BxT)           # dequantized inside the traced forward
    loss = make_loss_fn(graphdef, cfg)(dequantize(qparams), batch, key)   # under jit, likewise

Dequantization (q · s, cast to the parameter dtype) happens inside whatever jitted function calls
`dequantize`, so the stored tree stays integer and float weights exist only as temporaries of
that computation. Training never sees any of this.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lab.config import ConfigError

# parameter name -> its contracted (input) axes, counted from the end so that a scanned stack's
# leading [layers] axis is an output-channel axis like the rest (one scale per layer and channel)
CONTRACTED: dict[str, tuple[int, ...]] = {
    "wq": (-3,),
    "wk": (-3,),
    "wv": (-3,),
    "wo": (-3, -2),
    "w_in": (-2,),
    "w_gate": (-2,),
    "w_out": (-2,),
    "head": (-2,),
    "embed": (-1,),
}
QMAX = {8: 127, 4: 7}
STACKS = (
    "blocks",
    "enc_blocks",
)  # top-level keys of the scanned layer stacks (lab.model.transformer.stacked_blocks)


@dataclasses.dataclass(frozen=True)
class QTensor:
    """Integer codes and per-channel scales of one weight; `shape`/`dtype` are the original's."""

    codes: jax.Array  # int8 [*shape] (bits=8) or uint8 [*shape[:-1], ceil(shape[-1] / 2)] (bits=4)
    scale: jax.Array  # float32, `shape` with the contracted axes of size 1
    bits: int
    shape: tuple[int, ...]
    dtype: str


jax.tree_util.register_dataclass(QTensor, data_fields=["codes", "scale"], meta_fields=["bits", "shape", "dtype"])


def quantize_array(w, contracted: tuple[int, ...], bits: int) -> QTensor:
    w32 = jnp.asarray(w, jnp.float32)
    amax = jnp.max(jnp.abs(w32), axis=contracted, keepdims=True)
    scale = jnp.where(amax > 0, amax / QMAX[bits], 1.0)
    codes = jnp.clip(jnp.round(w32 / scale), -QMAX[bits], QMAX[bits]).astype(jnp.int8)
    if bits == 4:
        codes = pack_int4(codes)
    return QTensor(codes, scale, bits, tuple(w.shape), jnp.dtype(w.dtype).name)


def dequantize_array(t: QTensor):
    """Float values of `t` — or of any slice of it along its leading axes (a layer of a stack):
    codes and scales are sliced alike, and int4 pairs never straddle the last axis."""
    codes = unpack_int4(t.codes, t.shape[-1]) if t.bits == 4 else t.codes
    return (codes.astype(jnp.float32) * t.scale).astype(t.dtype)


def pack_int4(codes):
    """int8 codes in [-8, 7] -> uint8, two per byte along the last axis (element 2i in the low
    nibble; an odd last axis gets one padding nibble per row), so leading axes stay sliceable."""
    c = codes.astype(jnp.int32)
    if c.shape[-1] % 2:
        c = jnp.concatenate([c, jnp.zeros((*c.shape[:-1], 1), jnp.int32)], axis=-1)
    return ((c[..., 0::2] & 0xF) | ((c[..., 1::2] & 0xF) << 4)).astype(jnp.uint8)


def unpack_int4(packed, last: int):
    """The int8 codes [..., last] of `pack_int4`'s bytes [..., ceil(last / 2)]."""
    b = packed.astype(jnp.int32)
    nibbles = jnp.stack([b & 0xF, (b >> 4) & 0xF], axis=-1)  # [..., bytes, 2]
    signed = (nibbles ^ 8) - 8  # sign-extend 4-bit two's complement
    return signed.reshape(*packed.shape[:-1], -1)[..., :last].astype(jnp.int8)


def _name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


@functools.partial(jax.jit, static_argnames="bits")
def quantize(params, bits: int = 8):
    """A copy of a pure-dict parameter tree with every matmul weight (see CONTRACTED) quantized."""
    if bits not in QMAX:
        raise ConfigError(f"quantization to {bits} bits is not supported: use 8 (int8) or 4 (int4)")

    def one(path, w):
        axes = CONTRACTED.get(_name(path))
        return quantize_array(w, axes, bits) if axes is not None else w

    return jax.tree_util.tree_map_with_path(one, params)


def dequantize(qparams):
    """The float parameter tree of a quantized one (call it inside the jitted computation)."""
    return jax.tree.map(
        lambda t: dequantize_array(t) if isinstance(t, QTensor) else t,
        qparams,
        is_leaf=lambda t: isinstance(t, QTensor),
    )


def dequantize_unstacked(qparams):
    """Dequantize every weight outside the scanned layer stacks (`STACKS`) and leave the stacks'
    weights packed: `lab.model.transformer.scan_layers` dequantizes one layer's slice inside each step of its
    scan, so the float copy of a layer exists only while that layer runs and memory falls to the
    packed bytes (a whole-tree `dequantize` makes XLA hold every layer's float weights at once)."""
    return {k: (v if k in STACKS else dequantize(v)) for k, v in qparams.items()}


def apply(graphdef, qparams, *args, **kwargs):
    """Run the model with a quantized tree, e.g. `jax.jit(apply, static_argnums=0)(graphdef, qp, x)`."""
    return nnx.merge(graphdef, dequantize(qparams))(*args, **kwargs)


def matmul_bytes(params, qparams) -> dict:
    """Bytes of the matmul weights in float (`params`) and quantized (codes + scales)."""
    is_q = lambda t: isinstance(t, QTensor)
    quantized = [t for t in jax.tree.leaves(qparams, is_leaf=is_q) if is_q(t)]
    float_bytes = sum(int(np.prod(t.shape)) * jnp.dtype(t.dtype).itemsize for t in quantized)
    codes = sum(t.codes.nbytes for t in quantized)
    scales = sum(t.scale.nbytes for t in quantized)
    rest = sum(x.nbytes for x in jax.tree.leaves(qparams, is_leaf=is_q) if not is_q(x))
    total_float = sum(x.nbytes for x in jax.tree.leaves(params))
    return {
        "matmul_float": float_bytes,
        "matmul_codes": codes,
        "matmul_scales": scales,
        "matmul_quantized": codes + scales,
        "other": rest,
        "total_float": total_float,
        "total_quantized": codes + scales + rest,
    }
