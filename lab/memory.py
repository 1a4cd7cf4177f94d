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
* activations = Σ over layers of b·t·(ACT_PER_D·D + ACT_PER_F·F)·a  +  b·H·t·k·(8 + a) / tensor
                + b·t_head·V·4·3     (logits, softmax and their gradient in float32)
  where a layer sees t query tokens and k keys (decoder: t = k = T; encdec: the encoder t = k = S
  = T//2, the decoder t = T-S, k = T-S+S), ACT_PER_D = 12 and ACT_PER_F = 3 count the [t, D] and
  [t, F] tensors a layer keeps for the backward pass (norm inputs/outputs, Q/K/V, attention output,
  residuals; MLP pre- and post-activation and gate), and the [H, t, k] attention squares are kept
  three times: logits and masked logits (float32) and probabilities (dtype).

Measured against XLA's memory analysis of the compiled step (arguments + temporaries, CPU, see
tests/test_memory.py) the estimate lies within the factor stated in `ESTIMATE_RANGE`.
"""

from __future__ import annotations

import dataclasses
import math
import os

from lab.config import ConfigError, RunConfig
from lab.costs import model_costs

ACT_PER_D = 12
ACT_PER_F = 3
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
        return (f"~{gib(self.total)} GiB per device (params {gib(self.params)}, optimizer {gib(self.optimizer)}, "
                f"gradients {gib(self.gradients)}, activations {gib(self.activations)} GiB)")


def gib(n_bytes: float) -> str:
    """Bytes in GiB for a message: 3 significant digits, whole GiB from 100 up (8,340 not 8.34e+03)."""
    x = n_bytes / GIB
    return f"{x:,.0f}" if x >= 100 else f"{x:.3g}"


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "bfloat16": 2}[dtype]


def _layer_shapes(cfg) -> list[tuple[int, int, int]]:
    """(layers, query tokens, keys) of each stack of one window; the last stack feeds the head."""
    T = cfg.seq_len
    if cfg.arch == "encdec":
        S = T // 2
        return [(cfg.n_layers, S, S), (cfg.dec_layers, T - S, T)]
    return [(cfg.n_layers, T, T)]


def activation_bytes(cfg, per_device_batch: int, tensor: int = 1) -> int:
    """Bytes the forward pass keeps for the backward pass, for `per_device_batch` sequences."""
    a, b = _itemsize(cfg.dtype), per_device_batch
    total = 0
    for layers, t, k in _layer_shapes(cfg):
        width = ACT_PER_D * cfg.d_model + ACT_PER_F * cfg.ffn_dim / tensor
        total += layers * (b * t * width * a + b * cfg.n_heads * t * k * (8 + a) / tensor)
    head_tokens = _layer_shapes(cfg)[-1][1]
    total += b * head_tokens * cfg.vocab_size / tensor * 4 * 3
    return int(total)


def estimate(cfg: RunConfig, mesh_shape: dict[str, int]) -> MemoryEstimate:
    """The bytes one device needs for a training step of `cfg` on a mesh of these axis sizes."""
    model = cfg.model
    if model.vocab_size <= 0:  # not resolved from the corpus yet: its tokenizer's vocabulary
        guess = cfg.data.bpe_vocab_size if cfg.data.tokenizer == "bpe" else 256
        model = model.with_corpus_vocab(guess)
    split = mesh_shape.get("fsdp", 1) * mesh_shape.get("tensor", 1)
    state = model_costs(model).params_total * _itemsize(model.param_dtype) / split
    K = cfg.train.microbatches
    per_device_batch = math.ceil(cfg.train.batch_size / (mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1) * K))
    accumulator = model_costs(model).params_total * 4 / split if K > 1 else 0
    return MemoryEstimate(params=int(state), optimizer=int(2 * state), gradients=int(2 * state + accumulator),
                          activations=activation_bytes(model, per_device_batch, mesh_shape.get("tensor", 1)))


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
        raise ConfigError(f"the model needs {need.describe()} but the device has {gib(available)} GiB "
                          f"available ({source}); use a smaller model or batch, or spread it over more "
                          f"devices with --mesh fsdp=N")
    return need


def xla_needed(xla_memory: dict) -> int | None:
    """Bytes per device a compiled step needs by XLA's count: its arguments (the state and the
    batch; donation lets the outputs reuse the state's buffers) plus its temporaries."""
    if "temp_size_in_bytes" not in xla_memory:
        return None
    return xla_memory.get("argument_size_in_bytes", 0) + xla_memory["temp_size_in_bytes"]


def check_compiled(xla_memory: dict, available: int | None = None) -> None:
    """Raise ConfigError when a compiled step's arguments + temporaries (XLA's memory analysis,
    `lab.step.xla_memory`) exceed what the device has: the precise check, after compiling and
    before the state is allocated. Silent where the backend reports no analysis."""
    need = xla_needed(xla_memory)
    if need is None:
        return
    source = "given"
    if available is None:
        available, source = available_bytes()
    if available is not None and need > available:
        raise ConfigError(f"the compiled step needs {gib(need)} GiB per device (arguments + temporaries, "
                          f"XLA's memory analysis) but the device has {gib(available)} GiB available "
                          f"({source}); use a smaller model or batch, or spread it over more devices with --mesh fsdp=N")
