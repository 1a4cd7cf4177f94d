"""The pre-registered validation rung (`lab study --validate K`): it predicts with the law the
verdict trusts (an optimum-placing method through its loss-at-the-optimum law), writes each run's
prediction and 95% prediction interval to validation.json before anything trains, scores the runs
against their intervals afterwards, and the report's verdict opens loudly when one fell outside.

No training here: the grid's table is simulated from a known law and `run` is a fake that writes
result.json files."""

import json

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.laws import Chinchilla
from analysis.options import FitOptions
from analysis.result import FitResult
from analysis.uncertainty.predict import fit_sha256, optimum_law, predict_runs
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.result import FIELDS
from lab.study import Study
from lab.study.analyze import prediction_fit, run_validation
from lab.study.spec import expand

LAW = Chinchilla(E=1.0, A=40.0, B=40.0, alpha=0.4, beta=0.4)  # N_opt = (C/6)^0.5: 1.8e4-5.5e4 on this grid
BUDGETS = (2e9, 6e9, 1.8e10)
BASE = RunConfig(
    model=ModelConfig(seq_len=32),
    data=DataConfig(val_tokens=1024),
    train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0),
)


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """A study directory holding a simulated IsoFLOP table (7 sizes per budget, 0.3% noise) and the fits
    a study's analysis would hand the rung: isoflop (bootstrapped) and a parametric law whose
    bootstrap samples are the true law, slightly jittered."""
    d = tmp_path_factory.mktemp("grid")
    frame = analysis.simulate_isoflop(LAW, budgets=BUDGETS, n_per_budget=7, span=4.0, noise=0.003, seed=0)
    frame.to_csv(d / "results.csv", index=False)
    study = analysis.load(d)
    iso = analysis.fit(study, "isoflop", bootstrap=200)
    rng = np.random.default_rng(1)
    jitter = lambda v: v * np.exp(0.002 * rng.standard_normal(200))
    samples = pd.DataFrame({k: jitter(v) for k, v in LAW.params().items()})
    par = FitResult(
        method="parametric",
        params={**LAW.readouts(6.0)},
        objective=0.0,
        residuals=np.full(len(frame), 0.003),
        data=frame,
        law=LAW,
    )
    par.bootstrap_samples = samples
    par.ci = {"a": {"lo": 0.49, "hi": 0.51, "level": 0.95}}
    return d, study, iso, par


def analysed_with(table, trusted):
    d, study, iso, par = table
    return {
        "study": study,
        "table": None,
        "options": FitOptions(bootstrap=50),
        "suite": {"isoflop": iso, "parametric": par, "notes": []},
        "audited": None,
        "verdict": {"trusted": trusted, "problems": [], "why": "test"},
    }


def test_isoflop_predicts_through_its_loss_at_the_optimum_law(table):
    """L*(C), a power law through the budgets' minima, extrapolates the true optimal loss at 2x the grid
    within 2% — low, as a law without an irreducible term does where the losses bend — and within its
    interval, widened by the minima's scatter about it (Birge ratio); the predicted-optimal size sits
    at L*(C), the sizes either side above it by the law's shape; every prediction lies inside its own
    interval."""
    _, study, iso, par = table
    C = 2 * BUDGETS[-1]
    law, _ = optimum_law(iso)
    star, truth = np.exp(law["c0"] + law["c1"] * np.log(C)), LAW.optimal_loss(C)
    assert -0.02 < star / truth - 1 < 0 and law["birge"] > 3
    n0 = iso.params["n_coef"] * C ** iso.params["a"]
    N = np.array([n0 / 2, n0, 2 * n0])
    p = predict_runs(iso, N, C / (6 * N), C, study.data, shape=par)
    lo, mid, hi = p["predicted"]
    assert p["ci_lo"][1] < truth < p["ci_hi"][1]
    assert mid == pytest.approx(np.exp(law["c0"] + law["c1"] * np.log(C)), rel=1e-9)
    assert lo > mid and hi > mid
    assert predict_runs(iso, [n0], [C / (6 * n0)], C, study.data, shape=par)["predicted"][0] == pytest.approx(star)
    assert all(a < v < b for a, v, b in zip(p["pi_lo"], p["predicted"], p["pi_hi"]))
    assert all(a <= c * 1.002 for a, c in zip(p["pi_lo"], p["ci_lo"]))  # run noise only widens (up to sampling)
    assert "isoflop loss_noise" in p["noise"]["source"] and "parametric law's isoFLOP profile" in p["how"]
    flat = predict_runs(iso, N, C / (6 * N), C, study.data)  # no shape law: every size at L*(C)
    assert flat["predicted"] == pytest.approx([mid] * 3)


def test_law_interval_uses_seed_scatter_when_the_table_has_seeds(table):
    _, study, _, par = table
    p = predict_runs(par, [3e4], [2e5], 3.6e10, study.data)
    assert p["noise"]["source"] == "residual scatter about the parametric law"
    assert p["noise"]["sigma"] == pytest.approx(0.003 * np.sqrt(21 / 16))  # dof-corrected (5 law parameters)
    assert p["predicted"][0] == pytest.approx(float(LAW(3e4, 2e5)))
    seeded = analysis.simulate_isoflop(LAW, budgets=BUDGETS, n_per_budget=5, noise=0.01, seed=0, replicates=2)
    q = predict_runs(par, [3e4], [2e5], 3.6e10, analysis.load(seeded).data)
    assert q["noise"]["source"].startswith("seed-to-seed scatter") and 0.005 < q["noise"]["sigma"] < 0.02
    assert q["pi_hi"][0] - q["pi_lo"][0] > p["pi_hi"][0] - p["pi_lo"][0]


def test_envelope_predicts_through_its_frontier(table):
    """The envelope's L*(C) runs through the frontier's points; its run noise is their scatter about it."""
    _, study, _, par = table
    env = analysis.fit(study, "envelope", bootstrap=50)
    C = 2 * BUDGETS[-1]
    p = predict_runs(env, [3e4, 6e4], [2e5, 1e5], C, study.data, shape=par)
    assert "frontier" in p["how"] and "frontier" in p["noise"]["source"] and p["noise"]["sigma"] > 0
    assert all(a < v < b for a, v, b in zip(p["pi_lo"], p["predicted"], p["pi_hi"]))
    assert p["predicted"] == pytest.approx([float(LAW(3e4, 2e5)), float(LAW(6e4, 1e5))], rel=0.03)


@pytest.mark.parametrize(
    "trusted, method, shape",
    [("isoflop", "isoflop", "parametric"), ("parametric", "parametric", None), (None, "parametric", None)],
)
def test_the_rung_predicts_with_the_trusted_method(table, trusted, method, shape):
    m, fit, s = prediction_fit(analysed_with(table, trusted))
    assert (m, fit.method, s.method if s else None) == (method, method, shape)


def fake_result(loss: float) -> dict:
    return {**{k: 0 for k in FIELDS}, "status": "completed", "final_val_loss": loss, "run_id": "x"}


def test_validation_json_is_written_before_training_and_scored_after(table):
    """validation.json holds every run's prediction and interval, the method and the fit's hash when
    `run` is called; afterwards each run has measured, rel_error and inside_pi, and the report's
    verdict opens with the failure of the run that fell outside."""
    d, study, iso, _ = table
    grid = Study(name="g", base=BASE, sizes=[{"d_model": w} for w in (16, 32, 48, 64)], budgets=list(BUDGETS))
    seen = {}

    def run(val, cells, out):
        v = json.loads((d / "validation.json").read_text())
        seen.update(v)
        assert v["status"] == "predicted" and len(v["runs"]) == len(cells) == 3
        for i, (c, r) in enumerate(zip(cells, v["runs"])):
            assert r["pi_lo"] < r["predicted"] < r["pi_hi"] and "measured" not in r
            loss = r["pi_hi"] * 1.05 if i == 0 else r["predicted"] * 1.001  # the first falls outside
            (out / "runs" / c.cell_id).mkdir(parents=True)
            (out / "runs" / c.cell_id / "result.json").write_text(json.dumps(fake_result(loss)))
        return {c.cell_id: "completed" for c in cells}

    v = run_validation(grid, expand(grid, 256), d, 2.0, 256, run, analysed=analysed_with(table, "isoflop"))
    assert seen["method"] == "isoflop" and seen["trusted"] == "isoflop" and seen["fit_sha256"] == fit_sha256(iso)
    assert seen["n_opt_predicted"] == pytest.approx(iso.params["n_coef"] * 3.6e10 ** iso.params["a"])
    assert seen["trained_before_prediction"] == [] and len(seen["table_sha256"]) == 64
    # the law's form error, measured before the runs by back-tests on the grid (the shape law's here:
    # isoflop's L*(C) has no per-run back-test), grown to the validation budget's distance, log 2
    noise = seen["noise"]
    assert noise["form_distance"] == pytest.approx(np.log(2.0))
    assert noise["form_sigma"] == pytest.approx(noise["form_k"] * np.log(2.0))
    assert "parametric shape law's" in noise["form_source"] and "σ_form" in seen["pi_note"]
    # the form term is measured, so the laws are drawn by a residual bootstrap (analysis.uncertainty.residual)
    assert seen["law_draws"] == "residuals" and "bootstrap of residuals" in seen["pi_note"]
    assert len(seen["form_backtests"]) == 7 and {r["holdout"] for r in seen["form_backtests"]} == {1}
    over = sum(r["log_error"] > 0 for r in seen["form_backtests"])  # the back-tests' signs, for the report
    assert seen["form_signs"] == {"over": over, "under": 7 - over}
    assert v == json.loads((d / "validation.json").read_text()) and v["status"] == "measured"
    assert [r["inside_pi"] for r in v["runs"]] == [False, True, True]
    for r in v["runs"]:
        assert r["rel_error"] == pytest.approx(r["predicted"] / r["measured"] - 1)
    assert v["mean_abs_rel_error"] == pytest.approx(np.mean([abs(r["rel_error"]) for r in v["runs"]]))
    assert "2 of 3 inside" in v["summary"]

    report = analysis.report(d, options=FitOptions(bootstrap=20), methods=("isoflop",))
    text = report.read_text()
    verdict = text.split("## Verdict", 1)[1].lstrip().splitlines()[0]
    assert (
        verdict.startswith("**VALIDATION FAILED: 1 of 3 validation run(s)") and v["runs"][0]["cell_id"] in verdict
    )
    section = text.split("## Validation rung", 1)[1].split("##", 1)[0]
    assert section.count("| **no** |") == 1 and section.count("| yes |") == 2
    assert "form error in the interval, measured before the runs: the parametric shape law's" in section
    assert f"predicted above the measured loss for {over} of 7 held-out runs" in section
    assert "The validation runs: 0 of 3 came in below their prediction." in section  # all three above it
    fits = json.loads((d / "fits.json").read_text())
    assert fits["verdict"]["validation"]["outside_pi"] == [v["runs"][0]["cell_id"]]


@pytest.mark.parametrize("audit", [-1, 2.5, True])
def test_a_bad_audit_count_is_a_config_error(audit):
    import dataclasses

    from lab.config import ConfigError
    from lab.study.spec import check_values

    grid = Study(name="g", base=BASE, sizes=[{"d_model": 16}], budgets=[2e9])
    check_values(grid)
    with pytest.raises(ConfigError, match=r"^study 'g': audit must be a whole number >= 0, got"):
        check_values(dataclasses.replace(grid, audit=audit))


def test_a_damaged_validation_json_is_one_line(tmp_path):
    from analysis.errors import AnalysisError
    from analysis.reports.validation import read_validation

    (tmp_path / "validation.json").write_text('{"runs": [')
    with pytest.raises(AnalysisError, match=r"validation.json is damaged \(JSONDecodeError"):
        read_validation(tmp_path)
    (tmp_path / "validation.json").write_text("[]")
    with pytest.raises(AnalysisError, match=r"is damaged \(AttributeError"):
        read_validation(tmp_path)


def test_the_signs_line_reads_old_and_unmeasured_validation_files():
    """validation.json from before `form_signs` says only how the runs fell; one with no runs measured and
    no back-tests says nothing."""
    from analysis.reports.validation import sign_lines

    runs = [{"rel_error": 0.02}, {"rel_error": -0.01}, {"rel_error": 0.015}]
    assert sign_lines({"runs": runs}) == ["The validation runs: 2 of 3 came in below their prediction.", ""]
    assert sign_lines({"runs": [{"predicted": 1.2}]}) == []
    signs = {"form_signs": {"over": 27, "under": 3}, "form_bias_per_log": 0.0367, "noise": {"form_distance": 1.1}}
    line = sign_lines({**signs, "runs": [{"predicted": 1.2}]})[0]
    assert line.startswith("In its back-tests the law predicted above the measured loss for 27 of 30 held-out")
    assert "a drift of +0.0367 in log loss per unit log distance, +4.0% at this rung's" in line
