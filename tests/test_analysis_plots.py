"""Figures (a)-(e) for the Epoch data and for a study directory: every image has a CSV beside it,
and the CSVs hold the plotted values (checked against the fits recomputed independently)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis.solvers.jaxcache
from analysis.__main__ import main
from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table, write_study

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
EPOCH = ["--n-col", "Model Size", "--c-col", "Training FLOP", "--loss-col", "loss", "--drop-highest-loss", "5"]
FIGS = ("a_envelope", "b_isoflop", "c_optimal", "d_isoloss", "e_residuals")


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    monkeypatch.setattr(analysis.solvers.jaxcache, "enable_persistent_cache", lambda *a, **k: None)


def _cli_json(capsys, *argv):
    assert main([str(a) for a in argv] + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _check_files(out: Path, formats=("png", "svg")):
    for name in FIGS:
        for fmt in formats:
            p = out / f"{name}.{fmt}"
            assert p.exists() and p.stat().st_size > 5000, p
        assert (out / "a_envelope.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(pd.read_csv(out / f"{name}.csv")) > 0


def _check_values(out: Path, param: dict, iso: dict, loss: np.ndarray, k: float = 6.0):
    law = Chinchilla(param["E"], param["A"], param["B"], param["alpha"], param["beta"])
    # (a): the runs, and an envelope that reaches their lowest loss and never exceeds the best
    # run at its compute
    a = pd.read_csv(out / "a_envelope.csv")
    env, runs = a[a.series == "envelope"], a[a.series == "run"]
    assert len(env) > 10 and env["loss"].min() == pytest.approx(runs["loss"].min(), rel=1e-9)
    last = runs.groupby("run_id").last()
    for _, row in env.iloc[::20].iterrows():
        done = last[last.flops <= row["flops"]]
        assert len(done) == 0 or row["loss"] <= done["loss"].min() * (1 + 1e-9)
    # (b): the minima are the fitted per-budget optima
    b = pd.read_csv(out / "b_isoflop.csv")
    mins = b[b.series == "minimum"].set_index("budget")["N"]
    opt = {o["budget"]: o["n_opt"] for o in iso["optima"] if o["n_opt"] is not None}
    for c, n in mins.items():
        assert n == pytest.approx(opt[min(opt, key=lambda x: abs(np.log(x / c)))], rel=1e-9)
    # (c): the fit line is n_coef * C^a, with the bootstrap band around it
    c = pd.read_csv(out / "c_optimal.csv")
    line = c[c.series == "N_opt fit"]
    np.testing.assert_allclose(line["value"], iso["n_coef"] * line["C"] ** iso["a"], rtol=1e-9)
    assert (line["lo"] <= line["value"]).all() and (line["value"] <= line["hi"]).all()
    pl = c[c.series == "N_opt parametric"]
    np.testing.assert_allclose(pl["value"], law.optimal(pl["C"].to_numpy(), k)[0], rtol=1e-6)
    # (d): contour grid is L(N, C/(kN)) of the parametric fit; the frontier is its N_opt(C)
    d = pd.read_csv(out / "d_isoloss.csv")
    grid = d[d.series == "contour_grid"].iloc[::97]
    np.testing.assert_allclose(grid["loss"], law(grid["N"], grid["C"] / (k * grid["N"])), rtol=1e-6)
    fr = d[d.series == "frontier"]
    np.testing.assert_allclose(fr["N"], law.optimal(fr["C"].to_numpy(), k)[0], rtol=1e-6)
    np.testing.assert_allclose(np.sort(d[d.series == "data"]["loss"]), np.sort(loss))
    # (e): residuals are log L - log L_fit of the parametric law; the back-test is there
    e = pd.read_csv(out / "e_residuals.csv")
    r = e[e.series == "residual"]
    np.testing.assert_allclose(r["residual"], np.log(r["loss"]) - np.log(r["predicted"]), atol=1e-12)
    np.testing.assert_allclose(np.sort(r["loss"]), np.sort(loss))
    assert (e.series == "backtest").sum() >= 3


def test_epoch_figures(capsys, tmp_path):
    csv = SHARED / "chinchilla_epoch.csv"
    if not csv.exists():
        pytest.skip(f"reference data not found at {csv}")
    out = tmp_path / "figs"
    assert main(["plot", str(csv), "--out", str(out), *EPOCH, "--target-flops", "1e24"]) == 0
    capsys.readouterr()
    _check_files(out)
    param = _cli_json(capsys, "fit", csv, *EPOCH)
    iso = _cli_json(capsys, "fit", csv, *EPOCH, "--method", "isoflop")
    df = pd.read_csv(csv)
    loss = np.sort(df["loss"].to_numpy())[:-5]
    _check_values(out, param, iso, loss)
    a = pd.read_csv(out / "a_envelope.csv")
    np.testing.assert_allclose(np.sort(a[a.series == "run"]["loss"]), loss)  # one point per run
    c = pd.read_csv(out / "c_optimal.csv")
    t = c[c.series == "N_opt target"]
    assert t["C"].item() == 1e24 and t["value"].item() == pytest.approx(iso["n_coef"] * 1e24 ** iso["a"])


def test_study_report(capsys, tmp_path):
    table = isoflop_table(noise=0.002, seed=11)
    study = write_study(tmp_path / "study", table, noise=0.001)
    assert main(["report", str(study), "--target-flops", "1e21"]) == 0
    report = Path(capsys.readouterr().out.strip())
    assert report == study / "report.md"
    text = report.read_text()
    for section in (
        "## Data",
        "## Compute-optimal exponents",
        "## Parametric fit",
        "## IsoFLOP optima",
        "## Figures",
    ):
        assert section in text
    assert "training curves: 54 runs" in text
    _check_files(study / "figures")
    fits = json.loads((study / "fits.json").read_text())
    assert {"parametric", "isoflop", "envelope", "kaplan"} <= set(fits)  # and the verdict, other laws that apply
    assert not {"lr", "data-constrained", "loss-curve", "task", "ptq"} & set(
        fits
    )  # their columns are absent or constant
    for m in ("parametric", "isoflop", "envelope"):
        assert fits[m]["a"] == pytest.approx(0.514, abs=0.05), m
        assert "a" in fits[m]["ci"]
    _check_values(study / "figures", fits["parametric"], fits["isoflop"], table["final_val_loss"].to_numpy())
    a = pd.read_csv(study / "figures" / "a_envelope.csv")
    assert a[a.series == "run"]["run_id"].nunique() == 54  # training curves, not final points
    for name in FIGS:
        assert f"figures/{name}.png" in text and f"figures/{name}.csv" in text
