"""`lab train`: its flags, the run's config from them (a preset, --set, or the saved config on
--resume), and the command."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from lab.cli.tools import MESH_HELP, add_set_flag, count
from lab.config import ConfigError

EPILOG_TRAIN = """\
examples:
  lab train --out runs/tiny                                  # the tiny preset on the stdlib corpus
  lab train --out runs/s --model small --tokens 2e6 --set train.lr=1e-3
  lab train --out runs/syn --data synthetic --steps 2000     # loss approaches the known entropy
  lab train --out runs/m --mesh data=2,fsdp=2,tensor=2       # sharded over 8 devices
  lab train --out runs/c --config my_run.py --set train.lr=1e-3   # my_run.py: def config(): return RunConfig(...)
  lab train --out runs/cool --init-from runs/s --steps 200 --set train.schedule=constant
  lab train --out runs/p --profile-steps 3:5                 # a jax.profiler trace in runs/p/profile

--set takes any config field by dotted name (see config.json of any run for all of them):
  model.{d_model,n_layers,n_heads,n_kv_heads,d_ff,seq_len,pos_encoding,norm,mlp,tie_embeddings,...}
  train.{lr,batch_size,schedule,warmup_steps,decay_frac,weight_decay,grad_clip,eval_every,...}
  data.{tokenizer,bpe_vocab_size,val_tokens,text_key,...}

presets:
"""


def add_train_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train one model and write a run directory",
        description="Train one transformer. Writes OUT/config.json, OUT/metrics.jsonl and OUT/result.json.",
        epilog=EPILOG_TRAIN,
    )
    _presets_in_help(p)
    p.add_argument("--out", required=True, help="run directory (must be empty unless --resume/--overwrite)")
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE.py",
        help="a Python file whose config() returns a lab.config.RunConfig: the run's config, instead of a "
        "preset; the other flags and --set apply on top",
    )
    p.add_argument("--model", default=None, help="model preset (default: tiny)")
    p.add_argument(
        "--data",
        default=None,
        help="python_stdlib (default, no download) | synthetic | tfds:NAME[/CONFIG][:VERSION]",
    )
    length = p.add_mutually_exclusive_group()
    length.add_argument("--tokens", type=count, help="training tokens (default: the preset's); accepts 2e6")
    length.add_argument("--steps", type=count, help="training steps (instead of --tokens)")
    p.add_argument("--seed", type=int, default=None, help="seed for init and data order (default 0)")
    add_set_flag(p, "override a config field by dotted name; repeatable")
    p.add_argument("--mesh", default=None, help=MESH_HELP)
    p.add_argument("--checkpoint-every", type=count, default=None, metavar="K", help="checkpoint every K steps")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run in OUT from its latest checkpoint")
    mode.add_argument("--overwrite", action="store_true", help="delete OUT's contents and start over")
    p.add_argument("--quiet", action="store_true", help="no progress bar on stderr")
    _add_extras(p)
    multi = p.add_argument_group("multi-host (one process per host; see README)")
    multi.add_argument("--coordinator", default=None, metavar="HOST:PORT", help="address of process 0")
    multi.add_argument("--num-processes", type=int, default=None, metavar="N")
    multi.add_argument("--process-id", type=int, default=None, metavar="I")
    p.set_defaults(func=cmd_train)


def _add_extras(p) -> None:
    """The flags that add to a run without changing its config: profile, tracker, init-from."""
    p.add_argument(
        "--profile-steps",
        type=_step_range,
        default=None,
        metavar="A:B",
        help="write a jax.profiler trace of steps A..B (1-based, inclusive) to OUT/profile (TensorBoard's "
        "profile plugin or Perfetto read it)",
    )
    p.add_argument(
        "--tracker",
        choices=["tensorboard", "wandb"],
        default=None,
        help="also log the run live, offline, to OUT/tensorboard or OUT/wandb: every metrics line, the config, "
        "the result (optional extra; lab.training.trackers)",
    )
    init = p.add_argument_group("starting from another run (lab.training.init_from)")
    init.add_argument(
        "--init-from",
        default=None,
        metavar="RUN_DIR",
        help="start from this run's checkpoint parameters (read-only; shapes must match), not a fresh init",
    )
    init.add_argument(
        "--init-step", type=int, default=None, metavar="S", help="its checkpoint of step S (default: the newest)"
    )
    init.add_argument(
        "--init-optimizer",
        action="store_true",
        help="also take its optimizer state (Adam moments); by default the optimizer starts fresh",
    )


def _step_range(text: str) -> tuple[int, int]:
    """A:B, two step numbers with 1 <= A <= B."""
    try:
        first, last = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected A:B, two step numbers, got {text!r}") from None
    if not 1 <= first <= last:
        raise argparse.ArgumentTypeError(f"expected 1 <= A <= B, got {text!r}")
    return first, last


def _presets_in_help(p) -> None:
    """The presets table joins the epilog when help is printed, not when the parser is built (it
    imports the cost model, and with it JAX, which `lab fit` does not need)."""
    plain = p.format_help

    def format_help():
        from lab.presets import describe

        p.epilog = EPILOG_TRAIN + describe()
        return plain()

    p.format_help = format_help


def build_config(args):
    """The run's config from the command line. On --resume of an existing run the saved config
    decides, and the command may repeat it (a requeued job re-runs its own command): each flag
    must agree with the saved value; only --mesh and --checkpoint-every may change."""
    from lab.rundir import RunDir

    if args.init_step is not None and args.init_from is None:
        raise ConfigError("--init-step needs --init-from RUN_DIR")
    if args.init_optimizer and args.init_from is None:
        raise ConfigError("--init-optimizer needs --init-from RUN_DIR")
    saved = RunDir(args.out).load_config() if args.resume else None
    given = _config_file(args.config)
    if saved is None:
        return _command_config(args, base=given).validate()
    want = _command_config(args, base=given or saved)
    conflicts = _differences(saved, want, ignore=("mesh", "checkpoint_every", "keep_checkpoints"))
    if conflicts:
        raise ConfigError(
            f"--resume: the command conflicts with the saved config of {args.out}: "
            + "; ".join(f"{k} is {a!r} there, {b!r} here" for k, a, b in conflicts)
        )
    return want.validate()


def _config_file(path):
    """The RunConfig of --config FILE.py, or None."""
    if path is None:
        return None
    from lab.study.load import load_run_config

    return load_run_config(path)


def _command_config(args, base):
    """Apply the command's flags to `base` (the saved config), or to the preset's config and its
    defaults when there is no base."""
    from lab.overrides import apply_overrides
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
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, **fields["model"]),
        train=dataclasses.replace(cfg.train, **fields["train"]),
    )


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
    from lab.training.train import InitFrom, Preempted, RunFailed, RunOptions, train

    options = RunOptions(
        profile_steps=args.profile_steps,
        init=InitFrom(args.init_from, args.init_step, args.init_optimizer) if args.init_from else None,
        tracker=args.tracker,
    )
    try:
        result = train(
            cfg, args.out, resume=args.resume, overwrite=args.overwrite, progress=not args.quiet, options=options
        )
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
