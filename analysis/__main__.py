"""`python -m analysis fit|plot|report ...`: the analysis subcommands without the lab CLI."""

import argparse
import sys

from .cli import add_parsers
from .errors import AnalysisError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description="Fit and plot scaling laws from results tables.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except AnalysisError as e:
        print(f"{parser.prog} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
