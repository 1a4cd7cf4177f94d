"""The `lab` subcommands that measure or read a single model rather than train one: `bench`
(training step and, with --decode, generation), `sample` and `eval` (a run's checkpoint).
`lab.cli` wires them into the parser."""

from __future__ import annotations

import argparse
import json
import math
import sys

MESH_HELP = "device mesh, e.g. data=2,fsdp=2,tensor=2 (default: all on data)"


def add_set_flag(p, help: str) -> None:
    """`--set KEY=VALUE` (repeatable, into `args.overrides`): the one spelling of a config override."""
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def count(text: str) -> int:
    """A positive count; accepts 2e6 and 2_000_000."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if value <= 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(value)


def seed_list(text: str) -> list[int]:
    """Seeds as `--seeds 3,4` writes them: distinct whole numbers >= 0, comma-separated."""
    parts = [t.strip() for t in text.split(",")]
    if not all(t.isdigit() for t in parts):
        raise argparse.ArgumentTypeError(f"expected whole seeds >= 0 separated by commas, e.g. 3,4; got {text!r}")
    seeds = [int(t) for t in parts]
    if len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"a seed is named twice in {text!r}")
    return seeds


def temperature(text: str) -> float:
    """A sampling temperature: a finite number >= 0 (0 = greedy); nan, inf and negatives are refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0 (0 = greedy), got {text!r}")
    return value


def add_bench_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure this device's matmul peak and the train step's tokens/s and MFU",
        description="Benchmark: N×N matmul peak per dtype, then the compiled training step of each model "
        "(float32 and bfloat16) with tokens/s, FLOP/s under each FLOP convention, MFU and the attention "
        "FLOP share. Prints a table with the formulas and the hardware; --json prints every number as one "
        "JSON object instead, --out FILE writes that object to a file.",
    )
    _add_bench_model_flags(p)
    _add_bench_measurement_flags(p)
    _add_bench_output_flags(p)
    _add_decode_flags(p)
    p.set_defaults(func=cmd_bench)


def _add_bench_model_flags(p) -> None:
    """Which models run: presets, config overrides and compute dtypes."""
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME",
        help="model preset; repeatable (default: tiny and small)",
    )
    add_set_flag(p, "override a config field of every model by dotted name; repeatable")
    p.add_argument(
        "--dtype",
        dest="dtypes",
        action="append",
        default=[],
        metavar="DTYPE",
        help="compute dtype (model.dtype): float32 | bfloat16; repeatable (default: both)",
    )


def _add_bench_measurement_flags(p) -> None:
    """How the step and the matmul peak are measured: step counts, matmul size, mesh and batch fitting."""
    p.add_argument("--steps", type=count, default=10, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
    p.add_argument(
        "--matmul-n", type=count, default=None, metavar="N", help="matmul size (default 2048 CPU, 8192 GPU)"
    )
    p.add_argument("--matmul-repeats", type=count, default=5, metavar="R", help="timed matmuls, best kept")
    p.add_argument("--mesh", default=None, help=MESH_HELP)
    p.add_argument(
        "--fit-batch",
        action="store_true",
        help="keep each model's batch and use the fewest train.microbatches whose compiled step fits the device",
    )


def _add_bench_output_flags(p) -> None:
    """Where the numbers go: the table or JSON on stdout, a JSON file, progress on stderr."""
    p.add_argument(
        "--json",
        action="store_true",
        help="print all numbers and the hardware header as one JSON object on stdout, instead of the table",
    )
    p.add_argument("--out", default=None, metavar="FILE", help="also write that JSON object to FILE")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def _add_decode_flags(p) -> None:
    """The group of flags for --decode, the generation benchmark."""
    d = p.add_argument_group("decoding (lab.bench.decode)")
    d.add_argument(
        "--decode",
        action="store_true",
        help="benchmark generation instead of the training step: KV cache "
        "vs recomputation, weight formats f32/bf16/int8/int4, batch sizes, the bandwidth roofline",
    )
    d.add_argument("--decode-lengths", default="64,128,256,512,1024", metavar="N,N,...", help="generated lengths")
    d.add_argument("--batches", default="1,4,16", metavar="B,B,...", help="batch sizes of the format comparison")
    d.add_argument(
        "--figure",
        default=None,
        metavar="DIR",
        help="write decode.png and its CSVs here (their paths go to stdout, or to stderr with --json)",
    )


def cmd_bench(args) -> int:
    _check_out(args.out)  # before the benchmark, not after it
    if args.decode:
        return _decode_bench(args)
    from lab.bench.report import format_report
    from lab.bench.step import DTYPES, run_bench

    res = run_bench(
        args.models or ["tiny", "small"],
        args.overrides,
        args.dtypes or list(DTYPES),
        steps=args.steps,
        warmup=args.warmup,
        matmul_n=args.matmul_n or 0,
        matmul_repeats=args.matmul_repeats,
        mesh=args.mesh or "",
        fit=args.fit_batch,
        log=None if args.quiet else sys.stderr,
    )
    _emit(args, res, format_report)
    return 0


def _decode_bench(args) -> int:
    from pathlib import Path

    from lab.bench.decode import format_decode, plot_decode, run_decode_bench

    counts = lambda text: [count(x) for x in text.split(",") if x.strip()] or [count(text)]
    res = run_decode_bench(
        (args.models or ["small"])[0],
        args.overrides,
        lengths=counts(args.decode_lengths),
        batches=counts(args.batches),
        log=None if args.quiet else sys.stderr,
    )
    _emit(args, res, format_decode)
    if args.figure:
        for path in plot_decode(res, Path(args.figure)):
            print(path, file=sys.stderr if args.json else sys.stdout)
    return 0


def _check_out(out: str | None) -> None:
    """--out FILE can be written: its folder exists or is made, and FILE is not a folder."""
    from pathlib import Path

    from lab.config import ConfigError

    if out is None:
        return
    if Path(out).is_dir():
        raise ConfigError(f"--out {out} is a directory; give a file name, e.g. {Path(out) / 'bench.json'}")
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--out {out}: cannot make its folder ({e.strerror})") from None


def _emit(args, res: dict, text) -> None:
    """The benchmark's dict: as one JSON object on stdout (--json) or as text, and to --out FILE."""
    from pathlib import Path

    print(json.dumps(res) if args.json else text(res))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")


RUN_DIR_HELP = "a run directory (what `lab train --out` wrote), with a checkpoint"


def add_sample_parser(sub) -> None:
    p = sub.add_parser(
        "sample",
        help="generate text from a trained run's checkpoint (KV-cached decoding)",
        description="Restore RUN_DIR's checkpoint (the newest intact one, or --step) read-only and continue a "
        "prompt; prints prompt + continuation, and on stderr which step was used. encdec models encode the "
        "prompt (all but its last token) and decode from its last token.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument("--prompt", default=None, help="text to continue (default: the start of the validation split)")
    p.add_argument(
        "--tokens",
        type=int,
        default=None,
        metavar="N",
        help="new tokens (default: the rest of the context, at least half of it)",
    )
    p.add_argument(
        "--temperature", type=temperature, default=0.0, metavar="T", help="sampling temperature (0 = greedy)"
    )
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample among the K most likely (0 = all)")
    p.add_argument(
        "--top-p",
        type=float,
        default=1.0,
        metavar="P",
        help="nucleus sampling: among the most likely tokens holding probability P (1 = all)",
    )
    p.add_argument(
        "--num-samples", type=count, default=1, metavar="K", help="continuations of the prompt, drawn as one batch"
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed")
    _add_step(p)
    p.add_argument(
        "--quant", choices=["int8", "int4"], default=None, help="weight-only quantization (lab.model.quant)"
    )
    p.set_defaults(func=cmd_sample)


def cmd_sample(args) -> int:
    from lab.evals.generate import sample

    texts = sample(
        args.run_dir,
        prompt=args.prompt,
        tokens=args.tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        num_samples=args.num_samples,
        seed=args.seed,
        quant=args.quant,
        step=args.step,
        log=sys.stderr,
    )
    if len(texts) == 1:
        sys.stdout.write(texts[0] + "\n")
    else:
        for i, text in enumerate(texts, 1):
            sys.stdout.write(f"=== sample {i}/{len(texts)} ===\n{text}\n")
    return 0


def _add_step(p) -> None:
    p.add_argument(
        "--step",
        type=int,
        default=None,
        metavar="S",
        help="the checkpoint of step S (default: the newest intact one; a damaged newest is named on "
        "stderr and left in place)",
    )


def add_eval_parser(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="a trained run's validation loss with its weights quantized (int8, int4, bf16), "
        "and its in-context score",
        description="Restore RUN_DIR's checkpoint (the newest intact one, or --step) read-only, say on stderr "
        "which step, and evaluate it on the run's validation set "
        "in float32 and with post-training weight-only quantization (lab.model.quant), "
        "plus the in-context recall task (lab.evals.icl).",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help=RUN_DIR_HELP)
    p.add_argument(
        "--quant", choices=["int8", "int4", "bf16"], default=None, help="only this format (default: all)"
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print the numbers as one JSON object on stdout (and nothing else there)",
    )
    _add_step(p)
    p.set_defaults(func=cmd_eval)


def cmd_eval(args) -> int:
    from lab.evals.final import eval_run, format_eval

    res = eval_run(args.run_dir, quant=args.quant, step=args.step, log=sys.stderr)
    print(json.dumps(res) if args.json else format_eval(res))
    return 0
