"""The one registry of fit methods, by convention: each law is one module in `analysis.fits`
(listed in `LAWS`), and its hooks and metadata are found there by name. Everything that needs a
method asks `get(name)`; adding a law means adding its module and its name to `LAWS`.

A law module defines (a hook it lacks is simply absent):

    NAME, DESCRIPTION                   the method's name (as `--method` spells it) and one line
    fit(data, curves, **kwargs) -> FitResult
    resample(fit, data, curves, n_boot, seed, target_flops) -> DataFrame of bootstrap samples
    holdout(fit_on_train, data, budget, train_mask, held_budgets, fit_kwargs) -> (points, train points | None)
    options(FitOptions) -> the method's own fit keyword arguments (besides target_flops); default none
    summary(fit) -> lines for `lab fit`; section(fit) -> Markdown lines for the report
    allocation_points(fit) -> (C, {"n": (N_opt, log-std or None), "d": (D_opt, ...)}) drawn in figure (c)
    figure(source, table options, fit options, out dir, formats, fit or None) -> paths: the law's own
        figure, for its letters in FIGURES outside (a)-(e)
    FIGURES        the figure letters it feeds: (a)-(e) drawn from its fit, and its own figure's letter
    NEEDS_BUDGET   IsoFLOP budgets (a budget column, or compute binned)
    SUITE_BOOTSTRAP  bootstrapped when a report or figures run every method (default True)
    USES_JAX       worth enabling the persistent compilation cache for
    COLUMNS        table columns it needs beyond N, D, C, loss: a report runs it only where present
    VARIES         ...and only where the first of them takes more than one value
    CURVE_POINTS   fits tables with `--curve-points` rows (an N-D law; `analysis.curves`)

Law modules are imported by `get`, not here, so `import analysis.methods` stays cheap; a law
module imports JAX and scipy only inside the functions that use them, so its metadata is cheap too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, fields
from importlib import import_module

from .errors import AnalysisError
from .options import FitOptions

# The law modules of `analysis.fits`, in registry order: methods listed first are preferred for
# figure (c), and the report's sections follow this order.
LAWS = (
    "parametric",
    "isoflop",
    "envelope",
    "kaplan",
    "vpnls",
    "loss_curve",
    "data_constrained",
    "task",
    "ptq",
    "lr",
)
METHODS = tuple(law.replace("_", "-") for law in LAWS)
HOOKS = ("fit", "options", "summary", "resample", "holdout", "section", "allocation_points", "figure")
CORE_FIGURES = (
    "abcde"  # figures drawn from several laws' fits (analysis.plotting.plots); other letters are a law's own
)


def _no_options(o: FitOptions) -> dict:
    return {}


def _no_lines(fit) -> list[str]:
    return []


@dataclass(frozen=True)
class Method:
    """One fit method: its law module's hooks (lower case there) and metadata (upper case there)."""

    name: str
    description: str
    fit: Callable
    options: Callable = _no_options
    summary: Callable = _no_lines
    resample: Callable | None = None
    holdout: Callable | None = None
    section: Callable | None = None
    allocation_points: Callable | None = None
    figure: Callable | None = None
    figures: str = ""
    needs_budget: bool = False
    suite_bootstrap: bool = True
    uses_jax: bool = False
    columns: tuple = ()
    varies: bool = False
    curve_points: bool = False

    @classmethod
    def from_module(cls, module) -> Method:
        """The method a law module defines: each field read from the hook or constant of that name."""
        found = {}
        for f in fields(cls):
            attr = f.name if f.name in HOOKS else f.name.upper()
            if hasattr(module, attr):
                found[f.name] = getattr(module, attr)
        return cls(**found)

    def applies(self, data) -> bool:
        """Whether a report or figure suite should run this method on `data` (a FitData)."""
        frame = data.frame
        if not all(c in frame.columns for c in self.columns):
            return False
        return not self.varies or frame[self.columns[0]].dropna().nunique() > 1


@functools.cache
def get(name: str) -> Method:
    """The registered method `name`; an AnalysisError naming the choices otherwise."""
    if name not in METHODS:
        raise AnalysisError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    method = Method.from_module(import_module(f".fits.{LAWS[METHODS.index(name)]}", __package__))
    assert method.name == name, (method.name, name)
    return method


def with_hook(hook: str) -> tuple[str, ...]:
    """Names of the methods that have `hook` (e.g. "holdout": the methods that can be back-tested)."""
    return tuple(n for n in METHODS if getattr(get(n), hook) is not None)


def flagged(flag: str) -> tuple[str, ...]:
    """Names of the methods whose metadata `flag` (e.g. "curve_points") is set."""
    return tuple(n for n in METHODS if getattr(get(n), flag))


def for_figures(wanted: str) -> tuple[str, ...]:
    """Names of the methods whose fits the figures in `wanted` (letters a-e) are drawn from."""
    return tuple(n for n in METHODS if set(get(n).figures) & set(wanted) & set(CORE_FIGURES))


def own_figures() -> dict[str, tuple[str, Callable]]:
    """Letter -> (method, its `figure` hook) for each law's own figure (letters outside (a)-(e))."""
    return {letter: (n, get(n).figure) for n in METHODS for letter in get(n).figures if letter not in CORE_FIGURES}


def fit_options(name: str, options: FitOptions) -> dict:
    """Method `name`'s own fit settings taken from `options`, without the seed (every caller passes
    the seed itself)."""
    return {k: v for k, v in get(name).options(options).items() if k != "seed"}
