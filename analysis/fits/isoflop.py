"""Chinchilla approach 2: IsoFLOP profiles -> per-budget optima -> power laws N_opt ∝ C^a, D_opt ∝ C^b.

Per FLOP budget, the loss is modelled against log N (and separately log D) *around its minimum*,
so that points far from the minimum (much too small or too large models) cannot drag it:

- ``akima`` (default): Akima's local, shape-preserving spline through (log N, log L), minimised on
  a fine grid. Each piece depends only on its neighbours, so far points have no influence. This is
  the estimator of Porian et al. (2024).
- ``quadratic``: a parabola in log N through the minimum and `window` neighbours on each side
  (a symmetric window), the classic Hoffmann et al. fit made local.

A budget whose minimum sits at the edge of its N grid has no interior optimum: it is reported,
warned about, and left out of the power-law fit. The uncertainty of each optimum comes from
refitting under seed noise (`loss_noise`, absolute loss std; estimated from the scatter of the
points about local parabolas if not given) in `n_noise` vectorised draws: the std of log N* over
the draws, floored at a third of the grid spacing and inflated by the share of draws whose minimum
fell at an edge (as Porian et al. did). The power laws are then weighted least squares in log-log
with weights 1/std^2 (inverse variance; this reproduces Porian et al.'s exponents to 4 decimals).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..reports.text import fmt, md
from ..result import FitResult
from ..table import FitData

FINE = 25  # fine-grid points per data interval for minimising the interpolant


def _argmin_akima(x, Y):
    """x (n,), Y (n, m) -> (x* (m,), log-loss at x* (m,), edge (m,) bool)."""
    from scipy.interpolate import Akima1DInterpolator

    xi = np.linspace(x[0], x[-1], (len(x) - 1) * FINE + 1)
    yi = Akima1DInterpolator(x, Y, axis=0)(xi)
    j = np.argmin(yi, axis=0)
    edge = (j == 0) | (j == len(xi) - 1)
    return xi[j], yi[j, np.arange(Y.shape[1])], edge


def _argmin_quadratic(x, Y, window=2):
    """Parabola through the minimum and `window` neighbours each side (window shrunk to stay symmetric)."""
    n, m = Y.shape
    i = np.argmin(Y, axis=0)
    half = np.minimum(np.minimum(i, n - 1 - i), window)
    edge = half == 0
    half = np.maximum(half, 1)
    idx = np.arange(n)[:, None]
    lo, hi = np.clip(i - half, 0, n - 1), np.clip(i + half, 0, n - 1)
    mask = ((idx >= lo) & (idx <= hi)).astype(float)
    xc = x[:, None] - x[np.clip(i, 0, n - 1)][None, :]
    V = np.stack([np.ones_like(xc), xc, xc**2], -1) * mask[..., None]  # (n, m, 3)
    A = np.einsum("nmi,nmj->mij", V, V)
    rhs = np.einsum("nmi,nm->mi", V, Y)
    A += 1e-12 * np.eye(3)
    c = np.linalg.solve(A, rhs[..., None])[..., 0]
    bad = ~(c[:, 2] > 0)
    v = -c[:, 1] / (2 * np.where(bad, 1.0, c[:, 2]))
    v = np.clip(v, x[lo] - x[i], x[hi] - x[i])
    y_at = c[:, 0] + c[:, 1] * v + c[:, 2] * v * v
    return x[i] + v, y_at, edge | bad


ESTIMATORS = {"akima": _argmin_akima, "quadratic": _argmin_quadratic}


def merge_close(x, L, tol: float = 0.01):
    """Sort by x (a log size) and merge points within `tol` (1% in size) of their group's first
    point: replicates (seeds) and digitisation jitter become one point at their mean x with the
    geometric-mean loss. (Measured from the group's first point, not from the previous point, so a
    dense grid of distinct sizes is not chained into one group.)"""
    order = np.argsort(x)
    x, y = x[order], np.log(L[order])
    group = np.empty(len(x), dtype=int)
    g, start = -1, -np.inf
    for i, v in enumerate(x):
        if v - start > tol:
            g, start = g + 1, v
        group[i] = g
    n = g + 1
    cnt = np.bincount(group, minlength=n)
    return np.bincount(group, x, n) / cnt, np.exp(np.bincount(group, y, n) / cnt)


def estimate_loss_noise(budgets: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Robust scale of loss residuals about 5-point local parabolas in log N, pooled over budgets.
    Includes some misfit of the parabola, so it errs on the large side."""
    res = []
    for x, L in budgets:
        for j in range(2, len(x) - 2):
            xs, ys = x[j - 2 : j + 3], L[j - 2 : j + 3]
            c = np.polyfit(xs - xs[2], ys, 2)
            res.append((ys[2] - np.polyval(c, 0.0)) * np.sqrt(5 / 2))
    if not res:
        return 0.01
    return float(max(1.4826 * np.median(np.abs(res)), 1e-4))


def profile_curve(x, L, method: str = "akima", window: int = 2, n: int = 200):
    """The fitted log-loss profile of one budget around its minimum, as (x grid, loss) for plots:
    the Akima interpolant over the whole grid, or the parabola over its window."""
    from scipy.interpolate import Akima1DInterpolator

    y = np.log(L)
    if method == "akima":
        xi = np.linspace(x[0], x[-1], n)
        return xi, np.exp(Akima1DInterpolator(x, y)(xi))
    i = int(np.argmin(y))
    half = max(1, min(i, len(x) - 1 - i, window))
    lo, hi = max(0, i - half), min(len(x) - 1, i + half)
    c = np.polyfit(x[lo : hi + 1] - x[i], y[lo : hi + 1], 2)
    xi = np.linspace(x[lo], x[hi], n)
    return xi, np.exp(np.polyval(c, xi - x[i]))


def _optimum(x, L, method, sigma, n_noise, rng, window):
    """Point estimate and noise-draw spread of the minimiser of log L over x (sorted): (x*, L at x*,
    edge, std of x*, std of log L at x* over the draws)."""
    est = ESTIMATORS[method]
    kw = {"window": window} if method == "quadratic" else {}
    y = np.log(L)
    x0, y0, edge0 = (v[0] for v in est(x, y[:, None], **kw))
    noisy = np.maximum(L[:, None] + sigma * rng.standard_normal((len(L), n_noise)), 1e-12)
    xs, ys, edges = est(x, np.log(noisy), **kw)
    ok = ~edges
    floor = np.mean(np.diff(x)) / 3.0
    if ok.sum() < max(2, n_noise // 2):
        std, std_y = np.inf, np.inf
    else:
        std = max(float(np.std(xs[ok])), floor) * n_noise / ok.sum()
        std_y = max(float(np.std(ys[ok])), 1e-4)
    return float(x0), float(np.exp(y0)), bool(edge0), std, std_y


def _wls_line(x, y, w):
    """Weighted least squares y = c0 + c1 x; returns (c0, c1, residuals)."""
    A = np.stack([np.ones_like(x), x], 1)
    sw = np.sqrt(w)
    c, *_ = np.linalg.lstsq(A * sw[:, None], y * sw, rcond=None)
    return float(c[0]), float(c[1]), y - A @ c


def _budget_curves(frame: pd.DataFrame, budgets):
    """Per budget, (log N, loss, log D, loss) with replicates merged."""
    curves = []
    for c in budgets:
        g = frame[frame["budget"] == c]
        xn, Ln = merge_close(np.log(g["N"].to_numpy()), g["loss"].to_numpy())
        xd, Ld = merge_close(np.log(g["D"].to_numpy()), g["loss"].to_numpy())
        curves.append((xn, Ln, xd, Ld))
    return curves


def _budget_optimum(c, curve, k, estimator, sigma, n_noise, rng, window, min_points, warnings) -> dict:
    """One row of the optima table: the budget's N_opt, D_opt, their log-std, and whether it is used."""
    xn, Ln, xd, Ld = curve
    row = {"budget": float(c), "n_points": int(len(xn))}
    if len(xn) < min_points:
        warnings.append(f"budget {c:.3g}: only {len(xn)} distinct N, skipped")
        row.update(
            n_opt=np.nan,
            d_opt=np.nan,
            loss_opt=np.nan,
            loss_opt_std_log=np.nan,
            n_opt_std_log=np.nan,
            d_opt_std_log=np.nan,
            edge=False,
            used=False,
        )
        return row
    xn_opt, l_opt, edge_n, sd_n, sd_l = _optimum(xn, Ln, estimator, sigma, n_noise, rng, window)
    if len(xd) >= min_points:
        xd_opt, _, edge_d, sd_d, _ = _optimum(xd, Ld, estimator, sigma, n_noise, rng, window)
    else:
        xd_opt, edge_d, sd_d = np.log(c / (k * np.exp(xn_opt))), edge_n, sd_n
    edge = edge_n or edge_d
    if edge:
        var, lv = ("N", Ln) if edge_n else ("D", Ld)
        side = "smallest" if np.argmin(lv) == 0 else "largest"
        warnings.append(
            f"budget {c:.3g}: loss minimum at the {side} {var} of its grid; excluded from the power-law fit"
        )
    usable = (not edge) and np.isfinite(sd_n) and np.isfinite(sd_d)
    if not edge and not usable:
        warnings.append(f"budget {c:.3g}: minimum unstable under loss noise {sigma:.3g}; excluded")
    row.update(
        n_opt=float(np.exp(xn_opt)),
        d_opt=float(np.exp(xd_opt)),
        loss_opt=l_opt,
        loss_opt_std_log=sd_l,
        n_opt_std_log=sd_n,
        d_opt_std_log=sd_d,
        edge=edge,
        used=usable,
    )
    return row


def _check_budgets(data: FitData, estimator: str, budgets) -> None:
    if estimator not in ESTIMATORS:
        raise AnalysisError(f"unknown isoflop estimator {estimator!r}; choose from {', '.join(ESTIMATORS)}")
    if len(budgets) < 2:
        raise AnalysisError(f"isoflop needs at least 2 FLOP budgets, got {len(budgets)} ({budgets[0]:.3g} FLOPs)")


def fit_isoflop(
    data: FitData,
    estimator: str = "akima",
    loss_noise: float | None = None,
    n_noise: int = 200,
    window: int = 2,
    weighted: bool = True,
    seed: int = 0,
    target_flops: float | None = None,
    min_points: int = 3,
) -> FitResult:
    """Per-budget optima and the power laws N_opt = n_coef C^a, D_opt = d_coef C^b (see module doc)."""
    if data.budget is None:
        raise AnalysisError("isoflop needs a budget column (--budget-col) or C values to bin")
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"budget": data.budget, "N": data.N, "D": data.D, "C": data.C, "loss": data.L})
    budgets = np.unique(frame["budget"])
    _check_budgets(data, estimator, budgets)
    curves = _budget_curves(frame, budgets)
    sigma = estimate_loss_noise([(xn, Ln) for xn, Ln, _, _ in curves]) if loss_noise is None else float(loss_noise)
    warnings = []
    opt = _budget_optima(data, budgets, curves, estimator, sigma, n_noise, rng, window, min_points, warnings)
    use = opt[opt["used"]]
    cn0, a, rn, wn, cd0, b, rd = _allocation_lines(use, weighted)
    if len(use) == 2:
        warnings.append("only 2 budgets: the exponents have no residual degrees of freedom")
    opt["residual_log_n"] = np.nan
    opt.loc[opt["used"], "residual_log_n"] = rn
    opt["residual_log_d"] = np.nan
    opt.loc[opt["used"], "residual_log_d"] = rd
    params = {"a": a, "b": b, "n_coef": float(np.exp(cn0)), "d_coef": float(np.exp(cd0))}
    extra = {
        "optima": opt,
        "estimator": estimator,
        "window": window,
        "loss_noise": sigma,
        "weighted": weighted,
        "n_budgets": int(len(budgets)),
        "n_budgets_used": int(len(use)),
        "columns": data.columns,
    }
    if target_flops:
        extra["target"] = {
            "flops": float(target_flops),
            "n_opt": float(np.exp(cn0) * target_flops**a),
            "d_opt": float(np.exp(cd0) * target_flops**b),
        }
    return FitResult(
        method="isoflop",
        params=params,
        objective=float(np.sum(wn * rn**2)),
        residuals=rn,
        data=frame,
        warnings=warnings,
        law=None,
        extra=extra,
    )


def _budget_optima(data, budgets, curves, estimator, sigma, n_noise, rng, window, min_points, warnings):
    """One row per budget with its optimum (appending to `warnings`); raises AnalysisError unless at
    least 2 budgets have a usable interior minimum."""
    opt = pd.DataFrame(
        [
            _budget_optimum(c, curve, data.k, estimator, sigma, n_noise, rng, window, min_points, warnings)
            for c, curve in zip(budgets, curves)
        ]
    )
    use = opt[opt["used"]]
    if len(use) < 2:
        few = int((opt["n_points"] < min_points).sum())
        edge = int(opt["edge"].sum())
        raise AnalysisError(
            f"isoflop: only {len(use)} of {len(opt)} budget(s) have an interior loss minimum "
            f"({few} with fewer than {min_points} distinct N, {edge} with the minimum at the grid edge, "
            f"{len(opt) - len(use) - few - edge} unstable under loss noise {sigma:.3g}); need at least 2"
        )
    return opt


def _allocation_lines(use, weighted):
    """Weighted least-squares lines log N_opt and log D_opt against log C over the used budgets:
    (intercept_n, a, residuals_n, weights_n, intercept_d, b, residuals_d)."""
    lc = np.log(use["budget"].to_numpy())
    wn = 1 / use["n_opt_std_log"].to_numpy() ** 2 if weighted else np.ones(len(use))
    wd = 1 / use["d_opt_std_log"].to_numpy() ** 2 if weighted else np.ones(len(use))
    cn0, a, rn = _wls_line(lc, np.log(use["n_opt"].to_numpy()), wn)
    cd0, b, rd = _wls_line(lc, np.log(use["d_opt"].to_numpy()), wd)
    return cn0, a, rn, wn, cd0, b, rd


def allocation_points(fit: FitResult):
    """The points figure (c) draws: the used budgets' optima with their log-std,
    as (C, {"n": (N_opt, std of log N_opt), "d": (D_opt, std of log D_opt)})."""
    o = fit.extra["optima"]
    o = o[o["used"]]
    return o["budget"].to_numpy(), {
        "n": (o["n_opt"].to_numpy(), o["n_opt_std_log"].to_numpy()),
        "d": (o["d_opt"].to_numpy(), o["d_opt_std_log"].to_numpy()),
    }


def _wls_slopes(x, Y, W):
    """Weighted line fits of each row of Y (B, n) on x (n,) with weights W (B, n): (intercepts, slopes)."""
    s0 = W.sum(1)
    sx, sy = W @ x, (W * Y).sum(1)
    sxx, sxy = W @ (x * x), (W * Y * x).sum(1)
    den = s0 * sxx - sx * sx
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (s0 * sxy - sx * sy) / den
        icpt = (sy - slope * sx) / s0
    bad = ~(np.abs(den) > 1e-12 * np.maximum(1.0, s0 * sxx))
    slope[bad], icpt[bad] = np.nan, np.nan
    return icpt, slope


def bootstrap_isoflop(
    fit: FitResult, n_boot: int = 1000, seed: int = 0, target_flops: float | None = None
) -> pd.DataFrame:
    """Redraw every used budget's log N_opt (log D_opt) from its own uncertainty (`n_opt_std_log`:
    where on its profile the minimum lies), scaled up by the Birge ratio sqrt(chi2 / dof) when the
    optima scatter about the power law more than their uncertainties allow; each draw's weighted
    power-law fit is closed-form, all at once. (Resampling the budgets instead is blind to how well
    each minimum is located: with two or three budgets it has a handful of distinct outcomes and
    its interval collapses — with two, every usable resample gives the same slope.)"""
    opt = fit.extra["optima"]
    use = opt[opt["used"]]
    nb = len(use)
    rng = np.random.default_rng(seed)
    x = np.log(use["budget"].to_numpy())
    weighted = fit.extra.get("weighted", True)
    out = {}
    for name, col, sd in (("n", "n_opt", "n_opt_std_log"), ("d", "d_opt", "d_opt_std_log")):
        sigma = use[sd].to_numpy(float)
        y = np.log(use[col].to_numpy())
        w = 1 / sigma**2 if weighted else np.ones(nb)
        Y = y + birge_ratio(x, y, sigma) * sigma * rng.standard_normal((n_boot, nb))
        icpt, slope = _wls_slopes(x, Y, np.broadcast_to(w, (n_boot, nb)))
        out["a" if name == "n" else "b"] = slope
        out[f"{name}_coef"] = np.exp(icpt)
        if target_flops:
            out[f"{name}_opt"] = np.exp(icpt + slope * np.log(target_flops))
    return pd.DataFrame(out)


def birge_ratio(x, y, sigma) -> float:
    """max(1, sqrt(chi2 / (n - 2))) of the weighted line through (x, y) with errors sigma; 1 for two points."""
    if len(x) <= 2:
        return 1.0
    icpt, slope = _wls_slopes(x, y[None], (1 / sigma**2)[None])
    chi2 = float(np.sum(((y - icpt[0] - slope[0] * x) / sigma) ** 2))
    return float(max(1.0, np.sqrt(chi2 / (len(x) - 2))))


def holdout_points(f: FitResult, data: FitData, budget, train_mask, held, fit_kwargs):
    """Back-test points: N_opt of every held-out budget measured on its own points, against the
    power law `f` fitted on the smaller budgets. Returns (points, None)."""
    from ..table import subset

    full_data = subset(data, np.ones(len(data), bool))
    full_data.budget = budget
    full = fit_isoflop(full_data, **fit_kwargs).extra["optima"]
    rows = full[np.isin(full["budget"], held) & full["used"]]
    pred = f.params["n_coef"] * rows["budget"].to_numpy() ** f.params["a"]
    pts = pd.DataFrame(
        {
            "budget": rows["budget"].to_numpy(),
            "C": rows["budget"].to_numpy(),
            "n_opt": rows["n_opt"].to_numpy(),
            "n_opt_predicted": pred,
        }
    )
    return pts, None


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "isoflop"
DESCRIPTION = "per-budget loss minima, then N_opt ∝ C^a (Chinchilla approach 2)"
FIGURES = "bc"
NEEDS_BUDGET = True


def fit(data, curves, **kw) -> FitResult:
    return fit_isoflop(data, **kw)


def resample(fit, data, curves, n_boot, seed, target_flops) -> pd.DataFrame:
    return bootstrap_isoflop(fit, n_boot=n_boot, seed=seed, target_flops=target_flops)


holdout = holdout_points


def options(o) -> dict:
    return {"estimator": o.iso_method, "loss_noise": o.loss_noise, "seed": o.seed}


def summary(r) -> list[str]:
    lines = [
        f"  {r.extra['n_budgets_used']} of {r.extra['n_budgets']} budgets used; estimator {r.extra['estimator']}, "
        f"loss noise {r.extra['loss_noise']:.3g}"
    ]
    for _, o in r.extra["optima"].iterrows():
        if not np.isfinite(o["n_opt"]):  # a skipped budget has no optimum to print
            lines.append(f"    C={o['budget']:.3g}: no optimum ({o['n_points']} distinct N; needs 3)")
            continue
        lines.append(
            f"    C={o['budget']:.3g}: N_opt={fmt(o['n_opt'])} (±{fmt(o['n_opt_std_log'], '.2f')} in log), "
            f"D_opt={fmt(o['d_opt'])}, loss={fmt(o['loss_opt'])}{'  [edge]' if o['edge'] else ''}"
        )
    return lines


def section(iso) -> list[str]:
    L = [
        "## IsoFLOP optima (approach 2)",
        "",
        "| budget | N_opt | D_opt | loss | σ(log N_opt) | used |",
        "|---|---|---|---|---|---|",
    ]
    for _, o in iso.extra["optima"].iterrows():
        L.append(
            f"| {o['budget']:.3g} | {md(o['n_opt'], '.3g')} | {md(o['d_opt'], '.3g')} | "
            f"{md(o['loss_opt'], '.4g')} | "
            f"{md(o['n_opt_std_log'], '.2f')} | {'yes' if o['used'] else 'no (edge)' if o['edge'] else 'no'} |"
        )
    return L + [""]
