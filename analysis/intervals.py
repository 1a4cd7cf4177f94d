"""Bootstrap percentile intervals for any registered method (`analysis.methods`): each method's
`resample` hook draws the samples, vectorised where it matters.

- parametric: resample runs; all resamples refit at once (`fit_parametric.bootstrap_parametric`).
- isoflop: resample budgets; each resample's weighted power-law fit is closed-form, computed for
  all resamples at once (`fit_isoflop.bootstrap_isoflop`).
- envelope: resample runs; each resample's envelope is a min over the selected rows of one matrix.
- kaplan: resample runs and refit (three small regressions each).

Every sampled quantity gets an interval: the exponents, the coefficients, and N_opt / D_opt at a
target compute when one is given.
"""

from __future__ import annotations

from .errors import AnalysisError
from .methods import get
from .result import FitResult, percentile_ci
from .table import FitData


def bootstrap(fit: FitResult, data: FitData | None = None, curves=None, n_boot: int = 1000, seed: int = 0,
              target_flops: float | None = None, level: float = 0.95) -> FitResult:
    """Attach `ci` (percentile intervals) and `bootstrap_samples` to `fit`, and return it."""
    if n_boot < 2:
        raise AnalysisError(f"--bootstrap needs at least 2 resamples, got {n_boot}")
    if not 0 < level < 1:
        raise AnalysisError(f"--level must be between 0 and 1, got {level}")
    method = get(fit.method)
    if method.resample is None:
        raise AnalysisError(f"no bootstrap for method {fit.method!r}")
    samples = method.resample(fit, data, curves, n_boot, seed, target_flops)
    if len(samples) < max(2, n_boot // 10):
        fit.warnings.append(f"bootstrap: only {len(samples)} of {n_boot} resamples gave a fit")
    fit.bootstrap_samples = samples
    fit.ci = percentile_ci(samples, level) if len(samples) else {}
    return fit
