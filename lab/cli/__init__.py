"""The `lab` command: train a model, run a study, fit and plot scaling laws, benchmark.

Errors a user can cause end in one line on stderr and exit status 2; a run that diverges or
fails exits 1 with its status recorded in the run directory.

One vocabulary across the commands: `--json` prints one JSON object on stdout and nothing else
there; `--out` is where a command writes (a run or study directory, a report, a file); `--flops`
is a FLOP allowance; `--mesh` a device mesh; `--quiet` drops the progress lines on stderr; the
positionals are STUDY_FILE, RUN_DIR and TABLE (a results CSV or a study directory); `--help`
shows every default.
"""

from lab.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
