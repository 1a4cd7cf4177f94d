"""The post-training-quantization damage law: recovery of known exponents, dropped runs, the figure."""

import numpy as np
import pandas as pd
import pytest

from analysis.errors import AnalysisError
from analysis.fits.ptq import fit_ptq
from analysis.table import fit_data
from lab.cli import main


def table(noise=0.02, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for N in (3e4, 1e5, 3e5):
        for D in (2.6e5, 5.2e5, 1e6, 2e6):
            L = 1.0 + 30 / N**0.3 + 20 / D**0.3
            d4 = 2e-3 * D**0.5 / N**0.4 * np.exp(rng.normal(0, noise))
            d8 = 1e-4 * D**0.3 / N**0.3 * np.exp(rng.normal(0, noise))
            rows.append(
                {
                    "params_total": N,
                    "tokens": D,
                    "flops_exact": 6 * N * D,
                    "final_val_loss": L,
                    "val_loss_int4": L + d4,
                    "val_loss_int8": L + d8,
                    "val_loss_bf16": L,
                    "status": "completed",
                }
            )
    return pd.DataFrame(rows)


def test_recovers_known_damage_exponents_per_format():
    fit = fit_ptq(fit_data(table()), n_boot=50)
    p = fit.params
    assert p["gamma_D_int4"] == pytest.approx(0.5, abs=0.05) and p["gamma_N_int4"] == pytest.approx(0.4, abs=0.05)
    assert p["gamma_D_int8"] == pytest.approx(0.3, abs=0.05) and p["gamma_N_int8"] == pytest.approx(0.3, abs=0.05)
    assert fit.ci["gamma_D_int4"]["lo"] < 0.5 < fit.ci["gamma_D_int4"]["hi"]
    assert "gamma_D_bf16" not in p  # bf16 lost nothing: no magnitude to fit
    assert any(w.startswith("bf16:") for w in fit.warnings)


def test_runs_without_damage_are_left_out_and_said():
    t = table()
    t.loc[:2, "val_loss_int8"] = t.loc[:2, "final_val_loss"] - 1e-4
    fit = fit_ptq(fit_data(t), n_boot=0)
    assert fit.extra["runs_per_format"]["int8"] == len(t) - 3
    assert any("3 of 12 runs lost nothing" in w for w in fit.warnings)


def test_a_table_without_quantized_losses_is_one_error(tmp_path, capsys):
    with pytest.raises(AnalysisError, match="no val_loss_int8"):
        fit_ptq(fit_data(table().drop(columns=["val_loss_int4", "val_loss_int8", "val_loss_bf16"])))
    path = tmp_path / "r.csv"
    table().to_csv(path, index=False)
    assert main(["fit", str(path), "--method", "ptq"]) == 0
    assert "int4: damage =" in capsys.readouterr().out
    assert main(["plot", str(path), "--figures", "q", "--out", str(tmp_path / "f")]) == 0
    bits = pd.read_csv(tmp_path / "f" / "ptq.csv")
    assert sorted(bits.bits.unique()) == [4, 8, 16, 32] and len(bits) == 12
