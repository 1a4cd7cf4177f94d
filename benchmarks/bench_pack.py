"""Packed training (lab.training.packed) against the same cells run one after another, side by side in one
process: aggregate training tokens/s of K = 1, 2, 4, 8 tiny cells.

For each K, the same K cells (seeds 0..K-1, one shape) are trained for STEPS steps

* packed: one `lab.training.packed.step` program over the K stacked members (compiled once);
* sequential: `lab.training.step.compile_step`'s program (what `lab train` runs), one cell after another.

Both sides are compiled before timing and fed the same device-resident batch, so the figure is
the step's throughput (no data loading, compile, evaluation or process start — which packing also
saves, and which this benchmark does not count). The two sides alternate, REPEATS times, and the
best of each is kept:

    aggregate tokens/s = K · batch_size · seq_len · STEPS / seconds
    gain = packed aggregate tokens/s / sequential aggregate tokens/s

    python benchmarks/bench_pack.py                       # CPU: tiny d32, K = 1 2 4 8
    python benchmarks/bench_pack.py --d-model 64 --steps 20 --json OUT.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from lab import sharding
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.training.packed.step import compile_packed, member_values, stacked_sharding
from lab.training.state import abstract_model
from lab.training.step import compile_step


def base_config(d_model: int, n_layers: int, batch: int, seq_len: int, dtype: str) -> RunConfig:
    return RunConfig(
        model=ModelConfig(
            d_model=d_model,
            n_layers=n_layers,
            n_heads=max(1, d_model // 16),
            seq_len=seq_len,
            vocab_size=256,
            dtype=dtype,
        ),
        data=DataConfig(name="python_stdlib"),
        train=TrainConfig(batch_size=batch, steps=1000, lr=3e-3, warmup_steps=10),
    )


def _timed(run, steps: int) -> float:
    t0 = time.perf_counter()
    out = run(steps)
    jax.block_until_ready(out)
    return time.perf_counter() - t0


def packed_runner(cfg: RunConfig, k: int, mesh):
    graphdef = abstract_model(cfg)[0]
    step, init, _, _, _ = compile_packed(cfg, graphdef, mesh, k)
    values = jax.device_put(member_values([cfg] * k), stacked_sharding(mesh, k))
    state = list(init(values["seed"]))
    batch = jnp.asarray(
        np.random.default_rng(0).integers(0, 256, (k, cfg.train.batch_size, cfg.model.seq_len + 1)), jnp.int32
    )
    active = jax.device_put(np.ones(k, bool), stacked_sharding(mesh, k))

    def run(steps: int):
        for s in range(steps):
            state[0], state[1], m = step(state[0], state[1], batch, np.int32(s), values, active)
        return m["loss"]

    return run


def sequential_runner(cfg: RunConfig, k: int, mesh):
    compiled = compile_step(cfg, mesh)
    states = [list(compiled.init_state()) for _ in range(k)]
    batch = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (cfg.train.batch_size, cfg.model.seq_len + 1)).astype(np.int32),
        compiled.batch_sh,
    )

    def run(steps: int):
        out = []
        for state in states:
            for s in range(steps):
                state[0], state[1], m = compiled(state[0], state[1], batch, np.int32(s))
            out.append(m["loss"])
        return out

    return run


def measure(cfg: RunConfig, ks, steps: int, repeats: int) -> list[dict]:
    mesh = sharding.make_mesh(cfg.mesh)
    tokens = cfg.train.batch_size * cfg.model.seq_len
    rows = []
    with jax.set_mesh(mesh):
        for k in ks:
            sides = {"packed": packed_runner(cfg, k, mesh), "sequential": sequential_runner(cfg, k, mesh)}
            for run in sides.values():
                _timed(run, 2)  # warm-up
            best = {name: min(_timed(run, steps) for _ in range(repeats)) for name, run in sides.items()}
            row = {
                "K": k,
                **{f"{n}_s": s for n, s in best.items()},
                **{f"{n}_tokens_per_s": k * tokens * steps / s for n, s in best.items()},
            }
            row["gain"] = row["packed_tokens_per_s"] / row["sequential_tokens_per_s"]
            rows.append(row)
            print(
                f"K={k}: packed {row['packed_tokens_per_s']:,.0f} tok/s, sequential "
                f"{row['sequential_tokens_per_s']:,.0f} tok/s, gain {row['gain']:.2f}x",
                flush=True,
            )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ks", default="1,2,4,8")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cfg = base_config(args.d_model, args.n_layers, args.batch, args.seq_len, args.dtype)
    header = {
        "device": jax.devices()[0].device_kind,
        "devices": jax.device_count(),
        "machine": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": dataclasses.asdict(cfg.model),
        "batch_size": args.batch,
        "steps": args.steps,
    }
    print(json.dumps(header))
    rows = measure(cfg, [int(k) for k in args.ks.split(",")], args.steps, args.repeats)
    print(f"{'K':>3} {'packed tok/s':>14} {'sequential tok/s':>17} {'gain':>6}")
    for r in rows:
        print(
            f"{r['K']:>3} {r['packed_tokens_per_s']:>14,.0f} "
            f"{r['sequential_tokens_per_s']:>17,.0f} {r['gain']:>5.2f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"header": header, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
