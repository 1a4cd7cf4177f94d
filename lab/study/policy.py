"""Shape and hyper-parameter policy: from a model size to a full run config, in one place.

A policy is a function `(cfg: RunConfig, cell: CellInfo) -> RunConfig`; a study uses
`default_policy` unless it passes its own. The rules, stated:

* **Shape** (`shape_for_width`): depth grows with width at a fixed aspect ratio,
  n_layers = max(2, round(d_model / aspect)); heads of a fixed size, n_heads = d_model / head_dim;
  MLP width 4·d_model. Defaults aspect = 32, head_dim = 16 suit the CPU-sized models of the
  smoke and tiny studies; GPT-3's family has aspect 64–128 and head_dim 64–128.
* **Learning rate** (`width_scaled_lr`): μP-style for Adam — hidden-layer updates shrink as 1/width —
  applied to the whole model: η(d) = η_base · min(1, d_base / d), from a rate tuned at d_base.
  The alternative `deepseek_lr_batch` uses DeepSeek LLM's fitted laws η_opt(C) = 0.3118·C^-0.125,
  B_opt(C) = 0.2920·C^0.3271 tokens (C in FLOPs, their M·D convention; we pass flops_exact).
* **The tuned frontier** (`Study(lr_law="FILE")`, lab.study.lr_law): after the policy, every cell's
  peak rate is replaced by a fitted η_opt(N, D) = c·N^a_N·D^b_D — the JSON of `lab fit DIR --method lr
  --json` (the CPU studies use experiments/lr_law_cpu.json from experiments/lr_sweep_cpu.py). Measured on
  the CPU grid: the μP-scaled 3e-3 sat 3-6x below the tuned optima and cost small models up to 9% of loss.
* **Warmup**: as many tokens as the model has parameters, at most a quarter of the run
  (`lab.schedules.warmup_policy`); studies with WSD branches fix it per size so that a branch and
  an independent run share the schedule exactly.
* **Schedule horizon**: every cell's schedule ends at its own token count (`train.tokens`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lab.config import ConfigError, RunConfig


@dataclass(frozen=True)
class CellInfo:
    """What a policy may look at: the size's own fields, the cell's budget and tokens."""

    size: dict
    tokens: int
    budget_flops: float | None = None


def shape_for_width(d_model: int, *, aspect: int = 32, head_dim: int = 16) -> dict:
    if d_model % head_dim:
        raise ConfigError(f"d_model={d_model} is not a multiple of head_dim={head_dim}")
    return {
        "d_model": d_model,
        "n_layers": max(2, round(d_model / aspect)),
        "n_heads": d_model // head_dim,
        "d_ff": 4 * d_model,
    }


def width_scaled_lr(base_lr: float, base_width: int, d_model: int) -> float:
    return base_lr * min(1.0, base_width / d_model)


def deepseek_lr_batch(flops: float, seq_len: int) -> tuple[float, int]:
    """(learning rate, batch size in sequences) from DeepSeek LLM's compute-optimal fits."""
    lr = 0.3118 * flops**-0.1250
    batch_tokens = 0.2920 * flops**0.3271
    return lr, max(1, round(batch_tokens / seq_len))


def default_policy(
    cfg: RunConfig, cell: CellInfo, *, base_width: int = 64, aspect: int = 32, head_dim: int = 16
) -> RunConfig:
    """Shape from width unless the size gives it; learning rate scaled from the base config's."""
    size = dict(cell.size)
    if "d_model" in size and not {"n_layers", "n_heads"} & size.keys():
        size = {**shape_for_width(size["d_model"], aspect=aspect, head_dim=head_dim), **size}
    model = dataclasses.replace(cfg.model, **size)
    lr = width_scaled_lr(cfg.train.lr, base_width, model.d_model)
    return dataclasses.replace(cfg, model=model, train=dataclasses.replace(cfg.train, lr=lr))


def deepseek_policy(cfg: RunConfig, cell: CellInfo) -> RunConfig:
    """Shape as the default; learning rate and batch size from DeepSeek's η_opt(C), B_opt(C)."""
    cfg = default_policy(cfg, cell)
    if cell.budget_flops is None:
        raise ConfigError("deepseek_policy needs FLOP budgets (an IsoFLOP study)")
    lr, batch = deepseek_lr_batch(cell.budget_flops, cfg.model.seq_len)
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=lr, batch_size=batch))
