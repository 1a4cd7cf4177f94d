"""Run several fitters on one table for figures and reports, collecting what could not be done
as notes instead of failing (a study may have no IsoFLOP budgets, or no training curves)."""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError
from .methods import METHODS, get
from .options import FitOptions
from .progress import LARGE_ROWS, Progress


def holdout_for(data, share: float = 0.1, at_least: int = 3) -> int:
    """How many of the largest budgets to hold out so the test set has >= max(at_least, share * n) runs."""
    from .table import bin_budgets

    budget = data.budget if data.budget is not None else bin_budgets(data.C)
    b, counts = np.unique(budget, return_counts=True)
    need = max(at_least, int(np.ceil(share * len(budget))))
    h = int(np.searchsorted(np.cumsum(counts[::-1]), need) + 1)
    return int(min(h, max(1, len(b) - 2)))


def run_suite(study, options: FitOptions | None = None, methods=METHODS, backtest: str | None = "parametric") -> dict:
    """Fit `study` (an `analysis.load` result) by each of `methods`, bootstrapping those whose
    registry entry says so (`options.bootstrap` resamples), and back-test the `backtest` method.

    Returns {method name: FitResult or None, "backtest", "curves", "notes"}; a fit that cannot be
    done is None with its reason in "notes"."""
    from .fitting import fit_with_options
    from .holdout import backtest as run_backtest

    options = options or FitOptions()
    data = study.data
    out = {"curves": study.curves, "notes": [], "backtest": None}
    progress = Progress("analysis", len(data) > LARGE_ROWS)

    def attempt(name, fn):
        try:
            out[name] = fn()
        except AnalysisError as e:
            out[name] = None
            msg = str(e)
            out["notes"].append(msg if msg.startswith(f"{name}") else f"{name}: {msg}")

    for name in METHODS:
        if name in methods:
            boot = get(name).suite_bootstrap and options.bootstrap
            progress(f"{name} fit" + (f" and {options.bootstrap}-resample bootstrap" if boot else "") + f" of {len(data)} rows")
            attempt(name, lambda: fit_with_options(study, name, options, bootstrap=get(name).suite_bootstrap))
    if backtest and out.get(backtest) is not None:
        progress(f"{backtest} back-test")
        attempt("backtest", lambda: run_backtest(data, backtest, holdout=holdout_for(data), **get(backtest).options(options)))
    progress("fits done; drawing figures")
    return out
