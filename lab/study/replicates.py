"""Seeds per FLOP budget: replicates where a study's noise is largest.

A one-seed IsoFLOP grid cannot see its own run-to-run noise, and that noise is not the same at every
budget: the small budgets' short runs scatter most (measured on the default CPU study: σ = 0.015 in
log loss over the whole grid, up to 5% at one 3e11 cell). `Study(seeds_by_budget={3e11: [0, 1]})`
runs the budgets it names at those seeds and every other budget at `Study.seeds`, so a study can pay
for replicates only where they are cheap and needed. The analysis uses the replicates twice: the
fits average them (isoflop) or weigh each row (the laws of N and D), and the table's seed-to-seed
scatter (`analysis.synthetic.seed_scatter`) becomes the run-to-run noise of the validation rung's
prediction intervals and of the audit's simulated copies, in place of the residual scatter.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

from lab.config import ConfigError

REL_TOL = 1e-6  # a key of seeds_by_budget names the budget equal to it to this relative tolerance


def check_seeds_by_budget(study) -> None:
    """`seeds_by_budget`: a mapping from budgets of the study to non-empty lists of whole seeds >= 0."""
    given = study.seeds_by_budget
    if not isinstance(given, Mapping):
        raise ConfigError(
            f"study {study.name!r}: seeds_by_budget must map budgets to lists of seeds, got {given!r}"
        )
    if given and not study.budgets:
        raise ConfigError(f"study {study.name!r}: seeds_by_budget needs an IsoFLOP grid (budgets=[...])")
    for budget, seeds in given.items():
        if _budget_of(study, budget) is None:
            known = ", ".join(f"{b:.3g}" for b in study.budgets)
            what = f"{budget:.3g}" if _is_real(budget) else repr(budget)
            raise ConfigError(f"study {study.name!r}: seeds_by_budget names {what}, not a budget of it ({known})")
        ok = isinstance(seeds, Sequence) and not isinstance(seeds, (str, bytes)) and len(seeds) > 0
        if not ok or not all(_whole(s) for s in seeds):
            raise ConfigError(
                f"study {study.name!r}: seeds_by_budget[{budget:.3g}] must be a non-empty list of whole seeds "
                f">= 0, got {seeds!r}"
            )


def all_seeds(study) -> list[int]:
    """Every seed some cell runs at: `seeds` first, then the others `seeds_by_budget` names, in order."""
    out = [int(s) for s in study.seeds]
    for seeds in study.seeds_by_budget.values():
        out += [int(s) for s in seeds if int(s) not in out]
    return out


def seeds_at(study, budget: float | None) -> list[int]:
    """The seeds of one budget's cells."""
    for key, seeds in study.seeds_by_budget.items():
        if budget is not None and _close(float(key), budget):
            return [int(s) for s in seeds]
    return [int(s) for s in study.seeds]


def keep_seeded(study, cells: list) -> list:
    """The cells whose seed is one of their budget's (`seeds_at`); all of them without seeds_by_budget."""
    if not study.seeds_by_budget:
        return cells
    return [c for c in cells if c.config.train.seed in seeds_at(study, c.budget_flops)]


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _budget_of(study, key) -> float | None:
    if not _is_real(key) or not math.isfinite(key):
        return None
    return next((float(b) for b in study.budgets if _close(float(key), float(b))), None)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(abs(a), abs(b))


def _whole(s) -> bool:
    """A seed as `Study.seeds` takes one: a whole number >= 0 (1 and 1.0 alike)."""
    return _is_real(s) and math.isfinite(s) and s >= 0 and s == int(s)
