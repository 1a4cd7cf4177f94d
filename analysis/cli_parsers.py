"""The parsers of `fit`, `plot`, `design` and `report` (`analysis.cli` holds their handlers):
argument types, the shared flag groups (table, fit, audit) and `add_parsers`, which wires each
subcommand to its handler; `OneLineParser` and `HelpFormatter` serve `lab` and `python -m analysis`
alike. Building the parsers imports nothing heavy."""

from __future__ import annotations

import argparse
import math

from .cli import AUTO_COPIES, NOT_FOR_DESIGN, _quietly, cmd_design, cmd_fit, cmd_plot, cmd_report
from .methods import METHODS


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
        description="Propose runs (sizes x budgets) within a FLOP allowance that most narrow vpnls's "
        "interval of the exponent a, or of N_opt at --target-flops, scored by refitting tables "
        "simulated from the table's own law and noise (analysis.design). The table flags choose "
        "the rows and columns it starts from.",
    )
    _common_args(p, json_flag=True)
    p.add_argument(
        "--flops", type=_positive_float, required=True, metavar="F", help="FLOPs the proposed cells may spend"
    )
    p.add_argument("--target-flops", type=_positive_float, help="narrow N_opt at this compute instead of a")
    p.add_argument(
        "--sizes", type=_count, default=5, help="candidate sizes per budget (a factor 16 either side of N_opt)"
    )
    p.add_argument("--bootstrap", type=_count, default=200, metavar="B", help="resamples for the current vpnls CI")
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
