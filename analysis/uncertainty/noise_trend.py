"""The seed-to-seed scatter as a function of compute, read where a new run will be.

A table with replicates measures its run-to-run noise from them (`analysis.synthetic.seed_scatter`:
one pooled sigma). On the lab's CPU grids that scatter falls with the budget — the pairs' rms log
difference over sqrt 2 was 0.043, 0.030, 0.020, 0.012 at 3e11 … 2.4e12 on one two-seed table — so one
pooled sigma, dominated by the small budgets, overstates the noise of a run beyond the grid. Here:

- per budget b with replicates: the pooled variance s_b^2 of log loss among rows of one cell (nu_b
  degrees of freedom; a budget whose replicates agree exactly is left out: its log is -inf);
- log s_b^2 = c0 + c1 log C_b by least squares, each log s_b^2 first corrected for its bias
  E[log(chi2_nu / nu)] = digamma(nu / 2) + log(2 / nu) and weighted by the inverse of its variance
  trigamma(nu / 2), so the slope's standard error is known;
- the trend is used only where it is measured: at least MIN_BUDGETS budgets with replicates and a slope
  at least MIN_Z standard errors from 0; otherwise the pooled sigma stands (`scatter_at` returns None);
- a falling scatter is read at the target compute but no further than the largest budget with
  replicates (never extrapolated down); a rising one at the target, extrapolated at most one replicated
  span beyond that budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import digamma, polygamma

NOISE_AT = "trend"  # the seed scatter of a run: its "trend" with compute where measured, or "pooled"
MIN_BUDGETS = 3  # budgets with replicates the trend needs
MIN_Z = 2.0  # |slope| / its standard error the trend needs


def scatter_by_budget(data) -> pd.DataFrame:
    """Per budget with replicates: budget, its compute (median), pooled variance of log loss among rows
    of one cell (`synthetic.within_cells`), and its degrees of freedom."""
    from ..synthetic import within_cells
    from ..table import bin_budgets

    budget = np.asarray(data.budget if data.budget is not None else bin_budgets(data.C), float)
    C = np.asarray(data.C, float)
    rows = []
    for b in np.unique(budget):
        ss, dof = within_cells(data, budget == b)
        if dof:
            rows.append({"budget": float(b), "C": float(np.median(C[budget == b])), "var": ss / dof, "dof": dof})
    return pd.DataFrame(rows, columns=["budget", "C", "var", "dof"])


def trend_fit(per: pd.DataFrame) -> dict:
    """The weighted fit of bias-corrected log variances on log compute (module doc): {"level" (at the
    weighted mean log C, "x_mean"), "slope", "slope_se"}."""
    nu = per["dof"].to_numpy(float)
    x = np.log(per["C"].to_numpy(float))
    y = np.log(per["var"].to_numpy(float)) - (digamma(nu / 2) + np.log(2 / nu))
    w = 1.0 / polygamma(1, nu / 2)
    xm, ym = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
    return {"level": float(ym), "x_mean": float(xm), "slope": slope, "slope_se": float(np.sqrt(1.0 / sxx))}


def scatter_at(data, flops) -> dict | None:
    """The seed scatter at compute `flops` (one value or an array; module doc): {"sigma" (like
    `flops`), "slope", "slope_se", "read_at", "dof", "by_budget" (sigma per budget)}; None where the
    trend is not measured (fewer than MIN_BUDGETS budgets with replicates, or a slope within MIN_Z
    standard errors of 0): the pooled scatter stands there."""
    per = scatter_by_budget(data)
    per = per[per["var"] > 0]
    if len(per) < MIN_BUDGETS:
        return None
    fit = trend_fit(per)
    if abs(fit["slope"]) < MIN_Z * fit["slope_se"]:
        return None
    x = np.log(per["C"].to_numpy(float))
    target = np.log(np.asarray(flops, float))
    top = x.max() if fit["slope"] < 0 else x.max() + (x.max() - x.min())
    read_at = np.exp(np.minimum(target, top))
    sigma = np.sqrt(np.exp(fit["level"] + fit["slope"] * (np.log(read_at) - fit["x_mean"])))
    scalar = np.ndim(flops) == 0
    return {
        "sigma": float(sigma) if scalar else sigma,
        "slope": fit["slope"],
        "slope_se": fit["slope_se"],
        "read_at": float(read_at) if scalar else read_at,
        "dof": int(per["dof"].sum()),
        "by_budget": {f"{b:.3g}": float(np.sqrt(v)) for b, v in zip(per["budget"], per["var"])},
    }


def trend_at(data, flops) -> dict | None:
    """`scatter_at` where NOISE_AT is "trend", else None (the pooled scatter)."""
    return scatter_at(data, flops) if NOISE_AT == "trend" else None
