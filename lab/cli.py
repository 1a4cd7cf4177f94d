"""The `lab` command: train a model, run a study, fit and plot scaling laws, benchmark.

Errors a user can cause end in one line on stderr and exit status 2; a run that diverges or
fails exits 1 with its status recorded in the run directory.

One vocabulary across the commands: `--json` prints one JSON object on stdout and nothing else
there; `--out` is where a command writes (a run or study directory, a report, a file); `--flops`
is a FLOP allowance; `--mesh` a device mesh; `--quiet` drops the progress lines on stderr; the
positionals are STUDY_FILE, RUN_DIR and TABLE (a results CSV or a study directory); `--help`
shows every default.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from analysis.cli import HelpFormatter, OneLineParser
from analysis.cli import add_parsers as add_analysis_parsers
from analysis.errors import run_command
from lab.config import ConfigError
from lab.cli_tools import _count, add_bench_parser, add_eval_parser, add_sample_parser
from lab.files import DamagedFile

EPILOG_TRAIN = """\
examples:
  lab train --out runs/tiny                                  # the tiny preset on the stdlib corpus
  lab train --out runs/s --model small --tokens 2e6 --set train.lr=1e-3
  lab train --out runs/syn --data synthetic --steps 2000     # loss approaches the known entropy
  lab train --out runs/m --mesh data=2,fsdp=2,tensor=2       # sharded over 8 devices

--set takes any config field by dotted name (see config.json of any run for all of them):
  model.{d_model,n_layers,n_heads,n_kv_heads,d_ff,seq_len,pos_encoding,norm,mlp,tie_embeddings,...}
  train.{lr,batch_size,schedule,warmup_steps,decay_frac,weight_decay,grad_clip,eval_every,...}
  data.{tokenizer,bpe_vocab_size,val_tokens,text_key,...}

presets:
"""


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train one model and write a run directory",
        description="Train one transformer. Writes OUT/config.json, OUT/metrics.jsonl and OUT/result.json.",
        epilog=EPILOG_TRAIN,
    )
    _presets_in_help(p)
    p.add_argument("--out", required=True, help="run directory (must be empty unless --resume/--overwrite)")
    p.add_argument("--model", default=None, help="model preset (default: tiny)")
    p.add_argument("--data", default=None,
                   help="python_stdlib (default, no download) | synthetic | tfds:NAME[/CONFIG][:VERSION]")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--tokens", type=_count, help="training tokens (default: the preset's); accepts 2e6")
    length.add_argument("--steps", type=_count, help="training steps (instead of --tokens)")
    p.add_argument("--seed", type=int, default=None, help="seed for init and data order (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field by dotted name; repeatable")
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=2,fsdp=2,tensor=2 (default: all on data)")
    p.add_argument("--checkpoint-every", type=_count, default=None, metavar="K", help="checkpoint every K steps")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in OUT from its latest checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="delete OUT's contents and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    multi = p.add_argument_group("multi-host (one process per host; see README)")
    multi.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0")
    multi.add_argument("--num-processes", type=int, default=None, metavar="N")
    multi.add_argument("--process-id", type=int, default=None, metavar="I")
    p.set_defaults(func=cmd_train)


def _presets_in_help(p) -> None:
    """The presets table joins the epilog when help is printed, not when the parser is built (it
    imports the cost model, and with it JAX, which `lab fit` does not need)."""
    plain = p.format_help

    def format_help():
        from lab.presets import describe

        p.epilog = EPILOG_TRAIN + describe()
        return plain()

    p.format_help = format_help


def add_study_parser(sub) -> None:
    p = sub.add_parser(
        "study", help="run (or --dry-run) a study file: a grid of sizes x tokens or FLOP budgets",
        description="Expand a study file into cells, train the unfinished ones and collect DIR/results.csv "
        "(one row per run or cooldown branch). Re-running skips finished cells and resumes the rest. "
        "Exit status 0 when every cell completed, 1 otherwise.",
    )
    p.add_argument("study_file", metavar="STUDY_FILE",
                   help="study file (a Python file with a study() function; see experiments/)")
    p.add_argument("--out", help="study directory (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and a wall-time estimate; train nothing")
    p.add_argument("--no-timing", action="store_true", help="with --dry-run: skip the measured step times")
    p.add_argument("--launcher", default="local", choices=["local", "ray", "slurm"], help="where the cells run")
    p.add_argument("--workers", type=_count, default=None,
                   help="local launcher: runs at a time (default: the study's `workers`, else 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field in every cell; repeatable")
    p.add_argument("--mesh", default=None, help="device mesh of every cell, e.g. data=2,fsdp=2 (the same as "
                   "--set mesh=...; default: all on data)")
    p.add_argument("--ray-address", default=None, help="ray: cluster address (default: start a local cluster)")
    p.add_argument("--slurm-partition", default=None, help="slurm: partition")
    p.add_argument("--cpus-per-run", type=_count, default=1, help="ray/slurm: CPUs per run")
    p.add_argument("--gpus-per-run", type=int, default=0, help="ray/slurm: GPUs per run")
    p.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    p.add_argument("--pack", type=int, default=None, metavar="K",
                   help="train up to K cells of the same shapes and steps as one vmapped step (lab.study.packs; "
                   "default: the study's `pack`, else 8 on an accelerator and 1 on CPU)")
    a = p.add_argument_group("analysis (after the grid; lab.study.analyze)")
    a.add_argument("--no-analysis", action="store_true", help="skip the fits, figures and report after the grid")
    a.add_argument("--validate", type=float, default=None, metavar="K",
                   help="after the fit, train the predicted compute-optimal model at K x the largest budget "
                   "(and a size on each side) and report predicted vs measured loss")
    a.add_argument("--adaptive", action="store_true", help="after the grid, alternate design -> train -> refit")
    a.add_argument("--flops", type=float, default=None, metavar="F",
                   help="with --adaptive: FLOPs the designed cells may spend in all")
    a.add_argument("--flops-total", type=float, dest="flops", action=_Deprecated, help=argparse.SUPPRESS)
    p.add_argument("--tracker", choices=["tensorboard", "wandb"], default=None,
                   help="also log every run to this tracker, offline, grouped by study (optional extra; lab.training.trackers)")
    p.set_defaults(func=cmd_study)


class _Deprecated(argparse._StoreAction):
    """An old flag's name that still works, with a note on stderr naming the new one."""

    NEW = {"--flops-total": "--flops"}

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.NEW[option_string]}", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def study_overrides(args) -> list[str]:
    """The study command's config overrides: --mesh M is --set mesh=M, after the --set items."""
    return list(args.overrides) + ([f"mesh={args.mesh}"] if args.mesh is not None else [])


def cmd_study(args) -> int:
    from pathlib import Path

    from lab.config import apply_overrides
    from lab.data import load_corpus
    from lab.study.load import load_study
    from lab.study.runner import check_cells_fit, run_study
    from lab.study.spec import expand

    args.overrides = study_overrides(args)
    study = load_study(args.study_file)
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
    from lab.study.analyze import after_grid, check_adaptive, check_validate

    validate = study.validate if args.validate is None else args.validate
    check_validate(cells, validate)
    check_adaptive(args.adaptive, args.flops)
    if args.tracker:
        from lab.training.trackers import check_available

        check_available(args.tracker)
    if args.dry_run:
        return _dry_run(study, cells, pack, timed=not args.no_timing)
    from lab.study.signals import Interrupted

    def run(s, c, out):
        return run_study(s, c, Path(out), launcher=args.launcher, workers=args.workers, progress=not args.quiet,
                         tracker=args.tracker, pack=pack, **_launcher_args(args))

    try:
        status = run(study, cells, args.out)
        if args.adaptive:
            from lab.study.adaptive import adaptive_rounds

            cells, status = adaptive_rounds(study, cells, Path(args.out), status, args.flops, vocab, args.overrides, run)
        after = after_grid(study, cells, Path(args.out), status, analyse=not args.no_analysis, validate=validate,
                           vocab_size=vocab, overrides=args.overrides, run=run)
    except Interrupted as e:  # SIGTERM/SIGINT: the workers were stopped after saving checkpoints
        print(f"lab study: {e}", file=sys.stderr)
        return e.exit_code
    counts = {s: list(status.values()).count(s) for s in sorted(set(status.values()))}
    print(json.dumps({"study": study.name, "cells": len(cells), **counts, "results": str(Path(args.out) / "results.csv"),
                      **{k: v for k, v in after.items() if k != "validation"},
                      "validation": (after["validation"] or {}).get("summary")}))
    return 0 if all(s == "completed" for s in status.values()) else 1


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
        return {"address": args.ray_address, "cpus_per_task": args.cpus_per_run, "gpus_per_task": args.gpus_per_run}
    if args.launcher == "slurm":
        return {"partition": args.slurm_partition, "cpus_per_task": args.cpus_per_run,
                "gpus_per_task": args.gpus_per_run}
    return {}


def build_config(args):
    """The run's config from the command line. On --resume of an existing run the saved config
    decides, and the command may repeat it (a requeued job re-runs its own command): each flag
    must agree with the saved value; only --mesh and --checkpoint-every may change."""
    from lab.rundir import RunDir

    saved = RunDir(args.out).load_config() if args.resume else None
    if saved is None:
        return _command_config(args, base=None).validate()
    want = _command_config(args, base=saved)
    conflicts = _differences(saved, want, ignore=("mesh", "checkpoint_every", "keep_checkpoints"))
    if conflicts:
        raise ConfigError(f"--resume: the command conflicts with the saved config of {args.out}: "
                          + "; ".join(f"{k} is {a!r} there, {b!r} here" for k, a, b in conflicts))
    return want.validate()


def _command_config(args, base):
    """Apply the command's flags to `base` (the saved config), or to the preset's config and its
    defaults when there is no base."""
    from lab.config import apply_overrides
    from lab.presets import preset_config

    if base is None or args.model is not None:
        preset, default_tokens = preset_config(args.model or "tiny")  # an unknown name: error here
        cfg = preset if base is None else _with_preset(base, args.model)
    else:
        cfg, default_tokens = base, None
    train = cfg.train
    if args.tokens is not None:
        train = dataclasses.replace(train, tokens=args.tokens, steps=0)
    elif args.steps is not None:
        train = dataclasses.replace(train, steps=args.steps, tokens=0)
    elif base is None:
        train = dataclasses.replace(train, tokens=default_tokens, steps=0)
    if args.seed is not None:
        train = dataclasses.replace(train, seed=args.seed)
    cfg = dataclasses.replace(cfg, train=train)
    if args.data is not None or base is None:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=args.data or "python_stdlib"))
    if args.mesh is not None:
        cfg = dataclasses.replace(cfg, mesh=args.mesh)
    if args.checkpoint_every is not None:
        cfg = dataclasses.replace(cfg, checkpoint_every=args.checkpoint_every)
    return apply_overrides(cfg, args.overrides)


def _with_preset(cfg, name: str):
    """`cfg` with the fields preset `name` sets (its model and train fields)."""
    from lab.presets import PRESETS

    fields = PRESETS[name]
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **fields["model"]),
                               train=dataclasses.replace(cfg.train, **fields["train"]))


def _differences(a, b, ignore=(), prefix=""):
    """[(dotted field, value in a, value in b)] where two configs differ. A vocab_size of 0 (the
    corpus decides) agrees with any resolved size."""
    out = []
    for f in dataclasses.fields(a):
        if f.name in ignore:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x):
            out += _differences(x, y, (), prefix + f.name + ".")
        elif x != y and not (f.name == "vocab_size" and 0 in (x, y)):
            out.append((prefix + f.name, x, y))
    return out


def cmd_train(args) -> int:
    cfg = build_config(args)  # user errors surface here, before the training stack loads
    from lab.training.distributed import maybe_initialize

    maybe_initialize(args.coordinator, args.num_processes, args.process_id)
    from lab.training.train import Preempted, RunFailed, train

    try:
        result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except RunFailed as e:
        print(f"lab train: run failed: {e}", file=sys.stderr)
        return 1
    except Preempted as e:
        print(f"lab train: {e}; continue with: lab train --out {args.out} --resume", file=sys.stderr)
        return 143
    import jax

    from lab.result import SUMMARY

    summary = {k: result.get(k) for k in SUMMARY}
    if jax.process_index() == 0:
        print(json.dumps(summary))
    return 0 if result["status"] == "completed" else 1


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


if __name__ == "__main__":
    sys.exit(main())
