"""The study's results table: one row per run or cooldown branch, in DIR/results.csv.

Every write takes an exclusive lock, rewrites the whole table to a temporary file and renames it
into place: readers never see a torn row, concurrent writers (several `lab study` processes, or
workers) never lose one, and a row for a cell that is already present is replaced, not doubled.
"""

from __future__ import annotations

import csv
import fcntl
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# The result.json contract of a run, then the study's own columns, then anything else.
COLUMNS = [
    "study", "cell_id", "status", "run_id", "config_hash", "git_sha", "seed", "arch", "d_model", "n_layers",
    "n_heads", "seq_len", "vocab_size", "params_non_embedding", "params_embedding", "params_head", "params_total",
    "tokens", "flops_exact", "flops_6n", "flops_6n_total", "flops_deepseek", "budget_flops", "branch_of",
    "final_train_loss", "final_val_loss", "val_bits_per_byte", "wall_s", "tokens_per_s", "dataset",
    "corpus_fingerprint",
]
SKIP = {"mesh"}  # nested values that do not belong in a flat table


@contextmanager
def _locked(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def read_rows(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def upsert_row(path: Path, row: dict) -> None:
    """Add `row` (keyed by cell_id) to the table, replacing an older row of the same cell."""
    path = Path(path)
    row = {k: ("" if v is None else v) for k, v in row.items() if k not in SKIP}
    with _locked(path):
        rows = [r for r in read_rows(path) if r.get("cell_id") != row["cell_id"]] + [row]
        extra = sorted({k for r in rows for k in r} - set(COLUMNS))
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results.", suffix=".csv.tmp")
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS + extra, restval="")
            writer.writeheader()
            writer.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
