"""The seed-to-seed scatter as a function of compute, read where a new run will be.

A table with replicates measures its run-to-run noise from them (`analysis.synthetic.seed_scatter`:
one pooled sigma). On the lab's CPU grids that scatter falls with the budget — the pairs' rms log
difference over sqrt 2 was 0.043, 0.030, 0.020, 0.012 at 3e11 … 2.4e12 on one two-seed table — so one
pooled sigma, dominated by the small budgets, overstates the noise of a run beyond the grid. Here:

- per budget b: the pooled variance s_b^2 of log loss among rows of one cell (nu_b degrees of freedom);
- log s_b^2 = c0 + c1 log C_b by least squares weighted by nu_b, each log s_b^2 first corrected for
  its bias E[log(chi2_nu / nu)] = digamma(nu / 2) + log(2 / nu);
- read at the largest budget when c1 <= 0 (a falling scatter is not extrapolated), at the target
  compute when c1 > 0 (a rising one is).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import digamma


def scatter_by_budget(data) -> pd.DataFrame:
    """Per budget with replicates: budget, its compute (median), pooled variance of log loss among rows
    of one cell (same N and D to 1%), and its degrees of freedom."""
    from ..table import bin_budgets

    budget = np.asarray(data.budget if data.budget is not None else bin_budgets(data.C), float)
    frame = pd.DataFrame(
        {
            "budget": budget,
            "C": np.asarray(data.C, float),
            "n": np.round(np.log(data.N) / 0.01),
            "d": np.round(np.log(data.D) / 0.01),
            "y": np.log(np.asarray(data.L, float)),
        }
    )
    rows = []
    for b, g in frame.groupby("budget"):
        cells = g.groupby(["n", "d"])["y"]
        dof = int((cells.count() - 1).clip(lower=0).sum())
        if dof:
            ss = float(cells.apply(lambda y: ((y - y.mean()) ** 2).sum()).sum())
            rows.append({"budget": float(b), "C": float(g["C"].median()), "var": ss / dof, "dof": dof})
    return pd.DataFrame(rows, columns=["budget", "C", "var", "dof"])


def scatter_at(data, flops: float) -> dict | None:
    """The seed scatter at compute `flops` (module doc): {"sigma", "slope" (c1, per unit log C),
    "read_at" (the compute it is read at), "dof", "by_budget" (sigma per budget)}; None with fewer
    than two budgets with replicates."""
    per = scatter_by_budget(data)
    per = per[per["var"] > 0]
    if len(per) < 2:
        return None
    nu = per["dof"].to_numpy(float)
    x = np.log(per["C"].to_numpy(float))
    y = np.log(per["var"].to_numpy(float)) - (digamma(nu / 2) + np.log(2 / nu))
    xm = np.sum(nu * x) / np.sum(nu)
    slope = float(np.sum(nu * (x - xm) * (y - np.sum(nu * y) / np.sum(nu))) / np.sum(nu * (x - xm) ** 2))
    level = float(np.sum(nu * y) / np.sum(nu))
    read_at = float(np.exp(x.max())) if slope <= 0 else float(flops)
    sigma = float(np.sqrt(np.exp(level + slope * (np.log(read_at) - xm))))
    return {
        "sigma": sigma,
        "slope": slope,
        "read_at": read_at,
        "dof": int(nu.sum()),
        "by_budget": {f"{b:.3g}": float(np.sqrt(v)) for b, v in zip(per["budget"], per["var"])},
    }
