"""Chinchilla approach 3: fit L(N, D) = E + A/N^alpha + B/D^beta by the procedure of Epoch's refit.

Besiroglu et al. (2024) fit log L = LSE(a - alpha log N, b - beta log D, e) (so A = e^a, B = e^b,
E = e^e) by minimising the Huber loss (delta = 1e-3) of the log-loss residuals, summed over points,
with L-BFGS from a grid of 4,500 initial values, keeping the best. We run the same objective from
the same grid, but all initialisations at once:

1. screen: every init runs `screen_iters` batched L-BFGS iterations in float32 (one
   value-and-gradient of all 4,500 lanes per iteration, see `analysis.lbfgs`); the `refine_top`
   best lanes then run `refine_iters` more (still float32, one compiled program for both);
2. polish: the `polish_top` best distinct lanes continue in float64, in a scoped
   `jax.enable_x64(True)` context (it does not leak into other JAX code in the process),
   until their gradients vanish or `polish_iters` iterations pass; the best is kept.

The objective reported is the Huber *sum* (Epoch's convention; 1.018e-3 on their 240 points).
`bootstrap_parametric` refits resampled tables the same vectorised way, each resample starting
from the full fit's optimum and a few perturbations of it.
"""

from __future__ import annotations

import functools
import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from .errors import AnalysisError
from .laws import Chinchilla
from .lbfgs import make_minimizer
from .progress import LARGE_ROWS, Progress
from .result import FitResult, percentile_ci
from .table import FitData, require_points, require_spread

SCREEN_ROWS = LARGE_ROWS  # larger tables screen the init grid on a fixed subsample of this many rows
FULL_POLISH = 4  # ... and polish this many distinct candidates on every row
PAD_STEP = 8192
SCREEN_ELEMENTS = 1 << 25  # lanes x rows screened in one batch (128 MiB per float32 array); more run in chunks
BOOT_ELEMENTS = 1 << 22  # resamples x rows per bootstrap chunk on large tables (32 MiB per float64 array)
PERTURB_SCALE = np.array([1.0, 1.0, 0.1, 0.05, 0.05])  # bootstrap start perturbations of (a, b, e, alpha, beta)
PARAM_NAMES = ("a", "b", "e", "alpha", "beta")  # log-sum-exp parametrisation, in this order
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
    grid = EPOCH_GRID if grid is None else grid
    return np.array(list(itertools.product(*(np.asarray(grid[k], float) for k in PARAM_NAMES))))


@functools.lru_cache(maxsize=None)
def _huber_lse_vg(delta: float, stable: bool):
    """Per-lane Huber-sum objective and its gradient, written out so that all reductions are
    matrix products: XLA on CPU then evaluates the elementwise work once instead of once per
    reduction (7x faster than autodiff of the same expression here).

    P: (lanes, 5) params; X: (2, n) log N, log D; y: (n,) log L; W: (1 or lanes, n) weights.
    `stable` subtracts the running max inside the log-sum-exp (float64 polish); the float32
    screen skips it (one exp fewer per point) and relies on the optimiser rejecting overflowing steps.
    """

    def vg(P, X, y, W):
        a, b, e, al, be = (P[:, i:i + 1] for i in range(5))
        lnN, lnD = X[0][None, :], X[1][None, :]
        t1, t2 = a - al * lnN, b - be * lnD
        if stable:
            m = jnp.maximum(jnp.maximum(t1, t2), e)
            e1, e2, e3 = jnp.exp(t1 - m), jnp.exp(t2 - m), jnp.exp(e - m)
            s = e1 + e2 + e3
            r = m + jnp.log(s) - y[None, :]
        else:
            e1, e2, e3 = jnp.exp(t1), jnp.exp(t2), jnp.exp(e)
            s = e1 + e2 + e3
            r = jnp.log(s) - y[None, :]
        ar = jnp.abs(r)
        h = jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
        dh = jnp.clip(r, -delta, delta) * W / s
        ones = jnp.ones_like(X[0])
        f = (h * W) @ ones
        g1 = (dh * e1) @ jnp.stack([ones, -X[0]], 1)
        g2 = (dh * e2) @ jnp.stack([ones, -X[1]], 1)
        g3 = (dh * e3) @ ones
        return f, jnp.stack([g1[:, 0], g2[:, 0], g3, g1[:, 1], g2[:, 1]], 1)

    return vg


def _padded_size(n: int) -> int:
    """Pad the point count to a power of two (>= 256) so that tables up to 256 rows, the usual
    size of a study, share one compiled program (and one persistent-cache entry); past
    PAD_STEP rows, to a multiple of PAD_STEP (a power of two would waste up to half the work)."""
    if n > PAD_STEP:
        return -(-int(n) // PAD_STEP) * PAD_STEP
    return max(256, 1 << (int(n) - 1).bit_length())


def _subsample(n: int, rows: int) -> np.ndarray:
    """A fixed (seed 0), sorted random choice of `rows` of `n` row indices, for screening."""
    return np.sort(np.random.default_rng(0).choice(n, rows, replace=False))


def _arrays(N, D, L, weights=None):
    """(X (2, n_pad), y (n_pad,), w (n_pad,)) in float64 numpy; padding rows have weight 0."""
    n = len(L)
    n_pad = _padded_size(n)
    X = np.empty((2, n_pad))
    y = np.empty(n_pad)
    w = np.zeros(n_pad)
    X[0, :n], X[1, :n], y[:n] = np.log(N), np.log(D), np.log(L)
    X[:, n:] = X[:, :n].mean(1, keepdims=True)  # harmless values: same scale as the data
    y[n:] = y[:n].mean()
    w[:n] = 1.0 if weights is None else weights
    return X, y, w


@functools.lru_cache(maxsize=None)
def _staged_screen(delta: float, iters: int, keep: int, more_iters: int):
    """One jitted program: all lanes for `iters` iterations, then the `keep` best for `more_iters`."""
    vg = _huber_lse_vg(delta, False)
    first = make_minimizer(vg, iters)
    second = make_minimizer(vg, more_iters)

    def run(P0, X, y, W):
        P, f, _, _ = first(P0, X, y, W)
        score = jnp.where(jnp.isfinite(f), -f, -jnp.inf)
        _, top = jax.lax.top_k(score, keep)
        P2, f2, g2, n = second(P[top], X, y, W)
        return P2, f2, g2, n

    return jax.jit(run)


def _run(P0, X, y, W, delta, iters, stable, gtol=0.0, x64=False, keep=0, more_iters=0):
    """Minimise every row of P0 (or screen them, keeping the `keep` best); numpy (P, f, g, n_iter)."""
    if keep and keep < len(P0):
        run = _staged_screen(float(delta), int(iters), int(keep), int(more_iters))
    else:
        run = make_minimizer(_huber_lse_vg(float(delta), bool(stable)), int(iters + more_iters), gtol=float(gtol))
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):
        out = run(*(jnp.asarray(a, dtype) for a in (P0, X, y, W)))
        P, f, g, n_iter = (np.asarray(o) for o in out)
    return P.astype(np.float64), f.astype(np.float64), g.astype(np.float64), int(n_iter)


def _in_chunks(P, chunk: int, run):
    """`run` over rows of P, `chunk` at a time (the last chunk padded with copies of P[0], so one
    compiled shape serves all); returns the concatenated (P, f)."""
    outs_P, outs_f = [], []
    for lo in range(0, len(P), chunk):
        part = P[lo:lo + chunk]
        c = len(part)
        if c < chunk:
            part = np.concatenate([part, np.repeat(P[:1], chunk - c, axis=0)])
        Pc, fc = run(part)
        outs_P.append(Pc[:c])
        outs_f.append(fc[:c])
    return np.concatenate(outs_P), np.concatenate(outs_f)


def _screen(P0, X, y, W, delta, iters, keep, more_iters, max_elements=None):
    """The float32 screen: every lane for `iters` iterations, then the `keep` best for
    `more_iters`. When lanes x rows exceeds `max_elements`, lanes run in chunks of bounded memory
    (the same per-lane iterations as one batch); otherwise one compiled program does both stages."""
    max_elements = SCREEN_ELEMENTS if max_elements is None else max_elements
    if len(P0) * X.shape[1] <= max_elements:
        return _run(P0, X, y, W, delta, iters, stable=False, keep=keep, more_iters=more_iters)[:2]
    chunk = max(1, max_elements // X.shape[1])
    P1, f1 = _in_chunks(P0, chunk, lambda P: _run(P, X, y, W, delta, iters, stable=False)[:2])
    top = np.argsort(np.where(np.isfinite(f1), f1, np.inf), kind="stable")[:keep]
    return _in_chunks(P1[top], chunk, lambda P: _run(P, X, y, W, delta, more_iters, stable=False)[:2])


def huber_objective(params_lse, N, D, L, delta=1e-3, weights=None) -> float:
    """The Huber sum in float64 numpy (for checking; the fitter uses the JAX version)."""
    a, b, e, al, be = params_lse
    pred = np.logaddexp(np.logaddexp(a - al * np.log(N), b - be * np.log(D)), e)
    r = np.log(L) - pred
    h = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return float(np.sum(h if weights is None else weights * h))


def _distinct_best(P, f, k):
    """Indices of the k lowest finite objectives, preferring distinct optima (rounded params)."""
    order = [i for i in np.argsort(f) if np.isfinite(f[i])]
    seen, first, rest = set(), [], []
    for i in order:
        key = tuple(np.round(P[i], 3))
        (rest if key in seen else first).append(i)
        seen.add(key)
    return np.array((first + rest)[:k], dtype=int)


def _search(P0, data: FitData, delta, screen_iters, refine_top, refine_iters, polish_top, polish_iters,
            screen_rows, screen_elements, progress):
    """Screen every init (float32), then polish the best distinct candidates on all rows (float64).

    Tables over `screen_rows` rows are screened on a fixed random subsample of that many rows
    (weighted to the full table's scale) and the candidates pre-polished there, so memory and time
    do not grow with the table; the last `FULL_POLISH` candidates are then polished on every row,
    so the optimum is the exact table's. Returns (theta, screen objectives, the best screened
    lane's index, the polished gradient at theta, screen seconds)."""
    n = len(data)
    t0 = time.perf_counter()
    X, y, w = _arrays(data.N, data.D, data.L)
    sub = _subsample(n, screen_rows) if n > screen_rows else None
    Xs, ys, ws = (X, y, w) if sub is None else _arrays(data.N[sub], data.D[sub], data.L[sub], weights=n / len(sub))
    progress(f"screening {len(P0)} inits on " + (f"a {len(sub)}-row subsample of {n} rows" if sub is not None else f"all {n} rows"))
    Ps, fs = _screen(P0, Xs, ys, ws[None], delta, screen_iters, refine_top, refine_iters, screen_elements)
    t_screen = time.perf_counter() - t0
    top = _distinct_best(Ps, fs, polish_top)
    if len(top) == 0:
        raise AnalysisError("parametric fit failed: every initialisation gave a non-finite objective")
    starts = Ps[top]
    if sub is not None:
        progress(f"polishing {len(top)} candidates on the subsample")
        Pq, fq, _, _ = _run(starts, Xs, ys, ws[None], delta, polish_iters, stable=True, gtol=1e-12, x64=True)
        starts = Pq[_distinct_best(Pq, fq, FULL_POLISH)]
        progress(f"polishing the best {len(starts)} on all {n} rows")
    Pp, fp, gp, _ = _run(starts, X, y, w[None], delta, polish_iters, stable=True, gtol=1e-12, x64=True)
    best = int(np.nanargmin(fp))
    return Pp[best], fs, top[0], gp[best], t_screen


def _newton_decrease(theta, g, data: FitData, delta: float) -> float:
    """How much one Newton step from `theta` would still lower the objective, ½ gᵀH⁻¹g: the
    convergence measure that does not depend on how the parameters are scaled (the float64 noise
    floor of the gradient does, and differs between CPUs). inf where H is not positive definite."""
    X, y, w = _arrays(data.N, data.D, data.L)
    H = _hessian(np.asarray(theta, np.float64), X, y, w, delta)
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
        warnings.append("the best optimum was reached from a single initialisation; the fit may not be the global minimum")
    decrease = _newton_decrease(theta, g, data, delta)
    if not decrease <= 1e-9 * max(objective, 1e-12):
        warnings.append(f"polish did not fully converge (a Newton step would still lower the objective by "
                        f"{decrease:.2e}, max |gradient| {float(np.max(np.abs(g))):.2e}); raise polish_iters")
    if not (0.01 < law.alpha < 3.0 and 0.01 < law.beta < 3.0):
        warnings.append(f"unusual exponents alpha={law.alpha:.3g}, beta={law.beta:.3g}: the data may not constrain both terms")
    if n <= 10:
        warnings.append(f"only {n} points for 5 parameters")
    if law.E > data.L.min():
        warnings.append(f"fitted E={law.E:.4g} exceeds the lowest observed loss {data.L.min():.4g}")
    return warnings, n_basin


def fit_parametric(data: FitData, delta: float = 1e-3, grid: dict | np.ndarray | None = None,
                   screen_iters: int = 40, refine_top: int = 512, refine_iters: int = 100,
                   polish_top: int = 32, polish_iters: int = 300,
                   k: float | None = None, target_flops: float | None = None,
                   screen_rows: int | None = SCREEN_ROWS, screen_elements: int | None = None) -> FitResult:
    """Fit Chinchilla's L(N, D) to `data` (see module docstring). Returns a `FitResult` with params
    E, A, B, alpha, beta, a, b, G, k and the Huber-sum objective over every row; residuals are
    log L - log L_fit. Tables over `screen_rows` rows screen the init grid on a subsample (None:
    always on every row); a screen of more than `screen_elements` lanes x rows runs in chunks."""
    n = len(data)
    screen_rows = n if screen_rows is None else screen_rows
    require_points(n, 5, "parametric fit")
    require_spread(data, "parametric fit")
    k = data.k if k is None else k
    t0 = time.perf_counter()
    progress = Progress("parametric fit", n > LARGE_ROWS)
    P0 = grid if isinstance(grid, np.ndarray) else init_grid(grid)
    theta, fs, best_lane, g, t_screen = _search(P0, data, delta, screen_iters, refine_top, refine_iters,
                                                polish_top, polish_iters, screen_rows, screen_elements, progress)
    law = Chinchilla.from_lse(*theta)
    objective = huber_objective(theta, data.N, data.D, data.L, delta)
    pred = np.log(law(data.N, data.D))
    resid = np.log(data.L) - pred
    warnings, n_basin = _fit_warnings(law, theta, fs, best_lane, g, objective, data, delta)
    params = {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta,
              "a": law.a, "b": law.b, "G": law.G, "k": k}
    frame = pd.DataFrame({"N": data.N, "D": data.D, "C": data.C, "loss": data.L,
                          "loss_fit": np.exp(pred), "residual": resid})
    extra = {"objective_convention": f"sum of Huber(delta={delta:g}) over log-loss residuals",
             "objective_mean": objective / n, "delta": delta, "n_inits": int(len(P0)),
             "n_inits_at_best": n_basin, "columns": data.columns,
             "lse_params": dict(zip(PARAM_NAMES, map(float, theta))),
             "screen_rows": int(min(n, screen_rows)),
             "fit_seconds": time.perf_counter() - t0, "screen_seconds": t_screen}
    if target_flops:
        n_opt, d_opt = law.optimal(target_flops, k)
        extra["target"] = {"flops": float(target_flops), "n_opt": float(n_opt), "d_opt": float(d_opt),
                           "loss": float(law(n_opt, d_opt))}
    progress(f"done, objective {objective:.7e} on all {n} rows")
    return FitResult(method="parametric", params=params, objective=objective, residuals=resid,
                     data=frame, warnings=warnings, law=law, extra=extra)


def _bootstrap_all_at_once(data, theta, delta, rng, n_boot, n_perturb, screen_iters, polish_iters):
    """Small tables: every resample's lanes (optimum + perturbations) screened and polished in one batch."""
    n = len(data)
    X, y, _ = _arrays(data.N, data.D, data.L)
    counts = np.zeros((n_boot, X.shape[1]))
    counts[:, :n] = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)
    starts = theta + rng.standard_normal((n_boot, n_perturb + 1, 5)) * PERTURB_SCALE
    starts[:, 0] = theta
    W = np.repeat(counts, n_perturb + 1, axis=0)
    Ps, fs, _, _ = _run(starts.reshape(-1, 5), X, y, W, delta, screen_iters, stable=False)
    best = np.nanargmin(np.where(np.isfinite(fs), fs, np.inf).reshape(n_boot, n_perturb + 1), axis=1)
    pick = np.arange(n_boot) * (n_perturb + 1) + best
    Pp, fp, _, _ = _run(Ps[pick], X, y, counts, delta, polish_iters, stable=True, gtol=1e-12, x64=True)
    return Pp, fp


@functools.lru_cache(maxsize=None)
def _jitted_vg(delta: float):
    return jax.jit(_huber_lse_vg(delta, True))


def _hessian(theta, X, y, w, delta) -> np.ndarray:
    """The float64 Hessian (5, 5) of the weighted Huber sum at `theta` (forward-mode over the gradient)."""
    vg = _huber_lse_vg(float(delta), True)
    with jax.enable_x64(True):
        Xj, yj, wj = jnp.asarray(X), jnp.asarray(y), jnp.asarray(w)[None]
        H = np.asarray(jax.jacfwd(lambda p: vg(p[None], Xj, yj, wj)[1][0])(jnp.asarray(theta, jnp.float64)))
    return (H + H.T) / 2


def _chord_newton(P, X, y, W, H, delta, iters: int = 30):
    """Newton steps with one fixed Hessian H (the full table's at its optimum) for every lane:
    a resample's objective differs from the full one by O(1/sqrt(n)), so the steps contract fast.
    Returns (P, f, g) after the steps stop moving or `iters` pass."""
    vg = _jitted_vg(float(delta))
    with jax.enable_x64(True):
        Xj, yj, Wj = jnp.asarray(X), jnp.asarray(y), jnp.asarray(W)
        for _ in range(iters):
            f, g = (np.asarray(v) for v in vg(jnp.asarray(P), Xj, yj, Wj))
            step = np.linalg.solve(H, g.T).T
            if not np.all(np.isfinite(step)):
                break
            P = P - step
            if np.max(np.abs(step)) < 1e-13 * (1 + np.max(np.abs(P))):
                break
        f, g = (np.array(v) for v in vg(jnp.asarray(P), Xj, yj, Wj))
    return np.array(P), f, g


def _bootstrap_in_chunks(data, theta, delta, rng, n_boot, polish_iters, gtol, progress):
    """Large tables: a resample's optimum lies within a few standard errors of the full fit's, so
    each starts there and takes Newton steps with the full table's Hessian on all its rows (float64),
    `chunk` resamples at a time so that memory stays bounded (the last chunk padded with copies,
    then trimmed). A resample whose gradient stays above `gtol` is polished by L-BFGS instead."""
    n = len(data)
    X, y, w = _arrays(data.N, data.D, data.L)
    H = _hessian(theta, X, y, w, delta)
    chunk = int(max(1, min(n_boot, BOOT_ELEMENTS // X.shape[1])))
    P_all, f_all, n_lbfgs = [], [], 0
    for lo in range(0, n_boot, chunk):
        c = min(chunk, n_boot - lo)
        counts = np.zeros((chunk, X.shape[1]))
        counts[:c, :n] = rng.multinomial(n, np.full(n, 1.0 / n), size=c)
        counts[c:] = counts[0]
        P, f, g = _chord_newton(np.tile(theta, (chunk, 1)), X, y, counts, H, delta)
        bad = ~(np.isfinite(f) & (np.max(np.abs(g), 1) <= gtol))
        if bad.any():
            Pb, fb, _, _ = _run(np.tile(theta, (int(bad.sum()), 1)), X, y, counts[bad], delta, polish_iters,
                                stable=True, gtol=gtol, x64=True)
            P[bad], f[bad], n_lbfgs = Pb, fb, n_lbfgs + int(bad[:c].sum())
        P_all.append(P[:c])
        f_all.append(f[:c])
        progress(f"{lo + c} of {n_boot} resamples" + (f" ({n_lbfgs} needed L-BFGS)" if n_lbfgs else ""))
    return np.concatenate(P_all), np.concatenate(f_all)


def bootstrap_parametric(data: FitData, fit: FitResult, n_boot: int = 1000, n_perturb: int = 3,
                         seed: int = 0, screen_iters: int = 100, polish_iters: int = 200,
                         target_flops: float | None = None, level: float = 0.95,
                         screen_rows: int = SCREEN_ROWS):
    """Resample runs (rows) with replacement `n_boot` times and refit each resample.

    Tables up to `screen_rows` rows: all at once, each resample starting from the full fit's
    optimum and `n_perturb` random perturbations of it, the best lane polished in float64. Larger
    tables: in chunks, each resample polished from the optimum on all its rows (see
    `_bootstrap_in_chunks`). Returns (samples DataFrame, ci dict)."""
    rng = np.random.default_rng(seed)
    n, delta, k = len(data), fit.extra["delta"], fit.params["k"]
    theta = np.array([fit.extra["lse_params"][p] for p in PARAM_NAMES])
    if n <= screen_rows:
        Pp, fp = _bootstrap_all_at_once(data, theta, delta, rng, n_boot, n_perturb, screen_iters, polish_iters)
    else:
        progress = Progress("parametric bootstrap", True)
        gtol = 1e-6 * max(fit.objective, 1e-12)  # the fit's own convergence bar (an absolute 1e-12 is out of reach)
        Pp, fp = _bootstrap_in_chunks(data, theta, delta, rng, n_boot, polish_iters, gtol, progress)
    a_, b_, e_, al, be = Pp.T
    E, A, B = np.exp(e_), np.exp(a_), np.exp(b_)
    samples = pd.DataFrame({"E": E, "A": A, "B": B, "alpha": al, "beta": be,
                            "a": be / (al + be), "b": al / (al + be), "objective": fp})
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
    from .table import subset

    test, train = subset(data, ~train_mask), subset(data, train_mask)
    pts = pd.DataFrame({"budget": budget[~train_mask], "N": test.N, "D": test.D, "C": test.C, "loss": test.L,
                        "predicted": f.law(test.N, test.D)})
    train_points = pd.DataFrame({"N": train.N, "D": train.D, "C": train.C, "loss": train.L,
                                 "predicted": f.law(train.N, train.D)})
    return pts, train_points
