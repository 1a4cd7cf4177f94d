"""Training curves: read a study's `metrics.jsonl` files into one long table.

A study directory holds `results.csv` and one directory per run containing `metrics.jsonl`, whose
lines look like {"step", "tokens", "flops", "train_loss", ...} or eval lines
{"step", "tokens", "flops", "val_loss", "val_bits_per_byte"}. The long table has one row per
logged point: run_id, N, flops, tokens, loss.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AnalysisError


def read_metrics(path: Path, loss_key: str) -> pd.DataFrame:
    rows = []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise AnalysisError(f"cannot read {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a run killed mid-write leaves a partial last line
        if isinstance(rec, dict) and rec.get(loss_key) is not None and "flops" in rec:
            rows.append({"flops": rec["flops"], "tokens": rec.get("tokens", np.nan), "loss": rec[loss_key],
                         "step": rec.get("step", np.nan)})
    return pd.DataFrame(rows, columns=["flops", "tokens", "loss", "step"])


def load_curves(study_dir, results: pd.DataFrame, n_col: str, loss_key: str | None = None,
                smooth: int | None = None) -> tuple[pd.DataFrame, list[str]]:
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
                c = read_metrics(files[name], key)
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
        raise AnalysisError(f"no training curves found under {study_dir} (looked for <cell_id or run_id>/metrics.jsonl)")
    return pd.concat(parts, ignore_index=True), warnings


def final_points_as_curves(N, C, L, D=None) -> pd.DataFrame:
    """A results table seen as one-point curves (for envelopes of tables without metrics)."""
    D = np.full(len(N), np.nan) if D is None else D
    return pd.DataFrame({"run_id": np.arange(len(N)), "N": N, "flops": C, "tokens": D, "loss": L, "step": np.nan})
