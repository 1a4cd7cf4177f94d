"""The packed step: K runs of one shape trained as one `jax.vmap`ped, jitted step.

Members share every config field that shapes the program (model, batch, steps, schedule kind,
optimizer constants, micro-batches); what differs between them is data, passed to the step as
[K] arrays (`MEMBER_FIELDS`): the seed (parameter init and MLM masks), the peak learning rate,
the weight decay and the warmup length. Parameters and optimizer states are stacked on a leading
member axis, which goes on the `data` mesh axis when K divides it (`member_spec`).

Each member's optimizer is `lab.training.optimizer.make_optimizer`'s chain with its own values as traced
numbers (`member_tx`, `traced_schedule`), so a member's checkpoint has exactly the tree of an
unpacked run's. A member whose `active` flag is off, or whose loss is not finite, keeps its
parameters and optimizer state unchanged for that step (a diverged member stops updating while
the others go on; a member restored further ahead waits for the pack to catch up).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from lab import sharding
from lab.config import ConfigError, RunConfig
from lab.model.objectives import make_objective
from lab.model.transformer import Transformer
from lab.schedules import wsd_decay_start
from lab.training.microbatch import grads_and_loss
from lab.training.optimizer import adamw_chain, decay_mask, warmup_steps
from lab.training.state import INIT_COMPILER_OPTIONS
from lab.training.step import make_eval

MEMBER_FIELDS = ("seed", "lr", "weight_decay", "warmup_steps")  # train fields a pack's members may differ in


def pack_key(cfg: RunConfig) -> str:
    """Configs with the same key can share one packed program: equal but for MEMBER_FIELDS."""
    neutral = dataclasses.replace(cfg.train, seed=0, lr=1.0, weight_decay=0.0, warmup_steps=0)
    return dataclasses.replace(cfg, train=neutral).hash()


def check_packable(cfgs: list[RunConfig]) -> None:
    keys = {pack_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ConfigError(
            f"a pack's members must have the same shapes and steps (they differ only in "
            f"{', '.join(MEMBER_FIELDS)}); got {len(keys)} different programs"
        )


def member_values(cfgs: list[RunConfig]) -> dict:
    """The per-member data of the step, [K] numpy arrays (warmup resolved by the size policy)."""
    return {
        "seed": np.array([c.train.seed for c in cfgs], np.uint32),
        "lr": np.array([c.train.lr for c in cfgs], np.float32),
        "weight_decay": np.array([c.train.weight_decay for c in cfgs], np.float32),
        "warmup": np.array([warmup_steps(c) for c in cfgs], np.int32),
    }


def traced_schedule(kind: str, *, total_steps: int, min_ratio: float, decay_frac: float):
    """(step, peak, warmup) -> learning rate: `lab.schedules.make_schedule` with the peak and the
    warmup as traced values (the same formulas)."""
    last = max(total_steps - 1, 1)
    decay_start = wsd_decay_start(total_steps, decay_frac)
    if kind not in ("constant", "cosine", "wsd"):
        raise ValueError(f"unknown schedule {kind!r}")

    def schedule(step, peak, warmup):
        step, warmup = jnp.asarray(step, jnp.float32), jnp.maximum(jnp.asarray(warmup, jnp.float32), 0.0)
        floor = peak * min_ratio
        warm = peak * jnp.minimum(1.0, (step + 1.0) / jnp.maximum(warmup, 1.0))
        if kind == "constant":
            after = jnp.full_like(step, 1.0) * peak
        elif kind == "cosine":
            frac = jnp.clip((step - warmup) / jnp.maximum(last - warmup, 1.0), 0.0, 1.0)
            after = floor + (peak - floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        else:
            frac = jnp.clip((step - decay_start) / max(last - decay_start, 1), 0.0, 1.0)
            after = peak + (floor - peak) * frac
        return jnp.where(step < warmup, warm, after)

    return schedule


def member_tx(cfg: RunConfig, lr_fn, weight_decay):
    """`lab.training.optimizer.adamw_chain`, as `make_optimizer`'s, with a traced schedule and weight
    decay (same tree) and the same decay mask (`optimizer.decay_mask`: not the norms' scales, which
    a rank test would decay in a scanned stack, issue 22)."""
    return adamw_chain(cfg.train, lr_fn, weight_decay, decay_mask)


def schedule_of(cfg: RunConfig):
    t = cfg.train
    return traced_schedule(
        t.schedule, total_steps=cfg.total_steps, min_ratio=t.min_lr_ratio, decay_frac=t.decay_frac
    )


def make_packed_step(graphdef, cfg: RunConfig):
    """(params_K, opt_K, batch_KxBxT1, step, values_K, active_K) -> (params_K, opt_K, metrics_K)."""
    objective = make_objective(graphdef, cfg.model, z_loss=cfg.train.z_loss, mlm_prob=cfg.train.mlm_prob)
    schedule, micro = schedule_of(cfg), cfg.train.microbatches

    def member(params, opt_state, batch_BxT1, step_index, h, active):
        key = jax.random.fold_in(jax.random.key(h["seed"]), step_index)  # as lab.training.step.make_step
        example, denom = objective.prepare(batch_BxT1, key)
        grads, loss = grads_and_loss(objective, params, example, denom, micro)
        tx = member_tx(cfg, lambda count: schedule(count, h["lr"], h["warmup"]), h["weight_decay"])
        updates, new_opt = tx.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        go = active & jnp.isfinite(loss)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(go, a, b), new, old)
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "lr": schedule(step_index, h["lr"], h["warmup"]),
        }
        return keep(new_params, params), keep(new_opt, opt_state), metrics

    return jax.vmap(member, in_axes=(0, 0, 0, None, 0, 0))


def make_packed_init(cfg: RunConfig):
    """seeds_K -> stacked (params, opt_state), each member as `lab.training.step`'s init of its seed."""
    tx = member_tx(cfg, lambda count: 0.0, 0.0)  # the state's tree does not depend on the values

    def create(seed):
        model = Transformer(cfg.model, rngs=nnx.Rngs(params=jax.random.key(seed)))
        params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
        return params, tx.init(params)

    return jax.vmap(create)


def make_packed_eval(graphdef, cfg: RunConfig):
    """(params_K, val_NxBxT1) -> [K] validation losses (`lab.training.step.make_eval` per member)."""
    return jax.vmap(make_eval(graphdef, cfg), in_axes=(0, None))


def member_spec(mesh, k: int) -> P:
    """The member axis on `data` when K divides it (and data > 1), else not split."""
    data = dict(mesh.shape).get("data", 1)
    return P("data") if data > 1 and k % data == 0 else P()


def stacked_sharding(mesh, k: int) -> NamedSharding:
    return NamedSharding(mesh, member_spec(mesh, k))


def packed_batch_sharding(mesh, k: int) -> NamedSharding:
    spec = member_spec(mesh, k)
    return NamedSharding(mesh, P(*spec, None, None)) if spec else NamedSharding(mesh, P())


def compile_packed(cfg: RunConfig, graphdef, mesh, k: int):
    """(compiled packed step, jitted init, jitted eval, abstract stacked state, its shardings); the
    step is lowered from abstract shapes and compiled before any state exists, state donated."""
    member_sh, rep = stacked_sharding(mesh, k), sharding.replicated(mesh)
    init = make_packed_init(cfg)
    abstract = jax.eval_shape(init, jax.ShapeDtypeStruct((k,), jnp.uint32))
    state_sh = jax.tree.map(lambda _: member_sh, abstract)
    step = jax.jit(
        make_packed_step(graphdef, cfg),
        donate_argnums=(0, 1),
        in_shardings=(*state_sh, packed_batch_sharding(mesh, k), rep, member_sh, member_sh),
        out_shardings=(*state_sh, member_sh),
    )
    placed = lambda tree, sh: jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh), tree)
    batch = jax.ShapeDtypeStruct(
        (k, cfg.train.batch_size, cfg.model.seq_len + 1), jnp.int32, sharding=packed_batch_sharding(mesh, k)
    )
    values = placed(
        jax.eval_shape(lambda: {n: jnp.zeros(k, v.dtype) for n, v in member_values([cfg]).items()}), member_sh
    )
    step = step.lower(
        placed(abstract[0], member_sh),
        placed(abstract[1], member_sh),
        batch,
        jax.ShapeDtypeStruct((), jnp.int32, sharding=rep),
        values,
        jax.ShapeDtypeStruct((k,), jnp.bool_, sharding=member_sh),
    ).compile()
    init_fn = (
        jax.jit(init, in_shardings=member_sh, out_shardings=state_sh)
        .lower(jax.ShapeDtypeStruct((k,), jnp.uint32, sharding=member_sh))
        .compile(compiler_options=INIT_COMPILER_OPTIONS)
    )
    eval_fn = jax.jit(
        make_packed_eval(graphdef, cfg),
        in_shardings=(state_sh[0], sharding.val_sharding(mesh)),
        out_shardings=member_sh,
    )
    return step, init_fn, eval_fn, abstract, state_sh


def member_slice(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)
