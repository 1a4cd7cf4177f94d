"""`lab bench`: this device's matmul peak, and training-step throughput and MFU of a few models,
measured in one run and printed with their formulas and the hardware.

    lab bench                                      # presets tiny and small, float32 and bfloat16
    lab bench --model medium --set model.seq_len=128 --steps 20 --out bench.json

Formulas (all FLOP counts are per trained token from `lab.costs`; one multiply-add = 2 FLOPs):

* matmul peak   = 2·N³ / (best time of an N×N `jnp.dot`, after warm-up), per dtype: the best of
  readings taken before the first model and after every model (a VM's speed drifts by ±15% over
  minutes; one early reading made the same step's MFU swing from 0.25 to 0.31).
* achieved rate = FLOPs/token (each convention) × tokens/s, with tokens/s = batch·seq_len / step time
  and step time = mean over K consecutive donated steps after warm-up (one block_until_ready).
* MFU           = achieved `flops_exact` rate / measured matmul peak *in the model's dtype*, and, on
  GPUs whose datasheet we know, / the nominal bf16 dense peak (NOTE: flops_exact counts attention
  over the full T×T square, not halved for causality).
* attention share = flops_attention / flops_exact (a share of FLOPs, not of time).

The step is `lab.training.step.compile_step`'s — the one training runs, with the run's shardings, state
donated — on random tokens; data loading is not timed. Speed targets belong here, never in timed unit tests.

Each row also carries the compile time (the persistent compilation cache is off while the bench
compiles, so it is a real compile), XLA's memory analysis of the compiled step (temporaries and
arguments, bytes per device), the attention implementation (`model.attn_impl`, and what `auto`
resolved to), the remat policy (`model.remat`) and the micro-batches (`train.microbatches`), all
settable with --set. `--fit-batch` keeps each model's batch and picks the fewest micro-batches
whose compiled step fits the device (XLA's memory analysis, before anything is allocated).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import platform
import time

from lab import costs
from lab.config import ConfigError, RunConfig
from lab.overrides import apply_overrides

CONVENTIONS = ("flops_exact", "flops_6n", "flops_6n_total", "flops_deepseek")
DTYPES = ("float32", "bfloat16")

FORMULAS = {
    "matmul_peak": "2*N^3 / best time of an NxN jnp.dot (after warm-up), per dtype, over readings before the "
    "first model and after each",
    "tokens_per_s": "batch_size*seq_len / step_s; step_s = mean of K consecutive steps after warm-up",
    "flops_per_s": "costs.<convention> (FLOPs per trained token) * tokens_per_s",
    "flops_exact": "3 x every forward matmul (QKV/O, QK^T and AV over the full TxT square, MLP, head)",
    "flops_6n": "6 * params_non_embedding",
    "flops_6n_total": "6 * params_total",
    "flops_deepseek": "72*L*D^2 + 12*L*D*T",
    "mfu_measured": "flops_per_s.flops_exact / measured matmul peak of the model's dtype",
    "mfu_nominal": "flops_per_s.flops_exact / nominal bf16 dense peak of the card (null when unknown)",
    "attention_flop_share": "flops_attention / flops_exact",
    "compile_s": "jit lower + XLA compile of the step, persistent compilation cache off",
    "temp_bytes": "XLA memory analysis of the compiled step: temporaries per device (argument_bytes: its inputs)",
}
FIT_MARGIN = (
    0.9  # --fit-batch: a compiled step fits when arguments + temporaries <= 90% of the device's free bytes
)


# ----------------------------------------------------------------------------- hardware


def hardware() -> dict:
    """The header block: what ran this benchmark."""
    import flax
    import jax
    import jaxlib

    device = jax.devices()[0]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": device.platform,
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "process_count": jax.process_count(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu_name": device.device_kind if device.platform == "gpu" else None,
        "hostname": platform.node(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "flax": flax.__version__,
    }


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nominal_peak(device_kind: str) -> dict | None:
    """{"flops_per_s", "dtype", "source"} of a card we know (its bf16 dense peak, from the table
    in `lab.costs`), else None (CPUs have none)."""
    return costs.nominal_peak(device_kind, "bfloat16")


# ----------------------------------------------------------------------------- measurements


def matmul_peak(dtype: str, n: int, repeats: int = 5, warmup: int = 2) -> dict:
    """Achieved FLOP/s of one N×N by N×N jnp.dot: 2·N³ / best of `repeats` timed calls."""
    import jax
    import jax.numpy as jnp

    ka, kb = jax.random.split(jax.random.key(0))
    a_NxN = jax.random.normal(ka, (n, n), dtype)
    b_NxN = jax.random.normal(kb, (n, n), dtype)
    dot = jax.jit(jnp.dot)
    for _ in range(warmup):
        dot(a_NxN, b_NxN).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dot(a_NxN, b_NxN).block_until_ready()
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"dtype": dtype, "n": n, "repeats": repeats, "best_s": best, "flops_per_s": 2.0 * n**3 / best}


@contextlib.contextmanager
def compilation_cache_off():
    """Compile for real: JAX's persistent compilation cache is off inside (read at compile time)."""
    import jax

    was = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        yield
    finally:
        jax.config.update("jax_enable_compilation_cache", was)


def microbatch_candidates(cfg: RunConfig, mesh_shape: dict) -> list[int]:
    """Numbers of micro-batches K that split the batch evenly over the data-parallel devices,
    fewest first, starting near the smallest K whose analytic estimate fits twice the device's
    free memory (the estimate counts T×T attention scores a fused kernel never stores)."""
    from lab.memory import available_bytes, estimate

    dp = mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1)
    ks = [k for k in range(1, cfg.train.batch_size // dp + 1) if cfg.train.batch_size % (k * dp) == 0]
    free = available_bytes()[0]
    if free is None:
        return ks
    with_k = lambda k: dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, microbatches=k))
    first = next((i for i, k in enumerate(ks) if estimate(with_k(k), mesh_shape).total <= 2 * free), len(ks) - 1)
    return ks[first:]


def compile_fitted(cfg: RunConfig, mesh, fit: bool):
    """(config, compiled step), compiled with the persistent cache off; with `fit`, the config
    with the fewest micro-batches whose compiled step fits the device (tried in that order)."""
    from lab.memory import available_bytes, xla_needed
    from lab.training.step import compile_step

    if not fit:
        with compilation_cache_off():
            return cfg, compile_step(cfg, mesh)
    free, source = available_bytes()
    for k in microbatch_candidates(cfg, dict(mesh.shape)):
        trial = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, microbatches=k))
        with compilation_cache_off():
            step = compile_step(trial, mesh)
        need = xla_needed(step.memory)
        if free is None or need is None or need <= FIT_MARGIN * free:
            return trial, step
    raise ConfigError(
        f"no number of micro-batches fits batch_size={cfg.train.batch_size} of this model in "
        f"{free / 2**30:.3g} GiB ({source}); lower train.batch_size or model.seq_len"
    )


def time_step(cfg: RunConfig, steps: int, warmup: int, *, fit: bool = False) -> dict:
    """Time `lab.training.step.compile_step`'s step for `cfg` (the run's shardings, state donated) on one
    batch of random tokens: `steps` steps after `warmup` untimed ones. `fit`: choose
    train.microbatches as `compile_fitted` does (the timing's "microbatches" says which)."""
    import jax
    import numpy as np

    from lab import sharding
    from lab.memory import estimate

    mesh = sharding.make_mesh(cfg.mesh)
    with jax.set_mesh(mesh):
        cfg, step = compile_fitted(cfg, mesh, fit)
        params, opt_state = step.init_state()
        rng = np.random.default_rng(cfg.train.seed)
        tokens_BxT1 = rng.integers(
            0, cfg.model.vocab_size, (cfg.train.batch_size, cfg.model.seq_len + 1), np.int32
        )
        batch = jax.device_put(tokens_BxT1, step.batch_sh)
        for i in range(warmup):
            params, opt_state, metrics = step(params, opt_state, batch, np.int32(i))
        jax.block_until_ready((params, opt_state, metrics) if warmup else params)
        t0 = time.perf_counter()
        for i in range(warmup, warmup + steps):
            params, opt_state, metrics = step(params, opt_state, batch, np.int32(i))
        jax.block_until_ready((params, opt_state, metrics))
        elapsed = time.perf_counter() - t0
    return {
        "microbatches": cfg.train.microbatches,
        "compile_s": step.compile_s,
        "compile_cache": False,
        "warmup_steps": warmup,
        "timed_steps": steps,
        "step_s": elapsed / steps,
        "final_loss": float(metrics["loss"]),
        "xla_memory_per_device": step.memory,
        "temp_bytes": step.memory.get("temp_size_in_bytes"),
        "argument_bytes": step.memory.get("argument_size_in_bytes"),
        "estimated_bytes_per_device": estimate(cfg, dict(mesh.shape)).total,
    }


# ----------------------------------------------------------------------------- configs and rows


def bench_config(
    name: str, overrides: list[str], dtype: str, mesh: str, steps: int, fit: bool = False
) -> RunConfig:
    """A preset with --set overrides, in `dtype`; byte vocabulary (256) unless model.vocab_size is
    set. Refused (one line) when it cannot fit, unless `fit` will choose its micro-batches."""
    import jax

    from lab import sharding
    from lab.memory import check_fits
    from lab.presets import preset_config

    cfg, _ = preset_config(name)
    cfg = apply_overrides(cfg, overrides)
    model = dataclasses.replace(cfg.model, dtype=dtype, vocab_size=cfg.model.vocab_size or 256)
    train = dataclasses.replace(cfg.train, steps=steps, tokens=0)
    cfg = dataclasses.replace(cfg, model=model, train=train, mesh=mesh or cfg.mesh).validate()
    sharding.parse_mesh(cfg.mesh, jax.device_count())  # a mesh that does not fit: one-line error
    if not fit:
        check_fits(cfg)  # a model that cannot fit: one-line error, before anything is allocated
    return cfg


def attention_impl(model) -> tuple[str, str]:
    """(model.attn_impl as configured, the implementation it runs: `auto` resolved)."""
    from lab.config import model_impl

    return model.attn_impl, model_impl(model)


def step_row(name: str, cfg: RunConfig, timing: dict, peaks: dict, nominal: dict | None) -> dict:
    """All figures of one (model, dtype): throughput, FLOP/s per convention, MFU, attention share."""
    from lab.costs import model_costs

    costs = model_costs(cfg.model)
    tokens_per_s = cfg.tokens_per_step / timing["step_s"]
    flops_per_s = {k: getattr(costs, k) * tokens_per_s for k in CONVENTIONS}
    peak = peaks[cfg.model.dtype]["flops_per_s"]
    m = cfg.model
    impl, resolved = attention_impl(m)
    return {
        "model": name,
        "dtype": m.dtype,
        "param_dtype": m.param_dtype,
        "attn_impl": impl,
        "attn_impl_resolved": resolved,
        "remat": getattr(m, "remat", "none"),
        "microbatches": cfg.train.microbatches,
        "attn_window": m.attn_window,
        "attn_global_tokens": m.attn_global_tokens,
        "d_model": m.d_model,
        "n_layers": m.n_layers,
        "n_heads": m.n_heads,
        "seq_len": m.seq_len,
        "vocab_size": m.vocab_size,
        "batch_size": cfg.train.batch_size,
        "tokens_per_step": cfg.tokens_per_step,
        "mesh": cfg.mesh,
        "costs": costs.as_dict(),
        **timing,
        "step_ms": 1e3 * timing["step_s"],
        "tokens_per_s": tokens_per_s,
        "flops_per_s": flops_per_s,
        "peak_measured_flops_per_s": peak,
        "mfu_measured": flops_per_s["flops_exact"] / peak,
        "peak_nominal_flops_per_s": nominal["flops_per_s"] if nominal else None,
        "mfu_nominal": flops_per_s["flops_exact"] / nominal["flops_per_s"] if nominal else None,
        "attention_flop_share": costs.flops_attention / costs.flops_exact,
    }


def dtype_ratios(rows: list[dict]) -> list[dict]:
    """bfloat16 / float32 tokens/s of each model benchmarked in both dtypes."""
    by = {(r["model"], r["dtype"]): r for r in rows}
    out = []
    for name in dict.fromkeys(r["model"] for r in rows):
        f32, b16 = by.get((name, "float32")), by.get((name, "bfloat16"))
        if f32 and b16:
            out.append(
                {
                    "model": name,
                    "float32_tokens_per_s": f32["tokens_per_s"],
                    "bfloat16_tokens_per_s": b16["tokens_per_s"],
                    "bf16_over_f32": b16["tokens_per_s"] / f32["tokens_per_s"],
                }
            )
    return out


def best_peak(readings: list[dict]) -> dict:
    """One dtype's peak from several `matmul_peak` readings: the fastest call of all of them, with
    every reading's FLOP/s kept (`readings_flops_per_s`) to show the spread."""
    best = min(readings, key=lambda r: r["best_s"])
    return {
        **best,
        "repeats": sum(r["repeats"] for r in readings),
        "readings_flops_per_s": [r["flops_per_s"] for r in readings],
    }


def default_matmul_n(platform_: str) -> int:
    return 2048 if platform_ == "cpu" else 8192


def run_bench(
    models: list[str],
    overrides: list[str],
    dtypes: list[str],
    *,
    steps: int = 10,
    warmup: int = 2,
    matmul_n: int = 0,
    matmul_repeats: int = 5,
    mesh: str = "",
    fit: bool = False,
    log=None,
) -> dict:
    """The whole benchmark as one dict (what --json prints and --out writes). `fit`: see `compile_fitted`."""
    if any(o.split("=", 1)[0].strip() == "model.dtype" for o in overrides):
        raise ConfigError("set the compute dtype with --dtype, not --set model.dtype")
    for d in dtypes:
        if d not in DTYPES:
            raise ConfigError(f"--dtype {d!r} is not one of {', '.join(DTYPES)}")
    configs = [
        (name, bench_config(name, overrides, d, mesh, warmup + steps, fit)) for name in models for d in dtypes
    ]
    header = hardware()  # user errors above surface before anything is timed
    nominal = nominal_peak(header["device_kind"]) if header["platform"] == "gpu" else None
    n = matmul_n or default_matmul_n(header["platform"])
    readings = {d: [] for d in dtypes}

    def read_peaks():
        for d in dtypes:
            _say(log, f"matmul {d} N={n} ...")
            readings[d].append(matmul_peak(d, n, matmul_repeats))

    read_peaks()
    timed = []
    for name, cfg in configs:
        _say(log, f"step {name} {cfg.model.dtype} ...")
        timing = time_step(cfg, steps, warmup, fit=fit)
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, microbatches=timing["microbatches"]))
        timed.append((name, cfg, timing))
        read_peaks()  # after every model too: the machine's speed drifts, and the best reading is its peak
    peaks = {d: best_peak(r) for d, r in readings.items()}
    rows = [step_row(name, cfg, timing, peaks, nominal) for name, cfg, timing in timed]
    return {
        "header": header,
        "formulas": FORMULAS,
        "matmul": list(peaks.values()),
        "nominal_peak": nominal,
        "steps": rows,
        "dtype_comparison": dtype_ratios(rows),
    }


def _say(log, text: str) -> None:
    if log is not None:
        print(text, file=log, flush=True)
