"""One entry point for every fitter: `fit(study, method)` returns a `FitResult`, with bootstrap
intervals when asked.

    import analysis
    study = analysis.load("results.csv", n_col="params_total", loss_col="final_val_loss")
    result = analysis.fit(study, "parametric", bootstrap=200, target_flops=1e21)
    result.params["alpha"], result.a, result.ci["a"]
    print(analysis.summary_text(result))

Methods (see `analysis.methods`): parametric (approach 3), isoflop (approach 2), envelope
(approach 1), kaplan.
"""

from __future__ import annotations

from .errors import AnalysisError
from .methods import fit_options, flagged, get
from .options import FitOptions
from .reports.text import fmt
from .table import FitData, measured_rows


def fit(
    source,
    method: str = "parametric",
    *,
    bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
    target_flops: float | None = None,
    curves=None,
    **kwargs,
):
    """Fit `source` (a `Study` from `analysis.load`, or a `FitData`) by `method`.

    `curves` (long table of training curves; a Study brings its own) is used by `envelope`, which
    otherwise treats each row as a one-point curve. `bootstrap` > 0 attaches percentile intervals
    at `level` from that many resamples. Other keywords go to the method's fitter (e.g. `delta`
    for parametric, `estimator` and `loss_noise` for isoflop); `seed` seeds the bootstrap and
    any random draws of the fitter."""
    data, curves = _data_and_curves(source, curves)
    m = get(method)
    if not m.curve_points and not measured_rows(data).all():
        takers = " or ".join(flagged("curve_points"))
        raise AnalysisError(f"--curve-points adds N-D law data; fit it with {takers}, not {method}")
    kw = {**m.options(FitOptions(seed=seed)), "target_flops": target_flops, **kwargs}
    result = m.fit(data, curves, **kw)
    if bootstrap:
        from .uncertainty.intervals import bootstrap as attach_intervals

        attach_intervals(
            result, data, curves=curves, n_boot=bootstrap, seed=seed, target_flops=target_flops, level=level
        )
    return result


def fit_with_options(source, method: str, options: FitOptions, bootstrap: bool = True):
    """`fit` with every choice taken from a `FitOptions` (the CLI's and the report's path);
    `bootstrap=False` skips the intervals whatever `options.bootstrap` says."""
    own = fit_options(method, options)  # `seed` reaches the fitter anyway
    return fit(
        source,
        method,
        bootstrap=options.bootstrap if bootstrap else 0,
        seed=options.seed,
        level=options.level,
        target_flops=options.target_flops,
        **own,
    )


def _data_and_curves(source, curves):
    if isinstance(source, FitData):
        return source, curves
    if hasattr(source, "data") and isinstance(source.data, FitData):
        return source.data, source.curves if curves is None else curves
    raise TypeError(f"fit needs a Study (analysis.load) or a FitData, got {type(source).__name__}")


def summary_text(r) -> str:
    """A few human-readable lines describing a fit."""
    p, cols = r.params, r.extra.get("columns", {})
    head = f"{r.method} fit of {r.n_points} points" + (
        f" ({', '.join(f'{k}={v}' for k, v in cols.items())})" if cols else ""
    )
    lines = [head] + get(r.method).summary(r)
    if p.get("a") is not None:  # laws that give a compute-optimal allocation
        lines.append(f"  N_opt ∝ C^{fmt(p.get('a'))}, D_opt ∝ C^{fmt(p.get('b'))}")
    if "target" in r.extra:
        t = r.extra["target"]
        lines.append(f"  at C={t['flops']:.3g}: N_opt={t['n_opt']:.4g}, D_opt={t['d_opt']:.4g}")
    for name, ci in (r.ci or {}).items():
        lines.append(
            f"  {name}: {ci['median']:.4g} [{ci['lo']:.4g}, {ci['hi']:.4g}] "
            f"({ci['level']:.0%} CI, {ci['n']} resamples)"
        )
    for w in r.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)
