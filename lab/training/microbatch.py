"""Micro-batching: a batch split into K sequential micro-batches (each spread over the
data-parallel devices like a whole batch), and the gradients and loss of the whole batch's mean
objective summed over them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lab import sharding
from lab.config import ConfigError, RunConfig


def check_batch_split(cfg: RunConfig, mesh_shape: dict[str, int]) -> None:
    """Each of the K micro-batches is split over the data-parallel devices like a whole batch:
    batch_size must be divisible by K × (data · fsdp)."""
    K, dp = cfg.train.microbatches, mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1)
    if cfg.train.batch_size % (K * dp):
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by train.microbatches={K} "
            f"x {dp} data-parallel devices (mesh data x fsdp)"
        )


def micro_split(x_BxR, K: int):
    """[B, ...] -> [K, B/K, ...]: micro-batch k holds rows k, K+k, 2K+k, … so that every device's
    contiguous block of the batch holds an equal share of each micro-batch (no data moves)."""
    B = x_BxR.shape[0]
    x_KxMxR = jnp.swapaxes(x_BxR.reshape(B // K, K, *x_BxR.shape[1:]), 0, 1)
    return sharding.constrain(x_KxMxR, (None, "batch") + (None,) * (x_BxR.ndim - 1))


def summed_over_micro(fn, example, K: int, init):
    """Σ_k fn(micro-batch k) for K sequential micro-batches of `example` (a lax.scan; the sums are
    a pytree shaped like `init`); K = 1: fn(example) itself."""
    if K == 1:
        return fn(example)

    def body(acc, micro):
        return jax.tree.map(jnp.add, acc, fn(micro)), None

    total, _ = jax.lax.scan(body, init, jax.tree.map(lambda x: micro_split(x, K), example))
    return total


def grads_and_loss(objective, params, example, denom, K: int, param_sh=None):
    """(gradients, cross-entropy) of the mean objective over the whole batch, in K micro-batches:
    each contributes (its sums) / (the whole batch's token count), gradients summed in float32
    in the parameters' sharding, then cast back to the parameters' dtype."""

    def mean_loss(params_, ex):
        total, nll = objective.sums(params_, ex)
        return total / denom, nll / denom

    def micro(ex):
        (_, nll), g = jax.value_and_grad(mean_loss, has_aux=True)(params, ex)
        return (g if K == 1 else jax.tree.map(lambda a: a.astype(jnp.float32), g)), nll

    zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
    if param_sh is not None and K > 1:
        zeros = jax.lax.with_sharding_constraint(zeros, param_sh)
    grads, loss = summed_over_micro(micro, example, K, (zeros, jnp.zeros((), jnp.float32)))
    return jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params), loss
