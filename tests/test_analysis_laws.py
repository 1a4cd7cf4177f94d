"""Laws and their compute-optimal allocations; Kaplan, envelope and back-test fitters on synthetic data."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.curves import load_curves
from analysis.fits.envelope import bootstrap_envelope, fit_envelope
from analysis.fits.kaplan import fit_kaplan
from analysis.laws import Chinchilla, DataConstrained, KaplanND, PowerLaw
from analysis.synthetic import CHINCHILLA_EPOCH, isoflop_table, write_study
from analysis.table import bin_budgets, fit_data
from analysis.uncertainty.holdout import backtest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
LAW = Chinchilla(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)  # Hoffmann et al. as published


def _numeric_optimum(f, C, k=6.0):
    n = np.geomspace(1e3, 1e16, 400001)
    return n[np.argmin(f(n, C / (k * n)))]


@pytest.mark.parametrize("C", [1e18, 1e21, 5.76e23])
def test_chinchilla_allocation_matches_numeric_minimum(C):
    n_opt, d_opt = LAW.optimal(C)
    assert n_opt == pytest.approx(_numeric_optimum(LAW, C), rel=1e-3)
    assert 6 * n_opt * d_opt == pytest.approx(C)
    assert LAW.a == pytest.approx(0.28 / 0.62) and LAW.a + LAW.b == pytest.approx(1.0)
    n8, d8 = LAW.optimal(C, k=8.0)  # another FLOPs-per-token convention moves the optimum
    assert 8 * n8 * d8 == pytest.approx(C) and n8 < n_opt


def test_chinchilla_lse_roundtrip():
    back = Chinchilla.from_lse(*LAW.to_lse())
    for k in ("E", "A", "B", "alpha", "beta"):
        assert getattr(back, k) == pytest.approx(getattr(LAW, k))


def test_kaplan_joint_allocation():
    law = KaplanND(N_c=8.8e13, alpha_N=0.076, D_c=5.4e13, alpha_D=0.095)
    for C in (1e19, 1e22):
        n_opt, _ = law.optimal(C)
        assert n_opt == pytest.approx(_numeric_optimum(law, C), rel=1e-3)
    assert law.a == pytest.approx(0.095 / 0.171)
    assert PowerLaw(8.8e13, 0.076)(8.8e13) == pytest.approx(1.0)


def test_data_constrained_law():
    dc = DataConstrained(LAW)
    U = 1e10
    N = 0.5 * dc.n_for_data(U)  # fewer parameters than optimal for U tokens: no parameter discount
    assert dc(N, 5e9, U) == pytest.approx(LAW(N, 5e9))  # and a single epoch: no data discount
    # repeating data is worth less than fresh data, and saturates at U (1 + R_D*)
    assert LAW(N, 4e10) < dc(N, 4e10, U) < LAW(N, 1e10)
    assert dc.effective_data(1e15, U) == pytest.approx(U * (1 + dc.R_D_star), rel=1e-6)
    # excess parameters beyond the data-optimal size are discounted too
    big = 10 * dc.n_for_data(U)
    assert dc.effective_params(big, U) < big
    # with plenty of unique data the optimum is Chinchilla's; with little, fewer tokens per param repeat
    C = 1e21
    n_free, _ = dc.optimal(C, U=1e15)
    assert n_free == pytest.approx(LAW.optimal(C)[0], rel=0.01)
    n_tight, d_tight = dc.optimal(C, U=1e9)
    assert d_tight > 1e9 and n_tight != pytest.approx(n_free, rel=0.01)


def test_bin_budgets_groups_nearby_compute():
    C = np.array([1e18, 1.1e18, 0.95e18, 1e19, 1.2e19, 3e20])
    b = bin_budgets(C)
    assert len(np.unique(b)) == 3
    assert b[0] == b[1] == b[2] and b[3] == b[4]


@pytest.mark.parametrize("design", ["grid", "sweeps"])
def test_kaplan_recovers_power_laws(design):
    rng = np.random.default_rng(0)
    law = KaplanND(N_c=8.8e13, alpha_N=0.076, D_c=5.4e13, alpha_D=0.095)
    if design == "grid":  # every (N, D) pair: most runs are limited by both
        N, D = (v.ravel() for v in np.meshgrid(np.geomspace(1e6, 1e10, 12), np.geomspace(1e8, 1e12, 12)))
    else:  # Kaplan's design: an N sweep on plenty of data, a D sweep on a large model
        N = np.concatenate([np.geomspace(1e6, 1e10, 20), np.full(20, 1e12)])
        D = np.concatenate([np.full(20, 1e15), np.geomspace(1e8, 1e12, 20)])
    L = law(N, D) * np.exp(0.001 * rng.standard_normal(len(N)))
    data = fit_data(pd.DataFrame({"N": N, "D": D, "loss": L}), n_col="N", d_col="D", loss_col="loss")
    r = fit_kaplan(data, target_flops=1e21)
    assert r.extra["fit"] == "joint L(N, D)"
    assert r.params["alpha_N"] == pytest.approx(0.076, abs=0.003)
    assert r.params["alpha_D"] == pytest.approx(0.095, abs=0.003)
    assert r.params["a"] == pytest.approx(law.a, abs=0.02)
    assert r.extra["target"]["n_opt"] == pytest.approx(law.optimal(1e21)[0], rel=0.3)
    assert np.std(r.residuals[r.data["law"] == "L(N, D)"]) < 0.002


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    table = isoflop_table(noise=0.002, n_per_budget=9, seed=2)
    return write_study(tmp_path_factory.mktemp("study"), table, noise=0.001), table


def test_envelope_from_training_curves(study):
    path, table = study
    data = fit_data(table)
    curves, warnings = load_curves(path, data.frame, "params_total")
    assert not warnings and curves["run_id"].nunique() == len(table)
    r = fit_envelope(curves)
    # the lower envelope of L(N, D_t) curves traces the compute-optimal frontier
    assert r.a == pytest.approx(CHINCHILLA_EPOCH.a, abs=0.05)
    assert r.b == pytest.approx(CHINCHILLA_EPOCH.b, abs=0.05)
    env = r.extra["envelope"].dropna(subset=["loss"])
    assert np.all(env["loss"].to_numpy() <= curves.groupby("run_id")["loss"].max().max())
    s = bootstrap_envelope(curves, n_boot=50, seed=0)
    assert len(s) > 25 and s["a"].between(0.3, 0.7).all()


def test_val_loss_curves_and_partial_lines(study, tmp_path):
    path, table = study
    data = fit_data(table)
    curves, _ = load_curves(path, data.frame, "params_total", loss_key="val_loss")
    assert curves.groupby("run_id").size().min() == 8  # eval lines every fifth point of 40
    with open(path / "runs" / table.cell_id[0] / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 99, "flops": 1')  # a run killed mid-write
    curves2, _ = load_curves(path, data.frame, "params_total")
    assert len(curves2) == 40 * len(table)


def test_backtest_parametric_predicts_held_out_budget():
    data = fit_data(isoflop_table(noise=0.001, seed=5, n_per_budget=11))
    bt = backtest(data, "parametric", holdout=1)
    assert bt["holdout_budgets"] == [3e19]
    assert bt["summary"]["n_test"] == 11
    assert bt["summary"]["rmse_log"] < 0.005  # the law extrapolates one budget (3x) to ~the noise
    bt2 = backtest(data, "isoflop", holdout=2)
    assert bt2["summary"]["n_test"] == 2
    assert bt2["summary"]["rmse_log"] < 0.1  # N_opt a decade beyond the fitted budgets, within 10%


def test_datablations_table_loads_with_unique_tokens():
    path = SHARED / "datablations_c4_losses_colpret.csv"
    if not path.exists():
        pytest.skip(f"datablations data not found at {path}")
    df = pd.read_csv(path)
    data = fit_data(
        df, n_col="num_params", d_col="token_num", c_col="flops", loss_col="openLM_loss", where="epochs == 1"
    )
    np.testing.assert_allclose(data.C, 6 * data.N * data.D, rtol=1e-3)
    U = df["token_num"] / df["epochs"]
    assert U.min() == pytest.approx(1e8) and (U.max() == pytest.approx(178e9, rel=0.01))
