"""Learning-rate schedules whose horizon is the run's own length, and the warmup policy.

All schedules are pure functions of the step (jnp-traceable), so a run resumed at step s gets
exactly the learning rate an uninterrupted run had, and a WSD cooldown branch that starts from
a stable-phase checkpoint of a longer run follows the same curve as an independent run.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
import numpy as np


def warmup_policy(params_total: int, tokens_per_step: int, total_steps: int) -> int:
    """Warmup of as many tokens as the model has parameters (Porian et al. 2024, "correcting
    warmup"), at least one step and at most a quarter of the run."""
    steps = math.ceil(params_total / tokens_per_step)
    return int(max(1, min(steps, total_steps // 4)))


SCHEDULE_CONSTANTS = ("peak", "floor", "scale", "warmup", "warmup_inv", "start", "span_inv")


def schedule_constants(
    kind: str, *, peak: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.1, decay_frac: float = 0.2
) -> dict:
    """The run's numbers in `runtime_schedule`'s formulas, float32 scalars (numpy), computed on the
    host as they were when they were Python constants of the traced formulas (a double rounded to
    float32 once): a step that takes them as arguments is one program for every peak and length,
    and computes the same floats bit for bit. Divisions by the warmup and by the decay's span are
    multiplications by their float32 reciprocals: XLA rewrote a division by a constant so, and a
    division by an argument would round differently (a different run)."""
    if kind not in ("constant", "cosine", "wsd"):
        raise ValueError(f"unknown schedule {kind!r}")
    floor = peak * min_ratio
    warmup = max(int(warmup_steps), 0)
    last = max(total_steps - 1, 1)
    start = warmup if kind == "cosine" else wsd_decay_start(total_steps, decay_frac)
    values = {
        "peak": peak,
        "floor": floor,
        "scale": (peak - floor) * 0.5 if kind == "cosine" else floor - peak,
        "warmup": warmup,
        "warmup_inv": _reciprocal(max(warmup, 1)),
        "start": start,
        "span_inv": _reciprocal(max(last - start, 1)),
    }
    return {k: np.float32(v) for k, v in values.items()}


def _reciprocal(n: int) -> np.float32:
    """1 / n as XLA folds it: a float32 division."""
    return np.float32(1.0) / np.float32(n)


def runtime_schedule(kind: str):
    """(step, constants) -> learning rate, `constants` as `schedule_constants` gives them (traced or not).

    wsd:      linear warmup, constant at `peak`, linear decay to `peak * min_ratio` over the
              final `decay_frac` of the run (Hu et al. 2024, "MiniCPM").
    cosine:   linear warmup, then half a cosine down to `peak * min_ratio` at the last step.
    constant: linear warmup, then `peak`.
    """
    if kind not in ("constant", "cosine", "wsd"):
        raise ValueError(f"unknown schedule {kind!r}")

    def schedule(step, c):
        step = jnp.asarray(step, jnp.float32)
        warm = c["peak"] * jnp.minimum(1.0, (step + 1.0) * c["warmup_inv"])
        if kind == "constant":
            after = jnp.broadcast_to(c["peak"], step.shape)
        else:
            frac = jnp.clip((step - c["start"]) * c["span_inv"], 0.0, 1.0)
            if kind == "cosine":
                after = c["floor"] + c["scale"] * (1.0 + jnp.cos(jnp.pi * frac))
            else:
                after = c["peak"] + c["scale"] * frac
        return jnp.where(step < c["warmup"], warm, after)

    return schedule


def make_schedule(
    kind: str, *, peak: float, total_steps: int, warmup_steps: int, min_ratio: float = 0.1, decay_frac: float = 0.2
):
    """step -> learning rate (steps 0-based; the last step is total_steps - 1): `runtime_schedule`
    with this run's constants."""
    constants = schedule_constants(
        kind,
        peak=peak,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        min_ratio=min_ratio,
        decay_frac=decay_frac,
    )
    return functools.partial(runtime_schedule(kind), c=constants)


def wsd_decay_start(total_steps: int, decay_frac: float) -> int:
    """First step of the WSD decay phase; a cooldown branch of this length starts here."""
    return int(round(total_steps * (1.0 - decay_frac)))
