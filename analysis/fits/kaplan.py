"""Kaplan et al.'s power laws: L(N) = (N_c/N)^alpha_N, L(D) = (D_c/D)^alpha_D, L(C) = (C_c/C)^alpha_C.

L(N) and L(D) are the limits of Kaplan's joint form L(N, D) = ((N_c/N)^(alpha_N/alpha_D) + D_c/D)^alpha_D
(data-rich and model-rich runs). When both N and D vary, the four parameters are fitted to every
point at once (least squares in log L, started from the frontier fits below), so that runs limited
by the other variable are modelled rather than mistaken for the limit. Otherwise each law is a
log-log line through its frontier: the lowest loss at each N, at each D (0.05-dex bins).
L(C) is a log-log line through the Pareto frontier over compute (runs that beat every cheaper run).

The joint form gives the allocation exponent a = alpha_D / (alpha_N + alpha_D) for N_opt ∝ C^a
(C = k N D), reported as `a`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..laws import KaplanND, PowerLaw
from ..reports.text import fmt, md
from ..result import FitResult
from ..table import FitData


def _fit_power(x, L):
    """L = (x_c/x)^alpha: log L = alpha log x_c - alpha log x. Returns (alpha, x_c)."""
    slope, icpt = np.polyfit(np.log(x), np.log(L), 1)
    alpha = -slope
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        x_c = np.exp(icpt / alpha) if alpha != 0 else np.nan
    return float(alpha), float(x_c) if np.isfinite(x_c) and x_c > 0 else np.nan


def frontiers(N, D, C, L, dex: float = 0.05):
    """Indices of the L(N), L(D) and L(C) frontier points."""
    df = pd.DataFrame({"N": N, "D": D, "C": C, "L": L})
    iN = df.groupby(np.round(np.log10(df["N"]) / 0.005))["L"].idxmin().to_numpy()
    iD = df.groupby(np.round(np.log10(df["D"]) / dex))["L"].idxmin().to_numpy()
    order = np.argsort(C, kind="stable")
    best = np.minimum.accumulate(L[order])
    iC = order[L[order] <= best]
    return iN, iD, iC


def _joint_log_loss(q, lN, lD):
    lnc, aN, ldc, aD = q
    return aD * np.logaddexp((aN / aD) * (lnc - lN), ldc - lD)


def _fit_joint(N, D, L, start, scales=(1.0, 0.5, 2.0)):
    from scipy.optimize import least_squares

    lN, lD, lL = np.log(N), np.log(D), np.log(L)
    best = None
    for scale in scales:
        q0 = np.array([np.log(start[0]), start[1] * scale, np.log(start[2]), start[3] * scale])
        try:
            r = least_squares(
                lambda q: _joint_log_loss(q, lN, lD) - lL,
                q0,
                bounds=([-np.inf, 1e-4, -np.inf, 1e-4], [np.inf, 5, np.inf, 5]),
            )
        except ValueError:
            continue
        if np.isfinite(r.cost) and (best is None or r.cost < best.cost):
            best = r
    return best


def fit_kaplan(
    data: FitData, k: float | None = None, target_flops: float | None = None, start: dict | None = None
) -> FitResult:
    """`start` (a previous fit's params) replaces the frontier starts of the joint fit (bootstrap)."""
    N, D, C, L = data.N, data.D, data.C, data.L
    k = data.k if k is None else k
    iN, iD, iC = frontiers(N, D, C, L)
    params, warnings = _frontier_params(N, D, C, L, iN, iD, iC)
    method = _refine_joint(N, D, L, params, warnings, start)
    joint = _joint_law(params, warnings)
    frame = _kaplan_frame(N, D, C, L, iC, params, joint)
    extra = {
        "columns": data.columns,
        "fit": method,
        "n_points": int(len(L)),
        "n_frontier": {"N": int(len(iN)), "D": int(len(iD)), "C": int(len(iC))},
    }
    if target_flops and joint is not None:
        n_opt, d_opt = joint.optimal(target_flops, k)
        extra["target"] = {"flops": float(target_flops), "n_opt": float(n_opt), "d_opt": float(d_opt)}
    resid = frame["residual"].to_numpy() if len(frame) else np.array([])
    return FitResult(
        method="kaplan",
        params=params,
        objective=float(np.sum(resid**2)),
        residuals=resid,
        data=frame,
        warnings=warnings,
        law=joint,
        extra=extra,
    )


def _frontier_params(N, D, C, L, iN, iD, iC):
    """(params, warnings) of the log-log lines L(N), L(D), L(C) through their frontiers (NaN for a law
    that cannot be fitted); raises AnalysisError when none can."""
    params, warnings = {}, []
    for var, x, idx in (("N", N, iN), ("D", D, iD), ("C", C, iC)):
        if len(np.unique(x[idx])) < 2:
            warnings.append(f"L({var}): fewer than 2 distinct {var} on the frontier; not fitted")
            params[f"alpha_{var}"], params[f"{var}_c"] = np.nan, np.nan
        else:
            params[f"alpha_{var}"], params[f"{var}_c"] = _fit_power(x[idx], L[idx])
            if not np.isfinite(params[f"{var}_c"]):
                warnings.append(
                    f"L({var}): loss hardly changes with {var} (alpha_{var} = {params[f'alpha_{var}']:.3g}); "
                    f"{var}_c is not finite, not fitted"
                )
                params[f"alpha_{var}"] = np.nan
    if all(np.isnan(params[f"alpha_{v}"]) for v in "NDC"):
        raise AnalysisError("kaplan: none of L(N), L(D), L(C) can be fitted (" + "; ".join(warnings) + ")")
    return params, warnings


def _refine_joint(N, D, L, params, warnings, start):
    """Replace the frontier L(N), L(D) in `params` by the joint L(N, D) fit to every point, started
    from the frontier fits (or `start`); returns which fit L(N), L(D) come from."""
    src = params if start is None else start
    q0 = [src["N_c"], src["alpha_N"], src["D_c"], src["alpha_D"]]
    if not (len(L) >= 5 and np.all(np.isfinite(q0)) and q0[1] > 0 and q0[3] > 0):
        return "frontiers"
    r = _fit_joint(N, D, L, q0, scales=(1.0,) if start is not None else (1.0, 0.5, 2.0))
    if r is None or not r.success:
        warnings.append("joint L(N, D) fit failed; L(N) and L(D) are frontier fits")
        return "frontiers"
    lnc, aN, ldc, aD = r.x
    params.update(alpha_N=float(aN), N_c=float(np.exp(lnc)), alpha_D=float(aD), D_c=float(np.exp(ldc)))
    return "joint L(N, D)"


def _joint_law(params, warnings):
    """Warn about laws whose loss does not fall; the KaplanND law (or None) and its allocation
    exponents `a`, `b` (NaN without it) into `params`."""
    for v in "NDC":
        if params[f"alpha_{v}"] <= 0:
            warnings.append(f"L({v}): loss does not fall with {v} (alpha_{v} = {params[f'alpha_{v}']:.3g})")
    if (
        np.isfinite(params["alpha_N"])
        and np.isfinite(params["alpha_D"])
        and params["alpha_N"] > 0
        and params["alpha_D"] > 0
    ):
        joint = KaplanND(params["N_c"], params["alpha_N"], params["D_c"], params["alpha_D"])
        params["a"], params["b"] = joint.a, joint.b
        return joint
    params["a"] = params["b"] = np.nan
    return None


def _kaplan_frame(N, D, C, L, iC, params, joint) -> pd.DataFrame:
    """The fitted points: every run under L(N, D) (when fitted), then the L(C) frontier runs."""
    parts = []
    if joint is not None:
        pred = joint(N, D)
        parts.append(
            pd.DataFrame(
                {
                    "law": "L(N, D)",
                    "x": np.nan,
                    "loss": L,
                    "loss_fit": pred,
                    "residual": np.log(L) - np.log(pred),
                    "N": N,
                    "D": D,
                    "C": C,
                }
            )
        )
    if np.isfinite(params["alpha_C"]):
        law = PowerLaw(params["C_c"], params["alpha_C"], "C")
        parts.append(
            pd.DataFrame(
                {
                    "law": "L(C)",
                    "x": C[iC],
                    "loss": L[iC],
                    "loss_fit": law(C[iC]),
                    "residual": np.log(L[iC]) - np.log(law(C[iC])),
                    "N": N[iC],
                    "D": D[iC],
                    "C": C[iC],
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def bootstrap_kaplan(
    data: FitData, n_boot: int = 1000, seed: int = 0, target_flops: float | None = None, start: dict | None = None
) -> pd.DataFrame:
    """Resample runs and refit (three small regressions each, the joint fit from `start`)."""
    from ..table import subset

    rng = np.random.default_rng(seed)
    n = len(data)
    rows = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        mask = np.zeros(n, bool)
        mask[idx] = True  # duplicates do not move a frontier: a resample is its set of distinct runs
        try:
            r = fit_kaplan(subset(data, mask), target_flops=target_flops, start=start)
        except AnalysisError:
            continue
        row = {k: v for k, v in r.params.items()}
        if "target" in r.extra:
            row.update(n_opt=r.extra["target"]["n_opt"], d_opt=r.extra["target"]["d_opt"])
        rows.append(row)
    return pd.DataFrame(rows)


def holdout_points(f: FitResult, data: FitData, budget, train_mask, held, fit_kwargs):
    """Back-test points: the L(C) frontier losses at the held-out compute values, against the L(C)
    law `f` fitted on the smaller budgets. Returns (points, None)."""
    _, _, iC = frontiers(data.N, data.D, data.C, data.L)
    iC = iC[~train_mask[iC]]
    law = PowerLaw(f.params["C_c"], f.params["alpha_C"], "C")
    return pd.DataFrame(
        {"budget": budget[iC], "C": data.C[iC], "loss": data.L[iC], "predicted": law(data.C[iC])}
    ), None


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "kaplan"
DESCRIPTION = "Kaplan et al.'s power laws L(N), L(D), L(C)"
SUITE_BOOTSTRAP = False


def fit(data, curves, **kw) -> FitResult:
    return fit_kaplan(data, **kw)


def resample(fit, data, curves, n_boot, seed, target_flops) -> pd.DataFrame:
    return bootstrap_kaplan(data, n_boot=n_boot, seed=seed, target_flops=target_flops, start=fit.params)


holdout = holdout_points


def summary(r) -> list[str]:
    p = r.params
    return [f"  L({v}) = ({fmt(p[f'{v}_c'])}/{v})^{fmt(p[f'alpha_{v}'])}" for v in "NDC"]


def section(k) -> list[str]:
    q = k.params
    return [
        "## Kaplan power laws",
        "",
        "; ".join(f"L({v}) = ({md(q[f'{v}_c'], '.3g')}/{v})^{md(q[f'alpha_{v}'], '.3f')}" for v in "NDC"),
        "",
    ]
