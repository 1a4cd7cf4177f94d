"""The choices a caller makes about a table and a fit, as two small frozen dataclasses.

`TableOptions` says which rows and columns of a results table to use; `FitOptions` how to fit
and bootstrap them. Library functions take these (or plain keywords); only `analysis.cli` turns
command-line flags into them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class TableOptions:
    """Rows and columns of a results table (every column None means: try the defaults in order)."""

    n_col: str | None = None
    d_col: str | None = None
    c_col: str | None = None
    loss_col: str | None = None
    budget_col: str | None = None
    where: str | None = None  # pandas query selecting rows
    status: str | None = "completed"  # keep rows with this status; None or "any" keeps all
    drop_highest_loss: int = 0  # drop the K highest-loss rows (Epoch dropped 5)
    k: float | None = None  # FLOPs per parameter per token in C = k N D (None: median C/(N D), else 6)
    curve_loss: str | None = None  # metrics.jsonl key for training curves
    smooth: int | None = None  # rolling mean over K logged points of each curve
    curve_points: int = 0  # add up to K loss-curve-law points per run (analysis.curves); 0: none


@dataclass(frozen=True)
class FitOptions:
    """How to fit, bootstrap and project."""

    target_flops: float | None = None  # report N_opt and D_opt at this compute
    bootstrap: int = 0  # resamples for percentile CIs (0: none)
    level: float = 0.95  # CI level
    seed: int = 0
    delta: float = 1e-3  # Huber delta of the parametric fit
    iso_method: str = "akima"  # per-budget minimum estimator of the isoflop fit
    loss_noise: float | None = None  # seed-to-seed loss std for isoflop uncertainties (None: estimated)
    base_law: str | None = (
        None  # data-constrained: a fixed base law ("muennighoff-c4" or "E,A,B,alpha,beta"); None fits it
    )
    audit: int | None = None  # simulated copies for the audit (analysis.uncertainty.audit); None: no audit
    audit_bootstrap: int = 100  # bootstrap resamples per simulated copy in the audit
    study_dir: str | None = None  # loss-curve: the study directory whose runs' metrics.jsonl it reads


def options_from(cls, source, **overrides):
    """A `cls` (TableOptions or FitOptions) from any object with matching attributes (e.g. parsed
    flags), attributes it lacks keeping their defaults; `overrides` win."""
    values = {f.name: getattr(source, f.name) for f in fields(cls) if hasattr(source, f.name)}
    values.update(overrides)
    return cls(**values)
