"""synthetic: the stored entropy rate is the true one, and the sampler is an exact chain path."""

import sys

import numpy as np
import pytest

from lab.config import ConfigError, DataConfig
from lab.data import load_corpus, synthetic

N = 1 << 20


def _contexts(x, k, V=64):
    ctx = np.zeros(len(x) - k, dtype=np.int64)
    for i in range(k):
        ctx = ctx * V + x[i : len(x) - k + i]
    return ctx, x[k:].astype(np.int64)


def plugin_conditional_entropy(x, k, V=64):
    """Empirical H(X_t | previous k symbols), nats (biased low by about #transitions / 2N)."""
    ctx, nxt = _contexts(x, k, V)
    counts = np.bincount(ctx * V + nxt).astype(float)
    counts = np.pad(counts, (0, -len(counts) % V)).reshape(-1, V)
    rows = counts.sum(1, keepdims=True)
    q = np.where(counts > 0, counts / np.maximum(rows, 1), 1.0)
    return float(-(counts * np.log(q)).sum() / counts.sum())


@pytest.fixture(scope="module", params=["markov1", "markov2"])
def chain_and_sample(request):
    chain = synthetic.make_chain(synthetic.VARIANTS[request.param].spec)
    return chain, synthetic.sample(chain, N, seed=123)


def test_stationary_distribution_is_stationary(chain_and_sample):
    chain, _ = chain_and_sample
    pi = chain.pi
    step = np.bincount(chain.next_state.ravel(), (pi[:, None] * chain.probs).ravel(), minlength=chain.n_states)
    assert abs(pi.sum() - 1) < 1e-12 and np.abs(step - pi).sum() < 1e-11 and pi.min() >= 0


def test_entropy_rate_matches_sampled_data(chain_and_sample):
    chain, x = chain_and_sample
    k, H = chain.spec.order, chain.entropy_rate
    assert 0.9 < H < 1.3  # Dirichlet(1) over 4 successors: about 1.1 nats; ln 64 = 4.16
    ctx, nxt = _contexts(x, k)
    P = np.zeros((chain.n_states, 64))
    np.put_along_axis(P, chain.succ, chain.probs, axis=1)
    p = P[ctx, nxt]
    assert p.min() > 0  # every transition, across every lane seam, is one the chain can make
    nll = -np.log(p).mean()  # unbiased estimate of the rate
    assert abs(nll - H) < 0.01, (nll, H)
    plug = plugin_conditional_entropy(x, k)
    n_transitions = len(np.unique(ctx * 64 + nxt))
    assert H - n_transitions / (2 * len(nxt)) - 0.005 < plug < H + 0.005  # the plug-in's known low bias
    # with less context than the true order, the empirical conditional entropy stays above the rate
    for shorter in range(k):
        assert plugin_conditional_entropy(x, shorter) > H + 0.1
    assert abs(plugin_conditional_entropy(x, 0) - chain.unigram_entropy) < 0.01


def test_transition_frequencies_match_the_table():
    chain = synthetic.make_chain(synthetic.VARIANTS["markov1"].spec)
    x = synthetic.sample(chain, N, seed=5)
    ctx, nxt = _contexts(x, 1)
    s = int(np.argmax(chain.pi))
    seen = nxt[ctx == s]
    freq = np.array([(seen == c).mean() for c in chain.succ[s]])
    assert np.abs(freq - chain.probs[s]).max() < 4 * np.sqrt(0.25 / len(seen))


def test_sampling_is_deterministic_and_seeded():
    chain = synthetic.make_chain(synthetic.ChainSpec(order=1, seed=3))
    a, b = synthetic.sample(chain, 10_000, seed=1), synthetic.sample(chain, 10_000, seed=1)
    np.testing.assert_array_equal(a, b)
    assert len(a) == 10_000 and a.dtype == np.uint8 and a.max() < 64
    assert not np.array_equal(a, synthetic.sample(chain, 10_000, seed=2))
    other = synthetic.make_chain(synthetic.ChainSpec(order=1, seed=4))
    assert other.fingerprint() != chain.fingerprint() and other.entropy_rate != chain.entropy_rate


def test_load_corpus_synthetic_stores_and_exposes_entropy(tmp_path):
    c = load_corpus(DataConfig(name="synthetic", data_dir=str(tmp_path)))
    chain = synthetic.make_chain(synthetic.VARIANTS["markov1"].spec)
    assert c.name == "synthetic/markov1" and c.tokenizer == "symbols" and c.vocab_size == 64
    assert c.entropy_nats_per_token == pytest.approx(chain.entropy_rate, rel=1e-12)
    assert c.bytes_per_token == 1.0 and len(c.train) == 1 << 22 and len(c.val) == 1 << 18
    assert c.n_docs == {"train": 1024, "val": 64} and int(np.max(c.train)) < 64
    # the TFDS metadata holds the same number, and the records concatenate to the stream
    from lab.data import builders

    b = builders.Synthetic(config="markov1", data_dir=str(tmp_path / "tfds"))
    assert b.info.metadata["entropy_nats_per_token"] == pytest.approx(chain.entropy_rate, rel=1e-12)
    assert b.info.metadata["fingerprint"] == c.text_fingerprint
    val = b.as_data_source(split="validation")
    np.testing.assert_array_equal(np.concatenate([val[i]["tokens"] for i in range(len(val))]), c.val)
    assert "tensorflow" not in sys.modules


def test_synthetic_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown synthetic variant"):
        load_corpus(DataConfig(name="synthetic/nope", data_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="tokenizer"):
        load_corpus(DataConfig(name="synthetic", tokenizer="bpe", data_dir=str(tmp_path)))
