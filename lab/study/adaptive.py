"""`lab study FILE --adaptive --flops F`: after the grid, alternate design -> train -> refit.

Each round asks `analysis.design.propose` for the cells that most narrow the CI of the exponent a
(or of N_opt at the study's `target_flops`) within half of what is left of F (all of it when half
buys nothing useful), maps each proposed size N to the study's nearest width (its policy shapes
it), trains the new cells into the same study directory and refits. It stops when F is spent or
no proposal fits what is left."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from lab.config import ConfigError
from lab.overrides import apply_overrides
from lab.study.analyze import size_for_params
from lab.study.spec import Cell, Study, expand


def cells_for(study: Study, proposal: dict, vocab_size: int, overrides=(), known=()) -> list[Cell]:
    """The study's cells for a design's proposed (budget, N) pairs; sizes the policy maps to the same
    width, cells already in `known` and cells too short for `min_steps` are left out."""
    base = apply_overrides(study.base, [*study.overrides, *overrides])
    out, seen = [], set(known)
    for p in proposal["cells"]:
        budget = float(f"{p['budget']:.4g}")  # a round budget: the same cell id and budget column next time
        size = size_for_params(study, base, p["n"], budget, vocab_size)
        one = dataclasses.replace(
            study,
            sizes=[size],
            tokens=(),
            budgets=[budget],
            window=0,
            seeds=[study.seeds[0]],
            seeds_by_budget={},
            branches=False,
        )
        try:
            cells = expand(one, vocab_size, overrides)
        except ConfigError:  # too few steps at this budget for this size
            continue
        for c in cells:
            if c.cell_id not in seen:
                seen.add(c.cell_id)
                out.append(c)
    return out


def adaptive_rounds(
    study: Study,
    cells: list[Cell],
    out: Path,
    status: dict,
    flops_total: float,
    vocab_size: int,
    overrides,
    run,
    max_rounds: int = 4,
) -> tuple[list[Cell], dict]:
    """Design, train, refit until `flops_total` is spent; returns (all cells, all statuses)."""
    import analysis
    from analysis.design import cheapest, design_text, propose
    from analysis.errors import AnalysisError

    cells, status, spent = list(cells), dict(status), 0.0
    for _ in range(max_rounds):
        left = flops_total - spent
        try:
            data = analysis.load(out)
            floor = cheapest(analysis.fit(data, "isoflop"))
            allowance = left / 2 if left / 2 >= floor else left
            proposal = propose(data, allowance, study.target_flops, bootstrap=study.bootstrap or 200)
        except AnalysisError as e:
            print(f"lab study: adaptive design stops: {e}", file=sys.stderr)
            break
        new = cells_for(study, proposal, vocab_size, overrides, known={c.cell_id for c in cells})
        if not new:
            print("lab study: adaptive design stops: no new cell fits what is left", file=sys.stderr)
            break
        print(design_text(proposal), file=sys.stderr)
        cells += new
        status.update(run(study, cells, out))
        spent += sum(c.flops for c in new)
    return cells, status
