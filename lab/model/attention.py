"""Attention kernels: the mask rule, dense attention through `jax.nn.dot_product_attention`, and
blockwise sliding-window + global-token attention that computes T·(W_eff + g) scores, not T².

Shapes: B batch, T queries, S keys, H query heads, K key/value heads (GQA: H a multiple of K, the
API groups them itself), E head dim; blocks: N query blocks of W queries, each reading C keys.

The rule (`attention_mask`): causal s <= t; a window W keeps t - s < W (bidirectional
|t - s| < W); g global tokens: keys s < g are seen by every query and queries t < g see every
key the causality allows (Longformer / BigBird). Blockwise evaluation (`blockwise_attention`)
cuts the queries into blocks of W; a block reads only the key blocks its window can reach (causal:
the previous and its own, 2W keys; bidirectional: both neighbours too, 3W) plus the g global
key columns; the g global query rows are computed separately over all keys. It is used whenever
it reads fewer keys than there are (`blockwise_keys`), and it equals the dense masked attention.
`lab.costs` counts exactly these pairs (`score_pairs`); both functions live there, in the core.

`impl`: "xla" (any backend), "cudnn" (cuDNN's fused flash attention, NVIDIA GPUs, bf16, for the
calls without a mask) or "chunked" (a few heads at a time in a loop, with flash attention's backward:
`lab.model.attention_chunked`, any backend, window masks included); the KV cache's masked calls run on
XLA. `resolve_impl("auto", ...)` picks cudnn where it can run, chunked on a CPU, else xla (the rule
lives in `lab.config`, so that `lab.memory` reads it without the model). Every one keeps the
softmax statistics in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lab.config import model_impl, resolve_impl  # noqa: F401  (re-exported: the kernel rule lives in the core)
from lab.costs import blockwise_keys, score_pairs  # noqa: F401  (score_pairs re-exported: the count lives in the core)
from lab.model.attention_chunked import chunked_attention


def attention_mask(q_pos_T, k_pos_S, *, causal: bool, window: int = 0, global_tokens: int = 0):
    """Boolean [T, S] mask: True where query t may attend to key s (see the module docstring)."""
    t, s = q_pos_T[:, None], k_pos_S[None, :]
    allowed = jnp.ones((q_pos_T.shape[0], k_pos_S.shape[0]), bool)
    if window:
        near = (t - s < window) if causal else (jnp.abs(t - s) < window)
        if global_tokens:
            near = near | (s < global_tokens) | (t < global_tokens)
        allowed = allowed & near
    if causal:
        allowed = allowed & (s <= t)
    return allowed


def dot_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask=None, *, causal: bool = False, impl: str = "xla"):
    """softmax(q·kᵀ/√E)·v; `mask` broadcasts to [B, H, T, S]. cuDNN (through
    `jax.nn.dot_product_attention`) and the chunked kernel take the mask-free calls (dense causal or
    full self-attention, cross-attention); a call with an explicit mask (a KV cache) runs on XLA, as
    cuDNN would turn the mask into an additive bias of limited shapes. Window masks go through
    `patterned_attention`, which the chunked kernel takes too."""
    if impl == "chunked" and mask is None:
        return chunked_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, causal=causal)
    return jax.nn.dot_product_attention(
        q_BxTxHxE,
        k_BxSxKxE,
        v_BxSxKxE,
        mask=mask,
        is_causal=causal,
        implementation="cudnn" if impl == "cudnn" and mask is None else "xla",
    )


def patterned_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_PxTxS, *, impl: str = "xla"):
    """Attention where batch row b may see the keys of mask pattern b mod P (P = 1: one mask for all;
    the window's query blocks: one pattern per block). The chunked kernel takes the patterns as
    they are; XLA and cuDNN get them broadcast to [B, 1, T, S]."""
    if impl == "chunked":
        return chunked_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_PxTxS=mask_PxTxS)
    P, B = mask_PxTxS.shape[0], q_BxTxHxE.shape[0]
    mask_Bx1xTxS = (mask_PxTxS if P == 1 else jnp.tile(mask_PxTxS, (B // P, 1, 1)))[:, None]
    return dot_attention(q_BxTxHxE, k_BxSxKxE, v_BxSxKxE, mask_Bx1xTxS, impl=impl)


def self_attention(
    q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, *, causal: bool, window: int = 0, global_tokens: int = 0, impl: str = "xla"
):
    """Self-attention of one sequence under the mask rule: blockwise where that reads fewer keys."""
    T = q_BxTxHxE.shape[1]
    if blockwise_keys(T, window, global_tokens, causal):
        return blockwise_attention(
            q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, causal=causal, window=window, global_tokens=global_tokens, impl=impl
        )
    if not window:
        return dot_attention(q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, causal=causal, impl=impl)
    index_T = jnp.arange(T)
    mask_TxT = attention_mask(index_T, index_T, causal=causal, window=window, global_tokens=global_tokens)
    return patterned_attention(q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, mask_TxT[None], impl=impl)


def _neighbour_blocks(x_BxTxKxE, W: int, N: int, n_blocks: int):
    """[B, N, n_blocks·W, K, E]: for query block i, key blocks i-1 .. i-2+n_blocks, zero-padded."""
    B, T, K, E = x_BxTxKxE.shape
    padded = jnp.pad(x_BxTxKxE, ((0, 0), (W, (N + 1) * W - T), (0, 0), (0, 0)))
    blocks_BxN2xWxKxE = padded.reshape(B, N + 2, W, K, E)
    return jnp.concatenate([blocks_BxN2xWxKxE[:, j : j + N] for j in range(n_blocks)], axis=2)


def blockwise_attention(
    q_BxTxHxE, k_BxTxKxE, v_BxTxKxE, *, causal: bool, window: int, global_tokens: int = 0, impl: str = "xla"
):
    """Sliding-window + global-token self-attention over key blocks (see the module docstring)."""
    B, T, H, E = q_BxTxHxE.shape
    K, W, g = k_BxTxKxE.shape[2], window, global_tokens
    N, n_blocks = -(-T // W), 2 if causal else 3
    q_BxNxWxHxE = jnp.pad(q_BxTxHxE, ((0, 0), (0, N * W - T), (0, 0), (0, 0))).reshape(B, N, W, H, E)
    k_BxNxCxKxE = _neighbour_blocks(k_BxTxKxE, W, N, n_blocks)
    v_BxNxCxKxE = _neighbour_blocks(v_BxTxKxE, W, N, n_blocks)
    q_pos_NxW = jnp.arange(N * W).reshape(N, W)
    k_pos_NxC = (jnp.arange(N)[:, None] - 1) * W + jnp.arange(n_blocks * W)[None, :]
    rule = jax.vmap(lambda q, k: attention_mask(q, k, causal=causal, window=W))
    mask_NxWxC = rule(q_pos_NxW, k_pos_NxC) & ((k_pos_NxC >= g) & (k_pos_NxC < T))[:, None, :]
    if g:  # global key columns, visible to every query (subject to causality)
        k_BxNxCxKxE = jnp.concatenate([jnp.broadcast_to(k_BxTxKxE[:, None, :g], (B, N, g, K, E)), k_BxNxCxKxE], 2)
        v_BxNxCxKxE = jnp.concatenate([jnp.broadcast_to(v_BxTxKxE[:, None, :g], (B, N, g, K, E)), v_BxNxCxKxE], 2)
        glob_NxWxg = jnp.broadcast_to(jnp.arange(g)[None, None, :] <= q_pos_NxW[:, :, None], (N, W, g))
        mask_NxWxC = jnp.concatenate([glob_NxWxg if causal else jnp.ones_like(glob_NxWxg), mask_NxWxC], axis=2)
    C = k_BxNxCxKxE.shape[2]
    out_BNxWxHxE = patterned_attention(
        q_BxNxWxHxE.reshape(B * N, W, H, E),
        k_BxNxCxKxE.reshape(B * N, C, K, E),
        v_BxNxCxKxE.reshape(B * N, C, K, E),
        mask_NxWxC,
        impl=impl,
    )  # row b·N + n: block n
    out_BxTxHxE = out_BNxWxHxE.reshape(B, N * W, H, E)[:, :T]
    if not g:
        return out_BxTxHxE
    index_T = jnp.arange(T)  # the global query rows: every key the causality allows
    mask_gxT = attention_mask(index_T[:g], index_T, causal=causal)
    rows_BxgxHxE = patterned_attention(q_BxTxHxE[:, :g], k_BxTxKxE, v_BxTxKxE, mask_gxT[None], impl=impl)
    return jnp.concatenate([rows_BxgxHxE, out_BxTxHxE[:, g:]], axis=1)
