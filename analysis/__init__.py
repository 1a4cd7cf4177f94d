"""Scaling-law analysis on results tables: fits with confidence intervals, compute-optimal
frontiers, and the papers' figures. It never imports the training stack (`lab`), so it works on
any CSV, including published ones.

    from analysis import load_table, fit_data, fit, bootstrap
    data = fit_data(load_table("results.csv"))          # N, D, C, loss columns resolved and checked
    result = fit(data, "parametric")                     # or "isoflop", "envelope", "kaplan"
    bootstrap(result, data, n_boot=1000, target_flops=1e21)
    result.params, result.ci

Names are imported lazily so that `import analysis` (e.g. by the lab CLI) costs nothing.
"""

from importlib import import_module

_EXPORTS = {
    "AnalysisError": "errors",
    "load_table": "table", "fit_data": "table", "FitData": "table", "filter_rows": "table",
    "fit": "fitting", "METHODS": "fitting",
    "FitResult": "result",
    "bootstrap": "bootstrap",
    "backtest": "backtest",
    "Chinchilla": "laws", "KaplanND": "laws", "PowerLaw": "laws", "DataConstrained": "laws",
    "fit_parametric": "fit_parametric", "fit_isoflop": "fit_isoflop", "fit_envelope": "fit_envelope",
    "fit_kaplan": "fit_kaplan",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
