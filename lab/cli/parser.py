"""The `lab` parser: every subcommand's flags, and `main`, which runs one under the one-line
error handler shared with `python -m analysis`."""

from __future__ import annotations

import argparse

from analysis.cli_parsers import HelpFormatter, OneLineParser
from analysis.cli_parsers import add_parsers as add_analysis_parsers
from analysis.errors import run_command
from lab.cli.study import add_study_parser
from lab.cli.tools import add_bench_parser, add_eval_parser, add_sample_parser
from lab.cli.train import add_train_parser
from lab.config import ConfigError
from lab.files import DamagedFile


class _Parser(OneLineParser):
    """One-line usage errors (exit 2), and help that shows each option's default."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lab",
        description="A JAX/Flax lab for scaling-law studies: train model grids, fit scaling laws "
        "with confidence intervals, plot compute-optimal frontiers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_train_parser(sub)
    add_study_parser(sub)
    add_bench_parser(sub)
    add_sample_parser(sub)
    add_eval_parser(sub)
    add_analysis_parsers(sub)  # fit, plot, design, report: the analysis package's commands
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from lab.training import runtime

    if args.func.__module__.startswith("analysis."):  # fit, plot, report: no JAX start-up unless a method needs it
        runtime.one_line_warnings()
    else:
        runtime.setup()
    return run_command(f"lab {args.command}", lambda: args.func(args), user_errors=(ConfigError, DamagedFile))
