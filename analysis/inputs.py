"""Load a study for analysis: a results table (CSV, study directory or DataFrame), its rows and
columns resolved into a `FitData`, and the runs' training curves when the directory has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import AnalysisError
from .options import TableOptions
from .table import FitData, fit_data, load_table


@dataclass
class Study:
    """What `load` returns: the validated table, the training curves (or None) and load warnings."""

    data: FitData
    curves: pd.DataFrame | None = None
    warnings: list = field(default_factory=list)
    source: str | None = None

    def __len__(self) -> int:
        return len(self.data)


def load(source, table: TableOptions | None = None, need_budget: bool = True, **table_kwargs) -> Study:
    """A `Study` from a results CSV, a study directory (DIR/results.csv, DIR/**/metrics.jsonl) or a
    DataFrame. Row and column choices come from `table` or as keywords (`n_col="params"`, ...);
    `need_budget` bins compute into IsoFLOP budgets when the table has no budget column."""
    opts = table if table is not None else TableOptions()
    if table_kwargs:
        opts = TableOptions(**{**opts.__dict__, **table_kwargs})
    if opts.drop_highest_loss < 0:
        raise AnalysisError(f"--drop-highest-loss must be 0 or more, got {opts.drop_highest_loss}")
    data = fit_data(load_table(source), n_col=opts.n_col, d_col=opts.d_col, c_col=opts.c_col,
                    loss_col=opts.loss_col, budget_col=opts.budget_col, where=opts.where,
                    status=None if opts.status in (None, "any") else opts.status, k=opts.k,
                    need_budget=need_budget, drop_highest=opts.drop_highest_loss)
    curves, warnings = _curves(source, data, opts)
    warnings = list(data.notes) + warnings  # how budgets were found, when they were not given exactly
    name = None if isinstance(source, pd.DataFrame) else str(source)
    return Study(data=data, curves=curves, warnings=warnings, source=name)


def _curves(source, data: FitData, opts: TableOptions):
    """(curves or None, warnings): a directory's metrics.jsonl files; a failure becomes a warning."""
    if isinstance(source, pd.DataFrame) or not Path(source).is_dir():
        return None, []
    if not any(Path(source).glob("**/metrics.jsonl")):
        return None, []
    from .curves import load_curves

    try:
        return load_curves(source, data.frame, data.columns["N"], opts.curve_loss, opts.smooth)
    except AnalysisError as e:
        return None, [str(e)]
