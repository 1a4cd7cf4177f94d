"""The law's parameter uncertainty for a prediction interval: a residual bootstrap.

A prediction interval for one new run holds three things: how uncertain the law's parameters are,
how much one run scatters (`predict.run_noise`) and how far the law's form drifts beyond the grid
(`form`, measured by back-tests on the table). The row bootstrap — resample the table's rows, refit
— mixes the first with the third: a resample of a 20-row, 5-parameter table drops ~36% of its rows,
and its refits spread ~1.5x more than the estimator does (benchmarks/README.md, issue 23: bootstrap
sd 1.49x the true sd on the default study's table; a residual bootstrap 0.96x). Where the form
error is measured separately, the parameters' spread *given the form* is what is wanted:

    each copy keeps every row's (N, D) and takes the fitted law's value there times exp(r*), r*
    drawn with replacement from the fit's own log residuals (centred, times sqrt(n / (n - 5)) for
    the parameters fitted); the method refits the copy exactly as it fitted the table.

`law_draws(fit, data, "residuals", ...)` returns a copy of the fit carrying those refits as its
`bootstrap_samples` (what `run_intervals` and `predict_runs` draw laws from); "rows" is the row
bootstrap (`intervals.bootstrap`). The back-tests' own intervals use the same scheme as the
interval they calibrate, so the form term measures what the chosen draws leave out.

The validation rung draws residuals only where its form term is measured (`rung_draws`): the
residual interval holds the parameters given the form and nothing of the form's misfit, so where
no back-test can measure that misfit (fewer than 3 budgets) the row bootstrap, which holds some of
it, stands. Measured (benchmarks/README.md, `benchmarks/bench_form_error.py --pi-draws`): on exact-law
simulations the residual intervals with the form term held 116/120 held-out runs (rows: 120/120, too
wide), on mis-specified ones 99/120 (rows 96/120), published tables 220/223 (rows 222/223); on the
default study's own back-tests, where the form term cannot be measured, 22/30 (rows 28/30).
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pandas as pd

from ..errors import AnalysisError

SCHEMES = ("residuals", "rows")
PI_DRAWS = "rows"  # the default of back-tests' intervals (`lab fit --backtest`, `holdout.backtest`)
RUNG_DRAWS = "residuals"  # the validation rung's, where its form term is measured (`rung_draws`)
LAW_PARAMS = 5


def residual_samples(fit, data, n_boot: int, seed: int = 0, **fit_kwargs) -> pd.DataFrame:
    """The law parameters of `n_boot` residual-bootstrap refits of `fit` on `data` (module doc);
    copies the method cannot fit are left out."""
    from ..fitting import fit as run_fit
    from ..table import measured_rows

    fit_kwargs = {k: v for k, v in fit_kwargs.items() if k != "seed"}
    if fit.law is None:
        raise AnalysisError(f"a residual bootstrap needs a law of (N, D); {fit.method} has none")
    if not measured_rows(data).all():
        raise AnalysisError("a residual bootstrap needs one row per run; this table has loss-curve points")
    names = [f.name for f in fields(type(fit.law))]
    central = np.asarray(fit.law(data.N, data.D), float)
    r = np.log(np.asarray(data.L, float)) - np.log(central)
    n = len(r)
    r = (r - r.mean()) * np.sqrt(n / max(n - LAW_PARAMS, 1))
    rng = np.random.default_rng(seed)
    draws = rng.choice(r, (n_boot, n))
    if fit.method == "parametric" and "lse_params" in fit.extra:  # all copies at once, as its row bootstrap
        from ..fits.parametric import refit_copies

        return refit_copies(data, fit, np.log(central)[None] + draws, seed)[names]
    rows = []
    for i in range(n_boot):
        copy = replace(data, L=central * np.exp(draws[i]), notes=[])
        try:
            f = run_fit(copy, fit.method, seed=seed, **fit_kwargs)
        except AnalysisError:
            continue
        if f.law is not None:
            rows.append({k: float(getattr(f.law, k)) for k in names})
    return pd.DataFrame(rows, columns=names)


def law_draws(
    fit, data, scheme: str = PI_DRAWS, n_boot: int = 100, seed: int = 0, level: float = 0.95, **fit_kwargs
):
    """`fit` with `bootstrap_samples` from `scheme` ("residuals": a copy of it, `residual_samples`;
    "rows": the row bootstrap attached to `fit` itself, `intervals.bootstrap`)."""
    if scheme not in SCHEMES:
        raise AnalysisError(f"law draws: scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if scheme == "rows":
        from .intervals import bootstrap

        return bootstrap(fit, data, n_boot=n_boot, seed=seed, level=level)
    samples = residual_samples(fit, data, n_boot, seed, **fit_kwargs)
    if len(samples) < max(2, n_boot // 10):
        raise AnalysisError(f"{fit.method}: only {len(samples)} of {n_boot} residual-bootstrap copies gave a fit")
    return replace(fit, bootstrap_samples=samples)


def rung_draws(form: dict, data) -> str:
    """The scheme of the validation rung's law draws: residuals where its form term was measured
    (`form["holdouts"]` not empty) on a table of one row per run, else rows (module doc)."""
    from ..table import measured_rows

    return RUNG_DRAWS if form.get("holdouts") and measured_rows(data).all() else "rows"


def prediction_draws(fit, data, options, scheme: str = PI_DRAWS):
    """`fit` as a prediction interval draws its laws: by `scheme` for a law of (N, D) (the study's
    `options`: its bootstrap size, seed and the method's fit settings); a fit without a law (an
    optimum-placing method) as it is."""
    from ..methods import fit_options

    if fit is None or fit.law is None:
        return fit
    if scheme == "rows" and fit.bootstrap_samples is not None and len(fit.bootstrap_samples):
        return fit
    own = fit_options(fit.method, options)
    return law_draws(
        fit, data, scheme, n_boot=options.bootstrap or 100, seed=options.seed, level=options.level, **own
    )
