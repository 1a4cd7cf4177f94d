"""How much of `lab bench`'s MFU gap is the model's matmul shapes, and how much is everything else.

Run:  python benchmarks/bench_matmul_ceiling.py [--model small --model medium] [--repeats 5]

For each preset, in one process and side by side:
- the 2048² float32 `jnp.dot` peak that `lab bench` divides by (`lab.bench.step.matmul_peak`: best of
  the timed calls);
- the model's own dense-layer matmuls alone — per layer QKV [B·T, d]×[d, 3d], output [d, d], MLP
  [d, d_ff] and [d_ff, d], and the head [d, V] — forward and backward (jax.grad of a chain of
  them), at the preset's batch, sequence and widths (mean of the timed calls): their FLOP/s ÷ the
  peak is the MFU a step could reach if everything else were free;
- the real training step (`lab.bench.step.time_step`, the lab's compiled step): its `flops_exact`
  FLOP/s ÷ the peak is `lab bench`'s MFU.

The gap between the second and third lines is the step's non-matmul work (norms, activations,
softmax and attention, the optimizer update, the cross-entropy); the gap between the first and
second is what the shapes cost on this CPU.
"""

from __future__ import annotations

import argparse
import time


def _timed(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / repeats


def dense_matmuls(cfg, repeats: int) -> tuple[float, float]:
    """(FLOP/s, FLOPs per step) of the preset's dense-layer matmuls, forward and backward."""
    import jax
    import jax.numpy as jnp

    m, bt = cfg.model, cfg.train.batch_size * cfg.model.seq_len
    d, ff, L, V = m.d_model, m.d_ff, m.n_layers, m.vocab_size
    key = jax.random.PRNGKey(0)
    shapes = [(d, 3 * d), (d, d), (d, ff), (ff, d)]
    Ws = [jax.random.normal(key, s, jnp.float32) * 0.02 for s in shapes]
    Wh = jax.random.normal(key, (d, V), jnp.float32) * 0.02
    x = jax.random.normal(key, (bt, d), jnp.float32)

    def chain(x, Ws, Wh):
        h = x
        for _ in range(L):
            a = (h @ Ws[0])[:, :d] @ Ws[1]
            h = h + a + jnp.tanh(h @ Ws[2]) @ Ws[3]
        return jnp.sum(h @ Wh)

    step = jax.jit(jax.grad(chain, argnums=(0, 1, 2)))
    flops = 6 * bt * (L * sum(a * b for a, b in shapes) + d * V)
    return flops / _timed(step, x, Ws, Wh, repeats=repeats), flops


def main(argv=None) -> None:
    from lab.bench.step import bench_config, matmul_peak, time_step
    from lab.costs import model_costs

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", help="preset (default: small and medium)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(
        "| preset | 2048² peak | dense matmuls alone: GF/s, ÷ peak | "
        "training step: flops_exact GF/s, ÷ peak (MFU) |"
    )
    print("|---|---|---|---|")
    for name in args.model or ["small", "medium"]:
        cfg = bench_config(name, [], "float32", "", args.repeats + 2)
        peak = matmul_peak("float32", 2048, args.repeats)["flops_per_s"]
        rate, _ = dense_matmuls(cfg, args.repeats)
        t = time_step(cfg, args.repeats, 2)
        tokens = cfg.train.batch_size * cfg.model.seq_len
        step_rate = model_costs(cfg.model).flops_exact * tokens / t["step_s"]
        print(
            f"| {name} | {peak / 1e9:.0f} GF/s | {rate / 1e9:.0f}, {rate / peak:.2f} | "
            f"{step_rate / 1e9:.0f}, {step_rate / peak:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
