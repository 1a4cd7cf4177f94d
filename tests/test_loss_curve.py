"""The schedule-aware loss-curve law (Tissue et al. 2024): areas, recovery of a known law from
constant + cosine curves, prediction of a held-out WSD curve, the CLI on a study directory."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis.fits.loss_curve import areas, fit_study, predict
from lab.cli import main

LAW = {"L0": 1.2, "A": 0.9, "alpha": 0.45, "C": 0.8, "lam": 0.995}
STEPS, PEAK, WARM = 1200, 3e-3, 30


def _eta(schedule: str) -> np.ndarray:
    s = np.arange(STEPS, dtype=float)
    warm = PEAK * np.minimum(1.0, (s + 1) / WARM)
    if schedule == "constant":
        after = np.full_like(s, PEAK)
    elif schedule == "cosine":
        after = 0.1 * PEAK + 0.9 * PEAK * 0.5 * (
            1 + np.cos(np.pi * np.clip((s - WARM) / (STEPS - 1 - WARM), 0, 1))
        )
    else:  # wsd, 20% linear cooldown to 10%
        start = round(0.8 * STEPS)
        after = PEAK + (0.1 * PEAK - PEAK) * np.clip((s - start) / (STEPS - 1 - start), 0, 1)
    return np.where(s < WARM, warm, after)


def _write_run(root, name, schedule, params=33088, noise=0.0, seed=0):
    d = root / name
    d.mkdir(parents=True)
    eta = _eta(schedule)
    loss = predict(LAW, eta) + noise * np.random.default_rng(seed).standard_normal(STEPS)
    lines = [
        json.dumps(
            {
                "step": int(s),
                "tokens": int(s) * 1024,
                "flops": float(s) * 1e8,
                "train_loss": float(loss[s]),
                "lr": float(eta[s]),
            }
        )
        for s in range(8, STEPS, 8)
    ] + [
        json.dumps(
            {
                "step": STEPS - 1,
                "tokens": (STEPS - 1) * 1024,
                "flops": (STEPS - 1) * 1e8,
                "train_loss": float(loss[-1]),
                "lr": float(eta[-1]),
            }
        )
    ]
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (d / "config.json").write_text(json.dumps({"train": {"schedule": schedule, "warmup_steps": WARM}}))
    (d / "result.json").write_text(
        json.dumps(
            {
                "params_total": params,
                "tokens": STEPS * 1024,
                "final_val_loss": 2.0,
                "flops_exact": STEPS * 1e8,
                "status": "completed",
            }
        )
    )
    return d


def test_areas_follow_their_definition():
    eta = np.array([1.0, 1.0, 0.5, 0.25, 0.25])
    S1, S2 = areas(eta, np.array([0.5]))
    np.testing.assert_allclose(S1, [1, 2, 2.5, 2.75, 3.0])
    m = [0.0, 0.0, 0.5, 0.5 * 0.5 + 0.25, (0.5 * 0.5 + 0.25) * 0.5]  # m_i = lam m_{i-1} + eta_{i-1} - eta_i
    np.testing.assert_allclose(S2[0], np.cumsum(m))


def test_constant_and_cosine_predict_wsd(tmp_path):
    for schedule in ("constant", "cosine", "wsd"):
        _write_run(tmp_path, f"d32-{schedule}", schedule, noise=0.002, seed=len(schedule))
    out = fit_study(tmp_path)
    (size,) = out["sizes"]
    assert sorted(size["fitted"]) == ["d32-constant (constant)", "d32-cosine (cosine)"]
    assert size["law"]["alpha"] == pytest.approx(LAW["alpha"], rel=0.15)
    (p,) = size["predicted"]
    assert p["name"] == "d32-wsd" and abs(p["rel_error"]) < 0.01  # the final loss of the unseen schedule
    assert p["curve_rmse"] < 0.01


def test_lab_fit_loss_curve_on_a_study_directory(tmp_path, capsys):
    for schedule in ("constant", "cosine", "wsd"):
        _write_run(tmp_path, f"d32-{schedule}", schedule)
    rows = [
        {
            "cell_id": f"d32-{s}",
            "params_total": 33088,
            "tokens": STEPS * 1024,
            "final_val_loss": 2.0,
            "schedule": s,
        }
        for s in ("constant", "cosine", "wsd")
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    assert main(["fit", str(tmp_path), "--method", "loss-curve", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["method"] == "loss-curve" and out["max_abs_rel_error_final"] < 1e-3  # noiseless: near exact
    assert main(["fit", str(tmp_path / "results.csv"), "--method", "loss-curve"]) == 2
    assert "give a study directory" in capsys.readouterr().err
