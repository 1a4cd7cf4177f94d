"""`python -m analysis fit|plot|design|report ...`: the analysis subcommands without the lab CLI."""

import sys

from .cli_parsers import OneLineParser, add_parsers
from .errors import run_command


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m analysis", description="Fit and plot scaling laws from results tables.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_parsers(sub)
    args = parser.parse_args(argv)
    return run_command(f"{parser.prog} {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
