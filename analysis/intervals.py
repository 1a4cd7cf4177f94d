"""Bootstrap percentile intervals for every fitter, vectorised where it matters.

- parametric: resample runs; all resamples refit at once (see `fit_parametric.bootstrap_parametric`).
- isoflop: resample budgets; each resample's weighted power-law fit is closed-form, computed for
  all resamples at once.
- envelope: resample runs; each resample's envelope is a min over the selected rows of one matrix.
- kaplan: resample runs and refit (three small regressions each).

Every sampled quantity gets an interval: the exponents, the coefficients, and N_opt / D_opt at a
target compute when one is given.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import AnalysisError
from .result import FitResult, percentile_ci
from .table import FitData


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


def bootstrap_isoflop(fit: FitResult, n_boot: int = 1000, seed: int = 0, target_flops: float | None = None) -> pd.DataFrame:
    opt = fit.extra["optima"]
    use = opt[opt["used"]]
    nb = len(use)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(nb, np.full(nb, 1.0 / nb), size=n_boot).astype(float)
    x = np.log(use["budget"].to_numpy())
    weighted = fit.extra.get("weighted", True)
    out = {}
    for name, col, sd in (("n", "n_opt", "n_opt_std_log"), ("d", "d_opt", "d_opt_std_log")):
        w = 1 / use[sd].to_numpy() ** 2 if weighted else np.ones(nb)
        Y = np.broadcast_to(np.log(use[col].to_numpy()), (n_boot, nb))
        icpt, slope = _wls_slopes(x, Y, counts * w)
        out["a" if name == "n" else "b"] = slope
        out[f"{name}_coef"] = np.exp(icpt)
        if target_flops:
            out[f"{name}_opt"] = np.exp(icpt + slope * np.log(target_flops))
    return pd.DataFrame(out)


def bootstrap_kaplan(data: FitData, n_boot: int = 1000, seed: int = 0, target_flops: float | None = None,
                     start: dict | None = None) -> pd.DataFrame:
    from .fit_kaplan import fit_kaplan
    from .table import subset

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


def bootstrap(fit: FitResult, data: FitData | None = None, curves=None, n_boot: int = 1000, seed: int = 0,
              target_flops: float | None = None, level: float = 0.95) -> FitResult:
    """Attach `ci` (percentile intervals) and `bootstrap_samples` to `fit`, and return it."""
    if n_boot < 2:
        raise AnalysisError(f"--bootstrap needs at least 2 resamples, got {n_boot}")
    if not 0 < level < 1:
        raise AnalysisError(f"--level must be between 0 and 1, got {level}")
    if fit.method == "parametric":
        from .fit_parametric import bootstrap_parametric

        samples, _ = bootstrap_parametric(data, fit, n_boot=n_boot, seed=seed, target_flops=target_flops, level=level)
        samples = samples.drop(columns=["objective"])
    elif fit.method == "isoflop":
        samples = bootstrap_isoflop(fit, n_boot=n_boot, seed=seed, target_flops=target_flops)
    elif fit.method == "envelope":
        from .curves import final_points_as_curves
        from .fit_envelope import bootstrap_envelope

        if curves is None:
            curves = final_points_as_curves(data.N, data.C, data.L, data.D)
        samples = bootstrap_envelope(curves, n_boot=n_boot, seed=seed, k=data.k if data else 6.0, target_flops=target_flops)
    elif fit.method == "kaplan":
        samples = bootstrap_kaplan(data, n_boot=n_boot, seed=seed, target_flops=target_flops, start=fit.params)
    else:
        raise AnalysisError(f"no bootstrap for method {fit.method!r}")
    if len(samples) < max(2, n_boot // 10):
        fit.warnings.append(f"bootstrap: only {len(samples)} of {n_boot} resamples gave a fit")
    fit.bootstrap_samples = samples
    fit.ci = percentile_ci(samples, level) if len(samples) else {}
    return fit
