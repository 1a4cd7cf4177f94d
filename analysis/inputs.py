"""Load a study for analysis: a results table (CSV, study directory or DataFrame), its rows and
columns resolved into a `FitData`, and the runs' training curves when the directory has them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .errors import AnalysisError
from .options import TableOptions
from .table import FitData, fit_data, load_table, measured_rows


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
    data = fit_data(
        load_table(source),
        n_col=opts.n_col,
        d_col=opts.d_col,
        c_col=opts.c_col,
        loss_col=opts.loss_col,
        budget_col=opts.budget_col,
        where=opts.where,
        status=None if opts.status in (None, "any") else opts.status,
        k=opts.k,
        need_budget=need_budget,
        drop_highest=opts.drop_highest_loss,
    )
    if opts.curve_points:
        data = _with_curve_points(source, data, opts.curve_points)
    curves, warnings = _curves(source, data, opts)
    warnings = list(data.notes) + warnings  # how budgets were found, when they were not given exactly
    name = None if isinstance(source, pd.DataFrame) else str(source)
    return Study(data=data, curves=curves, warnings=warnings, source=name)


def _with_curve_points(source, data: FitData, per_run: int) -> FitData:
    """`data` plus the loss-curve law's annealed points of every run (`analysis.curves`); each
    point keeps its run's budget, so a back-test that holds a budget out holds its points out too."""
    if per_run < 0:
        raise AnalysisError(f"--curve-points must be 0 or more, got {per_run}")
    if isinstance(source, pd.DataFrame) or not Path(source).is_dir():
        raise AnalysisError("--curve-points reads the runs' metrics.jsonl: give a study directory, not a CSV")
    from .curves import curve_point_rows

    cols = data.columns
    frame = data.frame.reset_index(drop=True).assign(source="run")  # curve_row: a run's position
    extra = curve_point_rows(source, frame, cols, per_run)
    if data.budget is not None:
        frame = frame.assign(_budget=data.budget)
        extra["_budget"] = frame.loc[extra["curve_row"], "_budget"].to_numpy()
    both = pd.concat([frame, extra], ignore_index=True)
    out = fit_data(
        both,
        n_col=cols["N"],
        d_col=cols["D"],
        c_col=cols["C"],
        loss_col=cols["loss"],
        budget_col="_budget" if data.budget is not None else None,
        status=None,
        k=data.k,
    )
    rmse = max(law["mse"] for law in extra.attrs["laws"].values()) ** 0.5
    out.notes = list(data.notes) + [
        f"curve points: {len(extra)} loss-curve-law points added to {len(frame)} runs "
        f"(up to {per_run} per run; source == 'curve-law'); the per-size laws fit the "
        f"logged curves to rmse {rmse:.3g} at worst, and the points are no better"
    ]
    return out


def _curves(source, data: FitData, opts: TableOptions):
    """(curves or None, warnings): a directory's metrics.jsonl files; a failure becomes a warning."""
    if isinstance(source, pd.DataFrame) or not Path(source).is_dir():
        return None, []
    if not any(Path(source).glob("**/metrics.jsonl")):
        return None, []
    from .curves import load_curves

    try:
        return load_curves(
            source, data.frame[measured_rows(data)], data.columns["N"], opts.curve_loss, opts.smooth
        )
    except AnalysisError as e:
        return None, [str(e)]
