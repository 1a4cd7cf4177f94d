"""The `lab` command: train a model, run a study, fit and plot scaling laws, benchmark.

Errors a user can cause end in one line on stderr and exit status 2; a run that diverges or
fails exits 1 with its status recorded in the run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from lab.config import ConfigError

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
    from lab.presets import describe

    p = sub.add_parser(
        "train", help="train one model and write a run directory",
        description="Train one transformer. Writes OUT/config.json, OUT/metrics.jsonl and OUT/result.json.",
        epilog=EPILOG_TRAIN + describe(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    multi = p.add_argument_group("multi-host (one process per host; see README)")
    multi.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0")
    multi.add_argument("--num-processes", type=int, default=None, metavar="N")
    multi.add_argument("--process-id", type=int, default=None, metavar="I")
    p.set_defaults(func=cmd_train)


def add_study_parser(sub) -> None:
    p = sub.add_parser(
        "study", help="run (or --dry-run) a study file: a grid of sizes x tokens or FLOP budgets",
        description="Expand a study file into cells, train the unfinished ones and collect DIR/results.csv "
        "(one row per run or cooldown branch). Re-running skips finished cells and resumes the rest. "
        "Exit status 0 when every cell completed, 1 otherwise.",
    )
    p.add_argument("file", help="study file (a Python file with a study() function; see experiments/)")
    p.add_argument("--out", help="study directory (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="print the grid and a wall-time estimate; train nothing")
    p.add_argument("--no-timing", action="store_true", help="with --dry-run: skip the measured step times")
    p.add_argument("--launcher", default="local", choices=["local", "ray", "slurm"])
    p.add_argument("--workers", type=_count, default=1, help="local launcher: runs at a time (default 1)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field in every cell; repeatable")
    p.add_argument("--ray-address", default=None, help="ray: cluster address (default: start a local cluster)")
    p.add_argument("--slurm-partition", default=None, help="slurm: partition")
    p.add_argument("--cpus-per-run", type=_count, default=1, help="ray/slurm: CPUs per run")
    p.add_argument("--gpus-per-run", type=int, default=0, help="ray/slurm: GPUs per run")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)


def cmd_study(args) -> int:
    from pathlib import Path

    from lab.config import apply_overrides
    from lab.data import load_corpus
    from lab.study.load import load_study
    from lab.study.runner import describe, run_study
    from lab.study.spec import expand

    study = load_study(args.file)
    if not args.dry_run and not args.out:
        raise ConfigError("--out DIR is required (or use --dry-run)")
    base = apply_overrides(study.base, list(study.overrides) + args.overrides)
    # the corpus's vocabulary sizes the embedding and head, and so every cell's FLOPs
    cells = expand(study, load_corpus(base.data).vocab_size, args.overrides)
    if args.dry_run:
        timing = None
        if not args.no_timing:
            from lab.study.estimate import step_seconds

            timing = step_seconds(cells)
        print(describe(study, cells, timing))
        return 0
    status = run_study(study, cells, Path(args.out), launcher=args.launcher, workers=args.workers,
                       progress=not args.quiet, **_launcher_args(args))
    counts = {s: list(status.values()).count(s) for s in sorted(set(status.values()))}
    print(json.dumps({"study": study.name, "cells": len(cells), **counts, "results": str(Path(args.out) / "results.csv")}))
    return 0 if all(s == "completed" for s in status.values()) else 1


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure this device's matmul peak and the train step's tokens/s and MFU",
        description="Benchmark: N×N matmul peak per dtype, then the compiled training step of each model "
        "(float32 and bfloat16) with tokens/s, FLOP/s under each FLOP convention, MFU and the attention "
        "FLOP share. Prints a table with the formulas and the hardware; --json writes every number.",
    )
    p.add_argument("--model", dest="models", action="append", default=[], metavar="NAME",
                   help="model preset; repeatable (default: tiny and small)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field of every model by dotted name; repeatable")
    p.add_argument("--dtype", dest="dtypes", action="append", default=[], metavar="DTYPE",
                   help="compute dtype (model.dtype): float32 | bfloat16; repeatable (default: both)")
    p.add_argument("--steps", type=_count, default=10, help="timed steps per model (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling (default 2)")
    p.add_argument("--matmul-n", type=_count, default=None, metavar="N", help="matmul size (default 2048 CPU, 8192 GPU)")
    p.add_argument("--matmul-repeats", type=_count, default=5, metavar="R", help="timed matmuls, best kept (default 5)")
    p.add_argument("--mesh", default=None, help="device mesh, e.g. data=2,fsdp=2,tensor=2 (default: all on data)")
    p.add_argument("--json", default=None, metavar="PATH", help="write all numbers and the hardware header here")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from lab.bench import command

    return command(args)


def add_sample_parser(sub) -> None:
    p = sub.add_parser(
        "sample", help="generate text from a trained run's final checkpoint (KV-cached decoding)",
        description="Restore RUN_DIR's newest checkpoint and continue a prompt; prints prompt + continuation. "
        "encdec models encode the prompt (all but its last token) and decode from its last token.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--prompt", default=None, help="text to continue (default: the start of the validation split)")
    p.add_argument("--tokens", type=int, default=None, metavar="N",
                   help="new tokens (default: the rest of the context, at least half of it)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K most likely (0 = all)")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--quant", choices=["int8", "int4"], default=None, help="weight-only quantization (lab.quant)")

    def cmd_sample(args) -> int:
        from lab.generate import command

        return command(args)

    p.set_defaults(func=cmd_sample)


def _launcher_args(args) -> dict:
    if args.launcher == "ray":
        return {"address": args.ray_address, "cpus_per_task": args.cpus_per_run, "gpus_per_task": args.gpus_per_run}
    if args.launcher == "slurm":
        return {"partition": args.slurm_partition, "cpus_per_task": args.cpus_per_run,
                "gpus_per_task": args.gpus_per_run}
    return {}


def build_config(args):
    from lab.config import apply_overrides
    from lab.presets import preset_config

    saved = _saved_config(args) if args.resume else None
    if saved is not None:
        return saved
    cfg, default_tokens = preset_config(args.model or "tiny")
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name=args.data or "python_stdlib"))
    train = cfg.train
    if args.tokens is not None:
        train = dataclasses.replace(train, tokens=args.tokens, steps=0)
    elif args.steps is not None:
        train = dataclasses.replace(train, steps=args.steps, tokens=0)
    else:
        train = dataclasses.replace(train, tokens=default_tokens, steps=0)
    if args.seed is not None:
        train = dataclasses.replace(train, seed=args.seed)
    cfg = dataclasses.replace(cfg, train=train)
    if args.mesh is not None:
        cfg = dataclasses.replace(cfg, mesh=args.mesh)
    if args.checkpoint_every is not None:
        cfg = dataclasses.replace(cfg, checkpoint_every=args.checkpoint_every)
    return apply_overrides(cfg, args.overrides).validate()


def _saved_config(args):
    """On --resume the run's own config.json decides; only the mesh and checkpoint interval may
    change (a resumed run may land on other hardware). Other settings are an error."""
    from lab.rundir import read_config

    cfg = read_config(args.out)
    if cfg is None:
        return None
    changed = [flag for flag, value in (("--model", args.model), ("--data", args.data), ("--tokens", args.tokens),
                                        ("--steps", args.steps), ("--seed", args.seed)) if value is not None]
    if changed or args.overrides:
        raise ConfigError(f"--resume continues the saved config of {args.out}; drop {', '.join(changed) or '--set'}")
    if args.mesh is not None:
        cfg = dataclasses.replace(cfg, mesh=args.mesh)
    if args.checkpoint_every is not None:
        cfg = dataclasses.replace(cfg, checkpoint_every=args.checkpoint_every)
    return cfg.validate()


def cmd_train(args) -> int:
    cfg = build_config(args)  # user errors surface here, before the training stack loads
    from lab.distributed import maybe_initialize

    maybe_initialize(args.coordinator, args.num_processes, args.process_id)
    from lab.train import Preempted, RunFailed, train

    try:
        result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet)
    except RunFailed as e:
        print(f"lab train: run failed: {e}", file=sys.stderr)
        return 1
    except Preempted as e:
        print(f"lab train: {e}; continue with: lab train --out {args.out} --resume", file=sys.stderr)
        return 143
    summary = {k: result.get(k) for k in ("status", "params_total", "tokens", "final_train_loss",
                                          "final_val_loss", "val_bits_per_byte", "tokens_per_s", "wall_s")}
    import jax

    if jax.process_index() == 0:
        print(json.dumps(summary))
    return 0 if result["status"] == "completed" else 1


def _count(text: str) -> int:
    """A positive count; accepts 2e6 and 2_000_000."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def _enable_compilation_cache() -> None:
    """Compiled steps persist on disk (~/.cache/scaling-lab/jax, or $SCALING_LAB_JAX_CACHE):
    a study compiles each model shape once, not once per cell. LAB_COMPILATION_CACHE=0 disables."""
    import os

    if os.environ.get("LAB_COMPILATION_CACHE", "1") != "0":
        from analysis.jaxcache import enable_persistent_cache

        enable_persistent_cache()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


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
    try:
        from analysis.cli import add_parsers
    except ImportError:
        pass
    else:
        add_parsers(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    _enable_compilation_cache()
    user_errors: tuple = (ConfigError,)
    try:
        from analysis.errors import AnalysisError

        user_errors += (AnalysisError,)
    except ImportError:
        pass
    try:
        return args.func(args)
    except user_errors as e:
        print(f"lab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lab {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
