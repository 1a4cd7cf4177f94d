"""Learning-rate schedules whose horizon is the run's own length, and the warmup policy.

All schedules are pure functions of the step (jnp-traceable), so a run resumed at step s gets
exactly the learning rate an uninterrupted run had, and a WSD cooldown branch that starts from
a stable-phase checkpoint of a longer run follows the same curve as an independent run.
"""

from __future__ import annotations

import math

import jax.numpy as jnp


def warmup_policy(params_total: int, tokens_per_step: int, total_steps: int) -> int:
    """Warmup of as many tokens as the model has parameters (Porian et al. 2024, "correcting
    warmup"), at least one step and at most a quarter of the run."""
    steps = math.ceil(params_total / tokens_per_step)
    return int(max(1, min(steps, total_steps // 4)))


def make_schedule(
    kind: str, *, peak: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.1, decay_frac: float = 0.2
):
    """step -> learning rate. Steps are 0-based; the last step is total_steps - 1.

    wsd:      linear warmup, constant at `peak`, linear decay to `peak * min_ratio` over the
              final `decay_frac` of the run (Hu et al. 2024, "MiniCPM").
    cosine:   linear warmup, then half a cosine down to `peak * min_ratio` at the last step.
    constant: linear warmup, then `peak`.
    """
    floor = peak * min_ratio
    warmup = max(int(warmup_steps), 0)
    last = max(total_steps - 1, 1)
    decay_start = wsd_decay_start(total_steps, decay_frac)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = peak * jnp.minimum(1.0, (step + 1.0) / max(warmup, 1))
        if kind == "constant":
            after = jnp.full_like(step, peak)
        elif kind == "cosine":
            frac = jnp.clip((step - warmup) / max(last - warmup, 1), 0.0, 1.0)
            after = floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        elif kind == "wsd":
            frac = jnp.clip((step - decay_start) / max(last - decay_start, 1), 0.0, 1.0)
            after = peak + (floor - peak) * frac
        else:
            raise ValueError(f"unknown schedule {kind!r}")
        return jnp.where(step < warmup, warm, after)

    return schedule


def wsd_decay_start(total_steps: int, decay_frac: float) -> int:
    """First step of the WSD decay phase; a cooldown branch of this length starts here."""
    return int(round(total_steps * (1.0 - decay_frac)))
