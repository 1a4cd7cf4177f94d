"""A schedule-aware loss-curve law: Tissue et al. (2024), "Scaling Law with Learning Rate Annealing".

    L(s) = L0 + A * S1(s)^-alpha - C * S2(s)
    S1(s) = sum_{i<=s} eta_i                        (forward area: the learning rate summed)
    S2(s) = sum_{i<=s} m_i,  m_i = lam * m_{i-1} + max(eta_{i-1} - eta_i, 0)   (annealing area, with momentum;
            the warmup's rise does not count as negative annealing)

Why this law and not the multi-power law of Luo et al. (2025): it has four parameters plus the
momentum lam (the multi-power law has seven), three of them (L0, A, C) enter linearly, so the fit
is the same variable projection as `--method vpnls` — exact NNLS for (L0, A, C) >= 0 on a grid
of (alpha, lam), then zoomed — and a constant and a cosine curve of one model identify it.

The curves come from the runs' metrics.jsonl (train_loss and lr at every logged step); the
learning rate between logged steps is interpolated linearly (the lab's schedules are linear or a
cosine between log points). Each model size is fitted on its own runs; runs of the held-out
schedule (default: wsd, when others exist) are predicted and their final-loss error reported.

    from analysis.fits.loss_curve import fit_study
    out = fit_study("runs/schedule_law_cpu")     # per size: law, predictions, final-loss errors
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..solvers.varpro import nnls3

ALPHAS = np.linspace(0.02, 2.0, 100)
LAMBDAS = 1.0 - np.geomspace(1e-4, 0.3, 40)  # momentum decay per step
MIN_LR_RATIO = 0.1  # the lab's default train.min_lr_ratio, for runs whose config does not say
SKIP_FRAC = 0.05  # early points (warmup, the first few percent of steps) are not fitted


def read_records(path) -> tuple[list[dict], str | None]:
    """The JSON objects of a metrics.jsonl, one per line, and a one-line warning naming the lines
    that are not (None when every line is). A last line without its newline is a write cut off by
    a kill, expected and skipped without a warning; a complete line that is not a JSON object is
    damage the reader should hear of."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    records, bad = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            records.append(rec)
        elif i < len(lines):  # the last element has no newline after it: a torn write, not damage
            bad.append(i)
    if not bad:
        return records, None
    where = ", ".join(map(str, bad[:3])) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
    return records, f"{path}: skipped {len(bad)} line(s) that are not JSON objects (line {where})"


def read_run(run_dir) -> dict:
    """One run's curve: {"name", "steps", "loss", "lr" (logged steps), "eta" (every step), "schedule",
    "params", "floor" (the rate its cooldowns end at: lr x min_lr_ratio from its config), "warning"
    (skipped lines of its metrics.jsonl, or None)}."""
    run_dir = Path(run_dir)
    rows = []
    records, warning = read_records(run_dir / "metrics.jsonl")
    for rec in records:
        if rec.get("train_loss") is not None and rec.get("lr") is not None:
            rows.append((int(rec["step"]), float(rec["train_loss"]), float(rec["lr"])))
    if len(rows) < 4:
        raise AnalysisError(f"{run_dir}: fewer than 4 logged points with train_loss and lr in metrics.jsonl")
    steps, loss, lr = (np.array(v) for v in zip(*sorted(set(rows))))
    cfg = _read_json(run_dir / "config.json")
    result = _read_json(run_dir / "result.json")
    last = int(steps[-1])
    eta = np.interp(np.arange(last + 1), steps, lr)
    train = cfg.get("train", {}) if isinstance(cfg, dict) else {}
    floor = float(train.get("lr") or np.max(eta)) * float(train.get("min_lr_ratio", MIN_LR_RATIO))
    return {
        "name": run_dir.name,
        "steps": steps,
        "loss": loss,
        "lr": lr,
        "eta": eta,
        "floor": floor,
        "schedule": cfg.get("train", {}).get("schedule", "?"),
        "warmup": int(result.get("warmup_steps") or cfg.get("train", {}).get("warmup_steps") or 0),
        "params": result.get("params_total") or cfg.get("model", {}).get("d_model"),
        "warning": warning,
    }


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def areas(eta: np.ndarray, lams: np.ndarray):
    """S1 (n_steps,) and S2 (len(lams), n_steps) of a per-step learning-rate sequence."""
    S1 = np.cumsum(eta)
    drop = np.concatenate([[0.0], np.maximum(eta[:-1] - eta[1:], 0.0)])  # annealing only: warmup's rise is not
    m = np.zeros((len(lams), len(eta)))
    acc = np.zeros(len(lams))
    for i, d in enumerate(drop):  # m_i = lam m_{i-1} + (eta_{i-1} - eta_i)
        acc = lams * acc + d
        m[:, i] = acc
    return S1, np.cumsum(m, axis=1)


def _fit_points(run) -> np.ndarray:
    start = max(run["warmup"], int(SKIP_FRAC * run["steps"][-1]))
    return run["steps"] >= max(start, 1)


def _profile(runs, alphas, lams):
    """Projected objective over alphas x lams with (L0, A, C) >= 0 exact; (f, coefficients)."""
    cols, y = [], []
    for run in runs:
        S1, S2 = areas(run["eta"], lams)
        pick = run["steps"][_fit_points(run)]
        x = S1[pick][None, :] ** -alphas[:, None]  # (na, n)
        cols.append((x, -S2[:, pick]))
        y.append(run["loss"][_fit_points(run)])
    x = np.concatenate([c[0] for c in cols], 1)
    z = np.concatenate([c[1] for c in cols], 1)
    y = np.concatenate(y)
    ones = np.ones_like(y)
    G = np.empty((len(alphas), len(lams), 3, 3))
    G[..., 0, 0] = len(y)
    G[..., 0, 1] = G[..., 1, 0] = x.sum(1)[:, None]
    G[..., 0, 2] = G[..., 2, 0] = z.sum(1)[None, :]
    G[..., 1, 1] = (x * x).sum(1)[:, None]
    G[..., 2, 2] = (z * z).sum(1)[None, :]
    G[..., 1, 2] = G[..., 2, 1] = x @ z.T
    r = np.stack(np.broadcast_arrays((ones @ y), (x @ y)[:, None], (z @ y)[None, :]), -1)
    c, f = nnls3(G, r, float(y @ y))
    return np.maximum(f, 0.0) / len(y), c


def fit_law(runs, zoom: int = 8) -> dict:
    """Fit (L0, A, alpha, C, lam) to the logged curves of `runs` (same model). Returns the law's
    parameters and the fit's mean squared error over the fitted points."""
    alphas, lams = ALPHAS, LAMBDAS
    for _level in range(zoom):
        f, c = _profile(runs, alphas, lams)
        i, j = np.unravel_index(np.argmin(f), f.shape)
        a, lam = alphas[i], lams[j]
        da = (alphas[1] - alphas[0]) if len(alphas) > 1 else 0.01
        q = np.log(1 - lams)
        dq = abs(q[1] - q[0]) if len(q) > 1 else 0.1
        alphas = np.clip(np.linspace(a - da, a + da, 9), 1e-4, None)
        lams = 1 - np.exp(
            np.clip(np.linspace(np.log(1 - lam) - dq, np.log(1 - lam) + dq, 9), np.log(1e-6), np.log(0.9))
        )
    L0, A, C = c[i, j]
    return {
        "L0": float(L0),
        "A": float(A),
        "alpha": float(a),
        "C": float(C),
        "lam": float(lam),
        "mse": float(f[i, j]),
        "n_points": int(sum(_fit_points(r).sum() for r in runs)),
    }


def predict(law: dict, eta: np.ndarray) -> np.ndarray:
    """The law's loss at every step of a learning-rate sequence."""
    S1, S2 = areas(eta, np.array([law["lam"]]))
    return law["L0"] + law["A"] * np.maximum(S1, 1e-30) ** -law["alpha"] - law["C"] * S2[0]


def _rmse(curve, run) -> float:
    """Root-mean-square error of a predicted curve over the run's logged points past the early phase."""
    keep = _fit_points(run)
    return float(np.sqrt(np.mean((curve[run["steps"][keep]] - run["loss"][keep]) ** 2)))


def fit_study(study_dir, holdout: str = "wsd") -> dict:
    """Per model size: the law fitted on the runs whose schedule is not `holdout`, each held-out
    run predicted (final-loss error = predicted - logged final train loss; curve rmse over the
    points past the early phase). Returns
    {"sizes": [{params, law, fitted,
                predicted: [{name, schedule, final_loss, predicted_final, error, rel_error}]}]}."""
    dirs = sorted(p.parent for p in Path(study_dir).glob("**/metrics.jsonl"))
    if not dirs:
        raise AnalysisError(f"no runs with metrics.jsonl under {study_dir}")
    runs = [read_run(d) for d in dirs]
    sizes = []
    for params in sorted({r["params"] for r in runs}, key=lambda v: float(v or 0)):
        group = [r for r in runs if r["params"] == params]
        train = [r for r in group if r["schedule"] != holdout] or group
        held = [r for r in group if r["schedule"] == holdout and r not in train]
        law = fit_law(train)
        preds = []
        for r in held:
            curve = predict(law, r["eta"])
            final, pred = float(r["loss"][-1]), float(curve[r["steps"][-1]])
            preds.append(
                {
                    "name": r["name"],
                    "schedule": r["schedule"],
                    "final_loss": final,
                    "predicted_final": pred,
                    "error": pred - final,
                    "rel_error": (pred - final) / final,
                    "curve_rmse": _rmse(curve, r),
                }
            )
        sizes.append(
            {
                "params": params,
                "law": law,
                "fitted": [f"{r['name']} ({r['schedule']})" for r in train],
                "predicted": preds,
            }
        )
    return {"sizes": sizes, "holdout": holdout, "warnings": [r["warning"] for r in runs if r["warning"]]}


def curves_table(study_dir, result: dict) -> pd.DataFrame:
    """Logged and predicted loss of every run, for figures: run, schedule, step, loss, law."""
    laws = {s["params"]: s["law"] for s in result["sizes"]}
    rows = []
    for d in sorted(p.parent for p in Path(study_dir).glob("**/metrics.jsonl")):
        r = read_run(d)
        curve = predict(laws[r["params"]], r["eta"])
        rows.append(
            pd.DataFrame(
                {
                    "run": r["name"],
                    "schedule": r["schedule"],
                    "params": r["params"],
                    "step": r["steps"],
                    "loss": r["loss"],
                    "law": curve[r["steps"]],
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def fit_loss_curve(data, study_dir: str | None = None, holdout: str = "wsd", **_):
    """The registry's `loss-curve` method: `fit_study` on the study directory of `data`'s table,
    as a FitResult whose rows are the held-out runs (residual = log final loss - log predicted)."""
    from ..result import FitResult

    if not study_dir or not Path(study_dir).is_dir():
        raise AnalysisError(
            "the loss-curve law reads the runs' metrics.jsonl: give a study directory, not a CSV "
            "(from Python: analysis.fits.loss_curve.fit_study(DIR))"
        )
    res = fit_study(study_dir, holdout)
    held = [dict(p, params=s["params"]) for s in res["sizes"] for p in s["predicted"]]
    frame = pd.DataFrame(
        held,
        columns=[
            "name",
            "schedule",
            "params",
            "final_loss",
            "predicted_final",
            "error",
            "rel_error",
            "curve_rmse",
        ],
    )
    rel = frame["rel_error"].to_numpy(float)
    params = {
        "mean_abs_rel_error_final": float(np.mean(np.abs(rel))) if len(rel) else None,
        "max_abs_rel_error_final": float(np.max(np.abs(rel))) if len(rel) else None,
        "n_sizes": len(res["sizes"]),
    }
    for s in res["sizes"]:
        params.update(
            {f"{k}@{s['params']}": v for k, v in s["law"].items() if k in ("L0", "A", "alpha", "C", "lam")}
        )
    resid = np.log(frame["final_loss"].to_numpy(float)) - np.log(frame["predicted_final"].to_numpy(float))
    return FitResult(
        method="loss-curve",
        params=params,
        objective=float(np.mean([s["law"]["mse"] for s in res["sizes"]])),
        residuals=resid,
        data=frame,
        warnings=list(res["warnings"]),
        extra={
            "objective_convention": "mean squared error of the fitted logged points",
            "sizes": res["sizes"],
            "holdout": holdout,
            "n_points": len(frame),
        },
    )


def summary(fit) -> list[str]:
    lines = []
    for s in fit.extra["sizes"]:
        law = s["law"]
        lines.append(
            f"  N={s['params']}: L(s) = {law['L0']:.4f} + {law['A']:.4g}*S1^-{law['alpha']:.4f} - "
            f"{law['C']:.4g}*S2 (lam {law['lam']:.5f}; rmse {law['mse'] ** 0.5:.4f} on {law['n_points']} points "
            f"of {', '.join(s['fitted'])})"
        )
        for p in s["predicted"]:
            lines.append(
                f"    held out {p['name']} ({p['schedule']}): final loss predicted {p['predicted_final']:.4f}, "
                f"logged {p['final_loss']:.4f} ({p['rel_error']:+.2%}); curve rmse {p['curve_rmse']:.4f}"
            )
    if fit.params["mean_abs_rel_error_final"] is not None:
        lines.append(
            f"  final-loss error of the held-out {fit.extra['holdout']} runs: mean |rel| "
            f"{fit.params['mean_abs_rel_error_final']:.2%}, max {fit.params['max_abs_rel_error_final']:.2%}"
        )
    return lines


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "loss-curve"
DESCRIPTION = (
    "Tissue et al.'s schedule-aware curve L(s) = L0 + A*S1^-alpha - C*S2 per size, fitted on the "
    "logged curves, WSD runs held out and predicted (needs a study directory)"
)
SUITE_BOOTSTRAP = False
COLUMNS = ("schedule",)
VARIES = True


def fit(data, curves, **kw):
    return fit_loss_curve(data, **kw)


def options(o) -> dict:
    return {"study_dir": o.study_dir}
