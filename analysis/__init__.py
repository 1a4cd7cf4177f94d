"""Scaling-law analysis on results tables: fits with confidence intervals, compute-optimal
frontiers, the papers' figures and a one-page report. It never imports the training stack
(`lab`), so it works on any CSV, including published ones.

The whole analysis of a study, from Python:

    import analysis
    study = analysis.load("runs/x")                          # DIR/results.csv (+ curves), or any CSV
    iso = analysis.fit(study, "isoflop", bootstrap=200)      # FitResult with .params, .a, .ci
    par = analysis.fit(study, "parametric", target_flops=1e21)
    analysis.figures(study, [iso, par], "out/")              # figures (a)-(e) and their CSVs
    analysis.report("runs/x")                                # runs/x/report.md, figures/, fits.json
    print(analysis.summary_text(iso))

`load` takes the table's row and column choices as keywords (`n_col=`, `loss_col=`, `where=`,
`drop_highest_loss=`, ...; see `TableOptions`); `fit` takes the method's own (`delta=`,
`estimator=`, `loss_noise=`) and `bootstrap=`, `seed=`, `level=`, `target_flops=`. Methods are
registered in `analysis.methods`, one module each in `analysis.fits`; there are ten: parametric
(approach 3), isoflop (approach 2), envelope (approach 1), kaplan, vpnls (the parametric law by
variable projection), loss-curve (schedule-aware curves), data-constrained (repeated data), task
(downstream accuracy), ptq (quantization damage) and lr (the optimal learning rate).
`backtest(study.data, "parametric", holdout=2)` fits the smaller budgets and predicts the largest.

Simulate a study design before spending compute: `simulate_isoflop` draws a results table from a
known law (`CHINCHILLA_EPOCH` by default) and `write_study` lays it out as `lab study` does, with
training curves; fitting it shows whether the design recovers the law that generated it.
`analysis.uncertainty.audit.audit(study.data, copies=100)` simulates a table's own design from its own fitted
law and scores each method's bias, RMSE and interval coverage (`lab fit --audit N`, `--method auto`).

The package's rooms: `analysis.fits` (one module per law), `analysis.solvers` (Huber-LSE, variable
projection, L-BFGS, the scipy reference), `analysis.plotting` (figures) and `analysis.reports`
(the report, per-group comparisons, the suite of fits). No exported name equals a submodule's
name, so `analysis.fit` is always the function.
Names are imported lazily so that `import analysis` (e.g. by the lab CLI) costs nothing.
"""

from importlib import import_module

_EXPORTS = {
    "AnalysisError": "errors",
    "load": "inputs",
    "Study": "inputs",
    "TableOptions": "options",
    "FitOptions": "options",
    "load_table": "table",
    "fit_data": "table",
    "FitData": "table",
    "filter_rows": "table",
    "fit": "fitting",
    "fit_with_options": "fitting",
    "summary_text": "fitting",
    "METHODS": "methods",
    "Method": "methods",
    "FitResult": "result",
    "bootstrap": "uncertainty.intervals",
    "backtest": "uncertainty.holdout",
    "figures": "plotting.plots",
    "report": ("reports.reporting", "write_report"),
    "simulate_isoflop": ("synthetic", "isoflop_table"),
    "write_study": "synthetic",
    "CHINCHILLA_EPOCH": "synthetic",
    "Chinchilla": "laws",
    "KaplanND": "laws",
    "PowerLaw": "laws",
    "DataConstrained": "laws",
}
# The fitters themselves are `analysis.fits.parametric.fit_parametric` etc.; they are not exported
# here because a name equal to a submodule's would turn into the module once that is imported.

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        module, attr = _EXPORTS[name] if isinstance(_EXPORTS[name], tuple) else (_EXPORTS[name], name)
        return getattr(import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
