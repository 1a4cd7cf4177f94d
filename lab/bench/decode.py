"""`lab bench --decode`: generation speed with and without the KV cache, by weight format and batch
size, against the memory-bandwidth roofline of this machine.

Measured (random weights: speed does not depend on them; greedy decoding after a 16-token prompt):

* **cached**: `lab.evals.generate.generate` (prefill + a scanned decode loop over the stacked KV cache),
  compiled per length, timed on a second call; tokens/s = batch · new tokens / seconds.
* **uncached**: every new token recomputes the forward pass over its whole prefix, padded up to
  the next power of two (one compiled program per bucket), so a step costs at most 2× the exact
  prefix; tokens/s at each length from the cumulative time of one greedy run.
* **bandwidth**: the best of 5 reductions over a 256 MiB float32 array (bytes / seconds).
* **roofline**: a decode step at batch B reads every weight once (`lab.evals.final.weight_bytes`
  for the format) plus each sequence's KV cache (2 · L · K · E · dtype bytes per position, at the
  mean position P + n/2), so tokens/s ≤ B · bandwidth / (weight bytes + B · KV bytes). At batch 1
  the weights dominate: a format with fewer weight bytes should decode proportionally faster if
  its weights stay packed through the matmul. int8/int4 are dequantized inside the jitted
  program, one layer at a time inside the layer scan (`lab.model.quant.dequantize_unstacked`); whether
  that makes them faster here is what the measurement shows.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lab.evals.final import weight_bytes
from lab.evals.generate import generate
from lab.model.quant import dequantize_unstacked, quantize
from lab.model.transformer import Transformer
from lab.overrides import apply_overrides
from lab.presets import preset_config

FORMATS = ("f32", "bf16", "int8", "int4")
PROMPT = 16


def memory_bandwidth(mib: int = 256, repeats: int = 5) -> float:
    """Bytes/s of the best of `repeats` sums over a float32 array of `mib` MiB."""
    x = jnp.ones((mib * 2**18,), jnp.float32)
    total = jax.jit(jnp.sum)
    total(x).block_until_ready()
    best = min(_seconds(lambda: total(x).block_until_ready()) for _ in range(repeats))
    return x.nbytes / best


def _seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def decode_config(model: str, overrides, max_len: int):
    """The preset's model with room for the prompt and `max_len` new tokens, byte vocabulary."""
    cfg = apply_overrides(preset_config(model)[0], list(overrides))
    m = dataclasses.replace(
        cfg.model, vocab_size=cfg.model.vocab_size or 256, seq_len=max(cfg.model.seq_len, PROMPT + max_len)
    )
    m.validate()
    return m


def format_model(m, params, fmt: str):
    """(model config, stored params, unpack) of one weight format."""
    if fmt == "bf16":
        m16 = dataclasses.replace(m, dtype="bfloat16", param_dtype="bfloat16")
        return m16, jax.tree.map(lambda w: w.astype(jnp.bfloat16), params), None
    if fmt in ("int8", "int4"):
        return m, quantize(params, bits=int(fmt[3:])), dequantize_unstacked
    return m, params, None


def kv_bytes_per_position(m) -> int:
    layers = m.dec_layers if m.arch == "encdec" else m.n_layers
    return 2 * layers * m.kv_heads * m.head_dim * jnp.dtype(m.dtype).itemsize


def time_cached(m, params, batch: int, n_new: int, unpack=None) -> float:
    """Seconds of one compiled greedy generation of `n_new` tokens (compile excluded)."""
    graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(m, rngs=nnx.Rngs(params=0))), nnx.Param)[0]
    prompt = jnp.ones((batch, PROMPT), jnp.int32)
    run = lambda: generate(
        graphdef, m, params, prompt, n_new, jax.random.key(0), unpack=unpack
    ).block_until_ready()
    run()
    return min(_seconds(run) for _ in range(2))


def uncached_times(m, params, batch: int, lengths) -> tuple[dict, jax.Array]:
    """({n: seconds to generate n tokens}, the greedy tokens [B, max n]) recomputing the prefix
    every step (see module docstring)."""
    graphdef = nnx.split(nnx.eval_shape(lambda: Transformer(m, rngs=nnx.Rngs(params=0))), nnx.Param)[0]
    total = PROMPT + max(lengths)

    def make(bucket):
        def step(params, buf_BxL, i):
            logits = nnx.merge(graphdef, params)(buf_BxL[:, :bucket])
            nxt = jnp.argmax(jax.lax.dynamic_index_in_dim(logits, i, axis=1, keepdims=False), -1)
            return jax.lax.dynamic_update_index_in_dim(buf_BxL, nxt.astype(buf_BxL.dtype), i + 1, axis=1)

        return jax.jit(step)

    buckets = {}
    buf = jnp.ones((batch, total), jnp.int32)
    for p in range(PROMPT, total):  # compile every bucket first
        b = min(total, 1 << int(np.ceil(np.log2(p + 1))))
        if b not in buckets:
            buckets[b] = make(b)
            buckets[b](params, buf, jnp.int32(p - 1)).block_until_ready()
    out, t0 = {}, time.perf_counter()
    for n in range(1, max(lengths) + 1):
        p = PROMPT + n - 1  # the prefix holds p tokens; predict token p
        buf = buckets[min(total, 1 << int(np.ceil(np.log2(p + 1))))](params, buf, jnp.int32(p - 1))
        if n in lengths:
            buf.block_until_ready()
            out[n] = time.perf_counter() - t0
    return out, buf[:, PROMPT:]


def roofline(m, wbytes: int, batch: int, n_new: int, bandwidth: float) -> dict:
    kv = kv_bytes_per_position(m) * (PROMPT + n_new / 2)
    per_step = wbytes + batch * kv
    return {"bytes_per_step": per_step, "roofline_tokens_per_s": batch * bandwidth / per_step}


def run_decode_bench(
    model: str = "small",
    overrides=(),
    lengths=(64, 128, 256, 512, 1024),
    batches=(1, 4, 16),
    formats=FORMATS,
    format_length: int = 256,
    log=None,
) -> dict:
    """Every number of the module docstring, as one JSON-able dict."""
    say = (lambda msg: print(msg, file=log, flush=True)) if log else (lambda msg: None)
    lengths = tuple(sorted(lengths))
    format_length = min(format_length, max(lengths))
    m = decode_config(model, overrides, max(lengths))
    params = nnx.to_pure_dict(nnx.split(Transformer(m, rngs=nnx.Rngs(params=0)), nnx.Param)[1])
    bandwidth = memory_bandwidth()
    say(f"memory bandwidth {bandwidth / 1e9:.1f} GB/s")
    wb = weight_bytes(params)
    res = {
        "model": model,
        "d_model": m.d_model,
        "n_layers": m.n_layers,
        "seq_len": m.seq_len,
        "prompt": PROMPT,
        "bandwidth_bytes_per_s": bandwidth,
        "device": jax.devices()[0].device_kind,
        "cache": [],
        "formats": [],
    }
    uncached, _ = uncached_times(m, params, 1, lengths)
    for n in lengths:
        say(f"cache vs no cache: {n} tokens")
        cached = time_cached(m, params, 1, n)
        res["cache"].append(
            {
                "new_tokens": n,
                "cached_tokens_per_s": n / cached,
                "uncached_tokens_per_s": n / uncached[n],
                "speedup": uncached[n] / cached,
            }
        )
    for fmt in formats:
        fm, fparams, unpack = format_model(m, params, fmt)
        key = {"f32": "weight_bytes_f32", "bf16": "weight_bytes_bf16"}.get(fmt, f"weight_bytes_{fmt}")
        for b in batches:
            say(f"{fmt} batch {b}: {format_length} tokens")
            secs = time_cached(fm, fparams, b, format_length, unpack)
            res["formats"].append(
                {
                    "format": fmt,
                    "batch": b,
                    "new_tokens": format_length,
                    "weight_bytes": wb[key],
                    "tokens_per_s": b * format_length / secs,
                    **roofline(fm, wb[key], b, format_length, bandwidth),
                }
            )
    return res


def format_decode(res: dict) -> str:
    lines = [
        f"Decoding, {res['model']} (d{res['d_model']} L{res['n_layers']}) on {res['device']}, "
        f"prompt {res['prompt']}, "
        f"greedy; memory bandwidth {res['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s (best sum over 256 MiB)",
        "",
        f"  {'new tokens':>10} {'cached tok/s':>13} {'uncached tok/s':>15} {'speedup':>8}",
    ]
    for r in res["cache"]:
        lines.append(
            f"  {r['new_tokens']:>10} {r['cached_tokens_per_s']:>13,.0f} {r['uncached_tokens_per_s']:>15,.0f} "
            f"{r['speedup']:>7.1f}x"
        )
    lines += [
        "",
        f"  {'format':<6} {'batch':>5} {'weights MiB':>11} {'tok/s':>9} "
        f"{'roofline tok/s':>15} {'of roofline':>11}",
    ]
    for r in res["formats"]:
        lines.append(
            f"  {r['format']:<6} {r['batch']:>5} {r['weight_bytes'] / 2**20:>11.2f} {r['tokens_per_s']:>9,.0f} "
            f"{r['roofline_tokens_per_s']:>15,.0f} {r['tokens_per_s'] / r['roofline_tokens_per_s']:>10.1%}"
        )
    lines += ["", "  roofline = batch × bandwidth / (weight bytes + batch × KV-cache bytes at the mean position)"]
    return "\n".join(lines)


def plot_decode(res: dict, out_dir) -> list:
    """decode.png (cache vs no cache against length; tokens/s against weight bytes with the
    roofline, batch 1) and the two tables as CSV beside it."""
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache, fmts = pd.DataFrame(res["cache"]), pd.DataFrame(res["formats"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(cache.new_tokens, cache.cached_tokens_per_s, "o-", label="KV cache")
    left.plot(cache.new_tokens, cache.uncached_tokens_per_s, "s-", label="no cache (prefix recomputed)")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="generated tokens",
        ylabel="tokens/s (batch 1)",
        title=f"{res['model']}: KV cache vs recomputation",
    )
    left.legend()
    one = fmts[fmts.batch == fmts.batch.min()]
    right.plot(one.weight_bytes, one.tokens_per_s, "o", label="measured")
    right.plot(one.weight_bytes, one.roofline_tokens_per_s, "x--", label="bandwidth roofline")
    for _, r in one.iterrows():
        right.annotate(r["format"], (r["weight_bytes"], r["tokens_per_s"]), fontsize=8)
    right.set(
        xscale="log",
        yscale="log",
        xlabel="weight bytes",
        ylabel=f"tokens/s (batch {int(one.batch.min())})",
        title="weight format vs the memory-bandwidth bound",
    )
    right.legend()
    fig.tight_layout()
    fig.savefig(out / "decode.png", dpi=150)
    plt.close(fig)
    cache.to_csv(out / "decode_cache.csv", index=False)
    fmts.to_csv(out / "decode_formats.csv", index=False)
    return [out / "decode.png", out / "decode_cache.csv", out / "decode_formats.csv"]
