"""One entry point for every fitter: `fit(data, method)` returns a `FitResult`.

    from analysis import fit, load_table, fit_data
    data = fit_data(load_table("results.csv"), n_col="params_total", loss_col="final_val_loss")
    result = fit(data, "parametric")
    result.params["alpha"], result.a

Methods: parametric (approach 3), isoflop (approach 2), envelope (approach 1), kaplan.
"""

from __future__ import annotations

from .errors import AnalysisError
from .table import FitData

METHODS = ("parametric", "isoflop", "envelope", "kaplan")


def fit(data: FitData, method: str = "parametric", curves=None, **kwargs):
    """Fit `data` by `method`; `curves` (long table of training curves) is used by `envelope`,
    which otherwise treats each row as a one-point curve."""
    # imported here so that `lab` front ends load only what the chosen method needs
    if method == "parametric":
        from .fit_parametric import fit_parametric

        return fit_parametric(data, **kwargs)
    if method == "isoflop":
        from .fit_isoflop import fit_isoflop

        return fit_isoflop(data, **kwargs)
    if method == "kaplan":
        from .fit_kaplan import fit_kaplan

        return fit_kaplan(data, **kwargs)
    if method == "envelope":
        from .curves import final_points_as_curves
        from .fit_envelope import fit_envelope

        if curves is None:
            curves = final_points_as_curves(data.N, data.C, data.L, data.D)
        return fit_envelope(curves, k=data.k, columns=data.columns, **kwargs)
    raise AnalysisError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
