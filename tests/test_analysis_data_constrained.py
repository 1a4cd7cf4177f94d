"""The data-constrained fit (Muennighoff et al. 2023): recovery of a known law, the published
datablations numbers, the read-out and the one-line errors."""

import json

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.fits.data_constrained import MUENNIGHOFF_C4_BASE, fit_data_constrained, worth_repeating
from analysis.laws import Chinchilla, DataConstrained
from lab.cli import main
from tests.conftest import SHARED_DATA

DATABLATIONS = SHARED_DATA / "datablations_c4_losses_colpret.csv"
# the runs kept for the reproduction (see README): the first 182 rows of the ColPret table (the
# paper's fit used 182 runs), without the diverged or tiny-data runs (loss >= 5)
KEEP = "openLM_loss < 5 and index < 182"


def _table(law: DataConstrained, seed=0) -> pd.DataFrame:
    """Runs of 4 sizes x 3 unique budgets x 6 epoch counts from `law`, with 0.3% loss noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for N in (1e7, 3e7, 1e8, 3e8):
        for U in (2e8, 1e9, 5e9):
            for ep in (1, 2, 4, 8, 16, 40):
                L = float(law(N, U * ep, U)) * (1 + 0.003 * rng.standard_normal())
                rows.append({"params": N, "tokens": U * ep, "epochs": ep, "loss": L})
    return pd.DataFrame(rows)


def test_recovers_a_known_law_with_the_base_held_fixed():
    base = Chinchilla(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.33)
    truth = DataConstrained(base, R_D_star=8.0, R_N_star=3.0)
    study = analysis.load(_table(truth), need_budget=False)
    fit = fit_data_constrained(study.data, base=base)
    assert fit.params["R_D_star"] == pytest.approx(8.0, rel=0.1)
    assert fit.params["R_N_star"] == pytest.approx(3.0, rel=0.25)
    assert np.max(np.abs(fit.residuals)) < 0.02


def test_fits_the_base_law_too_from_the_single_epoch_rows():
    base = Chinchilla(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.33)
    truth = DataConstrained(base, R_D_star=8.0, R_N_star=3.0)
    fit = analysis.fit(analysis.load(_table(truth, seed=1), need_budget=False), "data-constrained")
    assert fit.extra["free"] == "all 7"
    assert fit.params["R_D_star"] == pytest.approx(8.0, rel=0.3)
    assert fit.params["alpha"] == pytest.approx(0.34, abs=0.08)
    assert fit.objective < 1.5e-3 * len(fit.data)  # residuals near the 0.3% noise


def test_worth_repeating_read_out():
    w = worth_repeating(15.4)
    assert w["half_value_epochs"] == pytest.approx(1 + 15.4 * np.log(2))
    # D'/D at the near-fresh epoch count is 95% of fresh data
    e = w["near_fresh_epochs"]
    assert (1 + 15.4 * -np.expm1(-(e - 1) / 15.4)) / e == pytest.approx(0.95, abs=2e-4)


@pytest.mark.skipif(not DATABLATIONS.exists(), reason=f"published data not found at {DATABLATIONS}")
def test_reproduces_the_published_R_D_and_R_N(capsys):
    code = main(
        [
            "fit",
            str(DATABLATIONS),
            "--method",
            "data-constrained",
            "--base-law",
            "muennighoff-c4",
            "--where",
            KEEP,
            "--bootstrap",
            "40",
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["n_points"] == 157
    assert out["R_D_star"] == pytest.approx(15.4, abs=0.3)  # published 15.39 (their notebook: 15.387756)
    assert out["R_N_star"] == pytest.approx(5.3, abs=0.1)  # published 5.31 (5.309743)
    assert out["ci"]["R_D_star"]["lo"] < 15.4 < out["ci"]["R_D_star"]["hi"]
    assert out["ci"]["R_N_star"]["lo"] < 5.3 < out["ci"]["R_N_star"]["hi"]
    assert out["worth_repeating"]["near_fresh_epochs"] == pytest.approx(3.3, abs=0.2)


@pytest.mark.skipif(not DATABLATIONS.exists(), reason=f"published data not found at {DATABLATIONS}")
def test_plot_draws_loss_vs_epochs_as_figure_r(tmp_path, capsys):
    code = main(
        [
            "plot",
            str(DATABLATIONS),
            "--base-law",
            "muennighoff-c4",
            "--where",
            KEEP,
            "--figures",
            "r",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0 and (tmp_path / "data_constrained.png").stat().st_size > 0
    assert set(pd.read_csv(tmp_path / "data_constrained.csv").columns) >= {
        "N",
        "U",
        "epochs",
        "loss_fit",
        "loss_fresh",
    }


def test_a_table_without_epochs_or_unique_tokens_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "t.csv"
    pd.DataFrame({"params": [1e7, 2e7, 4e7], "tokens": [1e9, 2e9, 4e9], "loss": [3.0, 2.9, 2.8]}).to_csv(
        path, index=False
    )
    code = main(["fit", str(path), "--method", "data-constrained"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "needs a unique-tokens column" in err


def test_a_bad_base_law_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "t.csv"
    _table(DataConstrained(MUENNIGHOFF_C4_BASE)).to_csv(path, index=False)
    code = main(["fit", str(path), "--method", "data-constrained", "--base-law", "1,2,3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--base-law" in err and len(err.splitlines()) == 1


def test_an_unbounded_discount_is_no_discount_not_a_sawtooth():
    """R* far beyond the repetitions (a fit that finds no penalty): effective data and parameters
    equal the real ones, smoothly (1 - exp(-x) for x ~ 1e-16 had cancelled to steps of R* * 1.1e-16)."""
    base = Chinchilla(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.33)
    law = DataConstrained(base, R_D_star=1.26e16, R_N_star=1.26e16)
    N = np.geomspace(1e4, 1e5, 50)
    np.testing.assert_allclose(law.effective_params(N, np.full(50, 1e3)), N, rtol=1e-9)
    D = np.geomspace(1e5, 1e7, 50)
    np.testing.assert_allclose(law.effective_data(D, np.full(50, 1e5)), D, rtol=1e-9)


def test_a_floor_at_its_bound_is_flagged():
    base = Chinchilla(E=1e-3, A=400.0, B=1500.0, alpha=0.34, beta=0.33)
    fit = analysis.fit(
        analysis.load(_table(DataConstrained(base, R_D_star=8.0, R_N_star=3.0), seed=2), need_budget=False),
        "data-constrained",
    )
    assert any("near its bound 0" in w for w in fit.warnings)
    honest = analysis.fit(
        analysis.load(
            _table(
                DataConstrained(
                    Chinchilla(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.33), R_D_star=8.0, R_N_star=3.0
                ),
                seed=1,
            ),
            need_budget=False,
        ),
        "data-constrained",
    )
    assert not any("near its bound" in w for w in honest.warnings)
