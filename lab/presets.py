"""Named model presets, from one that trains in seconds on a laptop CPU upward.

Each preset is a set of ModelConfig/TrainConfig fields plus a default training length, used when
`lab train` gets neither --tokens nor --steps. Widths follow head dim 16–64 and d_ff = 4·d.
"""

from __future__ import annotations

import dataclasses

from lab.config import ConfigError, ModelConfig, RunConfig, TrainConfig

PRESETS: dict[str, dict] = {
    # name: model fields, train fields, default tokens
    "tiny": dict(
        model=dict(d_model=64, n_layers=2, n_heads=4, seq_len=128),
        train=dict(batch_size=8, lr=3e-3),
        tokens=300 * 8 * 128,
    ),
    "small": dict(
        model=dict(d_model=128, n_layers=4, n_heads=4, seq_len=256),
        train=dict(batch_size=16, lr=2e-3),
        tokens=2_000 * 16 * 256,
    ),
    "medium": dict(
        model=dict(d_model=256, n_layers=6, n_heads=8, seq_len=256),
        train=dict(batch_size=32, lr=1e-3),
        tokens=5_000 * 32 * 256,
    ),
    "base": dict(
        model=dict(d_model=512, n_layers=8, n_heads=8, seq_len=512),
        train=dict(batch_size=64, lr=6e-4),
        tokens=10_000 * 64 * 512,
    ),
    "gpt2-small": dict(
        model=dict(d_model=768, n_layers=12, n_heads=12, seq_len=1024, tie_embeddings=True),
        train=dict(batch_size=256, lr=6e-4),
        tokens=20 * 124_000_000,
    ),
    # ~1.0B parameters (20 x 50.3M per layer; byte vocabulary), 0.5M tokens per step: on one GPU
    # with train.microbatches (lab bench --fit-batch picks the fewest that fit)
    "1b": dict(
        model=dict(d_model=2048, n_layers=20, n_heads=16, seq_len=2048),
        train=dict(batch_size=256, lr=3e-4),
        tokens=20 * 1_007_000_000,
    ),
}


def preset_config(name: str) -> tuple[RunConfig, int]:
    """The RunConfig of a preset and its default token count."""
    if name not in PRESETS:
        raise ConfigError(f"unknown model preset {name!r} (choose from {', '.join(PRESETS)})")
    p = PRESETS[name]
    cfg = RunConfig(model=ModelConfig(**p["model"]), train=TrainConfig(**p["train"]))
    return cfg, p["tokens"]


def describe() -> str:
    from lab.costs import model_costs

    lines = []
    for name in PRESETS:
        cfg, tokens = preset_config(name)
        m = dataclasses.replace(cfg.model, vocab_size=256)
        c = model_costs(m)
        lines.append(
            f"{name:>10}: d_model={m.d_model} n_layers={m.n_layers} n_heads={m.n_heads} seq_len={m.seq_len}"
            f" batch={cfg.train.batch_size} · {c.params_total / 1e6:.2f}M params (byte vocab)"
            f" · default {tokens:,} tokens"
        )
    return "\n".join(lines)
