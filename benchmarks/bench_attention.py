"""The N² cost of attention, measured: dense vs sliding-window (blockwise) attention over a sweep
of sequence lengths T, side by side in one run.

Run:  python benchmarks/bench_attention.py --quick     (T = 256, 1024, 2048; ~2-4 min on 2 idle cores)
      python benchmarks/bench_attention.py             (T = 256 ... 4096)
      python benchmarks/bench_attention.py --out DIR --window 128 --steps 5

Model: a decoder of d_model 128, 4 heads, 2 layers, byte vocabulary, float32, at a constant 8,192
tokens per step (batch = 8192 // T), so any growth with T is attention's. For each (T, dense |
window W) the training step is `lab.training.step.compile_step`'s (the one `lab train` runs) and we record:

* step time: mean of `--steps` consecutive donated steps after one warm-up step;
* memory: XLA's memory analysis of the compiled step, temporaries (bytes);
* attention FLOPs per step, two counts: the cost model's (`costs.flops_attention` × tokens, i.e.
  3 × 4·H·E × the (query, key) pairs the kernel computes, `lab.costs.score_pairs`) and XLA's
  (cost analysis of one layer's attention kernel, forward + backward, × layers × batch);
* the prediction: step time = `flops_exact` × tokens ÷ the FLOP rate the dense model reaches at the
  smallest T (one measured number); score memory = what the kernel keeps for the backward pass ×
  H × batch × layers (`lab.memory.attention_kept`: xla keeps 12 bytes per computed pair — float32
  logits, masked logits and probabilities; chunked and cudnn a float32 log-sum-exp per query).

`--impl` sets `model.attn_impl` (default auto: chunked on a CPU); `--impl xla` shows the N² memory
of a kernel that keeps its scores.

Prints the rows and the window/dense ratios, and writes attention_sweep.csv and
attention_sweep.png (step time and memory vs T, with the prediction) under --out.
Timings on a shared machine are noisy: the load average is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

os.environ.setdefault("LAB_COMPILATION_CACHE", "0")

import jax
import jax.numpy as jnp
import numpy as np

from lab import sharding
from lab.config import ModelConfig, RunConfig, TrainConfig, resolve_impl
from lab.costs import model_costs
from lab.memory import attention_kept
from lab.model.attention import self_attention
from lab.model.unroll import unrolled_loops
from lab.training.step import compile_step

TOKENS_PER_STEP = 8192
MODEL = ModelConfig(vocab_size=256, d_model=128, n_layers=2, n_heads=4)


def run_config(T: int, window: int, impl: str = "auto") -> RunConfig:
    model = dataclasses.replace(MODEL, seq_len=T, attn_window=window, attn_impl=impl)
    return RunConfig(model=model, train=TrainConfig(batch_size=max(1, TOKENS_PER_STEP // T), steps=100))


def xla_attention_flops(cfg: RunConfig) -> float:
    """XLA's FLOP count of one layer's attention kernel, forward + backward, × layers."""
    m = cfg.model
    B, T, H, E = cfg.train.batch_size, m.seq_len, m.n_heads, m.head_dim
    q = jax.ShapeDtypeStruct((B, T, H, E), jnp.float32)
    kv = jax.ShapeDtypeStruct((B, T, m.kv_heads, E), jnp.float32)
    # value and gradient (a gradient alone lets XLA drop the forward AV product), and a cotangent
    # as an argument (XLA folds a dot with all-ones into a reduction)
    impl = resolve_impl(m.attn_impl, m.dtype, E)
    attend = lambda q, k, v, ct: (self_attention(q, k, v, causal=True, window=m.attn_window, impl=impl) * ct).sum()
    grad = jax.jit(jax.value_and_grad(attend, argnums=(0, 1, 2)))
    with unrolled_loops():  # the chunked kernel's loop, counted once per chunk
        ca = grad.lower(q, kv, kv, q).compile().cost_analysis()
    return float((ca[0] if isinstance(ca, list) else ca)["flops"]) * m.n_layers


def measure(cfg: RunConfig, mesh, steps: int) -> dict:
    step = compile_step(cfg, mesh)
    params, opt_state = step.init_state()
    batch = jax.device_put(
        np.random.default_rng(0).integers(0, 256, (cfg.train.batch_size, cfg.model.seq_len + 1), dtype=np.int32),
        step.batch_sh,
    )
    params, opt_state, metrics = step(params, opt_state, batch, np.int32(0))  # warm-up
    jax.block_until_ready(metrics)
    t0 = time.perf_counter()
    for i in range(steps):
        params, opt_state, metrics = step(params, opt_state, batch, np.int32(i + 1))
    jax.block_until_ready(metrics)
    tokens = cfg.tokens_per_step
    costs = model_costs(cfg.model)
    m = cfg.model
    pairs, pair_bytes = attention_kept(m, m.seq_len, m.seq_len, True)
    return {
        "T": m.seq_len,
        "kind": f"window{m.attn_window}" if m.attn_window else "dense",
        "impl": resolve_impl(m.attn_impl, m.dtype, m.head_dim),
        "batch": cfg.train.batch_size,
        "step_s": (time.perf_counter() - t0) / steps,
        "compile_s": step.compile_s,
        "temp_bytes": step.memory.get("temp_size_in_bytes", 0),
        "cost_attention_flops": costs.flops_attention * tokens,
        "xla_attention_flops": xla_attention_flops(cfg),
        "cost_flops_exact": costs.flops_exact * tokens,
        "score_bytes": pairs * pair_bytes * m.n_heads * cfg.train.batch_size * m.n_layers,
    }


def sweep(seq_lens, window: int, steps: int, impl: str = "auto") -> list[dict]:
    mesh = sharding.make_mesh("")
    rows = []
    for T in seq_lens:
        for w in (0, window):
            row = measure(run_config(T, w, impl), mesh, steps)
            rows.append(row)
            print(
                f"T={T:5d} {row['kind']:>10}  batch {row['batch']:3d}  step {row['step_s'] * 1e3:9.1f} ms  "
                f"temp {row['temp_bytes'] / 2**20:8.1f} MiB  attention GFLOP/step: costs "
                f"{row['cost_attention_flops'] / 1e9:8.2f}, XLA {row['xla_attention_flops'] / 1e9:8.2f}  "
                f"(compile {row['compile_s']:.1f} s)",
                flush=True,
            )
    return rows


def ratios(rows: list[dict]) -> list[dict]:
    """window ÷ dense at each T, for every measured figure."""
    out = []
    for dense in (r for r in rows if r["kind"] == "dense"):
        win = next(r for r in rows if r["T"] == dense["T"] and r["kind"] != "dense")
        out.append(
            {
                "T": dense["T"],
                **{
                    key: win[key] / dense[key]
                    for key in ("step_s", "temp_bytes", "cost_attention_flops", "xla_attention_flops")
                },
            }
        )
    return out


def write_outputs(rows: list[dict], out: Path) -> None:
    import pandas as pd

    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    dense = table[table.kind == "dense"].sort_values("T")
    rate = (dense.cost_flops_exact / dense.step_s).iloc[0]  # the dense FLOP rate at the smallest T
    table["predicted_step_s"] = table.cost_flops_exact / rate
    table.to_csv(out / "attention_sweep.csv", index=False)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (kind, group), color in zip(table.groupby("kind", sort=False), ("tab:red", "tab:blue")):
        group = group.sort_values("T")
        ax_t.plot(group["T"], group.step_s * 1e3, "o-", color=color, label=f"{kind}: measured")
        ax_t.plot(group["T"], group.predicted_step_s * 1e3, "--", color=color, label=f"{kind}: cost model")
        ax_m.plot(group["T"], group.temp_bytes / 2**20, "o-", color=color, label=f"{kind}: XLA temp bytes")
        ax_m.plot(group["T"], group.score_bytes / 2**20, "--", color=color, label=f"{kind}: score bytes (model)")
    for ax, label in ((ax_t, "step time (ms)"), (ax_m, "step memory (MiB)")):
        ax.set(
            xscale="log",
            yscale="log",
            xlabel=f"sequence length T ({TOKENS_PER_STEP} tokens per step)",
            ylabel=label,
        )
        ax.legend(fontsize=8)
    ax_t.set_title(f"step time; prediction = flops_exact / {rate / 1e9:.1f} GFLOP/s")
    ax_m.set_title("compiled step's temporaries vs score bytes")
    fig.tight_layout()
    fig.savefig(out / "attention_sweep.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 256, 1024, 2048 and 3 timed steps")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--steps", type=int, default=0, help="timed steps per point (default 5; --quick 3)")
    parser.add_argument("--out", type=Path, default=Path("out/attention"))
    parser.add_argument(
        "--impl", default="auto", choices=("auto", "xla", "chunked", "cudnn"), help="model.attn_impl"
    )
    args = parser.parse_args()
    seq_lens = (256, 1024, 2048) if args.quick else (256, 512, 1024, 2048, 4096)
    steps = args.steps or (3 if args.quick else 5)
    print(
        f"{jax.devices()[0].device_kind}, jax {jax.__version__}, load average {os.getloadavg()[0]:.1f}, "
        f"model d{MODEL.d_model} L{MODEL.n_layers} H{MODEL.n_heads} float32, {TOKENS_PER_STEP} tokens/step, "
        f"window {args.window}, attention {args.impl} -> {resolve_impl(args.impl, MODEL.dtype, MODEL.head_dim)}",
        flush=True,
    )
    rows = sweep(seq_lens, args.window, steps, args.impl)
    print(f"\nwindow {args.window} / dense (load average now {os.getloadavg()[0]:.1f}):")
    for r in ratios(rows):
        print(
            f"T={r['T']:5d}  step time {r['step_s']:.3f}x  temp bytes {r['temp_bytes']:.3f}x  attention FLOPs: "
            f"costs {r['cost_attention_flops']:.3f}x, XLA {r['xla_attention_flops']:.3f}x"
        )
    write_outputs(rows, args.out)
    print(f"wrote {args.out / 'attention_sweep.csv'} and {args.out / 'attention_sweep.png'}")


if __name__ == "__main__":
    main()
