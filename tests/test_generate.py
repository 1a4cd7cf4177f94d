"""KV-cached generation: greedy tokens equal full forward passes, masks hold in the cached step,
sampling draws from the top k with an explicit key."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lab.config import ConfigError, ModelConfig
from lab.evals.generate import cached_forward, generate, init_cache, sample_logits
from lab.model.transformer import Transformer

# init_std 0.3: logits far from uniform, so greedy choices are not near-ties
BASE = ModelConfig(vocab_size=64, d_model=32, n_layers=2, n_heads=4, seq_len=24, init_std=0.3)
MODELS = {
    "rope_gqa": dataclasses.replace(BASE, n_kv_heads=2),
    "learned_window_global": dataclasses.replace(
        BASE, pos_encoding="learned", attn_window=3, attn_global_tokens=1
    ),
    "encdec_learned_mqa": dataclasses.replace(
        BASE, arch="encdec", n_dec_layers=3, pos_encoding="learned", n_kv_heads=1
    ),
    # windows shorter than prompt + new tokens (11): a ring cache of W (+ g) slots, blockwise full forward
    "rope_window_gqa": dataclasses.replace(BASE, n_kv_heads=2, attn_window=2),
    "encdec_window_global_remat": dataclasses.replace(
        BASE, arch="encdec", n_dec_layers=2, attn_window=2, attn_global_tokens=2, remat="full"
    ),
}
P, N = 5, 6  # prompt tokens, new tokens


def split(cfg, seed=0):
    model = Transformer(cfg, rngs=nnx.Rngs(seed))
    graphdef, state = nnx.split(model, nnx.Param)
    return model, graphdef, nnx.to_pure_dict(state)


def inputs(cfg):
    prompt = jax.random.randint(jax.random.key(1), (2, P), 0, cfg.vocab_size)
    source = jax.random.randint(jax.random.key(2), (2, cfg.seq_len // 2), 0, cfg.vocab_size)
    return prompt, source if cfg.arch == "encdec" else None


def greedy_without_cache(graphdef, params, prompt, source, n):
    """Greedy decoding by a full forward pass over the whole sequence for every new token."""
    forward = jax.jit(
        lambda p, t: nnx.merge(graphdef, p)(t, source) if source is not None else nnx.merge(graphdef, p)(t)
    )
    seq = jnp.zeros((prompt.shape[0], prompt.shape[1] + n), jnp.int32).at[:, : prompt.shape[1]].set(prompt)
    for i in range(n):  # positions after the current one are placeholders the causal mask never shows
        t = prompt.shape[1] + i
        seq = seq.at[:, t].set(jnp.argmax(forward(params, seq)[:, t - 1], -1))
    return np.asarray(seq[:, prompt.shape[1] :])


@pytest.mark.parametrize("name", MODELS)
def test_cached_greedy_equals_full_forward(name):
    cfg = MODELS[name]
    _, graphdef, params = split(cfg)
    prompt, source = inputs(cfg)
    cached = np.asarray(generate(graphdef, cfg, params, prompt, N, jax.random.key(0), source_BxS=source))
    full = greedy_without_cache(graphdef, params, prompt, source, N)
    np.testing.assert_array_equal(cached, full)
    assert len(np.unique(cached)) > 1  # not a degenerate repeat of one token


def test_cached_step_respects_sliding_window():
    """One layer, window 3, one global token: a cache of 1 + 3 slots; the incremental step at
    position 7 sees positions 0, 5, 6, 7 only — changing slot 3 in the cache leaves its logits
    bit-identical, changing slot 5 does not."""
    cfg = dataclasses.replace(BASE, n_layers=1, attn_window=3, attn_global_tokens=1)
    model, _, _ = split(cfg)
    tokens = jax.random.randint(jax.random.key(3), (1, 8), 0, cfg.vocab_size)

    @jax.jit
    def last_step_logits(tokens_1x8):
        cache = init_cache(cfg, 1, 8)
        assert cache[0].shape == (1, 1, 4, cfg.kv_heads, cfg.head_dim)  # [L, B, g + W slots, K, E]
        _, cache = cached_forward(model, tokens_1x8[:, :7], 0, cache)  # prefill 7 slots
        logits, _ = cached_forward(model, tokens_1x8[:, 7:], 7, cache)  # one incremental step
        return logits[0, 0]

    changed = lambda slot: np.asarray(
        last_step_logits(tokens.at[0, slot].set((tokens[0, slot] + 1) % cfg.vocab_size))
    )
    base, outside, inside, glob = np.asarray(last_step_logits(tokens)), changed(3), changed(5), changed(0)
    np.testing.assert_array_equal(base, outside)
    assert np.abs(base - inside).max() > 1e-4 and np.abs(base - glob).max() > 1e-4


def test_sampling_follows_top_k_softmax():
    logits = jnp.log(jnp.array([[0.4, 0.3, 0.2, 0.05, 0.05]]))
    keys = jax.random.split(jax.random.key(0), 4000)
    draws = np.asarray(jax.vmap(lambda k: sample_logits(logits, k, temperature=1.0, top_k=3))(keys))[:, 0]
    freq = np.bincount(draws, minlength=5) / len(draws)
    assert freq[3:].sum() == 0  # never outside the top 3
    np.testing.assert_allclose(freq[:3], [4 / 9, 3 / 9, 2 / 9], atol=0.03)
    assert int(sample_logits(logits, keys[0])[0]) == 0  # temperature 0: greedy


def test_nucleus_sampling_keeps_the_tokens_that_reach_top_p():
    """p = (0.5, 0.3, 0.15, 0.05), top-p 0.7: 0.5 < 0.7 so the second token joins and crosses it;
    the rest are cut and the kept two are renormalised (5/8, 3/8). top-p 1: all four."""
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))
    keys = jax.random.split(jax.random.key(0), 4000)
    draw = lambda **kw: np.asarray(jax.vmap(lambda k: sample_logits(logits, k, temperature=1.0, **kw))(keys))[:, 0]
    freq = np.bincount(draw(top_p=0.7), minlength=4) / len(keys)
    assert freq[2:].sum() == 0
    np.testing.assert_allclose(freq[:2], [5 / 8, 3 / 8], atol=0.03)
    np.testing.assert_allclose(
        np.bincount(draw(top_p=1.0), minlength=4) / len(keys), [0.5, 0.3, 0.15, 0.05], atol=0.03
    )
    assert set(draw(top_p=0.01)) == {0}  # the most likely token is always kept
    assert set(draw(top_p=0.7, top_k=1)) == {0}


def test_seeded_sampling_is_reproducible():
    cfg = MODELS["rope_gqa"]
    _, graphdef, params = split(cfg)
    prompt, _ = inputs(cfg)
    draw = lambda seed, top_k: np.asarray(
        generate(graphdef, cfg, params, prompt, N, jax.random.key(seed), temperature=1.0, top_k=top_k)
    )
    np.testing.assert_array_equal(draw(0, 0), draw(0, 0))
    assert not np.array_equal(draw(0, 0), draw(1, 0))
    greedy = generate(graphdef, cfg, params, prompt, N, jax.random.key(5))
    np.testing.assert_array_equal(draw(7, 1), np.asarray(greedy))  # top-1 sampling is greedy


def test_generation_errors_are_one_line():
    cfg = MODELS["rope_gqa"]
    _, graphdef, params = split(cfg)
    prompt, _ = inputs(cfg)
    with pytest.raises(ConfigError, match="trained context"):
        generate(graphdef, cfg, params, prompt, cfg.seq_len, jax.random.key(0))
    with pytest.raises(ConfigError, match="top-k"):
        generate(graphdef, cfg, params, prompt, 2, jax.random.key(0), temperature=1.0, top_k=cfg.vocab_size + 1)
    for bad in ({"top_p": 0.0}, {"top_p": 1.5}, {"top_p": float("nan")}, {"temperature": float("nan")}):
        with pytest.raises(ConfigError, match="top-p"):
            generate(graphdef, cfg, params, prompt, 2, jax.random.key(0), **{"temperature": 1.0, **bad})
    for bad in (float("nan"), float("inf"), -0.5):
        with pytest.raises(ConfigError, match="temperature must be a finite number >= 0"):
            generate(graphdef, cfg, params, prompt, 2, jax.random.key(0), temperature=bad)


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "hot"])
def test_lab_sample_refuses_a_temperature_that_is_not_finite_and_non_negative(tmp_path, capsys, value):
    from lab.cli import main

    with pytest.raises(SystemExit) as e:  # an argparse usage error, before any checkpoint is read
        main(["sample", str(tmp_path), f"--temperature={value}"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("lab sample: error: argument --temperature:"), err
    assert len(err.strip().splitlines()) == 1
