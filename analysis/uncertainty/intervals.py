"""Bootstrap percentile intervals for any registered method (`analysis.methods`): each method's
`resample` hook draws the samples, vectorised where it matters.

- parametric: resample runs; all resamples refit at once (`fit_parametric.bootstrap_parametric`).
- isoflop: redraw each budget's optimum from its own uncertainty (Birge-scaled where the optima
  scatter more than that); each draw's weighted power-law fit is closed-form, computed for all
  draws at once (`fit_isoflop.bootstrap_isoflop`).
- envelope: resample runs; each resample's envelope is a min over the selected rows of one matrix.
- kaplan: resample runs and refit (three small regressions each).

Every sampled quantity gets an interval: the exponents, the coefficients, and N_opt / D_opt at a
target compute when one is given.
"""

from __future__ import annotations

from ..errors import AnalysisError
from ..laws import K_FLOPS_PER_PARAM_TOKEN
from ..methods import get
from ..result import FitResult, percentile_ci
from ..table import FitData


def bootstrap(
    fit: FitResult,
    data: FitData | None = None,
    curves=None,
    n_boot: int = 1000,
    seed: int = 0,
    target_flops: float | None = None,
    level: float = 0.95,
) -> FitResult:
    """Attach `ci` (percentile intervals) and `bootstrap_samples` to `fit`, and return it."""
    if n_boot < 2:
        raise AnalysisError(f"--bootstrap needs at least 2 resamples, got {n_boot}")
    if not 0 < level < 1:
        raise AnalysisError(f"--level must be between 0 and 1, got {level}")
    method = get(fit.method)
    if method.resample is None:
        if fit.ci is not None:  # the method resamples inside its own fit (task, ptq)
            return fit
        raise AnalysisError(f"no bootstrap for method {fit.method!r}")
    samples = method.resample(fit, data, curves, n_boot, seed, target_flops)
    if len(samples) < max(2, n_boot // 10):
        fit.warnings.append(f"bootstrap: only {len(samples)} of {n_boot} resamples gave a fit")
    fit.bootstrap_samples = samples
    fit.ci = percentile_ci(samples, level) if len(samples) else {}
    return fit


def prediction_interval(fit: FitResult, target_flops: float, level: float = 0.95, seed: int = 0) -> dict | None:
    """Two intervals for the loss of the compute-optimal model at `target_flops`, from a fit with a
    law and bootstrap samples of its parameters (parametric):

    - confidence interval: where the *law's* predicted loss lies (parameter uncertainty only);
    - prediction interval: where *one new run's* measured loss should fall — each resample's
      prediction times exp(a residual of the fit drawn at random), so run-to-run scatter counts.

    Returns {"flops", "loss", "ci_lo", "ci_hi", "pi_lo", "pi_hi", "level", "n"} or None when the fit
    has no law or no bootstrap."""
    import numpy as np

    s = fit.bootstrap_samples
    if fit.law is None or s is None or not len(s) or not {"E", "A", "B", "alpha", "beta"} <= set(s.columns):
        return None
    k = fit.params.get("k", K_FLOPS_PER_PARAM_TOKEN)
    E, A, B, al, be = (s[c].to_numpy(float) for c in ("E", "A", "B", "alpha", "beta"))
    with np.errstate(all="ignore"):
        G = (al * A / (be * B)) ** (1.0 / (al + be))
        n = G * (target_flops / k) ** (be / (al + be))
        d = target_flops / (k * n)
        L = E + A / n**al + B / d**be
    L = L[np.isfinite(L) & (L > 0)]
    if len(L) < 2:
        return None
    resid = np.asarray(fit.residuals, float)
    rng = np.random.default_rng(seed)
    draws = L[rng.integers(0, len(L), 20 * len(L))] * np.exp(resid[rng.integers(0, len(resid), 20 * len(L))])
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    n_opt, d_opt = fit.law.optimal(target_flops, k)
    return {
        "flops": float(target_flops),
        "loss": float(fit.law(n_opt, d_opt)),
        "ci_lo": float(np.percentile(L, q[0])),
        "ci_hi": float(np.percentile(L, q[1])),
        "pi_lo": float(np.percentile(draws, q[0])),
        "pi_hi": float(np.percentile(draws, q[1])),
        "level": level,
        "n": int(len(L)),
    }


def run_intervals(
    fit: FitResult,
    N,
    D,
    data: FitData,
    level: float = 0.95,
    seed: int = 0,
    draws: int = 4000,
    run_noise: bool = True,
    form_sigma=None,
) -> dict:
    """Prediction intervals for *one new run* at each (N, D), from a fit with a law and bootstrap
    samples of its parameters (parametric, vpnls): each draw is a resampled law's prediction times
    exp(sigma * N(0, 1)), where sigma is the run-to-run noise measured on `data` — the seed-to-seed
    scatter where the table has replicates (read at each point's compute off its trend with compute
    where that trend is measured, `noise_trend.trend_at`), else (or when larger) the law's residual
    std, degrees-of-freedom corrected (`analysis.synthetic.noise_of`); `run_noise=False` leaves it out (the law's
    confidence interval, for comparison). `form_sigma` (one per point, in log loss: the law's form
    error at each point's extrapolation distance, `analysis.uncertainty.form`) multiplies each draw by
    exp(form_sigma * z) too, one z per draw. Returns {"predicted", "pi_lo", "pi_hi"} (arrays) and
    "noise" (that dict)."""
    import numpy as np

    from ..synthetic import noise_of
    from .noise_trend import trend_at

    s = fit.bootstrap_samples
    if fit.law is None or s is None or not len(s) or not {"E", "A", "B", "alpha", "beta"} <= set(s.columns):
        raise AnalysisError(f"prediction intervals need a law and its bootstrap samples; {fit.method} has none")
    N, D = np.asarray(N, float), np.asarray(D, float)
    E, A, B, al, be = (s[c].to_numpy(float)[:, None] for c in ("E", "A", "B", "alpha", "beta"))
    with np.errstate(all="ignore"):
        L = E + A / N**al + B / D**be  # (resamples, points)
    L = L[np.all(np.isfinite(L) & (L > 0), axis=1)]
    noise = noise_of(data, fit.residuals)
    rng = np.random.default_rng(seed)
    sigma = noise["sigma"] if run_noise else 0.0
    trend = trend_at(data, data.k * N * D) if run_noise and noise["seed"] is not None else None
    if trend is not None:  # the seed scatter read at each point's compute, as the validation rung reads it
        sigma = np.maximum(noise["residual"], trend["sigma"])
        noise = {**noise, "trend_sigma": [float(v) for v in sigma]}
    sims = L[rng.integers(0, len(L), draws)] * np.exp(sigma * rng.standard_normal((draws, len(N))))
    if form_sigma is not None:
        sims = sims * np.exp(np.asarray(form_sigma, float)[None] * rng.standard_normal((draws, 1)))
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    return {
        "predicted": fit.law(N, D),
        "pi_lo": np.percentile(sims, q[0], axis=0),
        "pi_hi": np.percentile(sims, q[1], axis=0),
        "noise": noise,
    }
