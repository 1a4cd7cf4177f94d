"""Kaplan et al.'s one-variable power laws L(N) = (N_c/N)^alpha_N, L(D) = (D_c/D)^alpha_D,
L(C) = (C_c/C)^alpha_C, each a least-squares line in log-log through its frontier:

- L(N): the lowest loss at each model size (the best-trained run of each N);
- L(D): the lowest loss at each amount of data (D binned in 0.05-dex slices);
- L(C): the Pareto frontier over compute (runs that beat every cheaper run).

Their joint form L(N, D) = ((N_c/N)^(alpha_N/alpha_D) + D_c/D)^alpha_D gives the allocation
exponent a = alpha_D / (alpha_N + alpha_D) for N_opt ∝ C^a (C = k N D), reported as `a`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import AnalysisError
from .laws import KaplanND, PowerLaw
from .result import FitResult
from .table import FitData


def _fit_power(x, L):
    """L = (x_c/x)^alpha: log L = alpha log x_c - alpha log x. Returns (PowerLaw fields, residuals)."""
    slope, icpt = np.polyfit(np.log(x), np.log(L), 1)
    alpha = -slope
    x_c = np.exp(icpt / alpha) if alpha != 0 else np.nan
    resid = np.log(L) - (icpt + slope * np.log(x))
    return float(alpha), float(x_c), resid


def frontiers(N, D, C, L, dex: float = 0.05):
    """Indices of the L(N), L(D) and L(C) frontier points."""
    df = pd.DataFrame({"N": N, "D": D, "C": C, "L": L})
    iN = df.groupby(np.round(np.log10(df["N"]) / 0.005))["L"].idxmin().to_numpy()
    iD = df.groupby(np.round(np.log10(df["D"]) / dex))["L"].idxmin().to_numpy()
    order = np.argsort(C, kind="stable")
    best = np.minimum.accumulate(L[order])
    iC = order[L[order] <= best]
    return iN, iD, iC


def fit_kaplan(data: FitData, k: float | None = None, target_flops: float | None = None) -> FitResult:
    N, D, C, L = data.N, data.D, data.C, data.L
    k = data.k if k is None else k
    iN, iD, iC = frontiers(N, D, C, L)
    parts, params, warnings = [], {}, []
    for var, x, idx in (("N", N, iN), ("D", D, iD), ("C", C, iC)):
        if len(np.unique(x[idx])) < 2:
            warnings.append(f"L({var}): fewer than 2 distinct {var} on the frontier; not fitted")
            params[f"alpha_{var}"], params[f"{var}_c"] = np.nan, np.nan
            continue
        alpha, x_c, resid = _fit_power(x[idx], L[idx])
        params[f"alpha_{var}"], params[f"{var}_c"] = alpha, x_c
        law = PowerLaw(x_c, alpha, var)
        parts.append(pd.DataFrame({"law": f"L({var})", "x": x[idx], "loss": L[idx], "loss_fit": law(x[idx]),
                                   "residual": resid, "N": N[idx], "D": D[idx], "C": C[idx]}))
    if not parts:
        raise AnalysisError("kaplan: no variable has 2 or more distinct values on its frontier")
    frame = pd.concat(parts, ignore_index=True)
    joint = None
    if np.isfinite(params["alpha_N"]) and np.isfinite(params["alpha_D"]) and params["alpha_N"] > 0 and params["alpha_D"] > 0:
        joint = KaplanND(params["N_c"], params["alpha_N"], params["D_c"], params["alpha_D"])
        params["a"], params["b"] = joint.a, joint.b
    else:
        params["a"] = params["b"] = np.nan
    extra = {"columns": data.columns, "n_frontier": {"N": int(len(iN)), "D": int(len(iD)), "C": int(len(iC))}}
    if target_flops and joint is not None:
        n_opt, d_opt = joint.optimal(target_flops, k)
        extra["target"] = {"flops": float(target_flops), "n_opt": float(n_opt), "d_opt": float(d_opt)}
    return FitResult(method="kaplan", params=params, objective=float(np.sum(frame["residual"] ** 2)),
                     residuals=frame["residual"].to_numpy(), data=frame, warnings=warnings, law=joint, extra=extra)
