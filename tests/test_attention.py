"""Attention kernels: blockwise sliding-window + global-token attention equals the dense masked
attention (values and gradients), and reads only the keys its blocks can see."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab.config import ConfigError, resolve_impl
from lab.costs import blockwise_keys, score_pairs
from lab.model.attention import attention_mask, blockwise_attention, dot_attention, self_attention

# (T, W, g, causal, H, K): T a multiple of W and not, with and without global tokens, MHA/GQA/MQA
CASES = [
    (64, 16, 0, True, 4, 4),
    (61, 16, 3, True, 4, 2),
    (50, 8, 0, False, 4, 1),
    (47, 6, 5, False, 2, 2),
    (33, 4, 1, True, 4, 1),
    (40, 5, 7, False, 4, 4),
]


def qkv(T, H, K, seed=0, E=8, B=2):
    rng = np.random.default_rng(seed)  # numpy: jax.random compiles per shape (seconds per case)
    return tuple(
        jnp.asarray(rng.standard_normal(shape), jnp.float32)
        for shape in ((B, T, H, E), (B, T, K, E), (B, T, K, E))
    )


def dense_masked(q, k, v, causal, W, g):
    index_T = jnp.arange(q.shape[1])
    mask_TxT = attention_mask(index_T, index_T, causal=causal, window=W, global_tokens=g)
    return dot_attention(q, k, v, mask_TxT[None, None])


def reference(q, k, v, causal, W, g):
    """The textbook formula in numpy (float64): softmax over the allowed keys, per head group."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    T, H, K = q.shape[1], q.shape[2], k.shape[2]
    mask = np.asarray(attention_mask(jnp.arange(T), jnp.arange(T), causal=causal, window=W, global_tokens=g))
    k, v = np.repeat(k, H // K, axis=2), np.repeat(v, H // K, axis=2)
    logits = np.einsum("bthe,bshe->bhts", q, k) / np.sqrt(q.shape[-1])
    logits = np.where(mask, logits, -np.inf)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    return np.einsum("bhts,bshe->bthe", p / p.sum(-1, keepdims=True), v)


@pytest.mark.parametrize("T, W, g, causal, H, K", CASES)
def test_blockwise_equals_dense_masked(T, W, g, causal, H, K):
    q, k, v = qkv(T, H, K, seed=T + W + g)
    fns = (
        lambda *x: blockwise_attention(*x, causal=causal, window=W, global_tokens=g),
        lambda *x: dense_masked(*x, causal, W, g),
    )
    # jitted: one compile each instead of hundreds of eager dispatches (the values are the same ops)
    (blockwise, grads), (dense, dense_grads) = (
        jax.jit(lambda *x, fn=fn: (fn(*x), jax.grad(lambda *y: jnp.sum(fn(*y) ** 2), argnums=(0, 1, 2))(*x)))(
            q, k, v
        )
        for fn in fns
    )
    assert blockwise.shape == q.shape
    assert float(jnp.abs(blockwise - dense).max()) < 2e-5
    np.testing.assert_allclose(np.asarray(blockwise), reference(q, k, v, causal, W, g), atol=2e-5)
    for a, b in zip(grads, dense_grads):
        assert float(jnp.abs(a - b).max()) < 1e-4


def test_self_attention_picks_blockwise_only_when_it_reads_fewer_keys():
    assert blockwise_keys(2048, 128, 0, causal=True) == 256
    assert blockwise_keys(2048, 128, 4, causal=False) == 3 * 128 + 4
    assert blockwise_keys(200, 128, 0, causal=True) == 0  # 2W >= T: dense masked is cheaper
    assert blockwise_keys(2048, 0, 4, causal=True) == 0
    assert score_pairs(2048, 2048, causal=True, window=128) == 2048 * 256
    assert score_pairs(100, 100, causal=True, window=16, global_tokens=2) == 112 * 34 + 2 * 100
    assert score_pairs(64, 32, causal=True, window=8) == 64 * 32  # cross-attention stays dense
    q, k, v = qkv(24, 4, 2)  # window wider than half the sequence: the dense masked path
    np.testing.assert_allclose(
        np.asarray(self_attention(q, k, v, causal=True, window=16, global_tokens=1)),
        reference(q, k, v, True, 16, 1),
        atol=2e-5,
    )
    np.testing.assert_allclose(
        np.asarray(self_attention(q, k, v, causal=False)), reference(q, k, v, False, 0, 0), atol=2e-5
    )


def test_blockwise_computes_t_times_window_scores():
    """XLA's own FLOP count of the kernel falls with the window as score_pairs says."""
    E, H, T = 8, 4, 512
    q, k, v = qkv(T, H, H, B=1)

    def flops(**kw):
        ca = (
            jax.jit(lambda q, k, v: self_attention(q, k, v, causal=True, **kw))
            .lower(q, k, v)
            .compile()
            .cost_analysis()
        )
        return (ca[0] if isinstance(ca, list) else ca)["flops"]

    dense, window = flops(), flops(window=32)
    assert dense >= 4 * E * H * T * T
    assert window / dense == pytest.approx(score_pairs(T, T, causal=True, window=32) / T**2, rel=0.15)


def test_bfloat16_softmax_in_float32():
    q, k, v = qkv(40, 4, 2)
    kernel = jax.jit(lambda *x: blockwise_attention(*x, causal=True, window=8, global_tokens=2))
    out = kernel(*(a.astype(jnp.bfloat16) for a in (q, k, v)))
    assert out.dtype == jnp.bfloat16
    assert float(jnp.abs(out.astype(jnp.float32) - dense_masked(q, k, v, True, 8, 2)).max()) < 3e-2


def test_impl_choice():
    on_cpu = jax.default_backend() == "cpu"
    assert resolve_impl("auto", "float32", 16) == ("chunked" if on_cpu else "xla")
    assert resolve_impl("chunked", "bfloat16", 64) == "chunked"
    assert resolve_impl("xla", "bfloat16", 64) == "xla"
    if jax.default_backend() == "cpu":
        with pytest.raises(ConfigError, match="attn_impl=cudnn needs an NVIDIA GPU"):
            resolve_impl("cudnn", "bfloat16", 64)
    with pytest.raises(ConfigError, match="not one of"):
        resolve_impl("flash", "float32", 16)
