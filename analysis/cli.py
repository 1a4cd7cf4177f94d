"""Command-line front end: `fit`, `plot`, `design` and `report` subcommands for the `lab` command.

The lab CLI wires them in with ``analysis.cli.add_parsers(subparsers)``; each subcommand sets
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

import argparse
import json
import math
import sys

from .errors import AnalysisError
from .methods import METHODS, get
from .options import FitOptions, TableOptions, options_from


class OneLineParser(argparse.ArgumentParser):
    """A usage error is one line on stderr and exit status 2 (argparse's status, without the usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and epilogs as written, and ends each option's help with its default
    unless the help already names it (or the default is None/False: "not set")."""

    def _get_help_string(self, action):
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == []
            or not action.option_strings
            or text is argparse.SUPPRESS
        ):
            return text
        return text + " (default: %(default)s)"


TABLE_HELP = "results CSV, or a study directory holding results.csv"


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text!r}")
    return v


def _count(text: str) -> int:
    """A whole number >= 0 (a negative count is a usage error, not "count from the end")."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return v


def _copies(text: str) -> int:
    """A whole number >= 1 (`--audit 0` would audit nothing: a usage error)."""
    v = _count(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return v


AUTO_COPIES = 40  # simulated copies `--method auto` audits when --audit is not given

NOT_FOR_DESIGN = ("by", "curve_loss", "smooth")  # design fits one frontier and reads no curves


def _table_args(p: argparse.ArgumentParser, hide: tuple = ()) -> None:
    """The table flags (`TableOptions`); those whose dest is in `hide` parse but stay out of --help."""
    g = p.add_argument_group("table")
    g.add_argument(
        "--n-col", help="parameter-count column (default: params_total, params_non_embedding, params, ...)"
    )
    g.add_argument("--d-col", help="training-tokens column (default: tokens, ...; else D = C/(k N))")
    g.add_argument("--c-col", help="compute column (default: flops_exact, flops, ...; else C = k N D)")
    g.add_argument("--loss-col", help="loss column (default: final_val_loss, loss, val_loss, ...)")
    g.add_argument(
        "--budget-col", help="IsoFLOP budget column (default: budget_flops, flops_budget; else C binned)"
    )
    g.add_argument("--where", help='pandas query selecting rows, e.g. "seed == 0 and params_total > 1e6"')
    g.add_argument("--by", metavar="COL", help="one fit per value of this column (e.g. variant, arch), compared")
    g.add_argument(
        "--status",
        default="completed",
        help="keep rows with this status if the table has a status column ('any' keeps all; default completed)",
    )
    g.add_argument(
        "--drop-highest-loss",
        type=_count,
        default=0,
        metavar="K",
        help="drop the K highest-loss rows; Epoch's refit of Chinchilla dropped 5",
    )
    g.add_argument(
        "--k",
        type=_positive_float,
        default=None,
        help="FLOPs per parameter per token in C = k N D (default: median C/(N D) when the table "
        "has both columns, else 6)",
    )
    g.add_argument(
        "--curve-loss",
        default=None,
        help="metrics.jsonl key for training curves (default train_loss, else val_loss)",
    )
    g.add_argument(
        "--smooth",
        type=_count,
        default=None,
        metavar="K",
        help="rolling mean over K logged points of each curve (default: 5%% of a run's points for train_loss)",
    )
    g.add_argument(
        "--curve-points",
        type=_count,
        default=0,
        metavar="K",
        help="parametric/vpnls on a study directory: add up to K points per run, the loss-curve law's "
        "prediction of a 20%% cooldown ending at each logged step (analysis.curves)",
    )
    for action in g._group_actions:
        if action.dest in hide:
            action.help = argparse.SUPPRESS


def _fit_args(p: argparse.ArgumentParser, bootstrap: int) -> None:
    g = p.add_argument_group("fit")
    g.add_argument("--target-flops", type=_positive_float, help="report N_opt and D_opt at this compute")
    g.add_argument(
        "--bootstrap",
        type=_count,
        default=bootstrap,
        metavar="B",
        help="bootstrap resamples for percentile CIs (0: none)",
    )
    g.add_argument("--level", type=float, default=0.95, help="CI level")
    g.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    g.add_argument("--delta", type=_positive_float, default=1e-3, help="Huber delta for parametric (default 1e-3)")
    g.add_argument(
        "--iso-method",
        choices=("akima", "quadratic"),
        default="akima",
        help="per-budget minimum estimator for isoflop (default akima)",
    )
    g.add_argument(
        "--loss-noise",
        type=_positive_float,
        help="seed-to-seed loss std for isoflop uncertainties (default: estimated)",
    )
    g.add_argument(
        "--base-law",
        metavar="LAW",
        help="data-constrained: hold the base Chinchilla law fixed: 'muennighoff-c4' "
        "(the paper's) or 'E,A,B,alpha,beta' (default: fit it to the single-epoch rows, then jointly)",
    )


def _audit_args(p: argparse.ArgumentParser, auto: bool = False) -> None:
    g = p.add_argument_group("audit (analysis.uncertainty.audit)")
    g.add_argument(
        "--audit",
        type=_copies,
        metavar="N",
        help="simulate this table's design N times from its own fitted law and report each method's bias, "
        "RMSE and 95%% interval coverage of a and b"
        + (f" (default: not run; {AUTO_COPIES} copies with --method auto)" if auto else " (default: not run)"),
    )
    g.add_argument(
        "--audit-bootstrap",
        type=_count,
        default=100,
        metavar="B",
        help="bootstrap resamples behind each simulated copy's interval",
    )


def _common_args(p: argparse.ArgumentParser, json_flag: bool = False) -> None:
    """The positional TABLE, and --json / --quiet as every lab command means them."""
    p.add_argument("table", metavar="TABLE", help=TABLE_HELP)
    if json_flag:
        p.add_argument(
            "--json", action="store_true", help="print one JSON object on stdout (and nothing else there)"
        )
    p.add_argument(
        "--quiet", action="store_true", help="no progress lines on stderr (large tables, big bootstraps)"
    )


def _fit_parser(add) -> None:
    """The `fit` subcommand and its flags."""
    p = add(
        "fit",
        help="fit a scaling law to a results table",
        description="Fit a scaling law to a results table (CSV or study directory).",
    )
    _common_args(p, json_flag=True)
    p.add_argument(
        "--method",
        choices=(*METHODS, "auto"),
        default="parametric",
        help="the law to fit; auto: the method the audit trusts (lowest RMSE of a among those whose "
        "interval coverage is close to nominal)",
    )
    _table_args(p)
    _fit_args(p, bootstrap=0)
    _audit_args(p, auto=True)
    p.add_argument(
        "--backtest",
        type=_count,
        default=0,
        metavar="H",
        help="also back-test: hold out the H largest budgets (0: no back-test)",
    )
    p.set_defaults(func=_quietly(cmd_fit))


def add_parsers(subparsers) -> None:
    """Add `fit`, `plot`, `design` and `report` to an argparse subparsers object."""
    add = lambda name, **kw: subparsers.add_parser(name, formatter_class=HelpFormatter, **kw)
    _fit_parser(add)

    p = add(
        "plot",
        help="write figures (a)-(e) and their data CSVs",
        description="Write the scaling-law figures (a)-(e) of a table, each with its data CSV.",
    )
    _common_args(p)
    p.add_argument("--out", required=True, help="output folder: new, empty, or one the lab wrote before")
    p.add_argument(
        "--figures",
        default="abcde",
        help="which figures, e.g. 'acd' (default abcde; q: loss vs weight bits; l: loss vs learning rate; "
        "i: in-context accuracy vs compute; r: loss vs epochs of repeated data)",
    )
    p.add_argument("--format", default="png,svg", help="image formats, comma separated (default png,svg)")
    _table_args(p)
    _fit_args(p, bootstrap=200)
    p.set_defaults(func=_quietly(cmd_plot))

    p = add(
        "design",
        help="propose the next cells that most shrink the frontier's uncertainty",
        description="Propose IsoFLOP cells (sizes x budgets) within a FLOP allowance that most "
        "narrow the CI of the exponent a, or of N_opt at --target-flops (analysis.design). "
        "The table flags choose the rows and columns of the IsoFLOP fit it starts from.",
    )
    _common_args(p, json_flag=True)
    p.add_argument(
        "--flops", type=_positive_float, required=True, metavar="F", help="FLOPs the proposed cells may spend"
    )
    p.add_argument("--target-flops", type=_positive_float, help="narrow N_opt at this compute instead of a")
    p.add_argument("--sizes", type=_count, default=5, help="sizes per proposed budget")
    p.add_argument("--bootstrap", type=_count, default=200, metavar="B", help="resamples for the current CI")
    _table_args(p, hide=NOT_FOR_DESIGN)
    p.set_defaults(func=_quietly(cmd_design))

    p = add(
        "report",
        help="write a one-page Markdown report of a study",
        description="Fit, plot and summarise a study directory (TABLE/results.csv, TABLE/<run>/metrics.jsonl).",
    )
    _common_args(p)
    p.add_argument("--out", help="report path, fits.json and figures/ beside it (default: TABLE/report.md)")
    _table_args(p)
    _fit_args(p, bootstrap=200)
    _audit_args(p)
    p.set_defaults(func=_quietly(cmd_report))


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
    for p in problems:
        print(f"  shaky: {p}")
    if args.backtest:
        s = out["backtest"]
        print(
            f"  back-test (hold out {len(s['holdout_budgets'])} largest budget(s)): "
            f"rmse(log) {s['rmse_log']:.4g}, mean |rel err| {s['mean_abs_rel_error']:.3%}"
            + (
                f"; {s['pi_level']:.0%} prediction intervals (law + run noise {s['pi_run_noise']:.3g}, "
                f"{s['pi_noise_source']}) hold {s['pi_coverage']:.0%} of held-out runs, "
                f"±{s['pi_mean_rel_halfwidth']:.2%} on average"
                if "pi_coverage" in s
                else ""
            )
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
    from .uncertainty.holdout import backtest

    bt = backtest(
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
    if unused:  # design fits one IsoFLOP frontier from the table's rows; it reads no groups and no curves
        raise AnalysisError(
            f"{unused[0]} does not apply to design (it proposes cells for one IsoFLOP fit of the "
            "table's rows); choose the rows with --where/--status instead"
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
