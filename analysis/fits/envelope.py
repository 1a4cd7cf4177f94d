"""Chinchilla approach 1: the lower envelope of loss over FLOPs, then N_opt(C) and D_opt(C).

Each run's curve (log loss against log FLOPs) is interpolated onto a common log-spaced FLOP grid
inside the run's own FLOP range. At every grid value the envelope is the lowest loss of any run
and the optimum is that run: N_opt(C) is its size and D_opt(C) its tokens at C (or C/(kN) where
tokens were not logged). The power laws are least-squares lines in log-log over the grid values
whose optimum is an interior model (not the smallest or largest of the study), since at the ends
the envelope is pinned by the grid, not by the law. A table of final points (one per run) works
too: its envelope is the Pareto frontier of the points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..laws import K_FLOPS_PER_PARAM_TOKEN
from ..result import FitResult


def envelope_matrix(curves: pd.DataFrame, n_grid: int = 200):
    """(grid (G,), log-loss matrix (R, G) with NaN outside each run's range, tokens (R, G), runs table)."""
    runs = curves.groupby("run_id", sort=False).agg(N=("N", "first"), n=("flops", "size")).reset_index()
    lo, hi = curves["flops"].min(), curves["flops"].max()
    if not hi > lo:
        raise AnalysisError("envelope needs curves spanning more than one FLOP value")
    grid = np.geomspace(lo, hi, n_grid)
    lg = np.log(grid)
    M = np.full((len(runs), n_grid), np.nan)
    T = np.full((len(runs), n_grid), np.nan)
    if (runs["n"] == 1).all():  # final points, one row per run in run order: each covers its nearest grid value
        rows = np.arange(len(runs))
        M[rows, _nearest(lg, np.log(curves["flops"].to_numpy()))] = np.log(curves["loss"].to_numpy())
        T[rows, _nearest(lg, np.log(curves["flops"].to_numpy()))] = curves["tokens"].to_numpy(dtype=float)
        return grid, M, T, runs
    for r, (_rid, c) in enumerate(curves.groupby("run_id", sort=False)):
        c = c.sort_values("flops")
        lf = np.log(c["flops"].to_numpy())
        ll = np.log(c["loss"].to_numpy())
        if len(lf) == 1:  # a final point: it covers the nearest grid value
            j = int(np.argmin(np.abs(lg - lf[0])))
            M[r, j], T[r, j] = ll[0], c["tokens"].iloc[0]
            continue
        inside = (lg >= lf[0]) & (lg <= lf[-1])
        M[r, inside] = np.interp(lg[inside], lf, ll)
        T[r, inside] = np.interp(lg[inside], lf, c["tokens"].to_numpy(dtype=float))
    return grid, M, T, runs


def _nearest(lg, lf):
    """Index of the grid value nearest each of `lf` (the lower one on a tie, as argmin picks)."""
    i = np.clip(np.searchsorted(lg, lf), 1, len(lg) - 1)
    return np.where(np.abs(lg[i - 1] - lf) <= np.abs(lg[i] - lf), i - 1, i)


def _frontier(grid, M):
    """Envelope (log loss) and argmin run per grid value; a grid value nobody covers gets NaN / -1.
    For one-point curves the envelope is made monotone (best loss at compute <= C)."""
    filled = np.where(np.isfinite(M), M, np.inf)
    j = np.argmin(filled, axis=0)
    env = filled[j, np.arange(M.shape[1])]
    j = np.where(np.isfinite(env), j, -1)
    return env, j


def fit_envelope(
    curves: pd.DataFrame,
    k: float = K_FLOPS_PER_PARAM_TOKEN,
    n_grid: int = 200,
    target_flops: float | None = None,
    columns: dict | None = None,
) -> FitResult:
    grid, M, T, runs = envelope_matrix(curves, n_grid)
    single = bool((runs["n"] == 1).all())
    env, j = _frontier(grid, M)
    have, n_opt, d_opt = _optima(grid, T, runs, env, j, single, k)
    interior, warnings = _fitted_points(runs, have, n_opt)
    lc = np.log(grid[interior])
    a, cn = np.polyfit(lc, np.log(n_opt[interior]), 1)
    b, cd = np.polyfit(lc, np.log(d_opt[interior]), 1)
    resid = np.log(n_opt[interior]) - (cn + a * lc)
    env_frame = pd.DataFrame(
        {
            "flops": grid,
            "loss": np.exp(env),
            "run_id": np.where(have, runs["run_id"].to_numpy()[np.clip(j, 0, None)], None),
            "n_opt": n_opt,
            "d_opt": d_opt,
            "used": interior,
        }
    )
    env_frame.loc[~have, "loss"] = np.nan
    params = {"a": float(a), "b": float(b), "n_coef": float(np.exp(cn)), "d_coef": float(np.exp(cd))}
    extra = {"envelope": env_frame, "n_runs": int(len(runs)), "single_points": single, "columns": columns or {}}
    if target_flops:
        extra["target"] = {
            "flops": float(target_flops),
            "n_opt": float(np.exp(cn) * target_flops**a),
            "d_opt": float(np.exp(cd) * target_flops**b),
        }
    return FitResult(
        method="envelope",
        params=params,
        objective=float(np.sum(resid**2)),
        residuals=resid,
        data=curves,
        warnings=warnings,
        extra=extra,
    )


def _optima(grid, T, runs, env, j, single, k):
    """Per grid value: whether it has an optimum, and that optimum's N_opt and D_opt (NaN where none).
    For one-point curves only grid values where the running-min improves count (the Pareto frontier)."""
    have = j >= 0
    if single:
        best = np.minimum.accumulate(np.where(have, env, np.inf))
        have &= env <= best
    N_all = runs["N"].to_numpy(dtype=float)
    n_opt = np.where(have, N_all[np.clip(j, 0, None)], np.nan)
    tok = T[np.clip(j, 0, None), np.arange(len(grid))]
    d_opt = np.where(have & np.isfinite(tok), tok, grid / (k * n_opt))
    return have, n_opt, d_opt


def _fitted_points(runs, have, n_opt):
    """The grid values the power laws are fitted on (interior optima, else every optimum, with a
    warning) and the warnings; raises AnalysisError when they cannot determine N_opt(C)."""
    N_all = runs["N"].to_numpy(dtype=float)
    interior = have & (n_opt > N_all.min()) & (n_opt < N_all.max())
    warnings = []
    if interior.sum() < 2:
        if have.sum() < 2:
            raise AnalysisError("envelope: fewer than 2 FLOP values have an optimum; need curves of several sizes")
        warnings.append("the optimum is always the smallest or largest model: fitting every envelope point")
        interior = have
    if len(np.unique(n_opt[interior])) < 2:
        raise AnalysisError(
            f"envelope: only one model size (N = {n_opt[interior][0]:.4g}) is ever optimal; cannot fit N_opt(C)"
        )
    return interior, warnings


def allocation_points(fit: FitResult):
    """The points figure (c) draws: the envelope's interior optima, as
    (C, {"n": (N_opt, None), "d": (D_opt, None)})."""
    e = fit.extra["envelope"]
    e = e[e["used"]]
    return e["flops"].to_numpy(), {"n": (e["n_opt"].to_numpy(), None), "d": (e["d_opt"].to_numpy(), None)}


def _sorted_cover(filled):
    """Per grid column, the runs covering it sorted by loss (stable: ties by run index), as a
    (depth, G) index matrix padded with -1 below each column's covering runs."""
    finite = np.isfinite(filled)
    depth = int(finite.sum(0).max())
    order = np.argsort(filled, axis=0, kind="stable")[:depth]
    return np.where(np.take_along_axis(finite, order, 0), order, -1)


def bootstrap_envelope(
    curves: pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    k: float = K_FLOPS_PER_PARAM_TOKEN,
    n_grid: int = 200,
    target_flops: float | None = None,
) -> pd.DataFrame:
    """Resample runs with replacement; a resample's envelope at each FLOP value is its lowest-loss
    covering run: the first selected run in that column's loss order (no matrix copy per resample)."""
    rng = np.random.default_rng(seed)
    grid, M, T, runs = envelope_matrix(curves, n_grid)
    R, G = len(runs), len(grid)
    N_all = runs["N"].to_numpy(dtype=float)
    lc = np.log(grid)
    filled = np.where(np.isfinite(M), M, np.inf)
    cover = _sorted_cover(filled)
    cols = np.arange(G)
    out = []
    for _ in range(n_boot):
        chosen = np.zeros(R + 1, bool)  # the extra last slot stands for the -1 padding: never chosen
        chosen[np.unique(rng.integers(0, R, R))] = True
        hits = chosen[cover]
        first = hits.argmax(0)
        have = hits[first, cols]
        j = np.where(have, cover[first, cols], 0)
        n_opt = N_all[j]
        nsel = N_all[chosen[:R]]
        interior = have & (n_opt > nsel.min()) & (n_opt < nsel.max())
        if interior.sum() < 2 or len(np.unique(n_opt[interior])) < 2:
            continue
        tok = T[j, cols]
        d_opt = np.where(np.isfinite(tok), tok, grid / (k * n_opt))
        a, cn = np.polyfit(lc[interior], np.log(n_opt[interior]), 1)
        b, cd = np.polyfit(lc[interior], np.log(d_opt[interior]), 1)
        row = {"a": a, "b": b, "n_coef": np.exp(cn), "d_coef": np.exp(cd)}
        if target_flops:
            row["n_opt"] = np.exp(cn) * target_flops**a
            row["d_opt"] = np.exp(cd) * target_flops**b
        out.append(row)
    return pd.DataFrame(out)


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "envelope"
DESCRIPTION = "lower envelope of loss over FLOPs (Chinchilla approach 1)"
FIGURES = "ac"


def _one_point_curves(data, curves):
    from ..curves import final_points_as_curves

    return final_points_as_curves(data.N, data.C, data.L, data.D) if curves is None else curves


def fit(data, curves, **kw) -> FitResult:
    return fit_envelope(_one_point_curves(data, curves), k=data.k, columns=data.columns, **kw)


def resample(fit, data, curves, n_boot, seed, target_flops) -> pd.DataFrame:
    return bootstrap_envelope(
        _one_point_curves(data, curves),
        n_boot=n_boot,
        seed=seed,
        k=data.k if data else K_FLOPS_PER_PARAM_TOKEN,
        target_flops=target_flops,
    )
