"""What `lab study` does after the grid: fit the study's laws and write the report, figures and
fits.json (`analysis.report`), and the validation rung (`--validate K`): train the law's predicted
compute-optimal model at K x the largest budget, with a size on each side, and compare.

Validation runs live in DIR/validation/ (a study directory of their own, so they never enter the
grid's fits); DIR/validation.json holds predicted vs measured loss, which the report shows."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from lab.config import ConfigError, RunConfig, apply_overrides
from lab.costs import model_costs
from lab.study.spec import Cell, Study, expand

DEFAULT_LAWS = ("parametric", "isoflop", "envelope", "kaplan")  # Chinchilla's three approaches and Kaplan's


def laws_for(study: Study) -> tuple[str, ...]:
    """The study's own laws, else the four classic methods for an IsoFLOP grid and all but
    isoflop for N×D (other registered laws, e.g. data-constrained, when the study names them)."""
    if study.laws:
        return tuple(study.laws)
    return DEFAULT_LAWS if study.budgets else tuple(m for m in DEFAULT_LAWS if m != "isoflop")


def _largest(cells: list[Cell]) -> float:
    return max(c.budget_flops or c.flops for c in cells)


def target_flops(study: Study, cells: list[Cell]) -> float:
    return float(study.target_flops or 10 * _largest(cells))


def write_analysis(study: Study, cells: list[Cell], out: Path) -> Path:
    """Fit, plot and report the study directory `out`; returns the report's path."""
    import analysis
    from analysis.options import FitOptions

    options = FitOptions(bootstrap=study.bootstrap, target_flops=target_flops(study, cells))
    by = "variant" if len({c.variant for c in cells}) > 1 else None  # never one law pooled over architectures
    return analysis.report(out, options=options, methods=laws_for(study), by=by)


def check_validate(cells: list[Cell], factor: float) -> None:
    """A validation budget must be an extrapolation (factor > 1) no farther beyond the grid than the
    grid itself spans (largest / smallest compute): a law is not tested where nothing supports it."""
    if not factor:
        return
    flops = [c.budget_flops or c.flops for c in cells]
    span = max(flops) / min(flops)
    if not factor > 1:
        raise ConfigError(f"--validate {factor:g}: the factor must be > 1 (a budget beyond the grid's largest)")
    if factor > span:
        raise ConfigError(
            f"--validate {factor:g}: {factor:g}x the largest budget is beyond what the grid supports "
            f"(its compute spans {span:.3g}x; validate at most that far out)"
        )


WIDTHS = range(16, 2049, 16)


def size_for_params(
    study: Study, base: RunConfig, n_target: float, budget: float, vocab_size: int, widths=WIDTHS
) -> dict:
    """The size (`{"d_model": d}`, shaped by the study's policy) whose total parameters are nearest
    `n_target` in log."""
    from lab.study.spec import _configure

    best = min(
        widths,
        key=lambda d: abs(
            math.log(
                model_costs(_configure(study, base, {"d_model": d}, 0, budget, vocab_size).model).params_total
                / n_target
            )
        ),
    )
    return {"d_model": int(best)}


def bracketing_sizes(study: Study, base: RunConfig, n_opt: float, budget: float, vocab_size: int) -> list[dict]:
    """Three distinct sizes: the one nearest `n_opt`, and the ones nearest n_opt / 2 and 2 n_opt
    among the narrower and the wider widths (at small widths those are simply the neighbours)."""
    mid = size_for_params(study, base, n_opt, budget, vocab_size)["d_model"]
    below = [d for d in WIDTHS if d < mid]
    above = [d for d in WIDTHS if d > mid]
    sizes = [size_for_params(study, base, n_opt / 2, budget, vocab_size, below)] if below else []
    sizes.append({"d_model": mid})
    if above:
        sizes.append(size_for_params(study, base, 2 * n_opt, budget, vocab_size, above))
    return sizes


def validation_plan(
    study: Study, cells: list[Cell], out: Path, factor: float, vocab_size: int, overrides=()
) -> tuple[Study, list[Cell], dict]:
    """Fit the parametric law on the grid and lay out the validation cells: the predicted N_opt at
    factor x the largest budget and a size on each side (`bracketing_sizes`)."""
    import analysis

    fit = analysis.fit(analysis.load(out), "parametric")
    budget = factor * _largest(cells)
    n_opt, d_opt = fit.law.optimal(budget, fit.params["k"])
    base = apply_overrides(study.base, [*study.overrides, *overrides])
    sizes = bracketing_sizes(study, base, n_opt, budget, vocab_size)
    val = dataclasses.replace(
        study,
        name=f"{study.name}-validation",
        sizes=sizes,
        tokens=(),
        budgets=[budget],
        window=0,
        seeds=[study.seeds[0]],
        branches=False,
        validate=0,
    )
    prediction = {
        "flops": budget,
        "factor": factor,
        "law": "parametric",
        "n_opt_predicted": float(n_opt),
        "d_opt_predicted": float(d_opt),
        "loss_at_n_opt": float(fit.law(n_opt, d_opt)),
        "params": {k: fit.params[k] for k in ("E", "A", "B", "alpha", "beta", "k")},
    }
    return val, expand(val, vocab_size, overrides), prediction


def validation_summary(cells: list[Cell], status: dict, out: Path, prediction: dict) -> dict:
    """validation.json: per run the law's predicted loss and the measured one; whether the size
    nearest the predicted N_opt had the lowest measured loss."""
    from analysis.laws import Chinchilla
    from lab.rundir import RunDir

    p = prediction["params"]
    law = Chinchilla(E=p["E"], A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"])
    runs = []
    for c in cells:
        n, d = model_costs(c.config.model).params_total, float(c.config.total_tokens)
        result = RunDir(out / "validation" / "runs" / c.cell_id).read_result() or {}
        measured = result.get("final_val_loss") if result.get("status") == "completed" else None
        pred = float(law(n, d))
        runs.append(
            {
                "cell_id": c.cell_id,
                "n": n,
                "d": d,
                "predicted": pred,
                "measured": measured,
                "rel_error": None if measured is None else pred / measured - 1,
                "status": status.get(c.cell_id),
            }
        )
    done = [r for r in runs if r["measured"] is not None]
    nearest = min(runs, key=lambda r: abs(math.log(r["n"] / prediction["n_opt_predicted"])))
    if done:
        winner = min(done, key=lambda r: r["measured"])
        err = np.mean([abs(r["rel_error"]) for r in done])
        won = winner is nearest
        other = "" if won else f" ({winner['cell_id']} did)"
        summary = (
            f"Mean |relative error| of the predicted loss: {err:.2%} over {len(done)} run(s). The size nearest "
            f"the predicted N_opt ({nearest['cell_id']}) {'had' if won else 'did not have'} the lowest measured "
            f"loss{other}."
        )
    else:
        won, err, summary = None, None, "No validation run completed; nothing to compare."
    return {**prediction, "runs": runs, "mean_abs_rel_error": err, "predicted_n_opt_won": won, "summary": summary}


def run_validation(
    study: Study, cells: list[Cell], out: Path, factor: float, vocab_size: int, run, overrides=()
) -> dict:
    """Plan, train (`run(study, cells, dir) -> status`) and summarise the validation rung."""
    val, val_cells, prediction = validation_plan(study, cells, out, factor, vocab_size, overrides)
    status = run(val, val_cells, out / "validation")
    summary = validation_summary(val_cells, status, out, prediction)
    (out / "validation.json").write_text(json.dumps(summary, indent=1))
    return summary


MIN_ROWS = 6  # fewer completed runs than this support no law (isoflop: 2 budgets x 3 sizes; parametric: > 5)


def after_grid(
    study: Study,
    cells: list[Cell],
    out: Path,
    status: dict,
    *,
    analyse: bool = True,
    validate: float = 0,
    vocab_size: int = 256,
    overrides=(),
    run=None,
) -> dict:
    """The analysis and validation after the grid, as {"report": path or None, "analysis": note,
    "validation": summary or None}. A grid too small for a law, or whose fit fails, is noted in one
    line (the study's own exit status still says whether its cells completed)."""
    from analysis.errors import AnalysisError

    out_info = {"report": None, "analysis": "skipped (--no-analysis)", "validation": None}
    if not analyse:
        return out_info
    done = sum(s == "completed" for s in status.values())
    if done < MIN_ROWS:
        out_info["analysis"] = f"skipped: {done} completed run(s), a law needs at least {MIN_ROWS}"
        return out_info
    try:
        if validate and run is not None:
            out_info["validation"] = run_validation(study, cells, out, validate, vocab_size, run, overrides)
        out_info["report"] = str(write_analysis(study, cells, out))
        out_info["analysis"] = "written"
    except AnalysisError as e:
        out_info["analysis"] = f"failed: {e}"
    return out_info


def check_adaptive(adaptive: bool, flops_total: float | None) -> None:
    if adaptive and not (flops_total and flops_total > 0 and math.isfinite(flops_total)):
        raise ConfigError("--adaptive needs --flops F (the FLOPs the designed cells may spend, > 0)")
    if flops_total is not None and not adaptive:
        raise ConfigError("--flops is the allowance of --adaptive; add --adaptive or drop it")
