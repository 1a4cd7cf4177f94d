"""Extrapolation back-test: fit on the smaller budgets, predict the held-out largest ones.

Budgets are the table's budget column, or compute binned into 0.1-dex slices. The `holdout`
largest budgets are held out; the fit on the rest predicts them:

- parametric: the loss of every held-out run (error in log loss and relative error);
- isoflop: N_opt of every held-out budget, against the optimum measured on that budget's points;
- kaplan: the L(C) frontier losses at the held-out compute values.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import AnalysisError
from .table import FitData, bin_budgets, subset


def backtest(data: FitData, method: str = "parametric", holdout: int = 1, **fit_kwargs) -> dict:
    """Returns {"method", "train_max_flops", "holdout_budgets", "points": DataFrame, "summary": dict, "fit"}."""
    from .fitting import fit as run_fit

    budget = data.budget if data.budget is not None else bin_budgets(data.C)
    budgets = np.unique(budget)
    if len(budgets) <= holdout + 1:
        raise AnalysisError(f"back-test needs more than {holdout + 1} budgets to hold out {holdout}, got {len(budgets)}")
    held = budgets[-holdout:]
    train_mask = budget < held[0]
    train = subset(data, train_mask)
    train.budget = budget[train_mask]
    test = subset(data, ~train_mask)
    test.budget = budget[~train_mask]
    f = run_fit(train, method, **fit_kwargs)
    if method == "parametric":
        pred = f.law(test.N, test.D)
        pts = pd.DataFrame({"budget": test.budget, "N": test.N, "D": test.D, "C": test.C, "loss": test.L,
                            "predicted": pred})
    elif method == "isoflop":
        from .fit_isoflop import fit_isoflop

        full_data = subset(data, np.ones(len(data), bool))
        full_data.budget = budget
        full = fit_isoflop(full_data, **fit_kwargs).extra["optima"]
        rows = full[np.isin(full["budget"], held) & full["used"]]
        pred = f.params["n_coef"] * rows["budget"].to_numpy() ** f.params["a"]
        pts = pd.DataFrame({"budget": rows["budget"].to_numpy(), "C": rows["budget"].to_numpy(),
                            "loss": rows["n_opt"].to_numpy(), "predicted": pred})
        pts = pts.rename(columns={"loss": "n_opt", "predicted": "n_opt_predicted"})
    elif method == "kaplan":
        from .fit_kaplan import frontiers
        from .laws import PowerLaw

        _, _, iC = frontiers(data.N, data.D, data.C, data.L)
        iC = iC[~train_mask[iC]]
        law = PowerLaw(f.params["C_c"], f.params["alpha_C"], "C")
        pts = pd.DataFrame({"budget": budget[iC], "C": data.C[iC], "loss": data.L[iC], "predicted": law(data.C[iC])})
    else:
        raise AnalysisError(f"no back-test for method {method!r} (use parametric, isoflop or kaplan)")
    if pts.empty:
        raise AnalysisError("back-test: the held-out budgets have no usable points")
    actual = pts.iloc[:, -2].to_numpy()
    predicted = pts.iloc[:, -1].to_numpy()
    log_err = np.log(predicted) - np.log(actual)
    pts["log_error"] = log_err
    summary = {"n_test": int(len(pts)), "rmse_log": float(np.sqrt(np.mean(log_err ** 2))),
               "mean_abs_rel_error": float(np.mean(np.abs(predicted / actual - 1))),
               "max_abs_rel_error": float(np.max(np.abs(predicted / actual - 1))),
               "bias_log": float(np.mean(log_err))}
    train_points = None
    if method == "parametric":
        train_points = pd.DataFrame({"N": train.N, "D": train.D, "C": train.C, "loss": train.L,
                                     "predicted": f.law(train.N, train.D)})
    return {"method": method, "train_max_flops": float(budget[train_mask].max()), "train_points": train_points,
            "holdout_budgets": [float(b) for b in held], "points": pts, "summary": summary, "fit": f}
