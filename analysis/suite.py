"""Run several fitters on one table for figures and reports, collecting what could not be done
as notes instead of failing (a study may have no IsoFLOP budgets, or no training curves)."""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError


def holdout_for(data, share: float = 0.1, at_least: int = 3) -> int:
    """How many of the largest budgets to hold out so the test set has >= max(at_least, share * n) runs."""
    from .table import bin_budgets

    budget = data.budget if data.budget is not None else bin_budgets(data.C)
    b, counts = np.unique(budget, return_counts=True)
    need = max(at_least, int(np.ceil(share * len(budget))))
    h = int(np.searchsorted(np.cumsum(counts[::-1]), need) + 1)
    return int(min(h, max(1, len(b) - 2)))


def run_suite(data, curves, args, methods=("parametric", "isoflop", "envelope", "kaplan"),
              backtest_figure: bool = True) -> dict:
    """{"parametric", "isoflop", "envelope", "kaplan", "backtest", "curves", "notes"}; missing ones are None.
    Bootstraps (args.bootstrap resamples) give the CIs and figure (c)'s band."""
    from .backtest import backtest
    from .bootstrap import bootstrap
    from .fitting import fit

    out = {"curves": curves, "notes": [], "backtest": None}
    B, seed, target = getattr(args, "bootstrap", 0), getattr(args, "seed", 0), getattr(args, "target_flops", None)

    def attempt(name, fn):
        try:
            out[name] = fn()
        except AnalysisError as e:
            out[name] = None
            msg = str(e)
            out["notes"].append(msg if msg.startswith(f"{name}") else f"{name}: {msg}")

    def with_ci(result, **kw):
        if B:
            bootstrap(result, data, n_boot=B, seed=seed, target_flops=target, **kw)
        return result

    if "parametric" in methods:
        attempt("parametric", lambda: with_ci(fit(data, "parametric", delta=args.delta, target_flops=target)))
    if "isoflop" in methods:
        attempt("isoflop", lambda: with_ci(fit(data, "isoflop", estimator=args.iso_method, loss_noise=args.loss_noise,
                                               seed=seed, target_flops=target)))
    if "envelope" in methods:
        attempt("envelope", lambda: with_ci(fit(data, "envelope", curves=curves, target_flops=target), curves=curves))
    if "kaplan" in methods:
        attempt("kaplan", lambda: fit(data, "kaplan", target_flops=target))
    if backtest_figure and out.get("parametric") is not None:
        attempt("backtest", lambda: backtest(data, "parametric", holdout=holdout_for(data), delta=args.delta))
    return out
