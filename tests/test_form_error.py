"""The law's form-error term (`analysis.uncertainty.form`): measured by nested back-tests on the table
itself, grown in proportion to the extrapolation distance, zero when the back-tests are as exact as
their intervals, and added to the prediction intervals of back-tests and of the validation rung."""

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table
from analysis.table import fit_data
from analysis.uncertainty.form import backtest_form, form_rule, form_sigma, form_term
from analysis.uncertainty.predict import predict_runs

BASE = Chinchilla(E=1.0, A=8.0, B=40.0, alpha=0.35, beta=0.35)
BUDGETS = (3e11, 6e11, 1.2e12, 2.4e12)  # the default study's four budgets, a factor 2 apart


class Misspecified:
    """BASE plus 0.02 log(N D / 1e11)^2: the loss bends up in log-log, which the fitted form lacks."""

    def __call__(self, N, D):
        return BASE(N, D) + 0.02 * np.log(np.asarray(N) * np.asarray(D) / 1e11) ** 2

    def optimal(self, C, k):
        return BASE.optimal(C, k)


def _rows(x, e, v):
    return pd.DataFrame({"distance": x, "log_error": e, "v": v})


def test_the_rule_grows_with_distance_and_is_zero_when_back_tests_are_exact():
    x = np.array([0.69, 0.69, 1.39, 1.39])
    grown = form_rule(_rows(x, 0.02 * x, np.zeros(4)))  # errors 2% per unit log distance, nothing held
    assert grown["k"] == pytest.approx(0.02) and grown["bias_per_log"] == pytest.approx(0.02)
    assert grown["n_over"] == 4 and grown["n_under"] == 0
    np.testing.assert_allclose(form_sigma(grown, [-0.5, 0.0, 0.5, 1.1]), [0.0, 0.0, 0.01, 0.022])
    # errors no larger than the intervals already hold (v = e^2 + a little): no form term
    exact = form_rule(_rows(x, np.array([0.01, -0.01, 0.012, -0.012]), np.full(4, 2e-4)))
    assert exact["k"] == 0.0 and exact["k_raw2"] < 0 and exact["bias_per_log"] == pytest.approx(0.0, abs=1e-12)
    # the interval's own variance is subtracted: k^2 = (e^2 - v) / x^2 at one distance
    part = form_rule(_rows([1.0], [0.05], [0.0016]))
    assert part["k"] == pytest.approx(np.sqrt(0.0025 - 0.0016))
    assert form_sigma(None, 2.0) == 0.0


@pytest.fixture(scope="module")
def exact_table():
    return fit_data(isoflop_table(BASE, BUDGETS, n_per_budget=5, span=4.0, noise=0.002, seed=3), need_budget=True)


def test_an_exact_law_gets_a_negligible_term(exact_table):
    term = form_term(exact_table, "parametric", n_boot=30, seed=0)
    assert term["holdouts"] == [1, 2] and term["n_points"] == 15  # 5 runs at 2.4e12, then 5 + 5
    assert term["k"] < 0.003  # measured 0.0: the back-tests are no worse than their own intervals
    assert {"holdout", "budget", "N", "distance", "log_error", "v"} <= set(term["backtests"][0])
    assert sorted({round(r["distance"], 3) for r in term["backtests"]}) == [0.693, 1.386]


def test_a_mis_specified_law_gets_a_term_and_the_back_test_coverage_improves():
    inside = {"before": 0, "after": 0}
    n = 0
    for seed in (0, 1, 2):
        t = isoflop_table(Misspecified(), (1.5e11, *BUDGETS), n_per_budget=5, span=4.0, noise=0.0065, seed=seed)
        bt = backtest_form(fit_data(t, need_budget=True), "parametric", holdout=1, pi_bootstrap=30, pi_seed=seed)
        s = bt["summary"]
        assert s["pi_form_k"] > 0.005 and "back-tests holding out" in s["pi_form_source"]
        assert s["pi_form_mean_rel_halfwidth"] > s["pi_mean_rel_halfwidth"]
        inside["before"] += s["pi_inside"]
        inside["after"] += s["pi_form_inside"]
        n += s["n_test"]
    # measured: 2 of 15 inside before, 9 of 15 after (k = 0.031, 0.025, 0.0087; half-widths +45% to +60%)
    assert n == 15 and inside["before"] <= 3 and inside["after"] >= 8


def test_the_rejected_alternatives_stay_measurable(exact_table):
    """`scale` "span" divides each distance by its back-test's training span; `min_train` skips the
    back-tests that would fit fewer budgets (benchmarks/README.md: both measured, both rejected)."""
    rows = _rows([0.69, 1.39], [0.02, 0.04], [0.0, 0.0]).assign(span=[1.39, 0.69])
    assert form_rule(rows)["k"] == pytest.approx(np.sqrt((0.69**2 * 4e-4 + 1.39**2 * 16e-4) / (0.69**4 + 1.39**4)))
    x = np.array([0.69 / 1.39, 1.39 / 0.69])
    assert form_rule(rows, "span")["k"] == pytest.approx(
        np.sqrt((x[0] ** 2 * 4e-4 + x[1] ** 2 * 16e-4) / np.sum(x**4))
    )
    term = {"k": 0.02, "scale": "span"}
    assert form_sigma(term, 1.1, span=2.2) == pytest.approx(0.01) and form_sigma(
        {"k": 0.02}, 1.1
    ) == pytest.approx(0.022)
    with pytest.raises(AnalysisError, match="needs the log span"):
        form_sigma(term, 1.1)
    short = form_term(exact_table, "parametric", n_boot=10, seed=0, min_train=3)
    assert short["holdouts"] == [1] and short["n_points"] == 5  # holding out 2 of 4 budgets would fit 2
    assert short["notes"] == ["hold out 2: would fit 2 budget(s), fewer than 3"]


def test_predict_runs_adds_the_term_at_the_validation_distance(exact_table):
    from analysis.fitting import fit
    from analysis.uncertainty.intervals import bootstrap

    f = bootstrap(fit(exact_table, "parametric"), exact_table, n_boot=30, seed=0)
    N, C = np.array([5e4, 1e5]), 7.2e12
    plain = predict_runs(f, N, C / (6 * N), C, exact_table)
    zero = predict_runs(f, N, C / (6 * N), C, exact_table, form={"k": 0.0, "source": "test"})
    wide = predict_runs(f, N, C / (6 * N), C, exact_table, form={"k": 0.02, "source": "test"})
    assert zero["pi_lo"] == plain["pi_lo"] and zero["pi_hi"] == plain["pi_hi"]
    assert wide["noise"]["form_distance"] == pytest.approx(np.log(3))
    assert wide["noise"]["form_sigma"] == pytest.approx(0.02 * np.log(3))
    assert wide["noise"]["form_source"] == "test" and "form_sigma" not in plain["noise"]
    for i in range(2):
        assert wide["pi_lo"][i] < plain["pi_lo"][i] and wide["pi_hi"][i] > plain["pi_hi"][i]
        half = np.log(wide["pi_hi"][i] / wide["pi_lo"][i]) / 2
        before = np.log(plain["pi_hi"][i] / plain["pi_lo"][i]) / 2
        # independent spreads add in quadrature: the form term's own 95% half-width 1.96 * 0.022
        assert half == pytest.approx(np.hypot(before, 1.96 * 0.02 * np.log(3)), rel=0.1)


def test_lab_fit_backtest_reports_coverage_before_and_after(tmp_path, capsys):
    import json

    from lab.cli import main

    t = isoflop_table(Misspecified(), (1.5e11, *BUDGETS), n_per_budget=5, span=4.0, noise=0.0065, seed=0)
    t.to_csv(tmp_path / "t.csv", index=False)
    args = ["fit", str(tmp_path / "t.csv"), "--method", "parametric", "--backtest", "1", "--bootstrap", "30"]
    assert main([*args, "--json"]) == 0
    bt = json.loads(capsys.readouterr().out)["backtest"]
    assert bt["n_test"] == 5 and bt["pi_form_k"] > 0.005 and bt["pi_form_inside"] > bt["pi_inside"]
    assert len(bt["points"]) == 5 and {"pi_lo_form", "pi_hi_form", "inside_pi_form"} <= set(bt["points"][0])
    assert main(args) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("  with the law's form error (k = ") and f"{bt['pi_form_inside']} of 5 inside" in line
