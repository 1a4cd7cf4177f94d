"""Attention computed a few heads at a time, with flash attention's backward pass (`model.attn_impl=chunked`).

softmax(q·kᵀ/√E)·v over the keys each query may see (every key, the causal ones, or those of a
boolean mask: the window's patterns, `lab.model.attention.patterned_attention`), the same function as
`jax.nn.dot_product_attention`, computed for the heads of one chunk at a time in a `jax.lax.scan`,
so that a chunk's scores and probabilities (`CACHE_BYTES` of float32) stay in the core's cache
between the matmul that writes them and the passes that read them; computed all at once, every
softmax pass streams the [B, H, T, S] scores through memory. A custom VJP keeps only the output
and each query's float32 log-sum-exp for the backward pass, which recomputes the probabilities
chunk by chunk (Dao et al. 2022): no T×S tensor outlives its chunk, forward or backward.

Layout: each kv head's queries form one block of rows, [B·K, G·T, E] (G = H / K query heads per kv
head), so GQA multiplies G·T rows by the shared keys in one matmul. A chunk is c of those B·K
blocks. Under a mesh of several devices each device runs the kernel on its own batch and heads
(`lab.sharding.per_device`).

What it computes is what the XLA kernel computes, T·S score pairs per head for the shapes it is
given (`lab.costs` counts the same); what it saves is time where memory traffic, not
arithmetic, bounds the softmax (the CPU: 2.0x faster attention, value and gradient, at the
small preset's shapes; see benchmarks/README.md), and activation memory: no scores are kept for the backward pass.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from lab.model.unroll import unroll
from lab.sharding import per_device

CACHE_BYTES = 1 << 20  # float32 scores per chunk: one core's L2 (1 MiB on the development CPU) was fastest
ATTENTION_RESIDUALS = ("attention_out", "attention_lse")  # names a remat policy saves (lab.model.transformer)
MASKED = -0.7 * float(jnp.finfo(jnp.float32).max)  # the score of a pair a query may not see


def chunk_blocks(n_blocks: int, rows: int, keys: int) -> int:
    """Row blocks per chunk: the largest divisor of `n_blocks` whose float32 scores fit in
    `CACHE_BYTES` (at least 1)."""
    fit = max(1, CACHE_BYTES // (4 * rows * keys))
    return max(c for c in range(1, min(fit, n_blocks) + 1) if n_blocks % c == 0)


def chunked_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, *, causal: bool = False, mask_PxTxS=None):
    """softmax(q·kᵀ/√E)·v over the keys each query may see; shapes as `jax.nn.dot_product_attention`.
    `causal`: key s <= query t. `mask_PxTxS`: P boolean patterns, batch row b uses pattern b mod P
    (P = 1: one mask for every row; the blockwise window passes one pattern per query block)."""
    args = (q_BxTxHxE, k_BxSxKxE, v_BxSxKxE)
    axes = (
        ("batch", "seq", "act_heads", None),
        ("batch", "seq", "act_kv_heads", None),
        ("batch", "seq", "act_kv_heads", None),
    )
    if mask_PxTxS is None:
        kernel = lambda q, k, v: _attention(q, k, v, None, causal)
    else:
        kernel = lambda q, k, v, mask: _attention(q, k, v, mask, causal)
        args, axes = (*args, mask_PxTxS), (*axes, (None, None, None))  # the mask: on every device
    return per_device(kernel, axes, axes[0])(*args)


def _to_rows(x_BxTxHxE, K: int):
    """[B, T, H, E] -> [B·K, G·T, E]: the queries of each kv head's G heads as one block of rows."""
    B, T, H, E = x_BxTxHxE.shape
    G = H // K
    return x_BxTxHxE.reshape(B, T, K, G, E).transpose(0, 2, 3, 1, 4).reshape(B * K, G * T, E)


def _from_rows(x_NxMxE, B: int, T: int):
    """The inverse of `_to_rows`."""
    N, M, E = x_NxMxE.shape
    K, G = N // B, M // T
    return x_NxMxE.reshape(B, K, G, T, E).transpose(0, 3, 1, 2, 4).reshape(B, T, K * G, E)


def _bias(mask_PxTxS, causal: bool, T: int, S: int, G: int):
    """[P, G·T, S] float32, 0 where row m (query m mod T) may see key s and a large negative number
    elsewhere (finite, as in `jax.nn.dot_product_attention`: a row that sees nothing averages every
    value instead of producing NaN); None when every query sees every key."""
    keep = (jnp.arange(T)[:, None] >= jnp.arange(S)[None, :])[None] if causal else None
    if mask_PxTxS is not None:
        keep = mask_PxTxS if keep is None else keep & mask_PxTxS
    if keep is None:
        return None
    return jnp.tile(jnp.where(keep, 0.0, MASKED).astype(jnp.float32), (1, G, 1))


def _chunk_bias(bias_PxMxS, first_block, c: int, K: int):
    """The bias of row blocks first_block .. first_block + c - 1 (block r: batch row r // K)."""
    if bias_PxMxS is None or bias_PxMxS.shape[0] == 1:
        return None if bias_PxMxS is None else bias_PxMxS[0]
    return bias_PxMxS[((first_block + jnp.arange(c)) // K) % bias_PxMxS.shape[0]]


def _scores(q_cxMxE, k_cxSxE, bias):
    s = jnp.einsum("nme,nse->nms", q_cxMxE, k_cxSxE, preferred_element_type=jnp.float32)
    return s if bias is None else s + bias


def _forward_chunk(q_cxMxE, k_cxSxE, v_cxSxE, bias):
    """(output [c, M, E], log-sum-exp [c, M]) of one chunk; q already scaled by 1/√E."""
    s = _scores(q_cxMxE, k_cxSxE, bias)
    m = s.max(-1, keepdims=True)
    p = jnp.exp(s - m)
    l = p.sum(-1, keepdims=True)
    o = jnp.einsum("nms,nse->nme", p.astype(v_cxSxE.dtype), v_cxSxE, preferred_element_type=jnp.float32) / l
    return o.astype(q_cxMxE.dtype), (m + jnp.log(l))[..., 0]


def _transposed(x_cxMxS):
    """xᵀ written out. Left to itself, XLA folds the transpose into the next matmul, which then reads
    its left operand transposed: on the CPU that product leaves YNNPACK for a 4x slower path."""
    return jax.lax.optimization_barrier(x_cxMxS.swapaxes(1, 2))


def _backward_chunk(q_cxMxE, k_cxSxE, v_cxSxE, o_cxMxE, lse_cxM, do_cxMxE, bias):
    """(dq·√E, dk, dv) of one chunk."""
    p = jnp.exp(_scores(q_cxMxE, k_cxSxE, bias) - lse_cxM[..., None])
    dv = jnp.einsum(
        "nsm,nme->nse", _transposed(p.astype(do_cxMxE.dtype)), do_cxMxE, preferred_element_type=jnp.float32
    )
    dp = jnp.einsum("nme,nse->nms", do_cxMxE, v_cxSxE, preferred_element_type=jnp.float32)
    delta = jnp.sum(do_cxMxE.astype(jnp.float32) * o_cxMxE.astype(jnp.float32), -1, keepdims=True)
    ds = (p * (dp - delta)).astype(q_cxMxE.dtype)
    dq = jnp.einsum("nms,nse->nme", ds, k_cxSxE, preferred_element_type=jnp.float32)
    dk = jnp.einsum("nsm,nme->nse", _transposed(ds), q_cxMxE, preferred_element_type=jnp.float32)
    return dq, dk, dv


def _over_chunks(fn, arrays, c: int, bias_PxMxS, K: int):
    """fn(*chunk, its bias) for each chunk of c row blocks (a scan: one chunk live at a time)."""
    chunks = tuple(a.reshape(a.shape[0] // c, c, *a.shape[1:]) for a in arrays)
    starts = jnp.arange(0, arrays[0].shape[0], c)

    def body(carry, xs):
        first, *chunk = xs
        return carry, fn(*chunk, _chunk_bias(bias_PxMxS, first, c, K))

    _, out = jax.lax.scan(body, None, (starts, *chunks), unroll=unroll())
    return tuple(o.reshape(o.shape[0] * c, *o.shape[2:]) for o in out)


def _rows(q, k, v, mask_PxTxS, causal: bool):
    """Scaled query rows, key rows, value rows, the bias and the chunk size."""
    B, T, H, E = q.shape
    K, S = k.shape[2], k.shape[1]
    q_NxMxE = _to_rows(q, K) * jnp.asarray(1 / math.sqrt(E), q.dtype)
    k_NxSxE, v_NxSxE = _to_rows(k, K), _to_rows(v, K)
    bias = _bias(mask_PxTxS, causal, T, S, H // K)
    return q_NxMxE, k_NxSxE, v_NxSxE, bias, chunk_blocks(B * K, q_NxMxE.shape[1], S)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def _attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_PxTxS, causal: bool):
    return _attention_fwd(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_PxTxS, causal)[0]


def _attention_fwd(q, k, v, mask_PxTxS, causal):
    B, T = q.shape[:2]
    q_NxMxE, k_NxSxE, v_NxSxE, bias, c = _rows(q, k, v, mask_PxTxS, causal)
    o_NxMxE, lse_NxM = _over_chunks(_forward_chunk, (q_NxMxE, k_NxSxE, v_NxSxE), c, bias, k.shape[2])
    o_NxMxE = checkpoint_name(o_NxMxE, ATTENTION_RESIDUALS[0])
    lse_NxM = checkpoint_name(lse_NxM, ATTENTION_RESIDUALS[1])
    return _from_rows(o_NxMxE, B, T), (q, k, v, mask_PxTxS, o_NxMxE, lse_NxM)


def _attention_bwd(causal, residuals, do_BxTxHxE):
    q, k, v, mask_PxTxS, o_NxMxE, lse_NxM = residuals
    B, T, _, E = q.shape
    K, S = k.shape[2], k.shape[1]
    q_NxMxE, k_NxSxE, v_NxSxE, bias, c = _rows(q, k, v, mask_PxTxS, causal)
    arrays = (q_NxMxE, k_NxSxE, v_NxSxE, o_NxMxE, lse_NxM, _to_rows(do_BxTxHxE, K))
    dq, dk, dv = _over_chunks(_backward_chunk, arrays, c, bias, K)
    return (
        _from_rows(dq * (1 / math.sqrt(E)), B, T).astype(q.dtype),
        _from_rows(dk, B, S).astype(k.dtype),
        _from_rows(dv, B, S).astype(v.dtype),
        None,
    )


_attention.defvjp(_attention_fwd, _attention_bwd)
