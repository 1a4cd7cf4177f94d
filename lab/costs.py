"""What a model costs: parameter counts four ways and training FLOPs per token, from its config.

This is the one place these numbers are defined; every log line, result row and study grid
uses them. Conventions:

* `params_embedding`: the token embedding (V·D) plus a learned position table (T·D) if any.
* `params_head`: the untied output projection (D·V); 0 when the head is tied to the embedding.
* `params_non_embedding`: everything else — attention, MLP and norm weights (Kaplan's N).
* `params_total`: the sum of the three.

FLOPs are per *trained* token (one multiply-add = 2 FLOPs), forward + backward = 3 × forward:

* `flops_exact`: every matmul of the forward pass — Q/K/V/O projections, the attention score
  (QKᵀ) and value (AV) products, the MLP and the output head — × 3. Attention is counted over
  the full T×T square, *not* halved for causality, because the dense masked implementation
  computes every entry (that is also what XLA counts). Elementwise work (softmax, norms,
  activations, the optimizer update) is excluded; it is a few percent for tiny models.
* `flops_6n`: 6 · params_non_embedding (Kaplan et al. 2020).
* `flops_6n_total`: 6 · params_total (Hoffmann et al. 2022 count all parameters).
* `flops_deepseek`: 72·L·D² + 12·L·D·T, DeepSeek LLM's M (non-embedding, attention included).

MFU figures in this project divide the achieved `flops_exact` rate by the hardware peak.
"""

from __future__ import annotations

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

    def per_token(self) -> dict:
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


def _layer_params(cfg: ModelConfig, cross: bool) -> tuple[int, int]:
    """(matmul weights, norm weights) of one block."""
    D, E, H, K, F = cfg.d_model, cfg.head_dim, cfg.n_heads, cfg.kv_heads, cfg.ffn_dim
    attn = 2 * D * H * E + 2 * D * K * E  # wq, wo; wk, wv
    mlp = (3 if cfg.mlp == "swiglu" else 2) * D * F
    norm = (2 if cfg.norm == "layernorm" else 1) * D
    n_attn = 2 if cross else 1
    return n_attn * attn + mlp, (n_attn + 1) * norm


def model_costs(cfg: ModelConfig) -> Costs:
    D, L, T, V = cfg.d_model, cfg.n_layers, cfg.seq_len, cfg.vocab_size
    norm = (2 if cfg.norm == "layernorm" else 1) * D
    matmul, norms = _layer_params(cfg, cross=False)
    non_embedding = L * (matmul + norms) + norm  # + final norm
    embedding = V * D + (T * D if cfg.pos_encoding == "learned" else 0)
    head = 0 if cfg.tie_embeddings else D * V
    attention = L * 2 * 2 * T * cfg.n_heads * cfg.head_dim  # QKᵀ and AV, per query token
    forward = 2 * L * matmul + attention + 2 * D * V
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
        flops_head=3.0 * 2 * D * V,
    )
