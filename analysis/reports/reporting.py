"""`lab report DIR`: a one-page Markdown report of a study — the table, every fit with its CIs,
the compute-optimal exponents side by side, the back-test, and figures (a)-(e); a law with
a figure of its own (lr, ptq, task, data-constrained: the law's `figure` hook) adds it, and a law
without a section of its own is reported by its summary lines. With `FitOptions.audit` (`lab report
--audit N`) an "Audit" section scores the methods on simulated copies of the table
(`analysis.uncertainty.audit`), and the verdict trusts the audit's choice.

Writes DIR/report.md (or `out`), the figures and their CSVs under <report dir>/figures/, and
fits.json with every fit's JSON beside the report; only over files the lab wrote
(`analysis.outputs`), so a report beside a user's CSV never replaces the user's files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..methods import METHODS, get
from ..options import FitOptions, TableOptions
from ..result import plain
from .text import ci_text, md
from .validation import read_validation, validation_section, validation_verdict, verdict_lines

DEFAULT_OPTIONS = FitOptions(bootstrap=200)  # `lab plot` and `lab report` bootstrap by default
CAPTIONS = {
    "a_envelope": "(a) loss vs FLOPs with the lower envelope",
    "b_isoflop": "(b) IsoFLOP profiles",
    "c_optimal": "(c) N_opt(C), D_opt(C)",
    "d_isoloss": "(d) isoloss contours and efficient frontier",
    "e_residuals": "(e) residuals and back-test",
    "lr": "loss vs peak learning rate, per (N, D)",
    "ptq": "loss vs weight bits (post-training quantization)",
    "icl": "in-context accuracy vs compute",
    "data_constrained": "loss vs epochs with the data-constrained law",
}


def write_report(
    source,
    out: Path | str | None = None,
    table: TableOptions | None = None,
    options: FitOptions | None = None,
    methods=METHODS,
    by: str | None = None,
    analysed: dict | None = None,
) -> Path:
    """Fit `methods` (default: every one) on `source` (study directory or CSV), draw the figures,
    and write the Markdown report to `out` (default <dir>/report.md). Returns the report's path.
    The target compute is `options.target_flops`, else 10x the largest compute in the table.
    A `validation.json` beside the table (`lab study --validate`) adds its section.
    `by` (a column, e.g. variant): one law per value instead (`analysis.reports.report_by`).
    `analysed`: the fits of `analyse(source, table, options, methods)`, reused instead of refitting."""
    from ..outputs import claim, report_path

    source = Path(source)
    out = report_path(source, out)  # checked before fitting: never over a file the lab did not write
    if by:
        from .report_by import GROUP_METHODS, write_group_report

        return write_group_report(
            source,
            by,
            out,
            table,
            options or DEFAULT_OPTIONS,
            [m for m in GROUP_METHODS if m in methods] or GROUP_METHODS,
        )

    from ..plotting.plots import draw_figures

    a = analysed or analyse(source, table, options, methods)
    study, suite, audited, verdict, options = a["study"], a["suite"], a["audited"], a["verdict"], a["options"]
    table = a["table"]
    figdir = claim(out.parent, (out.name, "fits.json", "figures")) / "figures"
    figures = draw_figures(suite, study.data, figdir, "abcde", ("png", "svg"), options.target_flops)
    figures += _law_figures(suite, source, table, options, figdir)
    notes = study.warnings + suite["notes"]
    validation = read_validation(source, suite)
    if validation:
        verdict = {**verdict, "validation": validation_verdict(validation)}
    lines = [f"# Scaling-law report: `{source.name}`", ""] + _verdict_section(verdict, validation)
    lines += _data_section(study, table) + _exponents_section(suite, study.data.k, options)
    lines += _intervals_section(suite, options) + _audit_section(audited)
    lines += _method_sections(suite) + validation_section(validation) + _figures_section(figures, out.parent)
    lines += _warnings_section(suite, notes)
    out.write_text("\n".join(lines))
    _write_fits(out.parent / "fits.json", suite, verdict, audited)
    return out


def analyse(source, table: TableOptions | None = None, options: FitOptions | None = None, methods=METHODS) -> dict:
    """The report's fits without its files: {"study", "table", "options", "suite", "audited", "verdict"}
    (`run_suite`, `audit_suite`, `diagnose`), for a caller that acts on the verdict before the
    report is written (`lab study --validate` predicts with the trusted fit)."""
    from dataclasses import replace

    from ..inputs import load
    from .suite import audit_suite, diagnose, run_suite

    table, options = table or TableOptions(), options or DEFAULT_OPTIONS
    study = load(Path(source), table, need_budget=True)
    if options.target_flops is None:
        options = replace(options, target_flops=float(10 * study.data.C.max()))
    suite = run_suite(study, options, methods=methods)
    audited = audit_suite(suite, study.data, options)
    verdict = diagnose(suite, study.data, audited)
    return {
        "study": study,
        "table": table,
        "options": options,
        "suite": suite,
        "audited": audited,
        "verdict": verdict,
    }


def _write_fits(path: Path, suite, verdict: dict, audited: dict | None) -> None:
    """fits.json: every fit's JSON, the verdict, the audit when one ran, the parametric prediction."""
    fits = {m: suite[m].to_json_dict() for m in METHODS if suite.get(m)}
    for m in fits:
        fits[m].pop("envelope", None)
    fits["verdict"] = verdict
    if audited:
        from ..uncertainty.audit import audit_json

        fits["audit"], fits["audit_info"] = audit_json(audited)
    if suite.get("parametric") is not None and suite["parametric"].extra.get("prediction"):
        fits["prediction"] = suite["parametric"].extra["prediction"]
    path.write_text(json.dumps(plain(fits), indent=1))


def _verdict_section(verdict: dict, validation: dict | None = None) -> list[str]:
    """First thing a reader sees: a validation run outside its interval, whether the science is shaky,
    and which estimate to trust."""
    L = ["## Verdict", ""] + verdict_lines(validation)
    if verdict["problems"]:
        L += ["**The science is shaky here:**", ""] + [f"- {p}" for p in verdict["problems"]] + [""]
    else:
        L += ["Every fitted method is identified and the methods agree within their intervals.", ""]
    L += [
        f"**Trusted estimate:** {verdict['why']}."
        if verdict["trusted"]
        else f"**No trusted estimate:** {verdict['why']}.",
        "",
    ]
    return L


def _audit_section(audited: dict | None) -> list[str]:
    """How each method fared on simulated copies of this table (`analysis.uncertainty.audit`), when audited."""
    if not audited:
        return []
    t, n = audited["truth"], audited["noise"]
    L = [
        "## Audit",
        "",
        f"{audited['copies']} copies of this table's design (its sizes, tokens, budgets, seeds) drawn from "
        f"its own vpnls law (a = {t['a']:.4f}, b = {t['b']:.4f}) with log-normal noise {n['sigma']:.3g} "
        f"(law residual {n['residual']:.3g}"
        + (f", seed scatter {n['seed']:.3g}" if n["seed"] is not None else ", no seeds to measure scatter")
        + f"), each fitted with a {audited['bootstrap']}-resample interval ({audited['seconds']:.0f} s):",
        "",
        f"| method | bias a | RMSE a | {audited['level']:.0%} coverage of a | mean CI width | calibration k "
        "| calibrated coverage (held out) | calibrated width | bias b | RMSE b | coverage of b | failed |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m, s in audited["methods"].items():
        L.append(
            f"| {m} | {md(s['bias_a'], '+.4f')} | {md(s['rmse_a'], '.4f')} | {md(s['coverage_a'], '.0%')} | "
            f"{md(s['ci_width_a'], '.3g')} | {md(s.get('calibration_k_a'), '.3g')} | "
            f"{md(s.get('coverage_calibrated_a'), '.0%')} | {md(s.get('ci_width_calibrated_a'), '.3g')} | "
            f"{md(s['bias_b'], '+.4f')} | {md(s['rmse_b'], '.4f')} | {md(s['coverage_b'], '.0%')} | "
            f"{s['failed']} |"
        )
    c = audited["choice"]
    return L + ["", f"**Trusted by the audit:** {c['method'] or 'none'} — {c['why']}.", ""]


def _intervals_section(suite, options: FitOptions) -> list[str]:
    """Confidence intervals (of parameters) apart from prediction intervals (of a new run's loss),
    and the back-test error of extrapolating to the largest budgets."""
    from ..uncertainty.intervals import prediction_interval

    L = [
        "## Intervals",
        "",
        "- **Confidence intervals** (the brackets above) say where a law's *parameters* and exponents lie, "
        "from bootstrap resamples of the runs (parametric, envelope, kaplan) or redraws of each budget's "
        "optimum from its own uncertainty (isoflop).",
    ]
    par = suite.get("parametric")
    pi = prediction_interval(par, options.target_flops, options.level, options.seed) if par is not None else None
    if pi:
        par.extra["prediction"] = pi
        L.append(
            f"- **Prediction at the target** C = {pi['flops']:.3g} FLOPs (parametric law, compute-optimal model): "
            f"loss {pi['loss']:.4g}; {pi['level']:.0%} confidence interval of the law's prediction "
            f"[{pi['ci_lo']:.4g}, {pi['ci_hi']:.4g}]; {pi['level']:.0%} prediction interval of one new run's "
            f"loss [{pi['pi_lo']:.4g}, {pi['pi_hi']:.4g}] (adds the fit's run-to-run residual scatter)."
        )
    else:
        L.append(
            "- **Prediction interval** of the loss at the target: needs a bootstrapped parametric fit (none here)."
        )
    bt = suite.get("backtest")
    if bt is not None:
        s = bt["summary"]
        L.append(
            f"- **Back-test** ({bt['method']}): fitted on C ≤ {bt['train_max_flops']:.3g}, extrapolated to the "
            f"{len(bt['holdout_budgets'])} largest budget(s) "
            f"({', '.join(f'{b:.3g}' for b in bt['holdout_budgets'])}), "
            f"{s['n_test']} held-out runs: mean |relative error| {s['mean_abs_rel_error']:.2%}, max "
            f"{s['max_abs_rel_error']:.2%}, bias {s['bias_log']:+.3g} in log loss."
        )
    return L + [""]


def _data_section(study, table: TableOptions) -> list[str]:
    data, curves, frame = study.data, study.curves, study.data.frame
    status = ""
    if "status" in frame.columns:
        status = ", ".join(f"{k}: {v}" for k, v in frame["status"].value_counts().items())
    shown = "any" if table.status is None else table.status
    return [
        "## Data",
        "",
        f"- {len(data)} runs used (filter: status={shown}{', where ' + repr(table.where) if table.where else ''}"
        f"{', ' + status if status else ''})",
        "- columns: " + ", ".join(f"{k} = `{v}`" for k, v in data.columns.items()),
        f"- N {data.N.min():.3g} – {data.N.max():.3g}; D {data.D.min():.3g} – {data.D.max():.3g}; "
        f"C {data.C.min():.3g} – {data.C.max():.3g} FLOPs; loss {data.L.min():.4g} – {data.L.max():.4g}",
        "- training curves: "
        + (f"{curves['run_id'].nunique()} runs" if curves is not None else "none (envelope of final points)"),
        *_overhead_line(frame),
        "",
    ]


OVERHEAD_PARTS = {
    "startup_s": "start-up",
    "compile_s": "compile",
    "eval_s": "evaluation",
    "final_eval_s": "final scores",
    "checkpoint_s": "checkpoints",
}


def _overhead_line(frame) -> list[str]:
    """The share of the runs' wall time spent outside training steps (a lab study's result columns
    overhead_s and cell_wall_s), and where it went; [] for a table without them."""
    if not {"overhead_s", "cell_wall_s"} <= set(frame.columns):
        return []
    if "source" in frame.columns:
        frame = frame[frame["source"].fillna("run") != "curve-law"]
    rows = frame[frame["overhead_s"].notna() & frame["cell_wall_s"].notna()]
    wall = float(rows["cell_wall_s"].sum())
    if not len(rows) or wall <= 0:
        return []
    parts = ", ".join(
        f"{name} {float(rows[col].sum()):.0f} s" for col, name in OVERHEAD_PARTS.items() if col in rows.columns
    )
    return [
        f"- time outside training steps: {float(rows['overhead_s'].sum()) / wall:.1%} of the runs' wall time "
        f"(sum overhead_s / sum cell_wall_s over {len(rows)} runs, {wall:.0f} s; {parts})"
    ]


def _exponents_section(suite, k: float, options: FitOptions) -> list[str]:
    L = [
        "## Compute-optimal exponents",
        "",
        f"N_opt ∝ C^a, D_opt ∝ C^b (C = {k:g} N D).",
        "",
        "| method | a | b | N_opt at target | D_opt at target |",
        "|---|---|---|---|---|",
    ]
    for name in METHODS:
        f = suite.get(name)
        if f is None:
            continue
        t = f.extra.get("target", {})
        L.append(
            f"| {name} | {md(f.a, '.3f')}{ci_text(f, 'a')} | {md(f.b, '.3f')}{ci_text(f, 'b')} | "
            f"{md(t.get('n_opt'), '.3g')}{ci_text(f, 'n_opt')} | "
            f"{md(t.get('d_opt'), '.3g')}{ci_text(f, 'd_opt')} |"
        )
    if options.target_flops:
        L.append(f"\nTarget compute: {options.target_flops:.3g} FLOPs.")
    if options.bootstrap:
        L.append(f"Brackets: {options.level:.0%} bootstrap percentile intervals ({options.bootstrap} resamples).")
    return L + [""]


def _law_figures(suite, source: Path, table: TableOptions, options: FitOptions, out: Path) -> list[str]:
    """The figure of each fitted law that has one of its own (loss vs LR, vs weight bits, ...)."""
    from ..methods import own_figures

    written = []
    for method, draw in own_figures().values():
        if suite.get(method) is not None:
            written += [str(p) for p in draw(source, table, options, out, ("png", "svg"), fit=suite[method])]
    return written


def _summary_section(name: str, fit) -> list[str]:
    """A law without a section of its own: its description and the lines `lab fit` prints."""
    method = get(name)
    return [f"## {name}", "", method.description, "", "```", *method.summary(fit), "```", ""]


def _method_sections(suite) -> list[str]:
    """Each fitted method's own section; the back-test paragraph follows the method it tested."""
    L, bt = [], suite.get("backtest")
    for name in METHODS:
        f, section = suite.get(name), get(name).section
        if f is not None:
            L += section(f) if section is not None else _summary_section(name, f)
        if bt is not None and bt["method"] == name:
            s = bt["summary"]
            L += [
                f"Back-test: fitted on C ≤ {bt['train_max_flops']:.3g}, predicting {s['n_test']} held-out runs: "
                f"rmse(log L) {s['rmse_log']:.3g}, mean |relative error| {s['mean_abs_rel_error']:.2%}, "
                f"max {s['max_abs_rel_error']:.2%}.",
                "",
            ]
    return L


def _figures_section(figures, base: Path) -> list[str]:
    L = ["## Figures", ""]
    for f in figures:
        fp = Path(f)
        if fp.suffix == ".png":
            rel = fp.relative_to(base)
            caption = CAPTIONS.get(fp.stem, fp.stem)
            L += [
                f"![{caption}]({rel.as_posix()})  ",
                f"*{caption}* — data: [{fp.stem}.csv]({rel.with_suffix('.csv').as_posix()})",
                "",
            ]
    return L


def _warnings_section(suite, notes) -> list[str]:
    warn = [f"{m}: {w}" for m in METHODS if suite.get(m) for w in suite[m].warnings]
    return ["## Warnings", ""] + [f"- {w}" for w in notes + warn] + [""] if (warn or notes) else []
