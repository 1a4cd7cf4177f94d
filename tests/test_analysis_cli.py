"""`fit` from the command line: JSON keys as the issue specifies, and bad tables failing with one
clear line and exit status 2."""

import json
from pathlib import Path

import pandas as pd
import pytest

import analysis.solvers.jaxcache
from analysis.__main__ import main
from analysis.synthetic import isoflop_table

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EPOCH = ["--n-col", "Model Size", "--c-col", "Training FLOP", "--loss-col", "loss", "--drop-highest-loss", "5"]


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    """Tests leave the user's compilation cache and the process-wide JAX config alone."""
    monkeypatch.setattr(analysis.solvers.jaxcache, "enable_persistent_cache", lambda *a, **k: None)


@pytest.fixture(scope="module")
def study_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "results.csv"
    isoflop_table(noise=0.002, seed=7).to_csv(path, index=False)
    return path


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _json(capsys, *argv):
    code, out, err = _run(capsys, *argv, "--json")
    assert code == 0, err
    assert len(out.strip().splitlines()) == 1
    return json.loads(out)


def test_parametric_json_keys_epoch(capsys):
    csv = SHARED / "chinchilla_epoch.csv"
    if not csv.exists():
        pytest.skip(f"reference data not found at {csv}")
    d = _json(capsys, "fit", csv, "--method", "parametric", *EPOCH, "--bootstrap", "200", "--target-flops", "1e24")
    for k in ("E", "A", "B", "alpha", "beta", "objective", "a", "b", "n_points"):
        assert k in d, k
    assert d["n_points"] == 240
    assert d["alpha"] == pytest.approx(0.3473, abs=5e-4) and d["objective"] == pytest.approx(1.018274e-3, rel=1e-5)
    for k in ("E", "A", "B", "alpha", "beta", "a", "b", "n_opt", "d_opt"):
        assert d["ci"][k]["lo"] < d["ci"][k]["hi"], k
    assert d["target"]["flops"] == 1e24 and d["ci"]["n_opt"]["lo"] < d["target"]["n_opt"] < d["ci"]["n_opt"]["hi"]


def test_isoflop_json_has_per_budget_optima(capsys, study_csv):
    d = _json(capsys, "fit", study_csv, "--method", "isoflop", "--bootstrap", "300")
    assert d["a"] == pytest.approx(0.514, abs=0.04) and d["b"] == pytest.approx(0.486, abs=0.04)
    assert len(d["optima"]) == 6
    assert {"budget", "n_opt", "d_opt", "loss_opt", "n_opt_std_log", "edge", "used"} <= set(d["optima"][0])
    assert d["ci"]["a"]["lo"] < d["a"] < d["ci"]["a"]["hi"]


def test_d_derived_from_c_when_omitted(capsys, study_csv, tmp_path):
    df = pd.read_csv(study_csv).drop(columns=["tokens"])
    path = tmp_path / "no_tokens.csv"
    df.to_csv(path, index=False)
    d = _json(capsys, "fit", path, "--method", "kaplan", "--c-col", "flops_exact")
    assert d["columns"]["D"] == "flops_exact/(6*N)"


def test_text_output_and_backtest(capsys, study_csv):
    code, out, err = _run(capsys, "fit", study_csv, "--method", "isoflop", "--backtest", "1")
    assert code == 0, err
    assert "N_opt ∝ C^" in out and "back-test" in out


def test_where_and_status_filters(capsys, study_csv, tmp_path):
    df = pd.read_csv(study_csv)
    df.loc[df.index[:3], "status"] = "diverged"
    df.loc[df.index[:3], "final_val_loss"] = float("nan")
    path = tmp_path / "mixed.csv"
    df.to_csv(path, index=False)
    d = _json(capsys, "fit", path, "--method", "kaplan")  # diverged rows are dropped by default
    assert d["n_points"] == len(df) - 3
    d = _json(capsys, "fit", path, "--method", "kaplan", "--where", "budget_flops >= 1e18")
    assert d["n_points"] == (df.budget_flops >= 1e18).sum()


def _bad(tmp_path, name, mutate):
    df = isoflop_table(noise=0.0)
    df = mutate(df)
    path = tmp_path / f"{name}.csv"
    df.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "name, mutate, extra, message",
    [
        ("missing", lambda d: d, ["--n-col", "nope"], "column 'nope'"),
        (
            "nonnumeric",
            lambda d: d.assign(params_total=d.params_total.astype(object).where(d.index != 4, "12M")),
            [],
            "non-numeric value '12M'",
        ),
        (
            "nonpositive",
            lambda d: d.assign(final_val_loss=d.final_val_loss.where(d.index != 2, 0.0)),
            [],
            "non-positive",
        ),
        (
            "negative_n",
            lambda d: d.assign(params_total=-d.params_total),
            [],
            "column 'params_total' (N) has a non-positive",
        ),
        ("few", lambda d: d.head(4), ["--method", "parametric"], "at least 5 points"),
        ("single_budget", lambda d: d[d.budget_flops == 1e18], ["--method", "isoflop"], "at least 2 FLOP budgets"),
        ("badwhere", lambda d: d, ["--where", "params_total >>> 3"], "bad --where expression"),
        ("unknowncol", lambda d: d, ["--where", "nonexistent > 3"], "bad --where expression"),
        ("emptywhere", lambda d: d, ["--where", "params_total < 0"], "selects no rows"),
        (
            "nolosscol",
            lambda d: d.drop(columns=["final_val_loss", "final_train_loss"]),
            [],
            "no loss (--loss-col) column",
        ),
        (
            "missingvals",
            lambda d: d.assign(final_val_loss=d.final_val_loss.where(d.index != 3)),
            [],
            "missing values",
        ),
    ],
)
def test_bad_tables_fail_with_one_line(capsys, tmp_path, name, mutate, extra, message):
    path = _bad(tmp_path, name, mutate)
    code, out, err = (
        _run(capsys, "fit", path, "--method", "kaplan", *extra)
        if "--method" not in extra
        else _run(capsys, "fit", path, *extra)
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("python -m analysis fit: error: ")
    assert message in lines[0]


def test_missing_file(capsys, tmp_path):
    code, _, err = _run(capsys, "fit", tmp_path / "nope.csv")
    assert code == 2 and "no such table" in err


def test_lab_cli_wires_the_subcommands(capsys, study_csv):
    lab_cli = pytest.importorskip("lab.cli")
    if not hasattr(lab_cli, "main"):
        pytest.skip("lab.cli has no main()")
    code = lab_cli.main(["fit", str(study_csv), "--method", "kaplan", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "alpha_N" in json.loads(out)
    code = lab_cli.main(["fit", str(study_csv), "--n-col", "nope"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("lab fit: error: column 'nope'")


def test_analysis_never_imports_the_training_stack():
    import subprocess
    import sys

    code = (
        "import sys, analysis, analysis.cli, analysis.cli_parsers, analysis.fitting, analysis.fits.parametric, "
        "analysis.fits.isoflop, analysis.fits.envelope, analysis.fits.kaplan, analysis.uncertainty.intervals, "
        "analysis.uncertainty.holdout, analysis.plotting.plots, analysis.reports.reporting, analysis.inputs, "
        "analysis.methods, analysis.solvers.reference, analysis.synthetic, "
        "analysis.__main__\n"
        "bad = [m for m in sys.modules if m == 'lab' or m.startswith(('lab.', 'flax'))]\n"
        "assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
