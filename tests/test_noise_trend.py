"""The seed scatter's trend with compute (`analysis.uncertainty.noise_trend`): per-budget pooled
variances, a bias-corrected, variance-weighted log-linear fit, used only where its slope is measured,
never extrapolated downwards, and read by the validation rung's prediction."""

import numpy as np
import pandas as pd
import pytest

from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table
from analysis.table import fit_data
from analysis.uncertainty.noise_trend import scatter_at, scatter_by_budget, trend_fit

LAW = Chinchilla(E=1.0, A=8.0, B=40.0, alpha=0.35, beta=0.35)
BUDGETS = (3e11, 6e11, 1.2e12, 2.4e12)


def FALLING(c):  # 0.04, 0.028, 0.02, 0.014
    return 0.04 * (c / 3e11) ** -0.5


def _table(sigma_of_c, n=60, seed=0, replicates=2):
    t = isoflop_table(LAW, BUDGETS, n_per_budget=n, span=4.0, noise=0.0, seed=seed, replicates=replicates)
    rng = np.random.default_rng(seed)
    t["final_val_loss"] *= np.exp(sigma_of_c(t["budget_flops"].to_numpy()) * rng.standard_normal(len(t)))
    return fit_data(t, need_budget=True)


def test_per_budget_variances_and_their_dof():
    per = scatter_by_budget(_table(lambda c: 0.02 + 0 * c))
    assert list(per["budget"]) == list(BUDGETS) and list(per["dof"]) == [60] * 4
    assert np.sqrt(per["var"]).to_numpy() == pytest.approx([0.02] * 4, rel=0.25)


def test_the_fit_corrects_the_bias_of_log_variances_with_few_dof():
    """With one degree of freedom per budget E log(s^2) is log(sigma^2) - 1.27: uncorrected, sigma would
    come out at 0.53 of the truth; corrected, the mean level over 400 tables is the truth."""
    rng = np.random.default_rng(0)
    C = np.array(BUDGETS)
    levels = [
        trend_fit(pd.DataFrame({"C": C, "var": 0.02**2 * rng.chisquare(1, 4), "dof": [1] * 4}))["level"]
        for _ in range(400)
    ]
    assert np.exp(np.mean(levels) / 2) == pytest.approx(0.02, rel=0.1)


def test_a_falling_scatter_is_read_at_the_target_but_not_beyond_the_largest_budget():
    got = scatter_at(_table(FALLING), np.array([4e11, 7.2e12]))
    assert got["slope"] == pytest.approx(-1.0, abs=0.3) and abs(got["slope"]) > 2 * got["slope_se"]
    assert got["read_at"] == pytest.approx([4e11, 2.4e12])  # inside the grid at its compute; beyond: the top
    assert got["sigma"] == pytest.approx([0.04 * (4 / 3) ** -0.5, 0.014], rel=0.2)
    assert got["dof"] == 240 and set(got["by_budget"]) == {"3e+11", "6e+11", "1.2e+12", "2.4e+12"}


def test_a_rising_scatter_is_extrapolated_at_most_one_span():
    rising = scatter_at(_table(lambda c: 0.01 * (c / 3e11) ** 0.5), np.array([7.2e12, 1e15]))
    assert rising["read_at"] == pytest.approx([7.2e12, 2.4e12 * 8])
    assert rising["sigma"][0] == pytest.approx(0.01 * 24**0.5, rel=0.35)  # measured 0.062: extrapolated


def test_the_pooled_scatter_stands_where_the_trend_is_not_measured():
    assert scatter_at(_table(lambda c: 0.02 + 0 * c, seed=1), 7.2e12) is None  # flat: slope within 2 se
    one_seed = isoflop_table(LAW, BUDGETS, n_per_budget=5, span=4.0, noise=0.01, seed=0)
    assert scatter_at(fit_data(one_seed, need_budget=True), 7.2e12) is None  # no replicates
    two = isoflop_table(LAW, BUDGETS[:2], n_per_budget=30, span=4.0, noise=0.03, seed=0, replicates=2)
    assert scatter_at(fit_data(two, need_budget=True), 7.2e12) is None  # two budgets with replicates


def test_the_rung_prediction_reads_the_trend():
    from analysis.fitting import fit
    from analysis.uncertainty.intervals import bootstrap
    from analysis.uncertainty.predict import predict_runs

    data = _table(FALLING, n=20)
    f = bootstrap(fit(data, "parametric"), data, n_boot=30, seed=0)
    N = np.array([5e4, 1e5])
    p = predict_runs(f, N, 7.2e12 / (6 * N), 7.2e12, data)
    assert p["noise"]["source"].startswith("seed-to-seed scatter's trend with compute")
    assert p["noise"]["sigma"] == pytest.approx(0.014, rel=0.3) and set(p["noise"]["by_budget"]) == {
        "3e+11",
        "6e+11",
        "1.2e+12",
        "2.4e+12",
    }
