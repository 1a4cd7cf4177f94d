"""Training curves: read a study's `metrics.jsonl` files into one long table.

A study directory holds `results.csv` and one directory per run containing `metrics.jsonl`, whose
lines look like {"step", "tokens", "flops", "train_loss", ...} or eval lines
{"step", "tokens", "flops", "val_loss", "val_bits_per_byte"}. The long table has one row per
logged point: run_id, N, flops, tokens, loss.

Every logged point of every training curve as data for the N-D law, via the schedule-aware law
(`curve_point_rows`, `--curve-points`).

A run logged at step s has not been annealed there, so its loss at s is not what a run of D_s
tokens would reach. The loss-curve law (`analysis.fits.loss_curve`, Tissue et al. 2024), fitted on the
curves of each model size (and study variant), predicts what it would have reached: the run's own
learning rates up to s0 = (1 - f) s, then a linear cooldown to the run's floor (peak *
min_lr_ratio) over the last fraction f — a WSD branch ending at s (`branch_loss`). Each such
prediction becomes a row (N, D_s, C_s, loss).

The law is fitted on train loss; the table's loss is usually the final validation loss. Each
run's points are put on the table's scale by one offset: the table's final loss of that run minus
the law's prediction of the run's own final step (so the run's own end point is reproduced
exactly, and its curve points keep the law's shape); the points come from the second half of each
run, where that calibration holds best and the run is past its warmup transients. Rows carry
`source` = "curve-law" (the runs' own rows are "run"), `curve_of` (the run), `curve_step` and
`curve_row` (the run's index in the table).

    from analysis.curves import curve_point_rows
    extra = curve_point_rows("runs/x", table, columns, per_run=8)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AnalysisError
from .fits.loss_curve import _fit_points, fit_law, predict, read_records, read_run


def read_metrics(path: Path, loss_key: str, warnings: list | None = None) -> pd.DataFrame:
    """The logged points of `loss_key` in a metrics.jsonl; a line that is not JSON is skipped and,
    given a `warnings` list, named there in one line."""
    try:
        records, warning = read_records(path)
    except UnicodeDecodeError as e:
        raise AnalysisError(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if warning and warnings is not None and warning not in warnings:
        warnings.append(warning)
    rows = [
        {
            "flops": rec["flops"],
            "tokens": rec.get("tokens", np.nan),
            "loss": rec[loss_key],
            "step": rec.get("step", np.nan),
        }
        for rec in records
        if rec.get(loss_key) is not None and "flops" in rec
    ]
    return pd.DataFrame(rows, columns=["flops", "tokens", "loss", "step"])


def load_curves(
    study_dir, results: pd.DataFrame, n_col: str, loss_key: str | None = None, smooth: int | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Curves of every run in `results` that has a `metrics.jsonl` under `study_dir`, in a directory
    named by the row's cell_id (a `lab study` lays runs out as DIR/runs/CELL/) or its run_id.

    `loss_key` defaults to "train_loss" (Chinchilla's approach 1 used training loss) and falls
    back to "val_loss". `smooth` > 1 applies a centred rolling mean over that many logged points;
    None (default) smooths training loss over 5% of each run's points and leaves eval loss alone.
    Returns (long table with run_id = the matched directory name, warnings).
    """
    study_dir = Path(study_dir)
    keys = [c for c in ("cell_id", "run_id") if c in results.columns]
    if not keys:
        raise AnalysisError("the results table has no cell_id or run_id column to match run directories")
    files = {p.parent.name: p for p in study_dir.glob("**/metrics.jsonl")}
    warnings, parts = [], []
    loss_keys = [loss_key] if loss_key else ["train_loss", "val_loss"]
    missing = 0
    for _, row in results.iterrows():
        name = next((str(row[k]) for k in keys if str(row[k]) in files), None)
        if name is None:
            missing += 1
            continue
        try:
            for key in loss_keys:
                c = read_metrics(files[name], key, warnings)
                if len(c):
                    break
        except AnalysisError as e:  # one unreadable file costs that run's curve, not the study's
            warnings.append(f"{e}; run left out of the curves")
            continue
        if not len(c):
            continue
        c = c.sort_values("flops")
        c = c[(c["flops"] > 0) & (c["loss"] > 0) & np.isfinite(c["loss"])]
        window = (max(1, round(0.05 * len(c))) if key == "train_loss" else 1) if smooth is None else smooth
        if window > 1 and len(c) > window:
            c["loss"] = c["loss"].rolling(window, center=True, min_periods=1).mean()
        c.insert(0, "run_id", name)
        c.insert(1, "N", float(row[n_col]))
        parts.append(c)
    if missing:
        warnings.append(f"{missing} run(s) in the table have no metrics.jsonl under {study_dir}")
    if not parts:
        raise AnalysisError(
            f"no training curves found under {study_dir} (looked for <cell_id or run_id>/metrics.jsonl)"
        )
    return pd.concat(parts, ignore_index=True), warnings


def final_points_as_curves(N, C, L, D=None) -> pd.DataFrame:
    """A results table seen as one-point curves (for envelopes of tables without metrics)."""
    D = np.full(len(N), np.nan) if D is None else D
    return pd.DataFrame({"run_id": np.arange(len(N)), "N": N, "flops": C, "tokens": D, "loss": L, "step": np.nan})


# Curve points: the loss-curve law's prediction of a cooldown ending at each logged step

COOLDOWN_FRAC = 0.2  # the lab's default WSD decay fraction (train.decay_frac)
MIN_FRAC = 0.5  # points from the second half of each run: near the end point that calibrates them


def branch_schedule(eta: np.ndarray, end: int, cooldown_frac: float, floor: float) -> np.ndarray:
    """Learning rates of a run cooled down to end at step `end`: its own rates before
    s0 = round((1 - f) end), then linear from eta[s0] to `floor` at `end`."""
    s0 = min(int(round((1.0 - cooldown_frac) * end)), end)
    out = np.array(eta[: end + 1], dtype=float)
    n = end - s0
    if n > 0:
        out[s0:] = eta[s0] + (floor - eta[s0]) * np.arange(n + 1) / n
    return out


def branch_loss(law: dict, run: dict, step: int, cooldown_frac: float = COOLDOWN_FRAC) -> float:
    """The law's loss for `run` (`loss_curve.read_run`) cooled down to end at `step`."""
    return float(predict(law, branch_schedule(run["eta"], step, cooldown_frac, run["floor"]))[step])


def _row_of(table: pd.DataFrame, name: str):
    for col in ("run_id", "cell_id", "name"):
        if col in table.columns:
            hit = table.index[table[col].astype(str) == name]
            if len(hit) == 1:
                return hit[0]
    return None


def _model_of(table: pd.DataFrame, i, ncol: str) -> tuple:
    """What one curve law is fitted for: a model size, and its study variant where the table has one."""
    variant = str(table.at[i, "variant"]) if "variant" in table.columns else ""
    return float(table.at[i, ncol]), variant


def _pick_steps(run, per_run: int, min_frac: float) -> np.ndarray:
    """Up to `per_run` logged steps, log-spaced from `min_frac` of the run to its end, the last step
    excluded (the run's own row already holds it)."""
    steps = run["steps"][_fit_points(run)]
    steps = steps[(steps < run["steps"][-1]) & (steps >= min_frac * run["steps"][-1])]
    if len(steps) <= per_run:
        return steps
    targets = np.geomspace(steps[0], steps[-1], per_run)
    return np.unique(steps[np.searchsorted(steps, targets).clip(0, len(steps) - 1)])


def curve_point_rows(
    study_dir,
    table: pd.DataFrame,
    columns: dict,
    per_run: int = 8,
    cooldown_frac: float = COOLDOWN_FRAC,
    min_frac: float = MIN_FRAC,
) -> pd.DataFrame:
    """Rows (in `table`'s N, D, C and loss columns, `columns` as in `FitData.columns`) predicted by
    each size's loss-curve law at up to `per_run` logged steps of every run of `table`, from
    `min_frac` of each run to its end."""
    runs = {}
    for d in sorted(p.parent for p in Path(study_dir).glob("**/metrics.jsonl")):
        idx = _row_of(table, d.name)
        if idx is not None:
            runs[d] = (idx, read_run(d))
    if not runs:
        raise AnalysisError(
            f"--curve-points: no run under {study_dir} has both metrics.jsonl and a row in the table"
        )
    ncol, dcol, ccol, lcol = (columns[k] for k in ("N", "D", "C", "loss"))
    if dcol not in table.columns or ccol not in table.columns:
        raise AnalysisError("--curve-points needs the table's own tokens and FLOPs columns (D and C)")
    rows, laws = [], {}
    for key in sorted({_model_of(table, i, ncol) for i, _ in runs.values()}):
        group = [(d, i, r) for d, (i, r) in runs.items() if _model_of(table, i, ncol) == key]
        laws[key] = law = fit_law([r for _, _, r in group])
        for _, i, run in group:
            rows += _run_points(table.loc[i], run, law, per_run, cooldown_frac, min_frac, columns)
    if not rows:
        raise AnalysisError(
            "--curve-points: no run logged a point in the second half of its training beyond warmup"
        )
    out = pd.DataFrame(rows)
    out.attrs["laws"] = laws  # per size: the loss-curve law the points come from (its "mse" says how well it fits)
    return out


def _run_points(row, run, law, per_run, cooldown_frac, min_frac, columns) -> list[dict]:
    ncol, dcol, ccol, lcol = (columns[k] for k in ("N", "D", "C", "loss"))
    last = int(run["steps"][-1])
    D, C = float(row[dcol]), float(row[ccol])
    offset = float(row[lcol]) - float(predict(law, run["eta"])[last])
    out = []
    for s in _pick_steps(run, per_run, min_frac):
        s = int(s)
        loss = branch_loss(law, run, s, cooldown_frac) + offset
        out.append(
            {
                ncol: float(row[ncol]),
                dcol: D * s / last,
                ccol: C * s / last,
                lcol: loss,
                "source": "curve-law",
                "curve_of": run["name"],
                "curve_step": s,
                "curve_row": row.name,
            }
        )
    return out
