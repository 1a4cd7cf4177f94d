"""Bad and degenerate inputs end in one line on stderr and exit status 2 (or an AnalysisError from
the library), never in a confident-looking result."""

import json

import pandas as pd
import pytest

import analysis
import analysis.solvers.jaxcache
from analysis.__main__ import main


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    monkeypatch.setattr(analysis.solvers.jaxcache, "enable_persistent_cache", lambda *a, **k: None)


def _fails(capsys, *argv, match: str):
    with pytest.raises(SystemExit) as e:  # argparse usage errors
        main([str(a) for a in argv])
    assert e.value.code == 2
    assert match in capsys.readouterr().err


def _error(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def table():
    return analysis.simulate_isoflop(noise=0.002, seed=7)


@pytest.mark.parametrize("cmd", ["fit", "plot", "report"])
def test_non_utf8_results_csv(capsys, tmp_path, cmd):
    (tmp_path / "results.csv").write_bytes(b"params_total,tokens,final_val_loss\n1e6,2e7,3.5\n" + b"caf\xe9,1,2\n")
    extra = ["--out", tmp_path / "o"] if cmd == "plot" else []
    err = _error(capsys, cmd, tmp_path, *extra)
    assert err.startswith(f"python -m analysis {cmd}: error: cannot read") and "utf-8" in err


@pytest.mark.parametrize("cmd", ["fit", "plot", "report"])
def test_foreign_csv_without_the_columns(capsys, tmp_path, cmd):
    pd.DataFrame({"width": [1, 2, 3], "score": [0.1, 0.2, 0.3]}).to_csv(tmp_path / "results.csv", index=False)
    extra = ["--out", tmp_path / "o"] if cmd == "plot" else []
    assert "no N (--n-col) column found" in _error(capsys, cmd, tmp_path / "results.csv", *extra)


@pytest.mark.parametrize("flag", ["--drop-highest-loss", "--bootstrap", "--backtest"])
def test_negative_counts_are_usage_errors(capsys, tmp_path, table, flag):
    table.to_csv(tmp_path / "t.csv", index=False)
    _fails(capsys, "fit", tmp_path / "t.csv", flag, "-50", match="must be 0 or more: '-50'")


def test_negative_drop_refused_by_the_library(table):
    with pytest.raises(analysis.AnalysisError, match="must be 0 or more"):
        analysis.load(table, drop_highest_loss=-50)


@pytest.mark.parametrize("method", ["parametric", "envelope"])
def test_every_n_equal_is_refused(capsys, tmp_path, table, method):
    table["params_total"] = 1e8
    table["tokens"] = table["flops_exact"] / (6 * 1e8)
    table.to_csv(tmp_path / "t.csv", index=False)
    err = _error(capsys, "fit", tmp_path / "t.csv", "--method", method)
    assert (
        "all rows have the same N (1e+08); cannot fit an N exponent" in err
        if method == "parametric"
        else "only one model size (N = 1e+08) is ever optimal" in err
    )


def test_every_d_equal_is_refused(table):
    table["tokens"] = 1e9
    with pytest.raises(analysis.AnalysisError, match="all rows have the same D"):
        analysis.fit(analysis.load(table), "parametric")


def test_single_budget(capsys, tmp_path, table):
    table[table.budget_flops == 1e18].to_csv(tmp_path / "t.csv", index=False)
    assert "isoflop needs at least 2 FLOP budgets, got 1" in _error(
        capsys, "fit", tmp_path / "t.csv", "--method", "isoflop"
    )
    assert "log N and log D lie on one line" in _error(capsys, "fit", tmp_path / "t.csv")
    assert "kaplan: none of L(N), L(D), L(C) can be fitted" in _error(
        capsys, "fit", tmp_path / "t.csv", "--method", "kaplan"
    )


def test_too_few_points(capsys, tmp_path, table):
    table.iloc[:4].to_csv(tmp_path / "t.csv", index=False)
    assert "needs at least 5 points for 5 parameters, got 4" in _error(capsys, "fit", tmp_path / "t.csv")
    assert "back-test needs more than 2 budgets" in _error(
        capsys, "fit", tmp_path / "t.csv", "--method", "kaplan", "--backtest", "1"
    )


def test_one_resample_and_unknown_backtest_method(capsys, tmp_path, table):
    table.to_csv(tmp_path / "t.csv", index=False)
    assert "needs at least 2 resamples, got 1" in _error(
        capsys, "fit", tmp_path / "t.csv", "--method", "isoflop", "--bootstrap", "1"
    )
    assert "no back-test for method 'envelope' (use parametric, isoflop, kaplan, vpnls)" in _error(
        capsys, "fit", tmp_path / "t.csv", "--method", "envelope", "--backtest", "1"
    )


def test_non_utf8_metrics_cost_one_curve_with_a_warning(tmp_path):
    study = analysis.write_study(tmp_path / "s", analysis.simulate_isoflop(noise=0.002, seed=1), n_log=8)
    victim = next((study / "runs").iterdir()) / "metrics.jsonl"
    victim.write_bytes(victim.read_bytes()[:50] + b"\xff\xfe" + victim.read_bytes()[50:])
    loaded = analysis.load(study)
    assert loaded.curves["run_id"].nunique() == 53 and victim.parent.name not in set(loaded.curves["run_id"])
    assert any("not UTF-8 text" in w and str(victim) in w for w in loaded.warnings)
    assert len(loaded) == 54  # the results table itself is still used


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--figures", "xyz"], "--figures takes letters from abcde, got 'xyz'"),
        (["--format", "png,foo"], "unknown image format(s) foo; choose from"),
    ],
)
def test_plot_choices_checked_before_fitting(capsys, tmp_path, table, flags, message):
    table.to_csv(tmp_path / "t.csv", index=False)
    assert message in _error(capsys, "plot", tmp_path / "t.csv", "--out", tmp_path / "o", *flags)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "0", "-1e21"])
def test_design_flops_must_be_positive_and_finite(capsys, tmp_path, table, value):
    table.to_csv(tmp_path / "t.csv", index=False)
    _fails(capsys, "design", tmp_path / "t.csv", f"--flops={value}", match="must be a positive finite number")


def test_a_duplicated_column_is_named_in_a_warning(capsys, tmp_path, table):
    """pandas reads a second `final_val_loss` as `final_val_loss.1`, silently: the fit says so."""
    table = table[["params_total", "tokens", "flops_exact", "final_val_loss"]]
    path = tmp_path / "t.csv"
    lines = table.to_csv(index=False).splitlines()
    path.write_text("\n".join([lines[0] + ",final_val_loss"] + [row + ",9.9" for row in lines[1:]]) + "\n")
    note = (
        f"{path}: column 'final_val_loss' appears 2 times; the first is used (the others are read as "
        "final_val_loss.1)"
    )
    assert main(["fit", str(path), "--method", "isoflop", "--json"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert note in fit["warnings"] and fit["n_points"] == len(table)
    assert main(["fit", str(path), "--method", "isoflop"]) == 0
    assert f"  warning: {note}" in capsys.readouterr().out.splitlines()
    table.to_csv(path, index=False)
    assert not any("appears" in w for w in analysis.load(path).warnings)  # none without duplicates


def test_a_garbage_metrics_line_is_named_in_a_warning(tmp_path):
    """A complete line that is not JSON is skipped with a one-line warning naming it; a torn last
    line (no newline: a write cut off by a kill) is skipped quietly."""
    study = analysis.write_study(tmp_path / "s", analysis.simulate_isoflop(noise=0.002, seed=1), n_log=8)
    damaged, torn = sorted((study / "runs").iterdir())[:2]
    lines = (damaged / "metrics.jsonl").read_text().splitlines(keepends=True)
    (damaged / "metrics.jsonl").write_text("".join(lines[:3] + ["garbage {\n", "[1, 2]\n"] + lines[3:]))
    (torn / "metrics.jsonl").write_text((torn / "metrics.jsonl").read_text() + '{"step": 9, "tra')
    loaded = analysis.load(study)
    skipped = [w for w in loaded.warnings if "not JSON objects" in w]
    assert skipped == [f"{damaged / 'metrics.jsonl'}: skipped 2 line(s) that are not JSON objects (line 4, 5)"]
    assert loaded.curves["run_id"].nunique() == 54  # every run keeps its curve
    n = len(lines) - sum(1 for line in lines if "val_loss" in line)  # the train_loss points
    assert (loaded.curves["run_id"] == damaged.name).sum() == n
