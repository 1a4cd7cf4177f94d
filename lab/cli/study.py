"""`lab study`: its flags and the command (dry run, the grid on a launcher, then the adaptive
rounds, the fits and the validation rung of `lab.study.analyze`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from lab.cli.tools import add_set_flag, count, seed_list
from lab.config import ConfigError


def add_study_parser(sub) -> None:
    p = sub.add_parser(
        "study",
        help="run (or --dry-run) a study file: a grid of sizes x tokens or FLOP budgets",
        description="Expand a study file into cells, train the unfinished ones and collect DIR/results.csv "
        "(one row per run or cooldown branch). Re-running skips finished cells and resumes the rest. "
        "Exit status 0 when every cell completed, 1 otherwise.",
    )
    _add_study_file_flags(p)
    _add_launcher_flags(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    p.add_argument(
        "--pack",
        type=int,
        default=None,
        metavar="K",
        help="train up to K cells of the same shapes and steps as one vmapped step (lab.study.packs; "
        "default: the study's `pack`, else 8 on an accelerator and 1 on CPU)",
    )
    _add_analysis_flags(p)
    p.add_argument(
        "--tracker",
        choices=["tensorboard", "wandb"],
        default=None,
        help="also log every run live to this tracker as it trains, offline, in its run directory, "
        "grouped by study (optional extra; lab.training.trackers)",
    )
    p.set_defaults(func=cmd_study)


def _add_study_file_flags(p) -> None:
    """The study file, its output directory and the dry run that only prints the grid."""
    p.add_argument(
        "study_file",
        metavar="STUDY_FILE",
        help="study file (a Python file with a study() function; see experiments/)",
    )
    p.add_argument("--out", help="study directory (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and a wall-time estimate; train nothing")
    p.add_argument("--no-timing", action="store_true", help="with --dry-run: skip the measured step times")
    p.add_argument(
        "--seeds",
        type=seed_list,
        default=None,
        metavar="S,S...",
        help="run the grid at these seeds instead of the study's `seeds` (budgets its seeds_by_budget names "
        "keep theirs; the validation rung runs at the first): another draw of the same study",
    )


def _add_launcher_flags(p) -> None:
    """Where and how every cell runs: the launcher and its resources, the config overrides, the mesh."""
    p.add_argument("--launcher", default="local", choices=["local", "ray", "slurm"], help="where the cells run")
    p.add_argument(
        "--workers",
        type=count,
        default=None,
        help="local launcher: runs at a time (default: the study's `workers`, else 1)",
    )
    add_set_flag(p, "override a config field in every cell; repeatable")
    p.add_argument(
        "--mesh",
        default=None,
        help="device mesh of every cell, e.g. data=2,fsdp=2 (the same as --set mesh=...; default: all on data)",
    )
    p.add_argument("--ray-address", default=None, help="ray: cluster address (default: start a local cluster)")
    p.add_argument("--slurm-partition", default=None, help="slurm: partition")
    p.add_argument("--cpus-per-run", type=count, default=1, help="ray/slurm: CPUs per run")
    p.add_argument("--gpus-per-run", type=int, default=0, help="ray/slurm: GPUs per run")


def _add_analysis_flags(p) -> None:
    """The group of flags for what follows the grid: fits, the validation rung, adaptive rounds."""
    a = p.add_argument_group("analysis (after the grid; lab.study.analyze)")
    a.add_argument("--no-analysis", action="store_true", help="skip the fits, figures and report after the grid")
    a.add_argument(
        "--validate",
        type=float,
        default=None,
        metavar="K",
        help="after the fit, train the predicted compute-optimal model at K x the largest budget "
        "(and a size on each side) and report predicted vs measured loss",
    )
    a.add_argument("--adaptive", action="store_true", help="after the grid, alternate design -> train -> refit")
    a.add_argument(
        "--flops",
        type=float,
        default=None,
        metavar="F",
        help="with --adaptive: FLOPs the designed cells may spend in all",
    )
    a.add_argument("--flops-total", type=float, dest="flops", action=_Deprecated, help=argparse.SUPPRESS)


class _Deprecated(argparse._StoreAction):
    """An old flag's name that still works, with a note on stderr naming the new one."""

    NEW = {"--flops-total": "--flops"}

    def __call__(self, parser, namespace, values, option_string=None):
        print(
            f"{parser.prog}: note: {option_string} is deprecated; use {self.NEW[option_string]}", file=sys.stderr
        )
        super().__call__(parser, namespace, values, option_string)


def study_overrides(args) -> list[str]:
    """The study command's config overrides: --mesh M is --set mesh=M, after the --set items."""
    return list(args.overrides) + ([f"mesh={args.mesh}"] if args.mesh is not None else [])


def cmd_study(args) -> int:
    args.overrides = study_overrides(args)
    study, cells, pack, vocab = _plan_cells(args)
    validate = _check_after_grid_flags(args, study, cells)
    if args.dry_run:
        return _dry_run(study, cells, pack, timed=not args.no_timing)
    from lab.study.signals import Interrupted

    try:
        cells, status, after = _train_and_analyse(args, study, cells, pack, vocab, validate)
    except Interrupted as e:  # SIGTERM/SIGINT: the workers were stopped after saving checkpoints
        print(f"lab study: {e}", file=sys.stderr)
        return e.exit_code
    _print_summary(study, cells, status, after, Path(args.out))
    return 0 if all(s == "completed" for s in status.values()) else 1


def _plan_cells(args) -> tuple:
    """The study file expanded into cells under the flags' overrides: (study, cells, pack, vocab size).
    Checks the pack size, --out and (local launcher) that the cells fit the machine."""
    from lab.data import load_corpus
    from lab.overrides import apply_overrides
    from lab.study.load import load_study
    from lab.study.runner import check_cells_fit
    from lab.study.spec import expand

    study = load_study(args.study_file)
    if args.seeds is not None:
        study = dataclasses.replace(study, seeds=args.seeds)
    from lab.study.packs import check_pack, default_pack

    pack = check_pack(args.pack) if args.pack is not None else default_pack(study.pack)
    if not args.dry_run and not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    base = apply_overrides(study.base, list(study.overrides) + args.overrides)
    # the corpus's vocabulary sizes the embedding and head, and so every cell's FLOPs
    vocab = load_corpus(base.data).vocab_size
    cells = expand(study, vocab, args.overrides)
    args.workers = study.workers if args.workers is None else args.workers
    if args.launcher == "local":  # elsewhere the cells run on other machines, which check for themselves
        check_cells_fit(cells, args.workers)
    return study, cells, pack, vocab


def _check_after_grid_flags(args, study, cells) -> float | None:
    """Fail before training on a bad --validate, --adaptive/--flops or --tracker; returns the validate K."""
    from lab.study.analyze import check_adaptive, check_validate

    validate = study.validate if args.validate is None else args.validate
    check_validate(cells, validate)
    check_adaptive(args.adaptive, args.flops)
    if args.tracker:
        from lab.training.trackers import check_available

        check_available(args.tracker)
    return validate


def _cell_runner(args, pack: int):
    """run(study, cells, out): trains the unfinished cells on the chosen launcher, returns their status."""
    from lab.study.runner import run_study

    def run(s, c, out):
        return run_study(
            s,
            c,
            Path(out),
            launcher=args.launcher,
            workers=args.workers,
            progress=not args.quiet,
            tracker=args.tracker,
            pack=pack,
            **_launcher_args(args),
        )

    return run


def _train_and_analyse(args, study, cells, pack: int, vocab: int, validate) -> tuple:
    """Train the grid, then (--adaptive) the designed rounds, then the fits, figures and validation rung:
    (cells, status, after_grid's summary)."""
    from lab.study.analyze import after_grid

    run = _cell_runner(args, pack)
    status = run(study, cells, args.out)
    if args.adaptive:
        from lab.study.adaptive import adaptive_rounds

        cells, status = adaptive_rounds(
            study, cells, Path(args.out), status, args.flops, vocab, args.overrides, run
        )
    after = after_grid(
        study,
        cells,
        Path(args.out),
        status,
        analyse=not args.no_analysis,
        validate=validate,
        vocab_size=vocab,
        overrides=args.overrides,
        run=run,
    )
    return cells, status, after


def _print_summary(study, cells, status: dict, after: dict, out: Path) -> None:
    """The one JSON line on stdout: cell counts by status, the results file, the share of the cells'
    time spent outside training steps (lab.study.results.overhead_share) and the analysis summary."""
    from lab.study.results import overhead_share, read_rows

    counts = {s: list(status.values()).count(s) for s in sorted(set(status.values()))}
    share = overhead_share(read_rows(out / "results.csv"))
    print(
        json.dumps(
            {
                "study": study.name,
                "cells": len(cells),
                **counts,
                "results": str(out / "results.csv"),
                "overhead_share": None if share is None else round(share, 4),
                **{k: v for k, v in after.items() if k != "validation"},
                "validation": (after["validation"] or {}).get("summary"),
            }
        )
    )


def _dry_run(study, cells, pack: int, timed: bool) -> int:
    """--dry-run: print the grid, its packs and (when `timed`) the measured wall-time estimate."""
    from lab.study.packs import describe_packs
    from lab.study.runner import describe

    timing = None
    if timed:
        from lab.study.estimate import step_seconds

        timing = step_seconds(cells)
    print(describe(study, cells, timing))
    if pack > 1:
        print(describe_packs(cells, pack))
    return 0


def _launcher_args(args) -> dict:
    if args.launcher == "ray":
        return {
            "address": args.ray_address,
            "cpus_per_task": args.cpus_per_run,
            "gpus_per_task": args.gpus_per_run,
        }
    if args.launcher == "slurm":
        return {
            "partition": args.slurm_partition,
            "cpus_per_task": args.cpus_per_run,
            "gpus_per_task": args.gpus_per_run,
        }
    return {}
