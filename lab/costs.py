"""What a model costs: parameter counts four ways and training FLOPs per token, from its config.

This is the one place these numbers are defined; every log line, result row and study grid
uses them. Conventions:

* `params_embedding`: the token embedding (V·D) plus a learned position table (T·D) if any.
* `params_head`: the untied output projection (D·V); 0 when the head is tied to the embedding.
* `params_non_embedding`: everything else — attention, MLP and norm weights (Kaplan's N).
* `params_total`: the sum of the three.

FLOPs are per *trained* token (one multiply-add = 2 FLOPs), forward + backward = 3 × forward:

* `flops_exact`: every matmul of the forward pass — Q/K/V/O projections, the attention score
  (QKᵀ) and value (AV) products, the MLP and the output head — × 3. Attention counts the (query,
  key) pairs the kernel computes (`score_pairs`, which `lab.model.attention` evaluates
  blockwise), 4·H·E FLOPs each: dense attention the full T×T square, *not* halved for
  causality, because the masked implementation computes every entry (that is also what XLA
  counts); a sliding window W with g global tokens, evaluated blockwise, T_W·(W_eff + g) + g·T
  pairs, where T_W = T rounded up to a multiple of W, W_eff = 2W
  (causal: the previous key block and its own) or 3W (bidirectional: both neighbours), and g·T
  are the global query rows — ∝ T·(W_eff + g), not T². Elementwise work (softmax, masks, norms,
  activations, the optimizer update) is excluded; it is a few percent for tiny models.
* `flops_6n`: 6 · params_non_embedding (Kaplan et al. 2020).
* `flops_6n_total`: 6 · params_total (Hoffmann et al. 2022 count all parameters).
* `flops_deepseek`: 72·L·D² + 12·L·D·T, DeepSeek LLM's M (non-embedding, attention included).

Encoder-decoder (`arch="encdec"`, objective in `lab.model.objectives`): a window of seq_len = T tokens
is read as S = T // 2 source tokens (encoder) and T - S target tokens (decoder); a *trained token*
is any of these T, so per-token figures × the run's tokens (batch × seq_len per step) are the
run's totals, as for the other architectures (the loss averages over the T - S decoder
predictions). `flops_exact` is the window's forward matmuls / T, × 3: encoder layers on S tokens
with S×S attention (bidirectional window rule); decoder layers on T - S tokens with (T-S)×(T-S)
self-attention (causal window rule) and full (T-S)×S cross-attention, whose key/value
projections act on the S encoder outputs; the head on the T - S decoder tokens only.
Parameters add the encoder's final norm and each decoder layer's cross-attention (Q/K/V/O)
and its norm. `flops_6n` keeps 6·N, which for encdec is ~2× the real cost (each token passes
through one of the two stacks); `flops_deepseek` takes L = encoder + decoder layers.

MFU figures in this project divide the achieved `flops_exact` rate by the hardware peak.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from lab.config import ModelConfig


@dataclass(frozen=True)
class Costs:
    params_non_embedding: int
    params_embedding: int
    params_head: int
    params_total: int
    flops_exact: float  # training FLOPs per token
    flops_6n: float
    flops_6n_total: float
    flops_deepseek: float
    flops_attention: float  # the attention-score part of flops_exact (QKᵀ and AV, × 3)
    flops_head: float  # the output-head part of flops_exact (× 3)

    def as_dict(self) -> dict:
        """Parameter counts and training FLOPs per token, by field name (config.json's `costs`)."""
        return asdict(self)

    def totals(self, tokens: int) -> dict:
        """The result.json fields: parameter counts, and FLOPs for `tokens` trained tokens."""
        return {
            "params_non_embedding": self.params_non_embedding,
            "params_embedding": self.params_embedding,
            "params_head": self.params_head,
            "params_total": self.params_total,
            "tokens": int(tokens),
            "flops_exact": self.flops_exact * tokens,
            "flops_6n": self.flops_6n * tokens,
            "flops_6n_total": self.flops_6n_total * tokens,
            "flops_deepseek": self.flops_deepseek * tokens,
        }


def blockwise_keys(T: int, window: int, global_tokens: int, causal: bool) -> int:
    """Keys C one query block reads (neighbour blocks of W plus the g global columns), or 0 when
    dense attention reads fewer (no window, or the window spans the sequence)."""
    if not window:
        return 0
    C = (2 if causal else 3) * window + global_tokens
    return C if C < T else 0


def score_pairs(T: int, S: int, *, causal: bool, window: int = 0, global_tokens: int = 0) -> int:
    """(query, key) score pairs computed for one sequence of self-attention (S == T) or cross-
    attention (always dense): T·S dense; blockwise ceil(T/W)·W·C + g·T (the global rows)."""
    C = blockwise_keys(T, window, global_tokens, causal) if S == T else 0
    if not C:
        return T * S
    return math.ceil(T / window) * window * C + global_tokens * T


def _layer_params(cfg: ModelConfig, cross: bool) -> tuple[int, int]:
    """(matmul weights, norm weights) of one block."""
    D, E, H, K, F = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.kv_heads, cfg.ffn_dim
    attn = 2 * D * H * E + 2 * D * K * E  # wq, wo; wk, wv
    mlp = (3 if cfg.mlp == "swiglu" else 2) * D * F
    norm = (2 if cfg.norm == "layernorm" else 1) * D
    n_attn = 2 if cross else 1
    return n_attn * attn + mlp, (n_attn + 1) * norm


def _encdec_forward(cfg: ModelConfig) -> tuple[int, float, float, float]:
    """(non-embedding params, forward matmul FLOPs, attention part, head part) per trained token."""
    D, T, V, HE = cfg.d_model, cfg.seq_len, cfg.vocab_size, cfg.n_heads * cfg.head_dim
    S, Tt, Le, Ld = T // 2, T - T // 2, cfg.n_layers, cfg.dec_layers
    norm = (2 if cfg.norm == "layernorm" else 1) * D
    enc_matmul, enc_norms = _layer_params(cfg, cross=False)
    dec_matmul, dec_norms = _layer_params(cfg, cross=True)
    cross_kv = 2 * D * cfg.kv_heads * cfg.head_dim  # applied to the S encoder outputs
    non_embedding = Le * (enc_matmul + enc_norms) + Ld * (dec_matmul + dec_norms) + 2 * norm  # 2 final norms
    sparse = dict(window=cfg.attn_window, global_tokens=cfg.attn_global_tokens)
    enc_pairs = score_pairs(S, S, causal=False, **sparse)
    dec_pairs = score_pairs(Tt, Tt, causal=True, **sparse) + Tt * S
    attention = 4 * HE * (Le * enc_pairs + Ld * dec_pairs)  # per window
    head = 2 * D * V * Tt
    matmuls = 2 * Le * enc_matmul * S + 2 * Ld * ((dec_matmul - cross_kv) * Tt + cross_kv * S)
    return non_embedding, (matmuls + attention + head) / T, attention / T, head / T


def model_costs(cfg: ModelConfig) -> Costs:
    D, L, T, V = cfg.d_model, cfg.n_layers, cfg.seq_len, cfg.vocab_size
    embedding = V * D + (T * D if cfg.pos_encoding == "learned" else 0)
    head = 0 if cfg.tie_embeddings else D * V
    if cfg.arch == "encdec":
        L = cfg.n_layers + cfg.dec_layers
        non_embedding, forward, attention, head_flops = _encdec_forward(cfg)
    else:
        norm = (2 if cfg.norm == "layernorm" else 1) * D
        matmul, norms = _layer_params(cfg, cross=False)
        non_embedding = L * (matmul + norms) + norm  # + final norm
        pairs = score_pairs(
            T, T, causal=cfg.arch == "decoder", window=cfg.attn_window, global_tokens=cfg.attn_global_tokens
        )
        attention = L * 2 * 2 * pairs / T * cfg.n_heads * cfg.head_dim  # QKᵀ and AV, per token
        head_flops = 2 * D * V
        forward = 2 * L * matmul + attention + head_flops
    return Costs(
        params_non_embedding=non_embedding,
        params_embedding=embedding,
        params_head=head,
        params_total=non_embedding + embedding + head,
        flops_exact=3.0 * forward,
        flops_6n=6.0 * non_embedding,
        flops_6n_total=6.0 * (non_embedding + embedding + head),
        flops_deepseek=72.0 * L * D * D + 12.0 * L * D * T,
        flops_attention=3.0 * attention,
        flops_head=3.0 * head_flops,
    )


# ----------------------------------------------------------------------------- device peaks

# Nominal dense peaks per device, FLOP/s, by the model's compute dtype (model.dtype), for MFU =
# flops_exact-rate / (peak × devices). NVIDIA's Hopper datasheets print tensor-core figures "with
# sparsity": the dense figure is half of it. float32 matmuls run on TF32 tensor cores under JAX's
# default precision on these GPUs (docs.jax.dev, "Matmul precision": "TF32 on recent GPUs"), so
# float32 uses the TF32 dense figure, not the CUDA-core FP32 one (H100 SXM: 67 TFLOP/s), which a
# default-precision run exceeds. Matched against jax's device_kind, first hit wins; other devices
# (CPUs, TPUs) have no entry: `--set train.peak_flops=F` gives one.
NOMINAL_PEAKS = (
    (
        "H200 NVL",
        835e12,
        417.5e12,
        "NVIDIA H200 NVL datasheet: BF16 1,671 / TF32 835 TFLOPS with sparsity, halved",
    ),
    (
        "H100 NVL",
        835e12,
        417.5e12,
        "NVIDIA H100 NVL datasheet: BF16 1,671 / TF32 835 TFLOPS with sparsity, halved",
    ),
    (
        "H100 PCIe",
        756e12,
        378e12,
        "NVIDIA H100 PCIe datasheet: BF16 1,513 / TF32 756 TFLOPS with sparsity, halved",
    ),
    ("H200", 989e12, 494.5e12, "NVIDIA H200 SXM datasheet: BF16 1,979 / TF32 989 TFLOPS with sparsity, halved"),
    ("H100", 989e12, 494.5e12, "NVIDIA H100 SXM datasheet: BF16 1,979 / TF32 989 TFLOPS with sparsity, halved"),
    ("A100", 312e12, 156e12, "NVIDIA A100 datasheet: BF16 312 / TF32 156 TFLOPS dense"),
)


def nominal_peak(device_kind: str, dtype: str = "bfloat16") -> dict | None:
    """{"flops_per_s", "dtype", "source"}: one device's nominal dense peak for a compute dtype
    (bfloat16 and float16 share the tensor-core rate; float32 is TF32), else None."""
    for key, half, tf32, source in NOMINAL_PEAKS:
        if key.lower() in device_kind.lower():
            flops = tf32 if dtype == "float32" else half
            return {"flops_per_s": flops, "dtype": dtype, "source": source}
    return None


def run_peak(peak_flops: float, device_kind: str, dtype: str) -> dict | None:
    """The per-device peak a run's MFU divides by: `train.peak_flops` when set (> 0), else the
    nominal peak of the device for the dtype, else None (no MFU)."""
    if peak_flops > 0:
        return {"flops_per_s": float(peak_flops), "dtype": dtype, "source": "train.peak_flops"}
    return nominal_peak(device_kind, dtype)
