"""RoPE and sinusoidal position maths against independent numpy references written from the papers,
and the positions the full and the KV-cached forward passes hand to RoPE.

RoPE (Su et al. 2021, "RoFormer", eq. 34): pair i of a head of width d is rotated by the angle
pos * theta^(-2i/d), i = 0 .. d/2 - 1. The lab pairs element i with element i + d/2 (the halves
split, GPT-NeoX style), not 2i with 2i + 1 (the paper's interleaved layout); both are the same
rotation up to a fixed permutation of the head's features, and the tests pin the half-split one.
Sinusoidal (Vaswani et al. 2017, section 3.5): PE(pos, 2i) = sin(pos / 10000^(2i/d)),
PE(pos, 2i+1) = cos(pos / 10000^(2i/d)).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import lab.model.layers as layers
from lab.config import ModelConfig
from lab.evals.generate import cached_forward, init_cache
from lab.model.layers import apply_rope, sinusoidal_table
from lab.model.transformer import Transformer

# float32 angles: pos * freq rounds to ~6e-8 relative, so at positions < 64 the outputs agree with
# float64 to a few 1e-6 (inputs of unit scale)
ATOL = 5e-6


def rope_reference(x, pos, theta):
    """float64 RoPE of x [..., T, H, E] at positions pos [T], halves paired (i with i + E/2)."""
    x = np.asarray(x, np.float64)
    E = x.shape[-1]
    half = E // 2
    out = np.empty_like(x)
    for t, p in enumerate(np.asarray(pos)):
        for i in range(half):
            angle = p * theta ** (-2.0 * i / E)
            a, b = x[..., t, :, i], x[..., t, :, i + half]
            out[..., t, :, i] = a * np.cos(angle) - b * np.sin(angle)
            out[..., t, :, i + half] = a * np.sin(angle) + b * np.cos(angle)
    return out


def rope_interleaved(x, pos, theta):
    """The paper's layout (2i with 2i + 1), to show the test tells the two apart."""
    E = x.shape[-1]
    perm = np.concatenate([np.arange(0, E, 2), np.arange(1, E, 2)])  # interleaved -> halves
    inv = np.argsort(perm)
    return rope_reference(np.asarray(x)[..., perm], pos, theta)[..., inv]


def sinusoidal_reference(length, d):
    pe = np.zeros((length, d))
    for pos in range(length):
        for i in range(0, d, 2):
            pe[pos, i] = np.sin(pos / 10000 ** (i / d))
            if i + 1 < d:
                pe[pos, i + 1] = np.cos(pos / 10000 ** (i / d))
    return pe


@pytest.mark.parametrize("theta", [10000.0, 500000.0])
@pytest.mark.parametrize("E", [8, 16])
def test_rope_matches_reference(theta, E):
    x = np.random.default_rng(0).standard_normal((2, 7, 3, E)).astype(np.float32)
    pos = np.array([0, 1, 5, 17, 33, 62, 63])  # not contiguous: the positions given are the ones used
    got = np.asarray(apply_rope(jnp.asarray(x), jnp.asarray(pos), theta))
    np.testing.assert_allclose(got, rope_reference(x, pos, theta), rtol=0, atol=ATOL)
    # the interleaved layout differs by far more than the tolerance: the pairing is pinned
    assert np.abs(got - rope_interleaved(x, pos, theta)).max() > 0.1


def test_rope_pairs_halves_and_keeps_relative_scores():
    """A unit vector on feature 0 turns towards feature E/2 by pos * theta^0 = pos radians; q.k after
    rotation depends only on the distance between the two positions."""
    E, theta = 8, 10000.0
    e0 = np.zeros((1, 1, 1, E), np.float32)
    e0[..., 0] = 1
    got = np.asarray(apply_rope(jnp.asarray(e0), jnp.array([3]), theta))[0, 0, 0]
    want = np.zeros(E)
    want[0], want[E // 2] = np.cos(3.0), np.sin(3.0)
    np.testing.assert_allclose(got, want, atol=ATOL)
    rng = np.random.default_rng(1)
    q, k = (jnp.asarray(rng.standard_normal((1, 1, 1, E)).astype(np.float32)) for _ in range(2))
    score = lambda m, n: float(
        jnp.sum(apply_rope(q, jnp.array([m]), theta) * apply_rope(k, jnp.array([n]), theta))
    )
    assert abs(score(10, 4) - score(30, 24)) < 1e-5 and abs(score(10, 4) - score(10, 5)) > 1e-3


@pytest.mark.parametrize("d", [32, 33])
def test_sinusoidal_table_matches_vaswani(d):
    np.testing.assert_allclose(np.asarray(sinusoidal_table(40, d)), sinusoidal_reference(40, d), atol=ATOL)


CFG = ModelConfig(vocab_size=32, d_model=32, n_layers=1, n_heads=4, seq_len=16, init_std=0.3)


def test_model_adds_the_sinusoidal_rows_and_ropes_keys():
    """embed_tokens adds PE[pos] to the token rows; project_kv rotates keys at the given positions."""
    model = Transformer(dataclasses.replace(CFG, pos_encoding="sinusoidal"), rngs=nnx.Rngs(0))
    tokens = jnp.array([[3, 7, 1, 30]])
    pos = jnp.array([2, 5, 6, 11])
    added = np.asarray(model.embed_tokens(tokens, pos)) - np.asarray(model.embed[...])[np.asarray(tokens)]
    np.testing.assert_allclose(added[0], sinusoidal_reference(16, 32)[np.asarray(pos)], atol=ATOL)

    attn = layers.Attention(CFG, rngs=nnx.Rngs(0), out_std=0.02)
    x = np.random.default_rng(2).standard_normal((1, 4, 32)).astype(np.float32)
    k_plain = np.einsum("bsd,dke->bske", x, np.asarray(attn.wk[...]))
    k, _ = attn.project_kv(jnp.asarray(x), pos)
    np.testing.assert_allclose(np.asarray(k), rope_reference(k_plain, pos, CFG.rope_theta), atol=2e-5)


@pytest.fixture
def rope_positions(monkeypatch):
    """Every position array apply_rope receives, as numpy (recorded from inside jit/scan)."""
    seen = []
    original = layers.apply_rope

    def recording(x, positions, theta):
        jax.debug.callback(lambda p: seen.append(np.asarray(p)), positions)
        return original(x, positions, theta)

    monkeypatch.setattr(layers, "apply_rope", recording)
    return seen


@pytest.mark.parametrize("arch", ["decoder", "encdec"])
def test_cached_and_full_paths_use_the_same_positions(arch, rope_positions):
    """The full forward rotates at 0 .. T-1 (encdec decoder: target_start + t); a cached call for
    tokens index .. index+T-1 rotates at exactly those positions, for queries and keys alike."""
    cfg = dataclasses.replace(CFG, arch=arch, n_dec_layers=1) if arch == "encdec" else CFG
    model = Transformer(cfg, rngs=nnx.Rngs(0))
    offset = model.target_start if arch == "encdec" else 0
    tokens = jnp.array([[1, 2, 3, 4, 5]])
    if arch == "decoder":
        model(tokens)
        jax.effects_barrier()
        assert rope_positions and all(np.array_equal(p, np.arange(5)) for p in rope_positions)
        rope_positions.clear()
    cross_kv = None
    if arch == "encdec":
        source = jnp.zeros((1, cfg.seq_len // 2), jnp.int32)
        cross_kv = model.cross_kv(model.encode(source))
        rope_positions.clear()
    cache = init_cache(cfg, 1, 8)
    cached_forward(model, tokens[:, 2:5], 2, cache, cross_kv)
    jax.effects_barrier()
    assert rope_positions and all(np.array_equal(p, offset + np.arange(2, 5)) for p in rope_positions)
