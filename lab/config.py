"""Frozen configuration dataclasses for a run, their value checks, and the attention-kernel rule.

A run is fully described by `RunConfig` (model + data + train + mesh). `--set key=value` overrides
by dotted name and building a config from a saved dict live in `lab.overrides`; a bad value raises
`ConfigError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field

MAX_BPE_VOCAB = 1 << 20  # larger vocabularies are refused here, not by an abort inside the tokenizer library
MAX_STEPS = 2**31 - 1  # the step counter of the jitted step and its schedules is an int32
F32_MAX, F32_TINY = 3.4028234663852886e38, 1.1754943508222875e-38  # float32's largest and smallest normal


class ConfigError(ValueError):
    """A user-caused configuration error; its message is one line, shown without a traceback."""


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one transformer. Cost accounting lives in `lab.costs` and reads only this."""

    arch: str = "decoder"  # decoder | encoder | encdec
    vocab_size: int = 0  # 0 = the corpus tokenizer's vocabulary (resolved at run start)
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 0  # 0 = same as n_heads (MHA); fewer = GQA; 1 = MQA
    d_ff: int = 0  # 0 = 4 * d_model
    seq_len: int = 128
    pos_encoding: str = "rope"  # rope | learned | sinusoidal | none
    norm: str = "layernorm"  # layernorm | rmsnorm
    mlp: str = "gelu"  # gelu | swiglu
    tie_embeddings: bool = True
    rope_theta: float = 10000.0
    n_dec_layers: int = 0  # encdec only: decoder layers (0 = n_layers)
    attn_window: int = 0  # sparse attention: sliding window size in tokens (0 = full attention)
    attn_global_tokens: int = 0  # sparse attention: leading tokens every query may see
    # auto | xla | cudnn | chunked (auto: cuDNN flash attention on an NVIDIA GPU in bf16,
    # chunked on a CPU, else XLA)
    attn_impl: str = "auto"
    remat: str = "save_matmuls"  # none | full | save_matmuls: what the backward pass recomputes per layer
    dtype: str = "float32"  # activation / matmul dtype: float32 | bfloat16
    param_dtype: str = "float32"
    init_std: float = 0.02

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def ffn_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def dec_layers(self) -> int:
        return self.n_dec_layers or self.n_layers

    def with_corpus_vocab(self, corpus_vocab: int) -> ModelConfig:
        """The vocabulary this model needs for a corpus: its tokens, plus [MASK] for a masked LM."""
        needed = corpus_vocab + (1 if self.arch == "encoder" else 0)
        return self if self.vocab_size >= needed else dataclasses.replace(self, vocab_size=needed)

    def validate(self) -> None:
        _choice("model.arch", self.arch, ("decoder", "encoder", "encdec"))
        _choice("model.pos_encoding", self.pos_encoding, ("rope", "learned", "sinusoidal", "none"))
        _choice("model.norm", self.norm, ("layernorm", "rmsnorm"))
        _choice("model.mlp", self.mlp, ("gelu", "swiglu"))
        _choice("model.dtype", self.dtype, ("float32", "bfloat16"))
        _choice("model.param_dtype", self.param_dtype, ("float32", "bfloat16"))
        _choice("model.attn_impl", self.attn_impl, ATTN_IMPLS)
        _choice("model.remat", self.remat, ("none", "full", "save_matmuls"))
        for name in ("d_model", "n_layers", "n_heads", "seq_len"):
            _positive(f"model.{name}", getattr(self, name))
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads}")
        if self.n_heads % self.kv_heads:
            raise ConfigError(f"model.n_heads={self.n_heads} is not divisible by model.n_kv_heads={self.kv_heads}")
        if self.pos_encoding == "rope" and self.head_dim % 2:
            raise ConfigError(f"RoPE needs an even head dimension, got {self.head_dim}")
        if (
            min(
                self.vocab_size,
                self.n_kv_heads,
                self.d_ff,
                self.attn_window,
                self.attn_global_tokens,
                self.n_dec_layers,
            )
            < 0
        ):
            raise ConfigError("model sizes must not be negative")
        if self.n_dec_layers and self.arch != "encdec":
            raise ConfigError(f"model.n_dec_layers={self.n_dec_layers} applies only to model.arch=encdec")
        _float32("model.rope_theta", self.rope_theta, positive=True)
        _float32("model.init_std", self.init_std)
        if self.arch == "encdec" and self.seq_len < 2:
            raise ConfigError(
                "model.arch=encdec splits each window into source and target: model.seq_len must be >= 2"
            )


@dataclass(frozen=True)
class DataConfig:
    """Which corpus and tokenizer; see `lab.data`."""

    name: str = "python_stdlib"  # python_stdlib | synthetic[/markov1|markov2] | tfds:NAME[/CONFIG][:VERSION]
    tokenizer: str = "byte"  # byte | bpe (synthetic data is its own symbols: byte only)
    bpe_vocab_size: int = 1024
    data_dir: str = ""  # "" = $LAB_DATA_DIR or ~/.cache/scaling-lab
    text_key: str = "text"  # feature holding the text, for tfds catalog datasets
    train_split: str = "train"  # TFDS split syntax works, e.g. "train[:10%]"
    val_split: str = "validation"  # tfds catalog: falls back to "test" when there is no validation
    source_dir: str = ""  # python_stdlib only: a directory of .py files to use instead of the stdlib
    val_tokens: int = 1 << 15  # held-out tokens evaluated at every eval (a fixed set)
    unique_tokens: int = (
        0  # > 0: train on the first U training tokens, repeated in reshuffled epochs (0 = whole stream)
    )
    recall_mix: float = (
        0.0  # fraction of training rows that are associative-recall text (lab.data.recall); bytes only
    )

    # the in-context copy task (lab.data.induction): the fraction of training rows that are copy lines
    # (bytes only), and the difficulty they and the run's copy evaluation (lab.evals.induction) use
    copy_mix: float = 0.0
    copy_len: int = 8  # letters in the copied string
    copy_alphabet: int = 26  # symbols the strings are drawn from (2-62)
    copy_gap: int = 0  # filler bytes between the strings and the copy
    copy_distractors: int = 0  # other strings in each line, not to be copied

    def validate(self) -> None:
        _choice("data.tokenizer", self.tokenizer, ("byte", "bpe"))
        if not (self.name in ("python_stdlib", "synthetic") or self.name.startswith(("tfds:", "synthetic/"))):
            raise ConfigError(
                f"unknown dataset {self.name!r}: use python_stdlib, synthetic[/VARIANT] or tfds:NAME"
            )
        _positive("data.val_tokens", self.val_tokens)
        _within("data.unique_tokens", self.unique_tokens, 0, 2**62)
        if not 0.0 <= self.recall_mix < 1.0:
            raise ConfigError(f"data.recall_mix={self.recall_mix} must lie in [0, 1)")
        if self.recall_mix and (self.tokenizer != "byte" or self.name.startswith("synthetic")):
            raise ConfigError(
                "data.recall_mix needs a text corpus with data.tokenizer=byte (recall lines are bytes)"
            )
        self._validate_copy()
        _within("data.bpe_vocab_size", self.bpe_vocab_size, 1, MAX_BPE_VOCAB)
        if self.tokenizer == "bpe" and self.bpe_vocab_size <= 256:
            raise ConfigError(f"data.bpe_vocab_size={self.bpe_vocab_size} must exceed the 256 byte symbols")

    def _validate_copy(self) -> None:
        if not 0.0 <= self.copy_mix < 1.0:
            raise ConfigError(f"data.copy_mix={self.copy_mix} must lie in [0, 1)")
        if self.copy_mix and (self.tokenizer != "byte" or self.name.startswith("synthetic")):
            raise ConfigError("data.copy_mix needs a text corpus with data.tokenizer=byte (copy lines are bytes)")
        _within("data.copy_len", self.copy_len, 1, 1 << 16)
        _within("data.copy_alphabet", self.copy_alphabet, 2, 62)
        _within("data.copy_gap", self.copy_gap, 0, 1 << 16)
        _within("data.copy_distractors", self.copy_distractors, 0, 1 << 10)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation. The schedule's horizon is the run's own token count."""

    seed: int = 0
    batch_size: int = 8  # sequences per step (global, across all devices and hosts)
    tokens: int = 0  # training tokens; 0 = derived from `steps`
    steps: int = 0  # 0 = derived from `tokens`
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # final lr = lr * min_lr_ratio
    schedule: str = "wsd"  # wsd | cosine | constant
    decay_frac: float = 0.2  # WSD: fraction of steps in the final decay
    warmup_steps: int = -1  # -1 = size policy (see lab.schedules.warmup_policy)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 1.0
    z_loss: float = 0.0  # coefficient of log(Z)^2, stabilises large-vocab logits
    eval_every: int = 0  # steps between evals; 0 = 5 evals per run (the last at the end)
    log_every: int = 0  # steps between metric lines; 0 = ~100 lines per run
    mlm_prob: float = 0.15  # encoder (masked LM): fraction of tokens masked
    microbatches: int = 1  # gradient accumulation: each step's batch in K sequential micro-batches
    peak_flops: float = 0.0  # one device's peak FLOP/s for MFU; 0 = the nominal one (lab.costs), if known

    def validate(self) -> None:
        _choice("train.schedule", self.schedule, ("wsd", "cosine", "constant"))
        _positive("train.batch_size", self.batch_size)
        _positive("train.microbatches", self.microbatches)
        if self.batch_size % self.microbatches:
            raise ConfigError(
                f"train.batch_size={self.batch_size} is not divisible by train.microbatches={self.microbatches}"
            )
        _positive("train.lr", self.lr)
        _within("train.seed", self.seed, 0, 2**32 - 1)
        _within("train.beta1", self.beta1, 0.0, 1.0, open_hi=True)
        _within("train.beta2", self.beta2, 0.0, 1.0, open_hi=True)
        _positive("train.eps", self.eps)
        for name in ("grad_clip", "weight_decay", "z_loss", "peak_flops"):
            _within(f"train.{name}", getattr(self, name), 0, math.inf)
        for name in ("lr", "eps", "weight_decay", "grad_clip", "z_loss"):  # the optimizer computes in float32
            _float32(f"train.{name}", getattr(self, name))
        for name in ("eval_every", "log_every"):
            _within(f"train.{name}", getattr(self, name), 0, MAX_STEPS)
        _within("train.mlm_prob", self.mlm_prob, 0.0, 1.0, open_lo=True, open_hi=True)
        _within("train.warmup_steps", self.warmup_steps, -1, MAX_STEPS)
        if self.tokens < 0 or self.steps < 0:
            raise ConfigError("train.tokens and train.steps must be positive")
        if not 0.0 <= self.decay_frac <= 1.0:
            raise ConfigError(f"train.decay_frac={self.decay_frac} must lie in [0, 1]")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"train.min_lr_ratio={self.min_lr_ratio} must lie in [0, 1]")


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    mesh: str = ""  # e.g. "data=2,fsdp=2,tensor=2"; "" = all devices on `data`
    checkpoint_every: int = 0  # steps; 0 = only at the end
    keep_checkpoints: int = 2

    def validate(self) -> RunConfig:
        self.model.validate()
        self.data.validate()
        self.train.validate()
        if self.train.tokens == 0 and self.train.steps == 0:
            raise ConfigError("give the run a length: --tokens D or --steps S")
        if self.total_steps > MAX_STEPS:
            t = self.train
            length = f"train.steps={t.steps}" if t.steps else f"train.tokens={t.tokens:.3g}"
            raise ConfigError(
                f"{length} makes {self.total_steps:.3g} steps of {self.tokens_per_step} tokens, more than a "
                f"run can count ({MAX_STEPS:,}: the step counter is an int32); ask for fewer"
            )
        _within("checkpoint_every", self.checkpoint_every, 0, MAX_STEPS)
        _within("keep_checkpoints", self.keep_checkpoints, 1, math.inf)
        return self

    @property
    def tokens_per_step(self) -> int:
        return self.train.batch_size * self.model.seq_len

    @property
    def total_steps(self) -> int:
        if self.train.steps:
            return self.train.steps
        return max(1, -(-self.train.tokens // self.tokens_per_step))  # ceil

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Stable hash of everything that decides the result (seed included; not the mesh or
        checkpoint cadence, which change where and how, not what, is computed; nor the number of
        micro-batches, which computes the same update in pieces; nor the peak MFU divides by)."""
        d = self.to_dict()
        for key in ("mesh", "checkpoint_every", "keep_checkpoints"):
            d.pop(key)
        for key in ("attn_impl", "remat"):  # how attention runs and what is recomputed, not what
            d["model"].pop(key)
        d["train"].pop("microbatches")
        d["train"].pop("peak_flops")  # what MFU is measured against, not what is computed
        for key in HASHED_WHEN_SET:  # fields added later: at their defaults, earlier run IDs stay valid
            if d["data"][key] == getattr(DataConfig, key):
                d["data"].pop(key)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# data fields that enter RunConfig.hash() only when set away from their defaults, so that a study
# trained before they existed keeps its run IDs (and resumes, rather than retrains) after an upgrade
HASHED_WHEN_SET = ("copy_mix", "copy_len", "copy_alphabet", "copy_gap", "copy_distractors")


def _choice(key: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(allowed)}")


def _positive(key: str, value) -> None:
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{key} must be a positive finite number, got {value}")


def _float32(key: str, value, *, positive: bool = False) -> None:
    """A finite value that float32, the precision training computes in, holds without overflow
    (1e308 would become inf) or underflow to 0 (1e-300 would); `positive`: also > 0."""
    size = abs(value) if isinstance(value, (int, float)) else math.nan
    if not (size <= F32_MAX and (size == 0 or size >= F32_TINY)) or (positive and not value > 0):
        kind, zero = ("positive ", "") if positive else ("", "0 or ")
        raise ConfigError(
            f"{key}={value} is not a {kind}float32 number ({zero}magnitude {F32_TINY:.3g} to {F32_MAX:.3g}; "
            "training computes in float32)"
        )


def _within(key: str, value, lo, hi, *, open_lo: bool = False, open_hi: bool = False) -> None:
    """lo <= value <= hi (strict at an open end), and finite."""
    ok = (
        (value > lo if open_lo else value >= lo)
        and (value < hi if open_hi else value <= hi)
        and math.isfinite(value)
    )
    if not ok:
        interval = f"{'(' if open_lo else '['}{lo}, {hi}{')' if open_hi else ']'}"
        raise ConfigError(f"{key}={value} must lie in {interval}")


# The attention kernel a model config runs (`model.attn_impl`): the rule lives here, in the core, so that
# `lab.memory` can read it without importing the model; `lab.model.attention` holds the kernels.
ATTN_IMPLS = ("auto", "xla", "cudnn", "chunked")


def resolve_impl(impl: str, dtype: str, head_dim: int) -> str:
    """The kernel `model.attn_impl` runs: auto = cudnn on an NVIDIA GPU when its fused kernel takes
    the dtype and head dim, chunked on a CPU (where the softmax's memory passes, not its matmuls,
    bound dense attention), else xla. An explicit cudnn where it cannot run is a ConfigError."""
    if impl not in ATTN_IMPLS:
        raise ConfigError(f"model.attn_impl={impl!r} is not one of {', '.join(ATTN_IMPLS)}")
    import jax

    gpu = _nvidia_gpu()
    fits = dtype == "bfloat16" and head_dim % 8 == 0 and head_dim <= 128
    if impl == "auto":
        return "cudnn" if gpu and fits else "chunked" if jax.default_backend() == "cpu" else "xla"
    if impl == "cudnn" and not (gpu and fits):
        raise ConfigError(
            "model.attn_impl=cudnn needs an NVIDIA GPU, model.dtype=bfloat16 and a head dim "
            f"that is a multiple of 8 up to 128 (here: {jax.default_backend()}, {dtype}, {head_dim})"
        )
    return impl


def model_impl(model) -> str:
    """The kernel a ModelConfig's attention runs (`model.attn_impl`, `auto` resolved); runs record it."""
    return resolve_impl(model.attn_impl, model.dtype, model.head_dim)


def _nvidia_gpu() -> bool:
    import jax

    device = jax.devices()[0]
    return device.platform == "gpu" and "rocm" not in str(getattr(device.client, "platform_version", "")).lower()
