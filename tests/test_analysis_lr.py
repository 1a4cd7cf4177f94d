"""The learning-rate law (analysis.fits.lr): best LR per (N, D) with grid edges flagged, the
η_opt(N, D) power law recovered from synthetic loss-vs-LR curves, `lab fit --method lr` and
`lab plot --figures l`."""

import numpy as np
import pandas as pd
import pytest

from analysis.__main__ import main as analysis_main
from analysis.errors import AnalysisError
from analysis.fits.lr import best_lr_table, fit_lr
from analysis.table import fit_data

A_N, B_D, C0 = -0.35, 0.1, 0.05


def eta_true(N, D):
    return C0 * N**A_N * D**B_D


def table(noise=0.002, seeds=(0, 1), lrs=np.geomspace(1e-4, 1e-1, 13), sizes=(1e4, 3e4, 1e5, 3e5), extra_lr=None):
    rng = np.random.default_rng(0)
    rows = []
    for N in sizes:
        for D in (20 * N, 80 * N):
            for lr in lrs:
                for s in seeds:
                    loss = 2 + 50 / N**0.3 + 0.3 * np.log(lr / eta_true(N, D)) ** 2 + rng.normal(0, noise)
                    rows.append(
                        {
                            "cell_id": f"{N}-{D}-{lr}-{s}",
                            "status": "completed",
                            "params_total": N,
                            "tokens": D,
                            "flops_exact": 6 * N * D,
                            "final_val_loss": loss,
                            "lr": lr,
                            "seed": s,
                        }
                    )
    return pd.DataFrame(rows)


def test_best_lr_is_refined_inside_the_grid_and_flagged_at_its_edges():
    df = table(noise=0.0)
    runs = pd.DataFrame(
        {"N": df.params_total, "D": df.tokens, "C": df.flops_exact, "loss": df.final_val_loss, "lr": df.lr}
    )
    best = best_lr_table(runs)
    assert len(best) == 8 and (best["edge"] == "").all()
    true = eta_true(best["N"], best["D"])
    assert np.allclose(np.log(best["lr_best"]), np.log(true), atol=0.05)  # parabola in log lr is exact here
    narrow = best_lr_table(runs[runs.lr <= 2e-3])  # every optimum above this grid's top
    assert (narrow["edge"] == "high").sum() >= 4 and (narrow["lr_best"] == narrow["lr_grid_best"]).all()


def test_law_recovers_exponents_with_intervals_that_cover_them():
    fit = fit_lr(fit_data(table()), n_boot=100, seed=0)
    p, ci = fit.params, fit.ci
    assert abs(p["a_N"] - A_N) < 0.03 and abs(p["b_D"] - B_D) < 0.05
    assert ci["a_N"]["lo"] <= A_N <= ci["a_N"]["hi"] and ci["a_N"]["hi"] - ci["a_N"]["lo"] < 0.2
    assert np.isfinite(p["g_C"]) and "g_C" in ci
    assert fit.warnings == []


def test_edge_optima_are_named_and_one_lr_per_point_is_an_error():
    df = table(lrs=np.geomspace(4e-3, 1e-1, 9))  # the largest sizes' optima fall below 4e-3
    fit = fit_lr(fit_data(df), n_boot=20)
    assert any("low edge of the LR grid" in w for w in fit.warnings)
    with pytest.raises(AnalysisError, match="one learning rate"):
        fit_lr(fit_data(df[df.lr == df.lr.min()]), n_boot=5)


def test_cli_fit_and_plot(tmp_path, capsys):
    path = tmp_path / "results.csv"
    table().to_csv(path, index=False)
    assert analysis_main(["fit", str(path), "--method", "lr", "--bootstrap", "50"]) == 0
    out = capsys.readouterr().out
    assert "η_opt(N, D)" in out and "DeepSeek" in out
    assert analysis_main(["plot", str(path), "--figures", "l", "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "lr.png").stat().st_size > 0
    plotted = pd.read_csv(tmp_path / "fig" / "lr.csv")
    assert len(plotted) == 8 * 13  # seeds averaged


def test_report_of_an_lr_sweep_has_the_best_lr_table_law_and_figure(tmp_path):
    """What `lab study` writes after an LR sweep (laws=("lr",)): the best-LR table, η_opt with CIs,
    and the loss-vs-LR figure with its CSV."""
    import analysis
    from analysis.options import FitOptions

    path = tmp_path / "results.csv"
    table().to_csv(path, index=False)
    report = analysis.report(path, options=FitOptions(bootstrap=30), methods=("lr",)).read_text()
    section = report.split("## lr", 1)[1].split("## Figures", 1)[0]
    assert "best lr" in section and section.count("\n    ") >= 8  # one row per (N, D)
    assert "η_opt(N, D)" in section and "[" in section.split("η_opt(N, D)", 1)[1]  # with its CI
    assert "figures/lr.png" in report and (tmp_path / "figures" / "lr.csv").stat().st_size > 0
