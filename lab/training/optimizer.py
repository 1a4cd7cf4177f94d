"""The optimizer of a run: AdamW (decoupled weight decay on matmul weights and embeddings, not on
norms) behind optional global-norm clipping, on the learning-rate schedule of `lab.schedules`
with the run's warmup (given, or the size policy's).
"""

from __future__ import annotations

import jax
import optax

from lab.config import RunConfig, TrainConfig
from lab.costs import model_costs
from lab.schedules import make_schedule, schedule_constants, warmup_policy


def warmup_steps(cfg: RunConfig) -> int:
    if cfg.train.warmup_steps >= 0:
        return min(cfg.train.warmup_steps, cfg.total_steps)
    return warmup_policy(model_costs(cfg.model).params_total, cfg.tokens_per_step, cfg.total_steps)


def decays(path, p) -> bool:
    """Whether AdamW decays this parameter: matmul weights and embeddings, not norms (whose scales
    are [L, D] in a scanned stack, so their rank alone does not tell)."""
    return p.ndim >= 2 and not any("norm" in str(getattr(k, "key", k)) for k in path)


def decay_mask(params):
    """The tree of `decays` over `params`: AdamW's mask, for single and packed runs alike."""
    return jax.tree_util.tree_map_with_path(decays, params)


def adamw_chain(t: TrainConfig, learning_rate, weight_decay, decay_mask) -> optax.GradientTransformation:
    """Clipping (if `t.grad_clip` > 0), then AdamW with `t`'s constants; `learning_rate` a schedule
    (step -> rate), `decay_mask` params -> a tree of bools (which parameters decay)."""
    return optax.chain(
        optax.clip_by_global_norm(t.grad_clip) if t.grad_clip > 0 else optax.identity(),
        optax.adamw(learning_rate, b1=t.beta1, b2=t.beta2, eps=t.eps, weight_decay=weight_decay, mask=decay_mask),
    )


def _schedule_settings(cfg: RunConfig) -> dict:
    t = cfg.train
    return dict(
        peak=t.lr,
        total_steps=cfg.total_steps,
        warmup_steps=warmup_steps(cfg),
        min_ratio=t.min_lr_ratio,
        decay_frac=t.decay_frac,
    )


def schedule_args(cfg: RunConfig) -> dict:
    """The run's learning-rate schedule as `lab.schedules.schedule_constants` (peak, length, warmup:
    what differs between the runs of one shape), float32 scalars."""
    return schedule_constants(cfg.train.schedule, **_schedule_settings(cfg))


def make_tx(cfg: RunConfig, schedule) -> optax.GradientTransformation:
    """The run's optimizer on `schedule` (step -> rate; traced or not)."""
    return adamw_chain(cfg.train, schedule, cfg.train.weight_decay, decay_mask)


def make_optimizer(cfg: RunConfig):
    """(optimizer, schedule) of a run."""
    schedule = make_schedule(cfg.train.schedule, **_schedule_settings(cfg))
    return make_tx(cfg, schedule), schedule
