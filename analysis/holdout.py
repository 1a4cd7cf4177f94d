"""Extrapolation back-test: fit on the smaller budgets, predict the held-out largest ones.

Budgets are the table's budget column, or compute binned into 0.1-dex slices. The `holdout`
largest budgets are held out; the fit on the rest predicts them, by the method's `holdout` hook:

- parametric: the loss of every held-out run (error in log loss and relative error);
- isoflop: N_opt of every held-out budget, against the optimum measured on that budget's points;
- kaplan: the L(C) frontier losses at the held-out compute values.
"""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError
from .methods import get, with_hook
from .table import FitData, bin_budgets, subset


def _summary(pts) -> dict:
    """Errors of the last column (predicted) against the one before it (observed); adds log_error."""
    actual = pts.iloc[:, -2].to_numpy()
    predicted = pts.iloc[:, -1].to_numpy()
    log_err = np.log(predicted) - np.log(actual)
    pts["log_error"] = log_err
    return {
        "n_test": int(len(pts)),
        "rmse_log": float(np.sqrt(np.mean(log_err**2))),
        "mean_abs_rel_error": float(np.mean(np.abs(predicted / actual - 1))),
        "max_abs_rel_error": float(np.max(np.abs(predicted / actual - 1))),
        "bias_log": float(np.mean(log_err)),
    }


def backtest(data: FitData, method: str = "parametric", holdout: int = 1, **fit_kwargs) -> dict:
    """Returns {"method", "train_max_flops", "holdout_budgets", "points": DataFrame, "summary": dict,
    "train_points": DataFrame or None, "fit"}."""
    from .fitting import fit as run_fit

    m = get(method)
    if m.holdout is None:
        raise AnalysisError(f"no back-test for method {method!r} (use {', '.join(with_hook('holdout'))})")
    if holdout < 1:
        raise AnalysisError(f"--backtest must hold out at least 1 budget, got {holdout}")
    budget = data.budget if data.budget is not None else bin_budgets(data.C)
    budgets = np.unique(budget)
    if len(budgets) <= holdout + 1:
        raise AnalysisError(
            f"back-test needs more than {holdout + 1} budgets to hold out {holdout}, got {len(budgets)}"
        )
    held = budgets[-holdout:]
    train_mask = budget < held[0]
    train = subset(data, train_mask)
    train.budget = budget[train_mask]
    f = run_fit(train, method, **fit_kwargs)
    pts, train_points = m.holdout(f, data, budget, train_mask, held, fit_kwargs)
    if pts.empty:
        raise AnalysisError("back-test: the held-out budgets have no usable points")
    summary = _summary(pts)
    return {
        "method": method,
        "train_max_flops": float(budget[train_mask].max()),
        "train_points": train_points,
        "holdout_budgets": [float(b) for b in held],
        "points": pts,
        "summary": summary,
        "fit": f,
    }
