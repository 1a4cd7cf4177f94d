"""The audit by simulation (`analysis.uncertainty.audit`): copies of a table's own design drawn from a known law,
each method scored on bias, RMSE and interval coverage; `lab fit --audit N` and `--method auto`."""

import json

import numpy as np
import pytest

import analysis.solvers.jaxcache
from analysis.__main__ import main
from analysis.errors import AnalysisError
from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table, noise_of, seed_scatter, simulate_like
from analysis.table import fit_data
from analysis.uncertainty.audit import audit, choose, fallback, run_copies

ASYM = Chinchilla(E=1.8, A=400.0, B=2000.0, alpha=0.30, beta=0.40)  # alpha != beta: a = 4/7


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    monkeypatch.setattr(analysis.solvers.jaxcache, "enable_persistent_cache", lambda *a, **k: None)


@pytest.fixture(scope="module")
def small():
    return fit_data(
        isoflop_table(budgets=(1e17, 1e18, 1e19, 1e20), n_per_budget=5, noise=0.01, seed=3), need_budget=True
    )


def test_simulate_like_keeps_the_design_and_draws_the_noise(small):
    law = Chinchilla(E=1.8, A=400.0, B=2000.0, alpha=0.3, beta=0.4)
    copy = simulate_like(small, law, 0.02, np.random.default_rng(0))
    assert np.array_equal(copy.N, small.N) and np.array_equal(copy.budget, small.budget)
    r = np.log(copy.L / law(small.N, small.D))
    assert r.std() == pytest.approx(0.02, rel=0.35) and not np.array_equal(copy.L, small.L)


def test_seed_scatter_measures_replicates():
    data = fit_data(isoflop_table(budgets=(1e17, 1e18), n_per_budget=5, noise=0.03, replicates=4, seed=1))
    sd, dof = seed_scatter(data)
    assert dof == 10 * 3 and sd == pytest.approx(0.03, rel=0.3)
    assert seed_scatter(fit_data(isoflop_table(budgets=(1e17,), n_per_budget=5)))[0] is None
    n = noise_of(data, np.zeros(len(data)))
    assert n["sigma"] == n["seed"] == sd and n["residual"] == 0


def test_audit_scores_methods_against_the_known_truth(small):
    r = audit(small, copies=8, methods=("vpnls", "isoflop"), bootstrap=20, seed=1)
    assert set(r["methods"]) == {"vpnls", "isoflop"} and r["copies"] == 8
    v = r["methods"]["vpnls"]
    assert v["n"] == 8 and v["failed"] == 0
    assert abs(v["bias_a"]) < 0.02 and v["rmse_a"] < 0.04 and 0 <= v["coverage_a"] <= 1
    assert v["bias_b"] == pytest.approx(-v["bias_a"], abs=1e-9)  # a + b = 1 for the Chinchilla law
    assert r["truth"]["a"] == pytest.approx(r["truth"]["beta"] / (r["truth"]["alpha"] + r["truth"]["beta"]))
    assert r["noise"]["sigma"] == pytest.approx(0.01, rel=0.4)


def test_approach_3_is_unbiased_where_approach_2_is_not():
    """alpha != beta and every budget's sizes centred a factor 2 above its optimum."""
    budgets = (1e17, 1e18, 1e19, 1e20)
    copies = [
        fit_data(
            isoflop_table(ASYM, budgets, n_per_budget=7, span=4, noise=0.005, offset=2.0, seed=s), need_budget=True
        )
        for s in range(6)
    ]
    s = run_copies(copies, (ASYM.a, ASYM.b), ("vpnls", "isoflop"), bootstrap=10)
    assert abs(s["vpnls"]["bias_a"]) < 0.01
    assert abs(s["isoflop"]["bias_a"]) > abs(s["vpnls"]["bias_a"])


def _result(**cov_rmse):
    methods = {
        m: {"rmse_a": r, "bias_a": 0.0, "coverage_a": c, "failed": 0, "n": 100} for m, (c, r) in cov_rmse.items()
    }
    return {"methods": methods, "copies": 100, "level": 0.95}


def test_choose_lowest_rmse_among_honest_intervals():
    m, why = choose(_result(vpnls=(0.80, 0.01), isoflop=(0.94, 0.05), parametric=(0.93, 0.03)))
    assert m == "parametric" and "coverage 93%" in why  # vpnls's interval covers too rarely
    assert choose(_result(vpnls=(0.99, 0.01), isoflop=(0.94, 0.05)))[0] == "vpnls"  # within 2 SE at 100 copies
    # the default study's audit (100 copies): an interval that covers more often than nominal is
    # conservative, not wrong; a 5x larger RMSE is not bought back by a coverage nearer 95%
    m, why = choose(_result(vpnls=(1.0, 0.0173), isoflop=(0.99, 0.0889)))
    assert m == "vpnls" and "conservative" in why


def test_band_widens_only_where_copies_cannot_resolve_coverage():
    from analysis.uncertainty.audit import band

    assert band(400) == (0.90, 0.98)
    assert band(100) == pytest.approx((0.90, 0.9936), abs=1e-4)
    assert band(40) == pytest.approx((0.8811, 1.0), abs=1e-4)
    m, why = choose(_result(vpnls=(0.70, 0.01), isoflop=(0.80, 0.05)))
    assert m is None and "vpnls 70%" in why
    assert choose(_result(vpnls=(0.70, 0.01), isoflop=(1.0, 0.05)))[0] == "isoflop"
    assert fallback(_result(vpnls=(0.70, 0.01), isoflop=(1.0, 0.05))) == "isoflop"


def test_audit_refuses_tables_it_cannot_simulate():
    tiny = fit_data(isoflop_table(budgets=(1e17,), n_per_budget=4))
    with pytest.raises(AnalysisError, match="4 rows"):
        audit(tiny, copies=2)
    one_line = fit_data(isoflop_table(budgets=(1e17,), n_per_budget=7))  # one budget: log N, log D on a line
    with pytest.raises(AnalysisError, match="one line"):
        audit(one_line, copies=2)


@pytest.fixture(scope="module")
def csv(tmp_path_factory, small):
    path = tmp_path_factory.mktemp("audit") / "results.csv"
    isoflop_table(budgets=(1e17, 1e18, 1e19, 1e20), n_per_budget=5, noise=0.01, seed=3).to_csv(path, index=False)
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_audit_json_and_auto(capsys, csv):
    code, out, err = _run(
        capsys, "fit", csv, "--method", "auto", "--audit", "4", "--audit-bootstrap", "10", "--json", "--quiet"
    )
    assert code == 0, err
    d = json.loads(out)
    assert len(out.strip().splitlines()) == 1
    assert set(d["audit"]) == {"vpnls", "parametric", "isoflop"}
    for s in d["audit"].values():
        assert {"bias", "rmse", "coverage", "bias_b", "rmse_b", "coverage_b"} <= set(s)
    assert d["method"] == d["auto"]["method"] and d["auto"]["why"]
    assert d["ci"]["a"]["lo"] < d["a"] < d["ci"]["a"]["hi"] and d["audit_info"]["copies"] == 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (("--audit", "0"), "must be 1 or more"),
        (("--audit", "2.5"), "not a whole number"),
    ],
)
def test_cli_audit_usage_errors(capsys, csv, argv, message):
    with pytest.raises(SystemExit) as e:
        main(["fit", str(csv), *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cli_audit_too_small_is_one_line(capsys, tmp_path):
    path = tmp_path / "tiny.csv"
    isoflop_table(budgets=(1e17,), n_per_budget=4).to_csv(path, index=False)
    code, out, err = _run(capsys, "fit", path, "--method", "isoflop", "--audit", "3")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--audit" in err


def test_report_audit_section_and_verdict(tmp_path, monkeypatch):
    """`lab report --audit N`: an Audit section, and the verdict trusts the audit's choice with the
    shape scripts read (verdict.trusted; that method's a and ci.a.lo / ci.a.hi)."""
    from analysis.options import FitOptions
    from analysis.reports.reporting import write_report
    from analysis.synthetic import write_study

    monkeypatch.setattr(
        "analysis.uncertainty.audit.COVERAGE_BAND", (0.0, 1.0)
    )  # 4 copies cannot measure coverage: any counts
    table = isoflop_table(budgets=(1e17, 1e18, 1e19, 1e20), n_per_budget=5, noise=0.01, seed=3)
    study = write_study(tmp_path / "study", table, n_log=10)
    options = FitOptions(bootstrap=20, audit=4, audit_bootstrap=10)
    path = write_report(study, options=options, methods=("isoflop", "vpnls"))
    text = path.read_text()
    fits = json.loads((path.parent / "fits.json").read_text())
    assert "## Audit" in text and "Trusted by the audit" in text
    assert set(fits["audit"]) == {"isoflop", "vpnls"} and fits["audit_info"]["copies"] == 4
    trusted = fits["verdict"]["trusted"]
    if fits["audit_info"]["choice"]["method"]:
        assert (
            trusted == fits["audit_info"]["choice"]["method"] and "chosen by the audit" in fits["verdict"]["why"]
        )
    entry = fits[trusted]
    assert entry["ci"]["a"]["lo"] <= entry["a"] <= entry["ci"]["a"]["hi"]


def test_run_intervals_add_the_run_noise():
    """A new run's 95% interval: the law's bootstrap spread plus the measured seed scatter."""
    import analysis

    table = isoflop_table(budgets=(1e17, 1e18, 1e19), n_per_budget=7, noise=0.02, replicates=3, seed=5)
    data = fit_data(table)
    fit = analysis.fit(data, "vpnls", bootstrap=30)
    from analysis.uncertainty.intervals import run_intervals

    pi = run_intervals(fit, data.N[:5], data.D[:5], data, seed=0)
    law_only = run_intervals(fit, data.N[:5], data.D[:5], data, seed=0, run_noise=False)
    assert pi["noise"]["seed"] == pytest.approx(0.02, rel=0.3) and pi["noise"]["seed_dof"] == 21 * 2
    assert np.all(pi["pi_lo"] < pi["predicted"]) and np.all(pi["predicted"] < pi["pi_hi"])
    half = (pi["pi_hi"] - pi["pi_lo"]) / (2 * pi["predicted"])
    assert np.all(half > 1.9 * pi["noise"]["sigma"]) and np.all(half < 3 * pi["noise"]["sigma"])
    assert np.all(law_only["pi_hi"] - law_only["pi_lo"] < pi["pi_hi"] - pi["pi_lo"])


def test_backtest_reports_prediction_interval_coverage():
    from analysis.uncertainty.holdout import backtest

    table = isoflop_table(budgets=(1e17, 1e18, 1e19, 1e20), n_per_budget=5, noise=0.01, replicates=2, seed=6)
    bt = backtest(fit_data(table, need_budget=True), "parametric", holdout=1, pi_bootstrap=30)
    s, pts = bt["summary"], bt["points"]
    assert s["pi_level"] == 0.95 and 0.0 <= s["pi_coverage"] <= 1.0 and len(pts) == 10
    assert s["pi_coverage"] == pytest.approx(pts["inside_pi"].mean())
    assert 0.01 < s["pi_mean_rel_halfwidth"] < 0.1 and s["pi_run_noise"] == pytest.approx(0.01, rel=0.5)
    assert "pi_coverage" not in backtest(fit_data(table, need_budget=True), "parametric", holdout=1)["summary"]


def test_cli_audit_with_by_is_one_line(capsys, csv):
    code, out, err = _run(capsys, "fit", csv, "--by", "seed", "--audit", "2")
    assert code == 2 and out == "" and "--where instead of --by" in err


def _copies_rows(n, half_in_sd, seed=0, truth=0.5, sd=0.01):
    """Per-copy rows (a, b, lo_a, hi_a, lo_b, hi_b) of an unbiased estimate with sd `sd` whose
    interval is ±half_in_sd * 1.96 sd about it (1: calibrated, 2: twice too wide, 0.5: half)."""
    est = truth + sd * np.random.default_rng(seed).standard_normal(n)
    h = half_in_sd * 1.96 * sd
    return [(a, 1 - a, a - h, a + h, 1 - a - h, 1 - a + h) for a in est]


def test_calibration_narrows_an_over_wide_interval_and_widens_an_under_wide_one():
    from analysis.uncertainty.audit import score

    wide = score(_copies_rows(100, 2.0), 0.5, 0.5, 0.0)
    assert wide["coverage_a"] == 1.0 and wide["calibration_k_a"] == pytest.approx(0.5, abs=0.06)  # 0.465
    assert wide["ci_width_calibrated_a"] == pytest.approx(2 * 1.96 * 0.01, rel=0.1)  # the width a 95% CI needs
    assert 0.90 <= wide["coverage_calibrated_a"] <= 0.99  # every copy scored by a k from the other folds
    assert wide["ci_width_calibrated_a"] == pytest.approx(wide["calibration_k_a"] * wide["ci_width_a"])
    assert wide["calibration_k_b"] == pytest.approx(wide["calibration_k_a"]) and wide["calibration_k"] < 1
    narrow = score(_copies_rows(100, 0.5, seed=1), 0.5, 0.5, 0.0)
    assert narrow["coverage_a"] < 0.85 and narrow["calibration_k_a"] == pytest.approx(2.0, abs=0.2)  # 78%, 1.93
    assert narrow["ci_width_calibrated_a"] == pytest.approx(2 * 1.96 * 0.01, rel=0.1)
    assert 0.90 <= narrow["coverage_calibrated"] <= 0.99
    # 20 copies cannot show that 20/20 is more than 95% (p = 0.36): the wide interval stands...
    assert score(_copies_rows(20, 2.0, seed=2), 0.5, 0.5, 0.0)["calibration_k_a"] == 1.0
    # ...nor that 17/20 (85%) is less; 7/20 is, and that interval is widened; below 19 copies, no k
    assert score(_copies_rows(20, 0.5, seed=2), 0.5, 0.5, 0.0)["calibration_k_a"] == 1.0
    assert score(_copies_rows(20, 0.2, seed=2), 0.5, 0.5, 0.0)["calibration_k_a"] > 3
    few = score(_copies_rows(18, 2.0, seed=2), 0.5, 0.5, 0.0)
    assert few["calibration_k_a"] is None and few["coverage_calibrated_a"] is None


def test_calibration_factor_is_a_conformal_rank():
    from analysis.uncertainty.calibrate import (
        conformal_k,
        crossfit,
        min_copies,
        needed_scale,
        resolved_over,
        resolved_under,
    )

    r = needed_scale([0.50, 0.50, 0.50, 0.50], [0.40, 0.45, 0.50, 0.4], [0.60, 0.55, 0.50, 0.7], 0.52)
    assert r == pytest.approx([0.2, 0.4, np.inf, 0.1])  # the upper half-widths 0.1, 0.05, 0, 0.2
    assert min_copies(0.95) == 19 and min_copies(0.9) == 9
    assert conformal_k(np.arange(1, 20) / 10) == pytest.approx(1.9) and conformal_k(np.ones(18)) is None
    assert conformal_k(np.arange(1, 101) / 100) == pytest.approx(0.96)  # ceil(101 * 0.95) = 96th
    assert not resolved_over(20, 20) and resolved_over(99, 100) and not resolved_over(98, 100)
    assert resolved_under(16, 20) and not resolved_under(17, 20) and not resolved_under(38, 40)
    assert crossfit(np.arange(1, 21) / 10) == pytest.approx(0.95)  # leave-one-out: 19 of 20


def test_choose_reads_the_calibrated_coverage():
    r = _result(vpnls=(1.0, 0.0173), isoflop=(0.99, 0.0889))
    r["methods"]["vpnls"].update(coverage_calibrated_a=0.95, calibration_k_a=0.6)
    m, why = choose(r)
    assert m == "vpnls" and "calibrated interval's coverage 95% on held-out copies" in why
    assert "x 0.6" in why and "conservative" not in why
    r["methods"]["vpnls"].update(coverage_calibrated_a=0.70)  # raw 100%, calibrated too narrow: not honest
    assert choose(r)[0] == "isoflop"


def test_calibrated_interval_in_fits_json_and_cli(tmp_path, capsys, csv):
    """20 copies with 4-resample intervals (too narrow: 15/20 covered, resolved): the trusted fit's
    ci.a is its raw interval's half-widths times the audit's k, the raw one kept in ci_raw
    (fits.json and `lab fit --audit --json`)."""
    from analysis.options import FitOptions
    from analysis.reports.reporting import write_report
    from analysis.synthetic import write_study

    table = isoflop_table(budgets=(1e17, 1e18, 1e19, 1e20), n_per_budget=5, noise=0.01, seed=3)
    study = write_study(tmp_path / "study", table, n_log=10)
    options = FitOptions(bootstrap=20, audit=20, audit_bootstrap=4, seed=4)
    path = write_report(study, options=options, methods=("isoflop", "vpnls"))
    fits = json.loads((path.parent / "fits.json").read_text())
    trusted = fits["verdict"]["trusted"]
    v, s = fits[trusted], fits["audit"][trusted]
    assert trusted == fits["audit_info"]["choice"]["method"] and fits["audit_info"]["copies"] == 20
    k = s["calibration_k"]
    assert s["coverage"] == 0.75 and k == pytest.approx(3.04, abs=0.05) and s["coverage_calibrated"] >= 0.9
    assert v["ci_calibration"]["k_a"] == k and "calibrated by 20 simulated copies" in v["ci_calibration"]["note"]
    raw, cal = v["ci_raw"]["a"], v["ci"]["a"]
    assert cal["hi"] - v["a"] == pytest.approx(k * (raw["hi"] - v["a"])) and cal["calibration_k"] == k
    assert v["a"] - cal["lo"] == pytest.approx(k * (v["a"] - raw["lo"]))
    assert {"coverage", "coverage_calibrated", "calibration_k", "ci_width_calibrated_a"} <= set(s)
    assert "half-widths x 3.0" in fits["verdict"]["why"] and "calibration k" in path.read_text()
    code, out, err = _run(
        capsys,
        "fit",
        csv,
        "--method",
        "vpnls",
        "--bootstrap",
        "20",
        "--audit",
        "20",
        "--audit-bootstrap",
        "5",
        "--seed",
        "4",
        "--json",
    )
    d = json.loads(out)
    k = d["audit"]["vpnls"]["calibration_k"]
    assert code == 0 and d["audit"]["vpnls"]["coverage"] == 0.8 and k == pytest.approx(3.14, abs=0.05)
    assert d["ci_raw"]["a"]["hi"] - d["a"] == pytest.approx((d["ci"]["a"]["hi"] - d["a"]) / k)
    assert {"coverage", "coverage_calibrated", "calibration_k"} <= set(d["audit"]["isoflop"])
