"""The two-step task law (task loss from (N, D), accuracy as a sigmoid of task loss)."""

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.fits.task import fit_task, sigmoid_acc
from analysis.table import fit_data

TRUE = dict(E=1.2, A=40.0, B=60.0, alpha=0.35, beta=0.3)
SIG = dict(a=0.8, k=6.0, L0=2.2, b=1 / 676)


def table(seed=0, sigmoid=SIG, noise=0.02):
    rng = np.random.default_rng(seed)
    N = np.repeat(np.logspace(5, 8, 8), 6)
    D = np.tile(np.logspace(7, 10, 6), 8)
    L = (TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]) * np.exp(
        rng.normal(0, 0.005, N.size)
    )
    acc = sigmoid_acc(L, sigmoid["a"], sigmoid["k"], sigmoid["L0"], sigmoid["b"]) + rng.normal(0, noise, N.size)
    return pd.DataFrame(
        {"params": N, "tokens": D, "loss": L + 0.5, "icl_loss": L, "icl_accuracy": np.clip(acc, 0, 1)}
    )


def test_recovers_both_steps_of_a_known_law():
    fit = fit_task(fit_data(table()), n_boot=60)
    p = fit.params
    assert p["task_alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert p["task_E"] == pytest.approx(TRUE["E"], rel=0.05)
    assert p["L0"] == pytest.approx(SIG["L0"], abs=0.03)
    assert p["k"] == pytest.approx(SIG["k"], rel=0.25)
    assert p["a"] == pytest.approx(SIG["a"], abs=0.05)
    assert fit.ci["L0"]["lo"] < SIG["L0"] < fit.ci["L0"]["hi"]
    assert fit.extra["emergence_flops"] > 0
    assert np.abs(fit.residuals).max() < 0.1


def test_an_ability_that_never_appears_is_reported_not_fitted():
    flat = dict(SIG, a=0.0)
    fit = fit_task(fit_data(table(sigmoid=flat, noise=0.0)), n_boot=10)
    assert "L0" not in fit.params and "not identified" in fit.warnings[0]
    assert fit.params["task_alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)


def test_a_table_without_task_scores_is_one_clear_error():
    with pytest.raises(AnalysisError, match="no icl_accuracy / icl_loss column"):
        fit_task(fit_data(table().drop(columns=["icl_accuracy", "icl_loss"])))


def test_figure_shows_accuracy_against_compute_and_task_loss(tmp_path):
    from lab.cli import main

    path = tmp_path / "r.csv"
    table().to_csv(path, index=False)
    assert main(["plot", str(path), "--figures", "i", "--out", str(tmp_path / "f"), "--bootstrap", "0"]) == 0
    assert (tmp_path / "f" / "icl.png").exists()
    d = __import__("pandas").read_csv(tmp_path / "f" / "icl.csv")
    assert len(d) == len(table()) and {"C", "accuracy", "task_loss", "accuracy_fit"} <= set(d.columns)


def test_direct_law_and_backtests_on_a_known_law():
    """acc = b + (1-b) exp(-A C^-gamma) is recovered; each law's back-test predicts the largest compute."""
    from analysis.fits.task import direct_acc, fit_direct

    C = np.logspace(10, 13, 12)
    acc = direct_acc(C, 3e6, 0.6, 0.01)
    p = fit_direct(C, acc, 0.01)
    assert p["gamma"] == pytest.approx(0.6, rel=1e-3) and p["A"] == pytest.approx(3e6, rel=1e-2)
    fit = fit_task(fit_data(table()), n_boot=20)
    bt = fit.extra["backtest"]
    held = fit.data["C"] >= 0.99 * fit.data["C"].max()
    assert len(bt["runs"]) == held.sum() == 1 and bt["n_train"] == len(table()) - 1
    assert bt["two_step_mae"] < 0.1  # the true law is two-step: its back-test is close
    assert np.isfinite(bt["direct_mae"]) and 0 < fit.params["direct_gamma"]


def test_copy_task_columns_win_where_runs_trained_on_copying():
    t = table().rename(columns={"icl_loss": "copy_loss", "icl_accuracy": "copy_accuracy"})
    t["copy_mix"], t["copy_chance"] = 0.5, 1e-4
    t["icl_loss"], t["icl_accuracy"] = t["copy_loss"] + 2, 0.0  # recall never appears: ignored
    fit = fit_task(fit_data(t), n_boot=20)
    assert fit.extra["columns"] == {"accuracy": "copy_accuracy", "task_loss": "copy_loss"}
    assert fit.extra["chance"] == 1e-4 and fit.params["L0"] == pytest.approx(SIG["L0"], abs=0.05)
    t["copy_mix"] = 0.0  # no run trained on copying: the recall columns
    assert fit_task(fit_data(t), n_boot=5, backtest=False).extra["columns"]["accuracy"] == "icl_accuracy"
