"""`python -m analysis fit|plot|report ...`: the analysis subcommands without the lab CLI."""

import argparse
import sys

from .cli import add_parsers
from .errors import run_command


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description="Fit and plot scaling laws from results tables.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parsers(sub)
    args = parser.parse_args(argv)
    return run_command(f"{parser.prog} {args.command}", lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
