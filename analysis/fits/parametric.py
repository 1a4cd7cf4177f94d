"""Chinchilla approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta by the procedure of Epoch's refit.

Besiroglu et al. (2024) fit log L = LSE(a - alpha log N, b - beta log D, e) (so A = e^a, B = e^b,
E = e^e) by minimising the Huber loss (delta = 1e-3) of the log-loss residuals, summed over points,
with L-BFGS from a grid of 4,500 initial values, keeping the best. We run the same objective from
the same grid, but all initialisations at once:

1. screen: every init runs `screen_iters` batched L-BFGS iterations in float32 (one
   value-and-gradient of all 4,500 lanes per iteration, see `analysis.solvers.lbfgs`); the `refine_top`
   best lanes then run `refine_iters` more (still float32, one compiled program for both);
2. polish: the `polish_top` best distinct lanes continue in float64, in a scoped
   `jax.enable_x64(True)` context (it does not leak into other JAX code in the process),
   until their gradients vanish or `polish_iters` iterations pass; the best is kept.

The objective reported is the Huber *sum* (Epoch's convention; 1.018e-3 on their 240 points).
`bootstrap_parametric` refits resampled tables the same vectorised way, each resample starting
from the full fit's optimum and a few perturbations of it.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..laws import Chinchilla
from ..reports.text import ci_text
from ..result import FitResult, percentile_ci
from ..solvers.progress import LARGE_ROWS, Progress
from ..table import FitData, fitted_rows, require_points, require_spread, resample_counts

SCREEN_ROWS = LARGE_ROWS  # larger tables screen the init grid on a fixed subsample of this many rows
FULL_POLISH = 4  # ... and polish this many distinct candidates on every row
BOOT_ELEMENTS = 1 << 22  # resamples x rows per bootstrap chunk on large tables (32 MiB per float64 array)
PERTURB_SCALE = np.array([1.0, 1.0, 0.1, 0.05, 0.05])  # bootstrap start perturbations of (a, b, e, alpha, beta)
# Epoch's initialisation grid: 6 x 6 x 5 x 5 x 5 = 4,500 starts
EPOCH_GRID = {
    "a": np.arange(0.0, 30.0, 5.0),
    "b": np.arange(0.0, 30.0, 5.0),
    "e": np.arange(-1.0, 1.5, 0.5),
    "alpha": np.arange(0.0, 2.5, 0.5),
    "beta": np.arange(0.0, 2.5, 0.5),
}


def init_grid(grid: dict | None = None) -> np.ndarray:
    """The (n_inits, 5) array of starting points, columns in PARAM_NAMES order."""
    from ..solvers.huber_lse import PARAM_NAMES

    grid = EPOCH_GRID if grid is None else grid
    return np.array(list(itertools.product(*(np.asarray(grid[k], float) for k in PARAM_NAMES))))


def _subsample(n: int, rows: int) -> np.ndarray:
    """A fixed (seed 0), sorted random choice of `rows` of `n` row indices, for screening."""
    return np.sort(np.random.default_rng(0).choice(n, rows, replace=False))


def _distinct_best(P, f, k):
    """Indices of the k lowest finite objectives, preferring distinct optima (rounded params)."""
    order = [i for i in np.argsort(f) if np.isfinite(f[i])]
    seen, first, rest = set(), [], []
    for i in order:
        key = tuple(np.round(P[i], 3))
        (rest if key in seen else first).append(i)
        seen.add(key)
    return np.array((first + rest)[:k], dtype=int)


def _search(
    P0,
    data: FitData,
    delta,
    screen_iters,
    refine_top,
    refine_iters,
    polish_top,
    polish_iters,
    screen_rows,
    screen_elements,
    progress,
):
    """Screen every init (float32), then polish the best distinct candidates on all rows (float64).

    Tables over `screen_rows` rows are screened on a fixed random subsample of that many rows
    (weighted to the full table's scale) and the candidates pre-polished there, so memory and time
    do not grow with the table; the last `FULL_POLISH` candidates are then polished on every row,
    so the optimum is the exact table's. Returns (theta, screen objectives, the best screened
    lane's index, the polished gradient at theta, screen seconds)."""
    from ..solvers.huber_lse import minimize_lanes, padded_arrays, screen_lanes

    n = len(data)
    t0 = time.perf_counter()
    X, y, w = padded_arrays(data.N, data.D, data.L)
    sub = _subsample(n, screen_rows) if n > screen_rows else None
    Xs, ys, ws = (
        (X, y, w) if sub is None else padded_arrays(data.N[sub], data.D[sub], data.L[sub], weights=n / len(sub))
    )
    progress(
        f"screening {len(P0)} inits on "
        + (f"a {len(sub)}-row subsample of {n} rows" if sub is not None else f"all {n} rows")
    )
    Ps, fs = screen_lanes(P0, Xs, ys, ws[None], delta, screen_iters, refine_top, refine_iters, screen_elements)
    t_screen = time.perf_counter() - t0
    top = _distinct_best(Ps, fs, polish_top)
    if len(top) == 0:
        raise AnalysisError("parametric fit failed: every initialisation gave a non-finite objective")
    starts = Ps[top]
    if sub is not None:
        progress(f"polishing {len(top)} candidates on the subsample")
        Pq, fq, _, _ = minimize_lanes(
            starts, Xs, ys, ws[None], delta, polish_iters, stable=True, gtol=1e-12, x64=True
        )
        starts = Pq[_distinct_best(Pq, fq, FULL_POLISH)]
        progress(f"polishing the best {len(starts)} on all {n} rows")
    Pp, fp, gp, _ = minimize_lanes(starts, X, y, w[None], delta, polish_iters, stable=True, gtol=1e-12, x64=True)
    best = int(np.nanargmin(fp))
    return Pp[best], fs, top[0], gp[best], t_screen


def _newton_decrease(theta, g, data: FitData, delta: float) -> float:
    """How much one Newton step from `theta` would still lower the objective, ½ gᵀH⁻¹g: the
    convergence measure that does not depend on how the parameters are scaled (the float64 noise
    floor of the gradient does, and differs between CPUs). inf where H is not positive definite."""
    from ..solvers.huber_lse import hessian, padded_arrays

    X, y, w = padded_arrays(data.N, data.D, data.L)
    H = hessian(np.asarray(theta, np.float64), X, y, w, delta)
    try:
        step = np.linalg.solve(H, np.asarray(g, np.float64))
    except np.linalg.LinAlgError:
        return float("inf")
    decrease = 0.5 * float(np.dot(g, step))
    return decrease if decrease >= 0 else float("inf")


def _fit_warnings(law, theta, fs, best_lane, g, objective, data: FitData, delta: float) -> tuple[list, int]:
    """(warnings, number of screened lanes that reached the best basin)."""
    warnings, n = [], len(data)
    n_basin = int(np.sum(fs <= fs[best_lane] * (1 + 1e-4)))  # screened lanes within float32 noise of the best
    if n_basin < 2:
        warnings.append(
            "the best optimum was reached from a single initialisation; the fit may not be the global minimum"
        )
    decrease = _newton_decrease(theta, g, data, delta)
    if not decrease <= 1e-9 * max(objective, 1e-12):
        warnings.append(
            f"polish did not fully converge (a Newton step would still lower the objective by "
            f"{decrease:.2e}, max |gradient| {float(np.max(np.abs(g))):.2e}); raise polish_iters"
        )
    if not (0.01 < law.alpha < 3.0 and 0.01 < law.beta < 3.0):
        warnings.append(
            f"unusual exponents alpha={law.alpha:.3g}, beta={law.beta:.3g}: the data may not constrain both terms"
        )
    if n <= 10:
        warnings.append(f"only {n} points for 5 parameters")
    if law.E > data.L.min():
        warnings.append(f"fitted E={law.E:.4g} exceeds the lowest observed loss {data.L.min():.4g}")
    return warnings, n_basin


def fit_parametric(
    data: FitData,
    delta: float = 1e-3,
    grid: dict | np.ndarray | None = None,
    screen_iters: int = 40,
    refine_top: int = 512,
    refine_iters: int = 100,
    polish_top: int = 32,
    polish_iters: int = 300,
    k: float | None = None,
    target_flops: float | None = None,
    screen_rows: int | None = SCREEN_ROWS,
    screen_elements: int | None = None,
) -> FitResult:
    """Fit Chinchilla's L(N, D) to `data` (see module docstring). Returns a `FitResult` with params
    E, A, B, alpha, beta, a, b, G, k and the Huber-sum objective over every row; residuals are
    log L - log L_fit. Tables over `screen_rows` rows screen the init grid on a subsample (None:
    always on every row); a screen of more than `screen_elements` lanes x rows runs in chunks."""
    from ..solvers.huber_lse import huber_objective

    n = len(data)
    screen_rows = n if screen_rows is None else screen_rows
    require_points(n, 5, "parametric fit")
    require_spread(data, "parametric fit")
    k = data.k if k is None else k
    t0 = time.perf_counter()
    progress = Progress("parametric fit", n > LARGE_ROWS)
    P0 = grid if isinstance(grid, np.ndarray) else init_grid(grid)
    theta, fs, best_lane, g, t_screen = _search(
        P0,
        data,
        delta,
        screen_iters,
        refine_top,
        refine_iters,
        polish_top,
        polish_iters,
        screen_rows,
        screen_elements,
        progress,
    )
    law = Chinchilla.from_lse(*theta)
    objective = huber_objective(theta, data.N, data.D, data.L, delta)
    resid, frame = fitted_rows(data, law)
    warnings, n_basin = _fit_warnings(law, theta, fs, best_lane, g, objective, data, delta)
    params = law.readouts(k)
    extra = _fit_extra(data, law, theta, objective, delta, len(P0), n_basin, screen_rows, t0, t_screen)
    if target_flops:
        extra["target"] = law.target(target_flops, k)
    progress(f"done, objective {objective:.7e} on all {n} rows")
    return FitResult(
        method="parametric",
        params=params,
        objective=objective,
        residuals=resid,
        data=frame,
        warnings=warnings,
        law=law,
        extra=extra,
    )


def _fit_extra(data, law, theta, objective, delta, n_inits, n_basin, screen_rows, t0, t_screen) -> dict:
    """The fit's conventions, search statistics and timing."""
    from ..solvers.huber_lse import PARAM_NAMES

    n = len(data)
    return {
        "objective_convention": f"sum of Huber(delta={delta:g}) over log-loss residuals",
        "objective_mean": objective / n,
        "delta": delta,
        "n_inits": int(n_inits),
        "n_inits_at_best": n_basin,
        "columns": data.columns,
        "lse_params": dict(zip(PARAM_NAMES, map(float, theta))),
        "screen_rows": int(min(n, screen_rows)),
        "fit_seconds": time.perf_counter() - t0,
        "screen_seconds": t_screen,
    }


def _bootstrap_all_at_once(data, theta, delta, rng, n_boot, n_perturb, screen_iters, polish_iters):
    """Small tables: every resample's lanes (optimum + perturbations) screened and polished in one batch."""
    from ..solvers.huber_lse import padded_arrays

    n = len(data)
    X, y, _ = padded_arrays(data.N, data.D, data.L)
    counts = np.zeros((n_boot, X.shape[1]))
    counts[:, :n] = resample_counts(rng, data, n_boot)
    starts = theta + rng.standard_normal((n_boot, n_perturb + 1, 5)) * PERTURB_SCALE
    starts[:, 0] = theta
    W = np.repeat(counts, n_perturb + 1, axis=0)
    return _screen_then_polish(starts, X, (y, W), (y, counts), delta, screen_iters, polish_iters)


def _screen_then_polish(starts, X, screen, polish, delta, screen_iters, polish_iters):
    """starts (copies, lanes, 5): every lane screened in float32 against `screen` = (y, W) for all
    copies' lanes, then each copy's best lane polished in float64 against `polish` = (y, W) per copy;
    returns (P, f) per copy."""
    from ..solvers.huber_lse import minimize_lanes

    copies, lanes = starts.shape[:2]
    Ps, fs, _, _ = minimize_lanes(starts.reshape(-1, 5), X, *screen, delta, screen_iters, stable=False)
    best = np.nanargmin(np.where(np.isfinite(fs), fs, np.inf).reshape(copies, lanes), axis=1)
    pick = np.arange(copies) * lanes + best
    Pp, fp, _, _ = minimize_lanes(Ps[pick], X, *polish, delta, polish_iters, stable=True, gtol=1e-12, x64=True)
    return Pp, fp


def refit_copies(
    data, fit, log_losses, seed: int = 0, n_perturb: int = 3, screen_iters: int = 100, polish_iters: int = 200
) -> pd.DataFrame:
    """The law refitted to each row of `log_losses` (copies x rows: the table's (N, D) with other
    losses, e.g. a residual bootstrap's), all copies at once as `_bootstrap_all_at_once` does
    resamples — each copy one group of lanes with its own y, started at the fit's optimum and
    `n_perturb` perturbations, the best polished in float64 — in chunks of bounded memory.
    Returns E, A, B, alpha, beta per copy that converged to a finite objective."""
    from ..solvers.huber_lse import PARAM_NAMES, padded_arrays

    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))  # not the stream that drew the copies
    theta = np.array([fit.extra["lse_params"][p] for p in PARAM_NAMES])
    delta, n = fit.extra["delta"], len(data)
    X, y0, w = padded_arrays(data.N, data.D, data.L)
    lanes = n_perturb + 1
    chunk = int(max(1, min(len(log_losses), BOOT_ELEMENTS // (X.shape[1] * lanes))))
    out = []
    for lo in range(0, len(log_losses), chunk):
        part = np.asarray(log_losses[lo : lo + chunk], float)
        c = len(part)
        Y = np.tile(y0, (chunk, 1))
        Y[:c, :n] = part
        Y[c:, :n] = part[0]  # the last chunk padded with copies of its first: one compiled shape
        starts = theta + rng.standard_normal((chunk, lanes, 5)) * PERTURB_SCALE
        starts[:, 0] = theta
        screen = (np.repeat(Y, lanes, axis=0), w[None])
        Pp, fp = _screen_then_polish(starts, X, screen, (Y, w[None]), delta, screen_iters, polish_iters)
        out.append(np.column_stack([Pp, fp])[:c])
    P = np.concatenate(out)
    a_, b_, e_, al, be, f = P.T
    keep = np.isfinite(f)
    return pd.DataFrame({"E": np.exp(e_), "A": np.exp(a_), "B": np.exp(b_), "alpha": al, "beta": be})[
        keep
    ].reset_index(drop=True)


def _bootstrap_in_chunks(data, theta, delta, rng, n_boot, polish_iters, gtol, progress):
    """Large tables: a resample's optimum lies within a few standard errors of the full fit's, so
    each starts there and takes Newton steps with the full table's Hessian on all its rows (float64),
    `chunk` resamples at a time so that memory stays bounded (the last chunk padded with copies,
    then trimmed). A resample whose gradient stays above `gtol` is polished by L-BFGS instead."""
    from ..solvers.huber_lse import chord_newton, hessian, minimize_lanes, padded_arrays

    n = len(data)
    X, y, w = padded_arrays(data.N, data.D, data.L)
    H = hessian(theta, X, y, w, delta)
    chunk = int(max(1, min(n_boot, BOOT_ELEMENTS // X.shape[1])))
    P_all, f_all, n_lbfgs = [], [], 0
    for lo in range(0, n_boot, chunk):
        c = min(chunk, n_boot - lo)
        counts = np.zeros((chunk, X.shape[1]))
        counts[:c, :n] = resample_counts(rng, data, c)
        counts[c:] = counts[0]
        P, f, g = chord_newton(np.tile(theta, (chunk, 1)), X, y, counts, H, delta)
        bad = ~(np.isfinite(f) & (np.max(np.abs(g), 1) <= gtol))
        if bad.any():
            Pb, fb, _, _ = minimize_lanes(
                np.tile(theta, (int(bad.sum()), 1)),
                X,
                y,
                counts[bad],
                delta,
                polish_iters,
                stable=True,
                gtol=gtol,
                x64=True,
            )
            P[bad], f[bad], n_lbfgs = Pb, fb, n_lbfgs + int(bad[:c].sum())
        P_all.append(P[:c])
        f_all.append(f[:c])
        progress(f"{lo + c} of {n_boot} resamples" + (f" ({n_lbfgs} needed L-BFGS)" if n_lbfgs else ""))
    return np.concatenate(P_all), np.concatenate(f_all)


def bootstrap_parametric(
    data: FitData,
    fit: FitResult,
    n_boot: int = 1000,
    n_perturb: int = 3,
    seed: int = 0,
    screen_iters: int = 100,
    polish_iters: int = 200,
    target_flops: float | None = None,
    level: float = 0.95,
    screen_rows: int = SCREEN_ROWS,
):
    """Resample runs (rows) with replacement `n_boot` times and refit each resample.

    Tables up to `screen_rows` rows: all at once, each resample starting from the full fit's
    optimum and `n_perturb` random perturbations of it, the best lane polished in float64. Larger
    tables: in chunks, each resample polished from the optimum on all its rows (see
    `_bootstrap_in_chunks`). Returns (samples DataFrame, ci dict)."""
    from ..solvers.huber_lse import PARAM_NAMES

    rng = np.random.default_rng(seed)
    n, delta, k = len(data), fit.extra["delta"], fit.params["k"]
    theta = np.array([fit.extra["lse_params"][p] for p in PARAM_NAMES])
    if n <= screen_rows:
        Pp, fp = _bootstrap_all_at_once(data, theta, delta, rng, n_boot, n_perturb, screen_iters, polish_iters)
    else:
        progress = Progress("parametric bootstrap", True)
        gtol = 1e-6 * max(
            fit.objective, 1e-12
        )  # the fit's own convergence bar (an absolute 1e-12 is out of reach)
        Pp, fp = _bootstrap_in_chunks(data, theta, delta, rng, n_boot, polish_iters, gtol, progress)
    a_, b_, e_, al, be = Pp.T
    E, A, B = np.exp(e_), np.exp(a_), np.exp(b_)
    samples = pd.DataFrame(
        {
            "E": E,
            "A": A,
            "B": B,
            "alpha": al,
            "beta": be,
            "a": be / (al + be),
            "b": al / (al + be),
            "objective": fp,
        }
    )
    if target_flops:
        G = (al * A / (be * B)) ** (1.0 / (al + be))
        c = target_flops / k
        samples["n_opt"] = G * c ** samples["a"]
        samples["d_opt"] = c ** samples["b"] / G
    samples = samples[np.isfinite(fp)].reset_index(drop=True)
    ci = percentile_ci(samples.drop(columns=["objective"]), level)
    return samples, ci


def holdout_points(f: FitResult, data: FitData, budget, train_mask, held, fit_kwargs):
    """Back-test points: the loss of every held-out run against the law `f` fitted on the smaller
    budgets. Returns (held-out points, the training points with their fitted values)."""
    from ..table import measured_rows, subset

    test_mask = ~train_mask & measured_rows(data)  # loss-curve-law points are data, not tests
    test, train = subset(data, test_mask), subset(data, train_mask)
    pts = pd.DataFrame(
        {
            "budget": budget[test_mask],
            "N": test.N,
            "D": test.D,
            "C": test.C,
            "loss": test.L,
            "predicted": f.law(test.N, test.D),
        }
    )
    train_points = pd.DataFrame(
        {"N": train.N, "D": train.D, "C": train.C, "loss": train.L, "predicted": f.law(train.N, train.D)}
    )
    return pts, train_points


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "parametric"
DESCRIPTION = "L(N, D) = E + A/N^alpha + B/D^beta, Huber on log loss (Chinchilla approach 3)"
FIGURES = "cde"
USES_JAX = True
CURVE_POINTS = True


def fit(data, curves, **kw) -> FitResult:
    return fit_parametric(data, **kw)


def resample(fit, data, curves, n_boot, seed, target_flops) -> pd.DataFrame:
    samples, _ = bootstrap_parametric(data, fit, n_boot=n_boot, seed=seed, target_flops=target_flops)
    return samples.drop(columns=["objective"])


holdout = holdout_points


def options(o) -> dict:
    return {"delta": o.delta}


def summary(r) -> list[str]:
    p = r.params
    return [
        f"  L(N, D) = {p['E']:.4f} + {p['A']:.4g}/N^{p['alpha']:.4f} + {p['B']:.4g}/D^{p['beta']:.4f}",
        f"  objective {r.objective:.7e} ({r.extra['objective_convention']}); {r.extra['n_inits']} inits, "
        f"{r.extra['n_inits_at_best']} of the screened inits reached the best",
    ]


def section(p) -> list[str]:
    q = p.params
    return [
        "## Parametric fit (approach 3)",
        "",
        f"L(N, D) = {q['E']:.4f}{ci_text(p, 'E', '.3f')} + {q['A']:.4g}{ci_text(p, 'A')} / N^{q['alpha']:.4f}"
        f"{ci_text(p, 'alpha')} + {q['B']:.4g}{ci_text(p, 'B')} / D^{q['beta']:.4f}{ci_text(p, 'beta')}",
        "",
        f"Huber objective {p.objective:.6e} ({p.extra['objective_convention']}), "
        f"{p.extra['n_inits']} initialisations.",
        "",
    ]
