"""What `lab study` does after the grid: fit the study's laws, audit them (`Study.audit` simulated
copies; the verdict trusts the audit's choice) and write the report, figures and fits.json
(`analysis.report`), and the validation rung (`--validate K`): train the trusted law's predicted
compute-optimal model at K x the largest budget, with a size on each side, and compare.

The rung is pre-registered: DIR/validation.json is written before the validation runs start
(status "predicted": per run `predicted`, `pi_lo`, `pi_hi`, the method, `fit_sha256`; the interval
holds the fit's bootstrap, the run-to-run noise and the law's form error measured by the table's own
nested back-tests and grown with the distance to the validation budget: `noise.form_sigma`,
`noise.form_k`, `noise.form_source`, and the back-tests' errors in `form_backtests`), and after them
gains per run `measured`, `rel_error`, `inside_pi` and the top-level `mean_abs_rel_error` (status
"measured"). Validation runs live in DIR/validation/ (a study directory of their own, so they never
enter the grid's fits); the report shows them and its verdict opens loudly when one fell outside its
interval."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from lab.config import ConfigError, RunConfig
from lab.costs import model_costs
from lab.overrides import apply_overrides
from lab.study.spec import Cell, Study, expand

DEFAULT_LAWS = ("parametric", "isoflop", "envelope", "kaplan")  # Chinchilla's three approaches and Kaplan's


_FORM_UNIT = {"absolute": "log distance", "span": "of training span"}  # form.SCALES


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


def analysis_options(study: Study, cells: list[Cell]):
    """The study's FitOptions: its bootstrap, target compute and audit (whose choice the verdict trusts)."""
    from analysis.options import FitOptions

    return FitOptions(
        bootstrap=study.bootstrap, target_flops=target_flops(study, cells), audit=study.audit or None
    )


def analyse_study(study: Study, cells: list[Cell], out: Path) -> dict:
    """The report's fits, audit and verdict on `out`, nothing written (`analysis.reports.reporting.analyse`)."""
    from analysis.reports.reporting import analyse as analyse_table

    return analyse_table(out, options=analysis_options(study, cells), methods=laws_for(study))


def _by(cells: list[Cell]) -> str | None:
    return "variant" if len({c.variant for c in cells}) > 1 else None  # never one law pooled over architectures


def write_analysis(study: Study, cells: list[Cell], out: Path, analysed: dict | None = None) -> Path:
    """Fit, plot and report the study directory `out` (reusing `analysed`, an `analyse_study` of it); returns
    the report's path."""
    import analysis

    by = _by(cells)
    return analysis.report(
        out,
        options=analysis_options(study, cells),
        methods=laws_for(study),
        by=by,
        analysed=None if by else analysed,
    )


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


LAW_FALLBACK = ("parametric", "vpnls", "isoflop")  # predicts when the verdict trusts no method
SHAPE_LAWS = ("parametric", "vpnls")  # place the sizes around an optimum-placing method's N_opt


def _with_samples(fit, analysed: dict):
    """`fit`, given bootstrap samples (its prediction interval's law uncertainty) where it has none."""
    from analysis.uncertainty.intervals import bootstrap

    if fit is not None and (fit.bootstrap_samples is None or not len(fit.bootstrap_samples)):
        o = analysed["options"]
        bootstrap(fit, analysed["study"].data, n_boot=o.bootstrap or 100, seed=o.seed, target_flops=o.target_flops)
    return fit


def prediction_fit(analysed: dict):
    """(method, fit, shape fit or None) that the validation rung predicts with: the fit the verdict
    trusts, else the first fitted of LAW_FALLBACK; for an optimum-placing method (isoflop, envelope)
    also the law of (N, D) whose shape places the sizes around its N_opt."""
    from analysis.errors import AnalysisError
    from analysis.uncertainty.predict import OPTIMUM_METHODS

    suite, trusted = analysed["suite"], analysed["verdict"]["trusted"]
    method = trusted if trusted and suite.get(trusted) is not None else None
    method = method or next((m for m in LAW_FALLBACK if suite.get(m) is not None), None)
    if method is None:
        raise AnalysisError(f"--validate: no fitted law to predict with (tried {', '.join(LAW_FALLBACK)})")
    shape = None
    if method in OPTIMUM_METHODS:
        shape = next((suite[m] for m in SHAPE_LAWS if suite.get(m) is not None), None)
    return method, _with_samples(suite[method], analysed), _with_samples(shape, analysed)


def _optimum_at(fit, budget: float, k: float) -> tuple[float, float]:
    """(N_opt, D_opt) of `fit` at compute `budget`: its law's optimum, else its power laws."""
    if fit.law is not None and hasattr(fit.law, "optimal"):
        n, d = fit.law.optimal(budget, fit.params.get("k", k))
        return float(n), float(d)
    n = fit.params["n_coef"] * budget ** fit.params["a"]
    return float(n), float(budget / (k * n))


def validation_plan(
    study: Study,
    cells: list[Cell],
    out: Path,
    factor: float,
    vocab_size: int,
    overrides=(),
    analysed: dict | None = None,
) -> tuple[Study, list[Cell], dict]:
    """Lay out the validation cells at factor x the largest budget — the predicted N_opt of the fit
    the verdict trusts (`prediction_fit`) and a size on each side (`bracketing_sizes`) — and the
    prediction for each: `predicted` with its 95% prediction interval `pi_lo`..`pi_hi`
    (`analysis.uncertainty.predict.predict_runs`). `analysed`: `analyse_study(study, cells, out)`, done here
    when not given."""
    analysed = analysed or analyse_study(study, cells, out)
    method, fit, shape = prediction_fit(analysed)
    data = analysed["study"].data
    budget = factor * _largest(cells)
    n_opt, d_opt = _optimum_at(fit, budget, data.k)
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
        seeds_by_budget={},  # the grid's replicates name its budgets, not this one
        branches=False,
        validate=0,
    )
    val_cells = expand(val, vocab_size, overrides)
    return val, val_cells, _prediction(analysed, method, fit, shape, val_cells, budget, factor, (n_opt, d_opt))


def _prediction(analysed, method, fit, shape, val_cells, budget, factor, optimum) -> dict:
    """validation.json as written before the runs: the method, the fit's hash and per run the prediction."""
    import datetime
    import hashlib

    from analysis.result import plain
    from analysis.uncertainty.predict import fit_sha256
    from analysis.uncertainty.rung import rung_prediction

    n = [float(model_costs(c.config.model).params_total) for c in val_cells]
    d = [float(c.config.total_tokens) for c in val_cells]
    options = analysed["options"]
    n_opt, d_opt = optimum  # predicted too: the law's loss at its own optimum
    data = analysed["study"].data
    pred, form, scheme = rung_prediction(fit, shape, data, options, [*n, n_opt], [*d, d_opt], budget)
    table = Path(analysed["study"].source or ".")
    table = table / "results.csv" if table.is_dir() else table
    runs = [
        {"cell_id": c.cell_id, "n": n[i], "d": d[i], **{k: pred[k][i] for k in ("predicted", "pi_lo", "pi_hi")}}
        for i, c in enumerate(val_cells)
    ]
    noise = pred["noise"]
    return {
        "status": "predicted",
        "predicted_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "flops": budget,
        "factor": factor,
        "method": method,
        "law": method,
        "trusted": analysed["verdict"]["trusted"],
        "fit_sha256": fit_sha256(fit),
        "table_sha256": hashlib.sha256(table.read_bytes()).hexdigest() if table.is_file() else None,
        "shape_law": shape.method if shape is not None else None,
        "how": pred["how"],
        "level": pred["level"],
        "noise": noise,
        "law_draws": scheme,
        "pi_note": f"the {method} fit's uncertainty (laws drawn by a bootstrap of {scheme}) plus run-to-run "
        f"noise σ = {noise['sigma']:.3g} in log loss ({noise['source']}) plus the law's form error σ_form = "
        f"{noise['form_sigma']:.3g} at log distance {noise['form_distance']:.3g} beyond the grid (k = "
        f"{noise['form_k']:.3g} per unit {_FORM_UNIT[noise.get('form_scale', 'absolute')]})",
        "form_backtests": plain(form.get("backtests", [])),
        "form_bias_per_log": form.get("bias_per_log"),
        "form_signs": {"over": form.get("n_over", 0), "under": form.get("n_under", 0)},  # predicted > / < measured
        "n_opt_predicted": n_opt,
        "d_opt_predicted": d_opt,
        "loss_at_n_opt": pred["predicted"][-1],
        "loss_at_n_opt_pi": [pred["pi_lo"][-1], pred["pi_hi"][-1]],
        "params": plain(dict(fit.params)),
        "runs": runs,
    }


def validation_summary(cells: list[Cell], status: dict, out: Path, prediction: dict) -> dict:
    """validation.json after the runs: per run the measured loss, `rel_error` (predicted / measured - 1)
    and `inside_pi`; whether the size nearest the predicted N_opt had the lowest measured loss."""
    from lab.rundir import RunDir

    runs = []
    for c, r in zip(cells, prediction["runs"]):
        result = RunDir(out / "validation" / "runs" / c.cell_id).read_result() or {}
        measured = result.get("final_val_loss") if result.get("status") == "completed" else None
        runs.append(
            {
                **r,
                "measured": measured,
                "rel_error": None if measured is None else r["predicted"] / measured - 1,
                "inside_pi": None if measured is None else bool(r["pi_lo"] <= measured <= r["pi_hi"]),
                "status": status.get(c.cell_id),
            }
        )
    done = [r for r in runs if r["measured"] is not None]
    nearest = min(runs, key=lambda r: abs(math.log(r["n"] / prediction["n_opt_predicted"])))
    if done:
        winner = min(done, key=lambda r: r["measured"])
        err = float(np.mean([abs(r["rel_error"]) for r in done]))
        won = winner is nearest
        other = "" if won else f" ({winner['cell_id']} did)"
        inside = sum(r["inside_pi"] for r in done)
        summary = (
            f"Mean |relative error| of the predicted loss: {err:.2%} over {len(done)} run(s); {inside} of "
            f"{len(done)} inside their {prediction['level']:.0%} prediction interval. The size nearest the "
            f"predicted N_opt ({nearest['cell_id']}) {'had' if won else 'did not have'} the lowest measured "
            f"loss{other}."
        )
    else:
        won, err, summary = None, None, "No validation run completed; nothing to compare."
    return {
        **prediction,
        "status": "measured",
        "runs": runs,
        "mean_abs_rel_error": err,
        "predicted_n_opt_won": won,
        "summary": summary,
    }


def run_validation(
    study: Study,
    cells: list[Cell],
    out: Path,
    factor: float,
    vocab_size: int,
    run,
    overrides=(),
    analysed: dict | None = None,
) -> dict:
    """Plan and predict, write validation.json (status "predicted") *before* training, train
    (`run(study, cells, dir) -> status`), then add the measurements (status "measured")."""
    from lab.rundir import RunDir

    val, val_cells, prediction = validation_plan(study, cells, out, factor, vocab_size, overrides, analysed)
    prediction["trained_before_prediction"] = [
        c.cell_id for c in val_cells if RunDir(out / "validation" / "runs" / c.cell_id).read_result()
    ]
    prediction["summary"] = "Predicted; the validation runs have not finished."
    path = out / "validation.json"
    path.write_text(json.dumps(prediction, indent=1))
    status = run(val, val_cells, out / "validation")
    summary = validation_summary(val_cells, status, out, prediction)
    path.write_text(json.dumps(summary, indent=1))
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
        analysed = analyse_study(study, cells, out) if validate and run is not None and not _by(cells) else None
        if validate and run is not None:
            try:
                out_info["validation"] = run_validation(
                    study, cells, out, validate, vocab_size, run, overrides, analysed
                )
            except AnalysisError as e:
                out_info["validation"] = {"summary": f"not run: {e}"}
        out_info["report"] = str(write_analysis(study, cells, out, analysed))
        out_info["analysis"] = "written"
    except AnalysisError as e:
        out_info["analysis"] = f"failed: {e}"
    return out_info


def check_adaptive(adaptive: bool, flops_total: float | None) -> None:
    if adaptive and not (flops_total and flops_total > 0 and math.isfinite(flops_total)):
        raise ConfigError("--adaptive needs --flops F (the FLOPs the designed cells may spend, > 0)")
    if flops_total is not None and not adaptive:
        raise ConfigError("--flops is the allowance of --adaptive; add --adaptive or drop it")
