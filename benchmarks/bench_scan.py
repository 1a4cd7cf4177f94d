"""The scanned block stack: compile time against depth, and step memory against `model.remat`,
measured side by side in one run with the persistent compilation cache off.

Run:  python benchmarks/bench_scan.py            (~3-6 min on 2 idle cores)
      python benchmarks/bench_scan.py --preset medium --deep 24 --remat-layers 8

* compile time: `lab.training.step.compile_step(...).compile_s` (trace + lower + XLA compile of the whole
  training step) of the preset at 2 and at `--deep` layers, each compiled twice, alternating, and
  the shorter of the two kept; the issue's goal is deep ≤ 2× shallow.
* memory: XLA's memory analysis of the compiled step (`compile_step(...).memory`), temporaries, at
  `--remat-layers` layers for model.remat = none, full, save_matmuls; the goal is full ≤ 0.6× none.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

os.environ["LAB_COMPILATION_CACHE"] = "0"

from lab import sharding
from lab.presets import preset_config
from lab.training.step import compile_step


def compiled(preset: str, mesh, **model):
    cfg, _ = preset_config(preset)
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, vocab_size=256, **model),
        train=dataclasses.replace(cfg.train, steps=100),
    )
    return compile_step(cfg, mesh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="small")
    parser.add_argument("--deep", type=int, default=24)
    parser.add_argument("--remat-layers", type=int, default=8)
    args = parser.parse_args()
    mesh = sharding.make_mesh("")
    print(f"preset {args.preset}, compile cache off, load average {os.getloadavg()[0]:.1f}", flush=True)
    seconds = {2: [], args.deep: []}
    for layers in (2, args.deep, 2, args.deep):
        seconds[layers].append(compiled(args.preset, mesh, n_layers=layers).compile_s)
        print(f"  {layers:3d} layers: compile {seconds[layers][-1]:.2f} s", flush=True)
    shallow, deep = min(seconds[2]), min(seconds[args.deep])
    temp = {}
    for remat in ("none", "full", "save_matmuls"):
        step = compiled(args.preset, mesh, n_layers=args.remat_layers, remat=remat)
        temp[remat] = step.memory.get("temp_size_in_bytes", 0)
        print(
            f"  {args.remat_layers} layers, model.remat={remat:12s}: temp {temp[remat] / 2**20:8.1f} MiB, "
            f"arguments {step.memory.get('argument_size_in_bytes', 0) / 2**20:.1f} MiB",
            flush=True,
        )
    print(
        f"\ncompile time {args.deep} layers / 2 layers: {deep / shallow:.2f}x "
        f"({deep:.2f} s / {shallow:.2f} s; goal <= 2x)"
    )
    print(
        f"temp bytes remat full / none: {temp['full'] / temp['none']:.3f}x, save_matmuls / none: "
        f"{temp['save_matmuls'] / temp['none']:.3f}x (goal full <= 0.6x); load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
