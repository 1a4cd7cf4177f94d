"""Memory pre-flight: the bytes one device needs to train a config, estimated from the config
alone (no tracing, no allocation, microseconds even for 2,000 layers), against what the device
has. `check_fits` refuses a run that cannot fit before anything is allocated or written.

Per device, with P = `costs.params_total`, p = bytes of `param_dtype`, a = bytes of `dtype`,
s = fsdp·tensor (the mesh axes parameters are split over), K = `train.microbatches`,
b = batch_size / (data·fsdp·K) sequences (one micro-batch's share of this device):

* params      = P·p / s
* optimizer   = 2·P·p / s            (AdamW's two moments, in the parameters' dtype)
* gradients   = 2·P·p / s            (the gradient and the optimizer's update, both live at once)
                + 4·P / s when K > 1 (the float32 sum of the micro-batches' gradients)
* activations = Σ over layers of what a layer keeps, + the largest layer's working set under remat,
                + b·t_head·V·4·HEAD_COPIES (logits, softmax and their gradient in float32)
  where a layer sees t query tokens and k keys (decoder: t = k = T; encdec: the encoder t = k = S
  = T//2, the decoder t = T-S, k = T-S+S) and keeps, with model.remat=none,
      b·t·(ACT_PER_D·D + ACT_PER_F·F/tensor)·a + b·H·pairs·(4·SCORE_F32 + a)/tensor
  ACT_PER_D = 12 and ACT_PER_F = 6 count the [t, D] and [t, F] tensors kept for the backward pass
  (norm inputs/outputs, Q/K/V, attention output, residuals; MLP pre- and post-activation — the
  layer scan holds each stacked residual buffer twice); pairs = t·k score pairs (a sliding
  window computed blockwise: `lab.costs.score_pairs`), kept twice in float32 and once in
  dtype; a fused cuDNN kernel or the chunked one (`lab.model.attention_chunked`) keeps no
  scores, only a float32 log-sum-exp per query (pairs = t, 4 bytes). remat=full keeps b·t·D·a
  (the layer input) and save_matmuls b·t·(5·D + F/tensor)·a (the weight matmuls' outputs);
  both add one layer's full working set, recomputed in the backward.

Measured against XLA's memory analysis of the compiled step (arguments + temporaries, CPU, see
tests/test_memory.py) the estimate lies within the factor stated in `ESTIMATE_RANGE`.
"""

from __future__ import annotations

import dataclasses
import math
import os

from lab.config import ConfigError, RunConfig, resolve_impl
from lab.costs import model_costs, score_pairs

ACT_PER_D = 12
ACT_PER_F = 6
SAVED_PER_D = 5  # model.remat=save_matmuls keeps q, k, v, the attention output and the MLP output
SAVED_PER_F = 1  # ... and the MLP's first matmul
SCORE_F32 = 2  # float32 copies of each layer's [H, t, k] attention scores kept (plus one in `dtype`)
RECOMPUTE_LIVE = 0.6  # under remat, the share of one layer's working set live while it is recomputed:
# XLA's memory analysis gave 0.52-0.80 (CPU, save_matmuls: tiny, small, small with W=32, small with 4
# micro-batches); counting all of it over-estimated small by 1.27x
HEAD_COPIES = 3  # float32 [t, V] tensors of the head kept (logits, softmax, their gradient)
GIB = 2**30


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per device."""

    params: int
    optimizer: int
    gradients: int
    activations: int

    @property
    def total(self) -> int:
        return self.params + self.optimizer + self.gradients + self.activations

    def describe(self) -> str:
        return (
            f"~{gib(self.total)} GiB per device (params {gib(self.params)}, optimizer {gib(self.optimizer)}, "
            f"gradients {gib(self.gradients)}, activations {gib(self.activations)} GiB)"
        )


def gib(n_bytes: float) -> str:
    """Bytes in GiB for a message: 3 significant digits, whole GiB from 100 up (8,340 not 8.34e+03)."""
    x = n_bytes / GIB
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2}[dtype]


def _layer_shapes(cfg) -> list[tuple[int, int, int, bool]]:
    """(layers, query tokens, keys, causal) of each stack of one window; the last feeds the head.
    The encdec decoder's keys: its own T - S plus the S source tokens, counted as one dense
    attention over T keys."""
    T = cfg.seq_len
    if cfg.arch == "encdec":
        S = T // 2
        return [(cfg.n_layers, S, S, False), (cfg.dec_layers, T - S, T, True)]
    return [(cfg.n_layers, T, T, cfg.arch == "decoder")]


def attention_kept(cfg, t: int, k: int, causal: bool) -> tuple[float, float]:
    """(score pairs per sequence and head whose scores a layer keeps, bytes per pair): the pairs
    the attention computes (a window: blockwise, `lab.costs.score_pairs`), or none but a
    float32 log-sum-exp per query for a fused (cuDNN flash) or the chunked kernel."""
    try:
        impl = resolve_impl(getattr(cfg, "attn_impl", "xla"), cfg.dtype, cfg.head_dim)
    except ConfigError:  # cudnn asked for where it cannot run: the run itself refuses it
        impl = "xla"
    if impl in ("cudnn", "chunked"):
        return t, 4
    window = cfg.attn_window if t == k else 0  # cross-attention is dense
    pairs = score_pairs(t, k, causal=causal, window=window, global_tokens=cfg.attn_global_tokens)
    return pairs, 4 * SCORE_F32 + _itemsize(cfg.dtype)


def _layer_bytes(cfg, b: int, t: int, k: int, causal: bool, tensor: int) -> tuple[float, float]:
    """(bytes one layer keeps for the backward pass, bytes it holds only while it runs) for b
    sequences, under `model.remat`: none keeps everything; full only the layer's input (the rest
    is recomputed, one layer at a time); save_matmuls the weight matmuls' outputs as well."""
    a, D, F = _itemsize(cfg.dtype), cfg.d_model, cfg.ffn_dim / tensor
    pairs, pair_bytes = attention_kept(cfg, t, k, causal)
    everything = b * t * (ACT_PER_D * D + ACT_PER_F * F) * a + b * cfg.n_heads * pairs * pair_bytes / tensor
    remat = getattr(cfg, "remat", "none")
    if remat == "full":
        return b * t * D * a, RECOMPUTE_LIVE * everything
    if remat == "save_matmuls":
        return b * t * (SAVED_PER_D * D + SAVED_PER_F * F) * a, RECOMPUTE_LIVE * everything
    return everything, 0.0


def activation_bytes(cfg, per_device_batch: int, tensor: int = 1) -> int:
    """Bytes the forward pass keeps for the backward pass, for `per_device_batch` sequences."""
    b, total, transient = per_device_batch, 0.0, 0.0
    for layers, t, k, causal in _layer_shapes(cfg):
        kept, running = _layer_bytes(cfg, b, t, k, causal, tensor)
        total += layers * kept
        transient = max(transient, running)
    head_tokens = _layer_shapes(cfg)[-1][1]
    total += b * head_tokens * cfg.vocab_size / tensor * 4 * HEAD_COPIES
    return int(total + transient)


def estimate(cfg: RunConfig, mesh_shape: dict[str, int]) -> MemoryEstimate:
    """The bytes one device needs for a training step of `cfg` on a mesh of these axis sizes."""
    model = cfg.model
    if model.vocab_size <= 0:  # not resolved from the corpus yet: its tokenizer's vocabulary
        guess = cfg.data.bpe_vocab_size if cfg.data.tokenizer == "bpe" else 256
        model = model.with_corpus_vocab(guess)
    split = mesh_shape.get("fsdp", 1) * mesh_shape.get("tensor", 1)
    state = model_costs(model).params_total * _itemsize(model.param_dtype) / split
    K = cfg.train.microbatches
    per_device_batch = math.ceil(
        cfg.train.batch_size / (mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1) * K)
    )
    accumulator = model_costs(model).params_total * 4 / split if K > 1 else 0
    return MemoryEstimate(
        params=int(state),
        optimizer=int(2 * state),
        gradients=int(2 * state + accumulator),
        activations=activation_bytes(model, per_device_batch, mesh_shape.get("tensor", 1)),
    )


def available_bytes(device=None) -> tuple[int | None, str]:
    """(bytes a device can still take, where that figure comes from); (None, why) if unknown.

    Accelerators: `memory_stats()` bytes_limit − bytes_in_use. CPU devices share the host's
    memory: MemAvailable of /proc/meminfo (else os.sysconf's available pages) / local devices."""
    import jax

    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats()
    except Exception:  # not every backend implements it
        stats = None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind} memory_stats"
    host = _host_available()
    if host is None:
        return None, "host memory unknown"
    n = max(1, sum(d.platform == device.platform for d in jax.local_devices()))
    return host // n, "host MemAvailable" + (f" / {n} devices" if n > 1 else "")


def _host_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(cfg: RunConfig, mesh=None, available: int | None = None) -> MemoryEstimate:
    """Raise ConfigError (one line, with the numbers) when `cfg` cannot fit on one device of
    `mesh` (default: `cfg.mesh` over every device); returns the estimate otherwise. Allocates
    nothing. `available`: bytes per device, instead of asking the device."""
    import jax

    from lab import sharding

    shape = dict(mesh.shape) if mesh is not None else sharding.parse_mesh(cfg.mesh, jax.device_count())
    need = estimate(cfg, shape)
    source = "given"
    if available is None:
        available, source = available_bytes()
    if available is not None and need.total > available:
        raise ConfigError(
            f"the model needs {need.describe()} but the device has {gib(available)} GiB "
            f"available ({source}); use a smaller model or batch, or spread it over more "
            f"devices with --mesh fsdp=N"
        )
    return need


def xla_needed(xla_memory: dict) -> int | None:
    """Bytes per device a compiled step needs by XLA's count: its arguments (the state and the
    batch; donation lets the outputs reuse the state's buffers) plus its temporaries."""
    if "temp_size_in_bytes" not in xla_memory:
        return None
    return xla_memory.get("argument_size_in_bytes", 0) + xla_memory["temp_size_in_bytes"]


def check_compiled(xla_memory: dict, available: int | None = None) -> None:
    """Raise ConfigError when a compiled step's arguments + temporaries (XLA's memory analysis,
    `lab.training.xla_memory.xla_memory`) exceed what the device has: the precise check, after compiling and
    before the state is allocated. Silent where the backend reports no analysis."""
    need = xla_needed(xla_memory)
    if need is None:
        return
    source = "given"
    if available is None:
        available, source = available_bytes()
    if available is not None and need > available:
        raise ConfigError(
            f"the compiled step needs {gib(need)} GiB per device (arguments + temporaries, "
            f"XLA's memory analysis) but the device has {gib(available)} GiB available "
            f"({source}); use a smaller model or batch, or spread it over more devices with --mesh fsdp=N"
        )
