"""IsoFLOP (approach 2): Porian et al.'s exponents reproduced for all 11 experiments, synthetic
exponents recovered, edges and bad inputs reported."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.fits.isoflop import bootstrap_isoflop, fit_isoflop
from analysis.synthetic import CHINCHILLA_EPOCH, isoflop_table
from analysis.table import fit_data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
# seed-noise levels Porian et al. used (configs.py: RW_SEED_CONFIG / OWT2_SEED_CONFIG)
PORIAN_NOISE = {"RefinedWeb": 0.002, "OpenWebText2": 0.01}


@pytest.fixture(scope="module")
def porian():
    pts, opt = SHARED / "porian2024_isoflop_points.csv", SHARED / "porian2024_optimal_pairs.csv"
    if not (pts.exists() and opt.exists()):
        pytest.skip(f"Porian et al. reference data not found in {SHARED}")
    return pd.read_csv(pts), pd.read_csv(opt)


def _groups(porian):
    points, pairs = porian
    for (ds, ex), g in points.groupby(["dataset", "experiment"]):
        # each (dataset, experiment) has one parameter count / loss source; check, then fit
        assert g["param_count"].nunique() == 1 and g["loss_source"].nunique() == 1
        target = pairs[(pairs.dataset == ds) & (pairs.experiment == ex)]["fitted_exponent_a"].iloc[0]
        yield ds, ex, g, target


def test_reference_exponents_are_inverse_variance_weighted(porian):
    """Porian's exponent = WLS of log n_opt on log C with weights 1/n_opt_std_log^2."""
    _, pairs = porian
    for _, g in pairs.dropna(subset=["n_opt", "n_opt_std_log"]).groupby(["dataset", "experiment"]):
        x, y, w = np.log(g.flops_budget), np.log(g.n_opt), 1 / g.n_opt_std_log**2
        slope = np.polyfit(x, y, 1, w=np.sqrt(w))[0]
        assert slope == pytest.approx(g.fitted_exponent_a.iloc[0], abs=1e-4)


@pytest.mark.parametrize("noise", ["porian", "estimated"])
def test_porian_exponents_reproduced(porian, noise):
    errors = {}
    for ds, ex, g, target in _groups(porian):
        data = fit_data(
            g, n_col="params", d_col="tokens", c_col="flops_budget", loss_col="loss", budget_col="flops_budget"
        )
        r = fit_isoflop(data, loss_noise=PORIAN_NOISE[ds] if noise == "porian" else None)
        errors[(ds, ex)] = r.a - target
        assert r.a + r.b == pytest.approx(1.0, abs=0.02)  # D = C/(6N) exactly in this file
    assert len(errors) == 11
    worst = max(errors, key=lambda k: abs(errors[k]))
    assert abs(errors[worst]) < 0.03, (worst, errors[worst])
    if noise == "porian":
        assert abs(errors[worst]) < 0.01  # with the paper's own noise levels it is near-exact


def test_plain_parabola_over_all_points_fails(porian):
    """The reason the fit is local: a parabola through every point of a budget misses by > 0.03."""
    worst = 0.0
    for _ds, _ex, g, target in _groups(porian):
        rows = []
        for c, b in g.groupby("flops_budget"):
            x, y = np.log(b.params.to_numpy()), np.log(b.loss.to_numpy())
            q = np.polyfit(x, y, 2)
            rows.append((c, -q[1] / (2 * q[0])))
        c, v = np.array(rows).T
        worst = max(worst, abs(np.polyfit(np.log(c), v, 1)[0] - target))
    assert worst > 0.03


@pytest.mark.parametrize("estimator", ["akima", "quadratic"])
def test_synthetic_exponents_recovered(estimator):
    table = isoflop_table(noise=0.002, n_per_budget=11, seed=3)
    r = fit_isoflop(fit_data(table), estimator=estimator, seed=0)
    assert r.a == pytest.approx(CHINCHILLA_EPOCH.a, abs=0.03)
    assert r.b == pytest.approx(CHINCHILLA_EPOCH.b, abs=0.03)
    opt = r.extra["optima"]
    n_true, _ = CHINCHILLA_EPOCH.optimal(opt["budget"].to_numpy())
    assert np.max(np.abs(np.log(opt["n_opt"] / n_true))) < 0.25
    assert opt["used"].all() and not r.warnings


def test_edge_minimum_warned_and_excluded():
    table = isoflop_table(noise=0.0, n_per_budget=7)
    # drop the larger half of one budget's grid so its minimum is at the grid's largest N
    c = table["budget_flops"].unique()[2]
    sub = table[table.budget_flops == c].sort_values("params_total")
    table = table.drop(sub.index[4:])
    r = fit_isoflop(fit_data(table))
    row = r.extra["optima"].set_index("budget").loc[c]
    assert bool(row["edge"]) and not bool(row["used"])
    assert any("largest N" in w and f"{c:.3g}" in w for w in r.warnings)


def test_single_budget_is_an_error():
    table = isoflop_table(budgets=(1e18,))
    with pytest.raises(AnalysisError, match="at least 2 FLOP budgets"):
        fit_isoflop(fit_data(table))


def test_budget_bootstrap_brackets_the_fit():
    r = fit_isoflop(fit_data(isoflop_table(noise=0.003, seed=1)))
    s = bootstrap_isoflop(r, n_boot=500, seed=0, target_flops=1e21)
    lo, hi = np.nanpercentile(s["a"], [2.5, 97.5])
    assert lo < r.a < hi and hi - lo < 0.2
    assert {"a", "b", "n_coef", "d_coef", "n_opt", "d_opt"} <= set(s.columns)


def test_dense_size_grid_is_not_chained_into_one_point():
    """Points within 1% of their group's first point merge (replicates); a dense grid of distinct
    sizes, each within 1% of the next, must not collapse into one point."""
    from analysis.fits.isoflop import merge_close

    x = np.log(np.geomspace(1e7, 1e9, 2000))  # neighbours 0.23% apart, span a factor 100
    xm, Lm = merge_close(x, np.full(2000, 3.0))
    spacing = x[1] - x[0]
    assert np.log(100) / (0.01 + spacing) < len(xm) <= np.log(100) / 0.01 + 1  # before the fix: 1 point
    assert np.all(np.diff(xm) > 0.01 * 0.5) and np.allclose(Lm, 3.0)
    xr, Lr = merge_close(np.log([1e8, 1e8, 1e8, 2e8]), np.array([2.0, 8.0, 4.0, 3.0]))
    np.testing.assert_allclose(np.exp(xr), [1e8, 2e8]) and np.testing.assert_allclose(Lr, [4.0, 3.0])


def test_dense_isoflop_design_recovers_the_exponent():
    """300 distinct sizes per budget (0.3% loss noise): every budget is used (it was an error)."""
    t = isoflop_table(n_per_budget=300, noise=0.003, seed=2)
    r = fit_isoflop(fit_data(t, need_budget=True))
    assert r.extra["n_budgets_used"] == 6 and r.a == pytest.approx(CHINCHILLA_EPOCH.a, abs=0.03)


def test_two_budget_interval_is_the_slope_error_not_a_point():
    """Two budgets: resampling budgets gives one slope; the redraw gives the WLS slope's error
    sqrt(s1^2 + s2^2) / |x2 - x1|."""
    from analysis.result import FitResult

    optima = pd.DataFrame(
        {
            "budget": [1e18, 1e19],
            "n_opt": [1e8, 3e8],
            "d_opt": [1.6e9, 5.5e9],
            "n_opt_std_log": [0.2, 0.3],
            "d_opt_std_log": [0.2, 0.3],
            "used": [True, True],
        }
    )
    fit = FitResult(
        method="isoflop",
        params={},
        objective=0.0,
        residuals=np.zeros(2),
        data=optima,
        extra={"optima": optima, "weighted": True},
    )
    s = bootstrap_isoflop(fit, n_boot=4000, seed=0)
    assert s["a"].mean() == pytest.approx(np.log(3) / np.log(10), abs=0.01)
    assert s["a"].std() == pytest.approx(np.hypot(0.2, 0.3) / np.log(10), rel=0.05)


def test_birge_ratio_inflates_only_excess_scatter():
    from analysis.fits.isoflop import birge_ratio

    x = np.log(np.array([1e17, 1e18, 1e19, 1e20]))
    sigma = np.full(4, 0.1)
    assert birge_ratio(x, 0.5 * x + 1, sigma) == 1.0  # on the line: no inflation
    y = 0.5 * x + np.array([0.3, -0.3, 0.3, -0.3])  # scatter 3 sigma
    icpt, slope = np.polyfit(x, y, 1)[::-1]
    chi2 = np.sum(((y - icpt - slope * x) / 0.1) ** 2)
    assert birge_ratio(x, y, sigma) == pytest.approx(np.sqrt(chi2 / 2))
