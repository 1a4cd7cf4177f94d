"""The seed scatter's trend with compute (`analysis.uncertainty.noise_trend`): per-budget pooled
variances, a dof-weighted log-linear fit, read at the largest budget when it falls."""

import numpy as np
import pytest

from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table
from analysis.table import fit_data
from analysis.uncertainty.noise_trend import scatter_at, scatter_by_budget

LAW = Chinchilla(E=1.0, A=8.0, B=40.0, alpha=0.35, beta=0.35)
BUDGETS = (3e11, 6e11, 1.2e12, 2.4e12)


def _table(sigma_of_c, n=60, seed=0):
    t = isoflop_table(LAW, BUDGETS, n_per_budget=n, span=4.0, noise=0.0, seed=seed, replicates=2)
    rng = np.random.default_rng(seed)
    t["final_val_loss"] *= np.exp(sigma_of_c(t["budget_flops"].to_numpy()) * rng.standard_normal(len(t)))
    return fit_data(t, need_budget=True)


def test_per_budget_variances_and_their_dof():
    per = scatter_by_budget(_table(lambda c: 0.02 + 0 * c))
    assert list(per["budget"]) == list(BUDGETS) and list(per["dof"]) == [60] * 4
    assert np.sqrt(per["var"]).to_numpy() == pytest.approx([0.02] * 4, rel=0.25)


def test_a_falling_scatter_is_read_at_the_largest_budget_not_beyond():
    falling = lambda c: 0.04 * (c / 3e11) ** -0.5  # 0.04, 0.028, 0.02, 0.014
    got = scatter_at(_table(falling), 7.2e12)
    assert got["slope"] == pytest.approx(-1.0, abs=0.3)  # log variance per log C: twice -0.5
    assert got["read_at"] == pytest.approx(2.4e12) and got["sigma"] == pytest.approx(0.014, rel=0.2)
    assert got["dof"] == 240 and set(got["by_budget"]) == {"3e+11", "6e+11", "1.2e+12", "2.4e+12"}


def test_a_rising_scatter_is_extrapolated_and_a_flat_one_kept():
    rising = scatter_at(_table(lambda c: 0.01 * (c / 3e11) ** 0.5), 7.2e12)
    assert rising["read_at"] == 7.2e12 and rising["sigma"] == pytest.approx(
        0.01 * 24**0.5, rel=0.35
    )  # measured 0.062: extrapolated
    flat = scatter_at(_table(lambda c: 0.02 + 0 * c, seed=1), 7.2e12)
    assert flat["sigma"] == pytest.approx(0.02, rel=0.2)


def test_fewer_than_two_budgets_with_replicates_give_none():
    t = isoflop_table(LAW, BUDGETS, n_per_budget=5, span=4.0, noise=0.01, seed=0)  # one seed
    assert scatter_at(fit_data(t, need_budget=True), 7.2e12) is None
