"""Logged points as N-D law data (`--curve-points`): each point is the loss-curve law's prediction
of a cooldown ending there, on the table's loss scale; runs carry their points through budgets,
back-tests and the bootstrap."""

import json

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.curves import branch_schedule
from analysis.errors import AnalysisError
from analysis.fits.loss_curve import predict
from analysis.table import resample_counts
from lab.cli import main

PEAK, WARM, OFFSET = 3e-3, 20, 0.3
SIZES = {
    1e4: {"L0": 1.5, "A": 1.0, "alpha": 0.4, "C": 0.8, "lam": 0.995},
    3e4: {"L0": 1.3, "A": 1.0, "alpha": 0.4, "C": 0.8, "lam": 0.995},
    9e4: {"L0": 1.15, "A": 1.0, "alpha": 0.4, "C": 0.8, "lam": 0.995},
}


def _eta(schedule, steps):
    s = np.arange(steps + 1, dtype=float)
    warm = PEAK * np.minimum(1.0, (s + 1) / WARM)
    after = np.full_like(s, PEAK)
    if schedule == "wsd":
        after = branch_schedule(after, steps, 0.2, 0.1 * PEAK)
    return np.where(s < WARM, warm, after)


def _write(root, n, schedule, steps, rows, variant=""):
    name = f"n{int(n)}-{schedule}-{steps}{variant}"
    d = root / "runs" / name
    d.mkdir(parents=True)
    eta = _eta(schedule, steps)
    law = dict(SIZES[n], A=2.0, C=0.3) if variant else SIZES[n]
    loss = predict(law, eta)
    log = [
        {"step": int(s), "tokens": int(s) * 512, "train_loss": float(loss[s]), "lr": float(eta[s])}
        for s in range(4, steps + 1, 4)
    ]
    (d / "metrics.jsonl").write_text("\n".join(map(json.dumps, log)) + "\n")
    (d / "config.json").write_text(json.dumps({"train": {"schedule": schedule, "lr": PEAK, "min_lr_ratio": 0.1}}))
    (d / "result.json").write_text(json.dumps({"warmup_steps": WARM}))
    rows.append(
        {
            "run_id": name,
            "status": "completed",
            "params_total": n,
            "tokens": steps * 512,
            "flops_exact": 6 * n * steps * 512,
            "budget_flops": 6 * n * steps * 512,
            "final_val_loss": float(loss[steps]) + OFFSET,
            "variant": variant or "base",
        }
    )


@pytest.fixture()
def study(tmp_path):
    rows = []
    for n in SIZES:
        for steps in (400, 800):
            _write(tmp_path, n, "wsd", steps, rows)
        _write(tmp_path, n, "constant", 800, rows)
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    return tmp_path


def test_branch_schedule_cools_the_last_fifth_down_to_the_floor():
    eta = np.full(101, 1.0)
    out = branch_schedule(eta, 100, 0.2, 0.1)
    assert out[:81].tolist() == [1.0] * 81 and out[100] == pytest.approx(0.1) and out[90] == pytest.approx(0.55)


def test_a_curve_point_is_the_loss_a_cooldown_there_would_reach(study):
    s = analysis.load(study, curve_points=6, need_budget=False)
    frame = s.data.frame
    pts = frame[frame["source"] == "curve-law"]
    assert len(frame[frame["source"] == "run"]) == 9 and 0 < len(pts) <= 9 * 6
    for _, p in pts[pts["curve_of"].str.contains("constant")].iterrows():
        n, step = p["params_total"], int(p["curve_step"])
        truth = predict(SIZES[n], _eta("wsd", step))[step] + OFFSET  # a real WSD run ending at that step
        assert p["final_val_loss"] == pytest.approx(truth, abs=2e-3)
        assert p["tokens"] == step * 512 and p["flops_exact"] == pytest.approx(6 * n * step * 512)


def test_curve_points_keep_their_runs_budget_and_stay_out_of_back_test_scores(study):
    s = analysis.load(study, curve_points=4)
    frame, budget = s.data.frame, s.data.budget
    runs = frame["source"] == "run"
    for i in np.flatnonzero(~runs.to_numpy()):
        assert budget[i] == budget[int(frame["curve_row"].iloc[i])]
    bt = analysis.backtest(s.data, "parametric", holdout=1)
    assert len(bt["points"]) == 2  # only the two runs of the largest budget are scored, not their curve points
    with pytest.raises(AnalysisError, match="parametric or vpnls"):
        analysis.fit(s, "isoflop")


def test_variants_of_one_size_get_their_own_curve_law(tmp_path):
    rows = []
    for variant in ("", "-wide"):  # same N, curves of different shapes
        for steps in (400, 800):
            _write(tmp_path, 1e4, "wsd", steps, rows, variant)
        _write(tmp_path, 1e4, "constant", 800, rows, variant)
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    frame = analysis.load(tmp_path, curve_points=4, need_budget=False).data.frame
    pts = frame[frame["source"] == "curve-law"]
    for _, p in pts.iterrows():
        step, wide = int(p["curve_step"]), p["curve_of"].endswith("-wide")
        truth = predict(dict(SIZES[1e4], A=2.0, C=0.3) if wide else SIZES[1e4], _eta("wsd", step))[step] + OFFSET
        assert p["final_val_loss"] == pytest.approx(truth, abs=5e-3)


def test_the_bootstrap_draws_runs_with_their_points(study):
    s = analysis.load(study, curve_points=4, need_budget=False)
    counts = resample_counts(np.random.default_rng(0), s.data, 50)
    rows = s.data.frame["curve_row"].to_numpy()
    points = np.flatnonzero(s.data.frame["source"].to_numpy() == "curve-law")
    np.testing.assert_array_equal(counts[:, points], counts[:, rows[points].astype(int)])
    assert (counts[:, s.data.frame["source"].to_numpy() == "run"].sum(1) == 9).all()


def test_lab_fit_curve_points_from_the_cli(study, capsys):
    assert main(["fit", str(study), "--method", "vpnls", "--curve-points", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_points"] > 9
    assert main(["fit", str(study / "results.csv"), "--method", "parametric", "--curve-points", "4"]) == 2
    assert "give a study directory" in capsys.readouterr().err
