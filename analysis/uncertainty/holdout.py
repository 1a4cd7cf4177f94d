"""Extrapolation back-test: fit on the smaller budgets, predict the held-out largest ones.

Budgets are the table's budget column, or compute binned into 0.1-dex slices. The `holdout`
largest budgets are held out; the fit on the rest predicts them, by the method's `holdout` hook:

- parametric, vpnls: the loss of every held-out run (error in log loss and relative error);
- isoflop: N_opt of every held-out budget, against the optimum measured on that budget's points;
- kaplan: the L(C) frontier losses at the held-out compute values.
"""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError
from ..methods import get, with_hook
from ..table import FitData, bin_budgets, subset


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


def _with_intervals(pts, f, train: FitData, n_boot: int, level: float, seed: int, scheme: str, fit_kwargs) -> dict:
    """Adds pi_lo, pi_hi, inside_pi to the held-out points (the law's draws by `scheme`,
    `residual.law_draws`); returns their coverage summary."""
    from .intervals import run_intervals
    from .residual import law_draws

    own = {k: v for k, v in fit_kwargs.items() if k != "seed"}
    drawn = law_draws(f, train, scheme, n_boot=n_boot, seed=seed, level=level, **own)
    f.bootstrap_samples = drawn.bootstrap_samples  # the back-test's own fit: what its callers widen
    pi = run_intervals(f, pts["N"].to_numpy(), pts["D"].to_numpy(), train, level, seed)
    pts["pi_lo"], pts["pi_hi"] = pi["pi_lo"], pi["pi_hi"]
    pts["inside_pi"] = (pts["pi_lo"] <= pts["loss"]) & (pts["loss"] <= pts["pi_hi"])
    half = (pts["pi_hi"] - pts["pi_lo"]) / (2 * pts["predicted"])
    return {
        "pi_level": level,
        "pi_coverage": float(pts["inside_pi"].mean()),
        "pi_inside": int(pts["inside_pi"].sum()),
        "pi_mean_rel_halfwidth": float(half.mean()),
        "pi_run_noise": pi["noise"]["sigma"],
        "pi_noise_source": "seed scatter" if pi["noise"]["sigma"] == pi["noise"]["seed"] else "law residual",
    }


def backtest(
    data: FitData,
    method: str = "parametric",
    holdout: int = 1,
    pi_bootstrap: int = 0,
    level: float = 0.95,
    pi_seed: int = 0,
    pi_draws: str | None = None,
    **fit_kwargs,
) -> dict:
    """Returns {"method", "train_max_flops", "holdout_budgets", "points": DataFrame, "summary": dict,
    "train_points": DataFrame or None, "fit"}. With `pi_bootstrap` resamples and a method whose fit
    is a law (parametric), every held-out run also gets its `level` prediction interval for a new
    run (`analysis.intervals.run_intervals`: the law's uncertainty, drawn by `pi_draws` — default
    `residual.PI_DRAWS` — plus the run-to-run noise of the
    training rows), and the summary its coverage: `pi_coverage`, the share of held-out runs inside
    (`pi_inside` of `n_test`). `analysis.uncertainty.form.backtest_form` adds the same intervals
    widened by the law's form error measured on the training budgets alone."""
    from ..fitting import fit as run_fit

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
    if pi_bootstrap and f.law is not None and {"N", "D", "loss"} <= set(pts.columns):
        from .residual import PI_DRAWS

        scheme = pi_draws or PI_DRAWS
        summary.update(_with_intervals(pts, f, train, pi_bootstrap, level, pi_seed, scheme, fit_kwargs))
    return {
        "method": method,
        "train_max_flops": float(budget[train_mask].max()),
        "train_points": train_points,
        "holdout_budgets": [float(b) for b in held],
        "points": pts,
        "summary": summary,
        "fit": f,
        "train_data": train,
    }
