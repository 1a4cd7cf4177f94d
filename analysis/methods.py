"""The one registry of fit methods: a name maps to its fitter, bootstrap, back-test, the options it
takes, the figures it feeds and its text. Everything that needs a method asks `get(name)`; adding a
law means adding its fitter module and one `Method` entry here.

Hooks import their fitter when called, so `import analysis.methods` stays cheap (no JAX).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from . import describe
from .errors import AnalysisError
from .options import FitOptions


@dataclass(frozen=True)
class Method:
    """One fit method. Hook signatures:

    fit(data, curves, **kwargs) -> FitResult
    resample(fit, data, curves, n_boot, seed, target_flops) -> DataFrame of bootstrap samples
    holdout(fit_on_train, data, budget, train_mask, held_budgets, fit_kwargs) -> (points, train points | None)
    options(FitOptions) -> the method's own fit keyword arguments (besides target_flops)
    summary(fit) -> lines for `lab fit`; section(fit) -> Markdown lines for the report
    allocation_points(fit) -> (C, {"n": (N_opt, log-std or None), "d": (D_opt, ...)}) drawn in figure (c)
    """

    name: str
    description: str
    fit: Callable
    options: Callable
    summary: Callable
    resample: Callable | None = None
    holdout: Callable | None = None
    section: Callable | None = None
    allocation_points: Callable | None = None  # methods listed first are preferred for figure (c)
    figures: str = ""  # the figures (a)-(e) this method's fit is drawn in
    needs_budget: bool = False  # IsoFLOP budgets (a budget column, or compute binned)
    suite_bootstrap: bool = True  # bootstrapped when a report or figures run every method
    uses_jax: bool = False  # worth enabling the persistent compilation cache for
    columns: tuple = ()  # table columns the method needs beyond N, D, C, loss: a report runs it only where present
    varies: bool = False  # ...and only where its first column takes more than one value (several lrs, epochs, schedules)
    curve_points: bool = False  # fits tables with `--curve-points` rows (an N-D law; analysis.curve_points)

    def applies(self, data) -> bool:
        """Whether a report or figure suite should run this method on `data` (a FitData)."""
        frame = data.frame
        if not all(c in frame.columns for c in self.columns):
            return False
        return not self.varies or frame[self.columns[0]].dropna().nunique() > 1


def _no_options(o: FitOptions) -> dict:
    return {}


def _fit_parametric(data, curves, **kw):
    from .fit_parametric import fit_parametric

    return fit_parametric(data, **kw)


def _resample_parametric(fit, data, curves, n_boot, seed, target_flops):
    from .fit_parametric import bootstrap_parametric

    samples, _ = bootstrap_parametric(data, fit, n_boot=n_boot, seed=seed, target_flops=target_flops)
    return samples.drop(columns=["objective"])


def _holdout_parametric(*args):
    from .fit_parametric import holdout_points

    return holdout_points(*args)


def _fit_isoflop(data, curves, **kw):
    from .fit_isoflop import fit_isoflop

    return fit_isoflop(data, **kw)


def _resample_isoflop(fit, data, curves, n_boot, seed, target_flops):
    from .fit_isoflop import bootstrap_isoflop

    return bootstrap_isoflop(fit, n_boot=n_boot, seed=seed, target_flops=target_flops)


def _holdout_isoflop(*args):
    from .fit_isoflop import holdout_points

    return holdout_points(*args)


def _allocation_isoflop(fit):
    from .fit_isoflop import allocation_points

    return allocation_points(fit)


def _allocation_envelope(fit):
    from .fit_envelope import allocation_points

    return allocation_points(fit)


def _one_point_curves(data, curves):
    from .curves import final_points_as_curves

    return final_points_as_curves(data.N, data.C, data.L, data.D) if curves is None else curves


def _fit_envelope(data, curves, **kw):
    from .fit_envelope import fit_envelope

    return fit_envelope(_one_point_curves(data, curves), k=data.k, columns=data.columns, **kw)


def _resample_envelope(fit, data, curves, n_boot, seed, target_flops):
    from .fit_envelope import bootstrap_envelope

    return bootstrap_envelope(_one_point_curves(data, curves), n_boot=n_boot, seed=seed,
                              k=data.k if data else 6.0, target_flops=target_flops)


def _fit_kaplan(data, curves, **kw):
    from .fit_kaplan import fit_kaplan

    return fit_kaplan(data, **kw)


def _resample_kaplan(fit, data, curves, n_boot, seed, target_flops):
    from .fit_kaplan import bootstrap_kaplan

    return bootstrap_kaplan(data, n_boot=n_boot, seed=seed, target_flops=target_flops, start=fit.params)


def _fit_ptq(data, curves, **kw):
    from .fit_ptq import fit_ptq

    return fit_ptq(data, **kw)


def _ptq_summary(fit):
    from .fit_ptq import ptq_summary

    return ptq_summary(fit)


def _fit_lr(data, curves, **kw):
    from .fit_lr import fit_lr

    return fit_lr(data, **kw)


def _resample_lr(fit, data, curves, n_boot, seed, target_flops):
    from .fit_lr import resample_lr

    return resample_lr(data, n_boot, seed)


def _lr_summary(fit):
    from .fit_lr import lr_summary

    return lr_summary(fit)


def _fit_task(data, curves, **kw):
    from .fit_task import fit_task

    return fit_task(data, **kw)


def _task_summary(fit):
    from .fit_task import task_summary

    return task_summary(fit)


def _holdout_kaplan(*args):
    from .fit_kaplan import holdout_points

    return holdout_points(*args)


def _fit_data_constrained(data, curves, **kw):
    from .fit_data_constrained import fit_data_constrained, parse_base_law

    return fit_data_constrained(data, base=parse_base_law(kw.pop("base_law", None)), **kw)


def _resample_data_constrained(fit, data, curves, n_boot, seed, target_flops):
    from .fit_data_constrained import bootstrap_data_constrained

    return bootstrap_data_constrained(data, fit, n_boot=n_boot, seed=seed)[0]


def _fit_vpnls(data, curves, **kw):
    from .fit_vpnls import fit_vpnls

    return fit_vpnls(data, **kw)


def _resample_vpnls(fit, data, curves, n_boot, seed, target_flops):
    from .fit_vpnls import bootstrap_vpnls

    return bootstrap_vpnls(data, fit, n_boot=n_boot, seed=seed, target_flops=target_flops)[0]


def _summary_vpnls(fit):
    from .fit_vpnls import summary_lines

    return summary_lines(fit)


def _fit_loss_curve(data, curves, **kw):
    from .loss_curve import fit_loss_curve

    return fit_loss_curve(data, **kw)


def _summary_loss_curve(fit):
    from .loss_curve import summary_lines

    return summary_lines(fit)


def _summary_data_constrained(fit):
    from .fit_data_constrained import summary_lines

    return summary_lines(fit)


REGISTRY = {m.name: m for m in (
    Method("parametric", "L(N, D) = E + A/N^alpha + B/D^beta, Huber on log loss (Chinchilla approach 3)",
           fit=_fit_parametric, options=lambda o: {"delta": o.delta}, summary=describe.parametric_summary,
           resample=_resample_parametric, holdout=_holdout_parametric, section=describe.parametric_section,
           figures="cde", uses_jax=True, curve_points=True),
    Method("isoflop", "per-budget loss minima, then N_opt ∝ C^a (Chinchilla approach 2)",
           fit=_fit_isoflop, options=lambda o: {"estimator": o.iso_method, "loss_noise": o.loss_noise, "seed": o.seed},
           summary=describe.isoflop_summary, resample=_resample_isoflop, holdout=_holdout_isoflop,
           section=describe.isoflop_section, allocation_points=_allocation_isoflop, figures="bc", needs_budget=True),
    Method("envelope", "lower envelope of loss over FLOPs (Chinchilla approach 1)",
           fit=_fit_envelope, options=_no_options, summary=describe.no_lines, resample=_resample_envelope,
           allocation_points=_allocation_envelope, figures="ac"),
    Method("kaplan", "Kaplan et al.'s power laws L(N), L(D), L(C)",
           fit=_fit_kaplan, options=_no_options, summary=describe.kaplan_summary, resample=_resample_kaplan,
           holdout=_holdout_kaplan, section=describe.kaplan_section, suite_bootstrap=False),
    Method("vpnls", "L(N, D) = E + A/N^alpha + B/D^beta by variable projection (exact NNLS in E, A, B; exponent "
           "search), then the parametric fit's Huber objective polished; numpy only",
           fit=_fit_vpnls, options=lambda o: {"delta": o.delta}, summary=_summary_vpnls, resample=_resample_vpnls,
           suite_bootstrap=False, curve_points=True),
    Method("loss-curve", "Tissue et al.'s schedule-aware curve L(s) = L0 + A*S1^-alpha - C*S2 per size, fitted on the "
           "logged curves, WSD runs held out and predicted (needs a study directory)",
           fit=_fit_loss_curve, options=lambda o: {"study_dir": o.study_dir}, summary=_summary_loss_curve,
           suite_bootstrap=False, columns=("schedule",), varies=True),
    Method("data-constrained", "Muennighoff et al.'s law for repeated data: R_D*, R_N* (needs epochs or unique_tokens)",
           fit=_fit_data_constrained, options=lambda o: {"delta": o.delta, "base_law": o.base_law},
           summary=_summary_data_constrained, resample=_resample_data_constrained, suite_bootstrap=False,
           uses_jax=True, columns=("epochs",), varies=True),
    Method("task", "two-step task law: task loss L(N, D), then accuracy as a sigmoid of it (OLMo's ladder)",
           fit=_fit_task, options=lambda o: {"delta": o.delta, "seed": o.seed}, summary=_task_summary,
           suite_bootstrap=False, uses_jax=True, columns=("icl_accuracy", "icl_loss")),
    Method("ptq", "post-training quantization damage L_q - L = C D^gamma_D / N^gamma_N per format (Kumar et al. 2024)",
           fit=_fit_ptq, options=lambda o: {"n_boot": o.bootstrap or 200, "seed": o.seed}, summary=_ptq_summary,
           suite_bootstrap=False, columns=("val_loss_int4",)),
    Method("lr", "best learning rate per (N, D) (edges of the LR grid flagged), then eta_opt = c N^a D^b and "
           "eta_opt(C) vs DeepSeek's C^-0.125, bootstrap CIs (needs runs at several learning rates)",
           fit=_fit_lr, options=lambda o: {"n_boot": o.bootstrap or 200, "seed": o.seed}, summary=_lr_summary,
           resample=_resample_lr,
           suite_bootstrap=False, columns=("lr",), varies=True),
)}
METHODS = tuple(REGISTRY)


def get(name: str) -> Method:
    """The registered method `name`; an AnalysisError naming the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise AnalysisError(f"unknown method {name!r}; choose from {', '.join(METHODS)}") from None


def with_hook(hook: str) -> tuple[str, ...]:
    """Names of the methods that have `hook` (e.g. "holdout": the methods that can be back-tested)."""
    return tuple(n for n, m in REGISTRY.items() if getattr(m, hook) is not None)


def for_figures(wanted: str) -> tuple[str, ...]:
    """Names of the methods whose fits the figures in `wanted` (letters a-e) are drawn from."""
    return tuple(n for n, m in REGISTRY.items() if set(m.figures) & set(wanted))
