"""A seeded sparse Markov chain with an exactly known entropy rate (the `synthetic` corpus).

Order k over an alphabet of V symbols: the state is the last k symbols (V**k states). Each state
has `n_succ` distinct successor symbols with Dirichlet(alpha) probabilities; one of them is always
(last symbol + 1) mod V, so every state reaches the "ring" states and there is exactly one
recurrent class, hence one stationary distribution pi. The entropy rate of the stationary chain is

    H = sum_s pi(s) * H(P(. | s))      [nats/token]

the loss no model can beat on this data (in the long-context limit). A model that learns the
transition table reaches it from above; one that only learns the unigram or shorter-context
statistics stalls at `H(pi)` or the corresponding conditional entropy, both larger.

Sampling is exact and vectorised: `lanes` copies of the chain start at the most likely state s0
and run for `L` steps, then each runs on until it returns to s0. Those stopping times make each
lane a chain path from s0 back to s0, so (strong Markov property) the lanes laid end to end are
one path of the chain, with no seams.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

SAMPLER_VERSION = "lanes-v1"


@dataclasses.dataclass(frozen=True)
class ChainSpec:
    vocab: int = 64
    order: int = 1
    n_succ: int = 4
    alpha: float = 1.0
    seed: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class MarkovChain:
    spec: ChainSpec
    succ: np.ndarray  # [S, n_succ] successor symbols
    probs: np.ndarray  # [S, n_succ] float64, rows sum to 1
    pi: np.ndarray  # [S] stationary distribution

    @property
    def n_states(self) -> int:
        return self.spec.vocab**self.spec.order

    @property
    def next_state(self) -> np.ndarray:
        """[S, n_succ]: the state after emitting each successor."""
        states = np.arange(self.n_states, dtype=np.int64)[:, None]
        return (states * self.spec.vocab + self.succ) % self.n_states

    @property
    def entropy_rate(self) -> float:
        """Exact entropy rate of the stationary chain, nats/token."""
        return float(self.pi @ _row_entropy(self.probs))

    @property
    def unigram_entropy(self) -> float:
        """H of the stationary symbol distribution (what a context-free model can reach)."""
        sym = np.bincount(np.arange(self.n_states) % self.spec.vocab, self.pi, self.spec.vocab)
        return float(_row_entropy(sym[None])[0])

    def fingerprint(self) -> str:
        h = hashlib.sha256(repr((dataclasses.astuple(self.spec), SAMPLER_VERSION)).encode())
        h.update(self.succ.astype("<i8").tobytes())
        h.update(self.probs.astype("<f8").tobytes())
        return h.hexdigest()


@dataclasses.dataclass(frozen=True)
class Variant:
    """A named synthetic corpus: a chain and how many tokens of it each split holds."""

    spec: ChainSpec
    description: str
    train_tokens: int = 1 << 22
    val_tokens: int = 1 << 18

    def fingerprint(self, chain: MarkovChain | None = None) -> str:
        chain = chain or make_chain(self.spec)
        blob = f"{chain.fingerprint()}:{self.train_tokens}:{self.val_tokens}"
        return hashlib.sha256(blob.encode()).hexdigest()


VARIANTS = {
    "markov1": Variant(ChainSpec(order=1), "order 1, 64 symbols, 4 successors per state"),
    "markov2": Variant(ChainSpec(order=2), "order 2 (4096 contexts), 64 symbols, 4 successors"),
}
DEFAULT_VARIANT = "markov1"


def _row_entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=-1)


def make_chain(spec: ChainSpec) -> MarkovChain:
    V, k, n = spec.vocab, spec.order, spec.n_succ
    if not (2 <= n <= V and k >= 1 and spec.alpha > 0 and V <= 256):
        raise ValueError(f"bad chain spec {spec}")
    S = V**k
    rng = np.random.default_rng([spec.seed, V, k, n])
    ring = (np.arange(S) % V + 1) % V
    keys = rng.random((S, V))
    keys[np.arange(S), ring] = -1.0  # the ring successor always comes first
    succ = np.argsort(keys, axis=1)[:, :n].astype(np.int64)
    gam = rng.standard_gamma(spec.alpha, size=(S, n)) + 1e-12
    probs = gam / gam.sum(axis=1, keepdims=True)
    chain = MarkovChain(spec, succ, probs, np.zeros(S))
    return dataclasses.replace(chain, pi=stationary(chain.next_state, probs))


def stationary(next_state: np.ndarray, probs: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """Stationary distribution by lazy power iteration (converges for periodic chains too)."""
    S = len(probs)
    pi = np.full(S, 1.0 / S)
    flat_next = next_state.ravel()
    for _ in range(200_000):
        step = np.bincount(flat_next, (pi[:, None] * probs).ravel(), minlength=S)
        if np.abs(step - pi).sum() < tol:
            return step / step.sum()
        pi = 0.5 * (pi + step)
    raise RuntimeError("stationary distribution did not converge")


def state_symbols(state: int, spec: ChainSpec) -> list[int]:
    """The k symbols (oldest first) that a state encodes."""
    return [(state // spec.vocab**i) % spec.vocab for i in reversed(range(spec.order))]


def sample(chain: MarkovChain, n_tokens: int, seed: int, lanes: int = 256) -> np.ndarray:
    """An exact path of `n_tokens` symbols (uint8) of the chain, started at its most likely state."""
    rng = np.random.default_rng([seed, 0x5EED])
    n = chain.spec.n_succ
    cdf = np.cumsum(chain.probs, axis=1)
    cdf[:, -1] = 2.0  # uniforms are < 1: the last successor catches rounding
    flat_cdf, flat_next = cdf.ravel(), chain.next_state.ravel()
    sym_of = np.arange(chain.n_states) % chain.spec.vocab
    s0 = int(np.argmax(chain.pi))
    prefix = np.array(state_symbols(s0, chain.spec), dtype=np.uint8)
    lanes = max(1, min(lanes, n_tokens // 64))
    steps = -(-max(n_tokens - len(prefix), 0) // lanes)

    def advance(state, u):
        slot = (u[:, None] >= flat_cdf[state[:, None] * n + np.arange(n)]).sum(axis=1)
        return flat_next[state * n + slot]

    state = np.full(lanes, s0, dtype=np.int64)
    main = np.empty((steps, lanes), dtype=np.uint8)
    for t, u in enumerate(rng.random((steps, lanes))):
        state = advance(state, u)
        main[t] = sym_of[state]
    ext_lane, ext_sym = [], []
    active = np.flatnonzero(state != s0)
    while active.size:  # run each lane on to its first return to s0 (a stopping time)
        state[active] = advance(state[active], rng.random(active.size))
        ext_lane.append(active)
        ext_sym.append(sym_of[state[active]].astype(np.uint8))
        active = active[state[active] != s0]
    pieces = [prefix]
    if ext_lane:
        lane_ids, syms = np.concatenate(ext_lane), np.concatenate(ext_sym)
        order = np.argsort(lane_ids, kind="stable")
        ext_by_lane = np.split(syms[order], np.cumsum(np.bincount(lane_ids, minlength=lanes))[:-1])
    else:
        ext_by_lane = [np.empty(0, np.uint8)] * lanes
    for b in range(lanes):
        pieces += [main[:, b], ext_by_lane[b]]
    return np.concatenate(pieces)[:n_tokens]
