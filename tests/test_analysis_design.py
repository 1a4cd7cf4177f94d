"""The designer's machinery (`analysis.design`, `analysis.solvers.batched_gn`): the batched refits are
the least-squares law of one-at-a-time fits, and the simulated spread is what repeated fits scatter by."""

import numpy as np
import pytest

import analysis
from analysis.design import Simulator, candidates
from analysis.solvers.batched_gn import exponent_a, fit_many, log_n_opt
from analysis.solvers.varpro import huber_polish

LAW = analysis.CHINCHILLA_EPOCH


def _table(seed, budgets=(1e17, 3e17, 1e18), sizes=5):
    t = analysis.simulate_isoflop(budgets=budgets, n_per_budget=sizes, noise=0.01, seed=seed, span=4)
    return t.params_total.to_numpy(), t.tokens.to_numpy(), t.final_val_loss.to_numpy()


def test_batched_refits_match_one_at_a_time_least_squares():
    tables = [_table(s) for s in range(3)]
    N, D = tables[0][0], tables[0][1]  # same design, three noise draws
    lnL = np.log([t[2] for t in tables])
    theta = fit_many(LAW.to_lse(), np.log(N), np.log(D), lnL)
    for i, t in enumerate(tables):  # Huber with a delta far beyond every residual is least squares
        one, _, _ = huber_polish(LAW.to_lse(), N, D, t[2], delta=10.0)
        assert theta[i] == pytest.approx(one, abs=1e-6)
    assert exponent_a(theta) == pytest.approx(theta[:, 4] / (theta[:, 3] + theta[:, 4]))
    n_opt = LAW.optimal(1e21)[0]
    assert log_n_opt(np.array([LAW.to_lse()]), 1e21, 6.0)[0] == pytest.approx(np.log(n_opt), rel=1e-9)


def test_simulated_spread_is_the_scatter_of_repeated_fits_and_shrinks_with_more_runs():
    N, D, _ = _table(0)
    sim = Simulator(LAW, 0.01, 6.0)
    small = sim.simulate(N, D, 2000, seed=1)
    a = [
        exponent_a(fit_many(LAW.to_lse(), np.log(N), np.log(D), np.log(_table(s)[2])[None]))[0] for s in range(200)
    ]
    assert small == pytest.approx(np.std(a), rel=0.2)  # 200 independent fits: std known to ~10%
    N2, D2, _ = _table(0, budgets=(1e17, 3e17, 1e18, 3e18, 9e18))
    assert sim.simulate(N2, D2, 2000, seed=1) < 0.7 * small


def test_candidate_scores_share_their_noise_and_stay_on_or_above_the_grid():
    N, D, _ = _table(0)
    C, Nc = candidates(LAW, np.log([1e17, 3e17, 1e18]), 6.0, sizes=5)
    assert C.min() == 1e17 and {1e17, 3e17, 1e18} <= set(C) and C.max() > 1e18
    cand = np.stack([np.log(Nc), np.log(C / (6 * Nc)), np.ones(len(C))], 1)
    cand = np.concatenate([cand, cand[:1]])  # the first candidate twice

    def scores(seed):
        sim = Simulator(LAW, 0.01, 6.0, simulations=32, seed=seed)
        return sim.score(sim.state(N, D), cand)[0]

    s = scores(7)
    assert s[0] == s[-1]  # common random numbers: a candidate's score depends on it, not on its draw
    assert np.array_equal(s, scores(7)) and not np.array_equal(s, scores(8))
    assert np.all(s < Simulator(LAW, 0.01, 6.0, simulations=32, seed=7).simulate(N, D, 400, 1) * 1.2)
