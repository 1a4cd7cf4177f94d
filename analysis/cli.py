"""Command-line front end: `fit`, `plot`, `design` and `report` subcommands for the `lab` command.

The lab CLI wires them in with ``analysis.cli_parsers.add_parsers(subparsers)``; each subcommand sets
``func=handler`` with ``handler(args) -> int``. User-caused problems raise
`analysis.errors.AnalysisError` (one line), which the front end prints as
``lab <cmd>: error: <msg>`` before exiting with status 2. `python -m analysis` does the same.
Heavy modules are imported inside the handlers so that building the parser stays cheap.

The vocabulary every `lab` command shares (`OneLineParser` and `HelpFormatter` serve both front
ends): the positional TABLE is a results CSV or a study directory; `--json` prints one JSON object
on stdout and nothing else there (notes and progress go to stderr); `--quiet` drops the progress
lines; `--help` shows every default.
"""

from __future__ import annotations

import json
import sys

from .errors import AnalysisError
from .methods import get
from .options import FitOptions, TableOptions, options_from

AUTO_COPIES = 40  # simulated copies `--method auto` audits when --audit is not given
NOT_FOR_DESIGN = ("by", "curve_loss", "smooth")  # design fits one frontier and reads no curves


def _progress():
    """The module whose switch turns every progress line off (imported late: it stays out of start-up)."""
    from .solvers import progress

    return progress


def _quietly(handler):
    """`handler` with the progress lines off while it runs when --quiet is given."""

    def run(args) -> int:
        progress = _progress()
        before, progress.QUIET = progress.QUIET, args.quiet
        try:
            return handler(args)
        finally:
            progress.QUIET = before

    run.__module__, run.__name__ = handler.__module__, handler.__name__
    return run


def _options(args) -> tuple[TableOptions, FitOptions]:
    """The parsed flags as the library's options."""
    return options_from(TableOptions, args), options_from(FitOptions, args, study_dir=args.table)


def _use_cache() -> None:
    from .solvers.jaxcache import enable_persistent_cache

    enable_persistent_cache()


def cmd_fit(args) -> int:
    from .fitting import fit_with_options
    from .inputs import load

    if args.method == "auto":
        return _fit_auto(args)
    method = get(args.method)
    if method.uses_jax or args.audit:
        _use_cache()
    table, options = _options(args)
    if args.by and args.audit:
        raise AnalysisError("--audit simulates one table; choose the rows with --where instead of --by")
    if args.by:
        return _fit_by(args, table, options)
    study = load(args.table, table, need_budget=method.needs_budget or args.backtest > 0 or bool(args.audit))
    audited = _run_audit(study, args, options) if args.audit else None
    result = fit_with_options(study, args.method, options)
    return _print_fit(args, study, result, options, audited)


def _run_audit(study, args, options: FitOptions, copies: int | None = None) -> dict:
    from .uncertainty.audit import audit

    return audit(
        study.data,
        copies=copies or args.audit,
        bootstrap=args.audit_bootstrap,
        level=args.level,
        seed=args.seed,
        options=options,
    )


def _fit_auto(args) -> int:
    """`--method auto`: audit the table, then fit the method the audit trusts (with an interval)."""
    from dataclasses import replace

    from .fitting import fit_with_options
    from .inputs import load
    from .uncertainty.audit import fallback

    _use_cache()
    table, options = _options(args)
    if args.by:
        raise AnalysisError("--method auto fits one table; choose the rows with --where instead of --by")
    study = load(args.table, table, need_budget=True)
    audited = _run_audit(study, args, options, copies=args.audit or AUTO_COPIES)
    chosen, why = audited["choice"]["method"], audited["choice"]["why"]
    calibrated = chosen is not None
    if not calibrated:
        chosen = fallback(audited)
        why += f"; falling back to {chosen}, whose coverage is nearest nominal"
    if chosen is None:
        raise AnalysisError(f"--method auto: no audited method fitted the simulated copies ({why})")
    if not options.bootstrap:  # the trusted estimate comes with its interval
        options = replace(options, bootstrap=args.audit_bootstrap)
    result = fit_with_options(study, chosen, options)
    auto = {"method": chosen, "calibrated": calibrated, "why": why}
    return _print_fit(args, study, result, options, audited, auto)


def _print_fit(args, study, result, options: FitOptions, audited=None, auto=None) -> int:
    from .fitting import summary_text
    from .reports.suite import fit_problems
    from .uncertainty.audit import audit_json, audit_lines

    result.warnings[:0] = study.warnings
    if audited is not None:  # the audit calibrated this method's interval: the fit carries it
        from .uncertainty.calibrate import calibrate_fit

        calibrate_fit(result, audited)
    problems = fit_problems(result, study.data)  # is this fit identified? (plain words; empty when it is)
    out = {**result.to_json_dict(), "problems": problems}
    if args.backtest:
        out["backtest"] = _backtest_json(study, result.method, args.backtest, options)
    if audited is not None:
        out["audit"], out["audit_info"] = audit_json(audited)
    if auto is not None:
        out["auto"] = auto
    if args.json:
        print(json.dumps(out, indent=None, allow_nan=False))
        return 0
    if auto is not None:
        print(f"auto: {auto['method']} — {auto['why']}")
    print(summary_text(result))
    if "ci_calibration" in result.extra:
        raw = result.extra["ci_raw"]["a"]
        print(f"  {result.extra['ci_calibration']['note']}: raw a [{raw['lo']:.4g}, {raw['hi']:.4g}]")
    for p in problems:
        print(f"  shaky: {p}")
    if args.backtest:
        s = out["backtest"]
        print(
            f"  back-test (hold out {len(s['holdout_budgets'])} largest budget(s)): "
            f"rmse(log) {s['rmse_log']:.4g}, mean |rel err| {s['mean_abs_rel_error']:.3%}"
            + (
                f"; {s['pi_level']:.0%} prediction intervals (law + run noise {s['pi_run_noise']:.3g}, "
                f"{s['pi_noise_source']}) hold {s['pi_inside']} of {s['n_test']} held-out runs "
                f"({s['pi_coverage']:.0%}), ±{s['pi_mean_rel_halfwidth']:.2%} on average"
                if "pi_coverage" in s
                else ""
            )
        )
        if "pi_form_k" in s:
            how = "from the training budgets' own back-tests"
            how = s["pi_form_source"] if s["pi_form_source"].startswith("not measured") else how
            print(
                f"  with the law's form error (k = {s['pi_form_k']:.3g} per unit log distance, {how}): "
                f"{s['pi_form_inside']} of {s['n_test']} inside ({s['pi_form_coverage']:.0%}), "
                f"±{s['pi_form_mean_rel_halfwidth']:.2%} on average"
            )
    if audited is not None:
        print("\n".join(audit_lines(audited)))
    return 0


def _fit_by(args, table: TableOptions, options: FitOptions) -> int:
    from .fitting import summary_text
    from .reports.by_group import fit_groups

    fits = fit_groups(args.table, args.by, args.method, table, options)
    if args.json:
        print(
            json.dumps(
                {
                    "by": args.by,
                    "groups": {
                        v: ({"error": f} if isinstance(f, str) else f.to_json_dict()) for v, f in fits.items()
                    },
                },
                allow_nan=False,
            )
        )
        return 0
    for value, fit in fits.items():
        print(f"== {args.by} = {value or '(none)'} ==")
        print(f"  not fitted: {fit}" if isinstance(fit, str) else summary_text(fit))
    return 0


def _backtest_json(study, method: str, holdout: int, options: FitOptions) -> dict:
    from .result import plain
    from .uncertainty.form import backtest_form
    from .uncertainty.holdout import backtest

    bt = (backtest_form if options.bootstrap else backtest)(
        study.data,
        method,
        holdout=holdout,
        pi_bootstrap=options.bootstrap,
        level=options.level,
        pi_seed=options.seed,
        **get(method).options(options),
    )
    return plain(
        {
            "holdout_budgets": bt["holdout_budgets"],
            "train_max_flops": bt["train_max_flops"],
            **bt["summary"],
            "points": bt["points"],
        }
    )


def cmd_plot(args) -> int:
    from pathlib import Path

    from .methods import own_figures
    from .outputs import check_folder
    from .plotting.plots import make_figures

    check_folder(Path(args.out))  # before fitting: a folder new, empty or the lab's, never over a user's files
    _use_cache()
    table, options = _options(args)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    EXTRA_FIGURES = own_figures()
    extra = [letter for letter in EXTRA_FIGURES if letter in args.figures]
    for letter in extra:  # figures of single laws, beside (a)-(e)
        for path in EXTRA_FIGURES[letter][1](args.table, table, options, args.out, formats):
            print(path)
    args.figures = "".join(c for c in args.figures if c not in extra)
    if extra and not args.figures:
        return 0
    if args.by:
        from .reports.by_group import fit_groups, plot_groups
        from .table import load_table

        df = load_table(args.table)  # IsoFLOP frontiers for IsoFLOP grids, else the parametric law's
        method = "isoflop" if "budget_flops" in df and df["budget_flops"].notna().any() else "parametric"
        for path in plot_groups(
            fit_groups(args.table, args.by, method, table, options), args.by, args.out, formats
        ):
            print(path)
        return 0
    written, notes = make_figures(args.table, args.out, table, options, args.figures, formats)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def cmd_design(args) -> int:
    from .design import design_text, propose
    from .inputs import load
    from .result import plain

    if args.sizes < 3:
        raise AnalysisError(f"--sizes {args.sizes}: a budget needs at least 3 sizes to locate its minimum")
    unused = ["--" + dest.replace("_", "-") for dest in NOT_FOR_DESIGN if getattr(args, dest) is not None]
    if unused:  # design fits one vpnls law to the table's rows; it reads no groups and no curves
        raise AnalysisError(
            f"{unused[0]} does not apply to design (it proposes cells for one vpnls law fitted "
            "to the table's rows); choose the rows with --where/--status instead"
        )
    study = load(args.table, options_from(TableOptions, args), need_budget=True)
    p = propose(study, args.flops, args.target_flops, sizes=args.sizes, bootstrap=args.bootstrap)
    p["warnings"] = list(study.warnings)
    text = "\n".join([design_text(p), *(f"  warning: {w}" for w in p["warnings"])])
    print(json.dumps(plain(p), allow_nan=False) if args.json else text)
    return 0


def cmd_report(args) -> int:
    from .reports.reporting import write_report

    _use_cache()
    table, options = _options(args)
    print(write_report(args.table, args.out, table, options, by=args.by))
    return 0
