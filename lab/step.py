"""The training step and the state it runs on: optimizer, schedule, loss, evaluation, and
parameters + optimizer state created directly in their shardings.

The step is pure: (params, opt_state, batch, step) -> (params, opt_state, metrics). Parameters
are a pure dict split from the NNX model once; the step merges them back inside the trace, so
the hot loop does no Python-side work beyond feeding the next batch.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lab import sharding
from lab.config import RunConfig
from lab.costs import model_costs
from lab.data import Corpus
from lab.model import Transformer
from lab.objectives import make_loss_fn
from lab.schedules import make_schedule, warmup_policy


def resolve_config(cfg: RunConfig, corpus: Corpus) -> RunConfig:
    """Fill in what the corpus decides (vocabulary size) and check the whole config."""
    cfg = dataclasses.replace(cfg, model=cfg.model.with_corpus_vocab(corpus.vocab_size))
    cfg.validate()
    return cfg


def warmup_steps(cfg: RunConfig) -> int:
    if cfg.train.warmup_steps >= 0:
        return min(cfg.train.warmup_steps, cfg.total_steps)
    return warmup_policy(model_costs(cfg.model).params_total, cfg.tokens_per_step, cfg.total_steps)


def make_optimizer(cfg: RunConfig):
    t = cfg.train
    schedule = make_schedule(
        t.schedule, peak=t.lr, total_steps=cfg.total_steps, warmup_steps=warmup_steps(cfg),
        min_ratio=t.min_lr_ratio, decay_frac=t.decay_frac,
    )
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # no decay on norms
    tx = optax.chain(
        optax.clip_by_global_norm(t.grad_clip) if t.grad_clip > 0 else optax.identity(),
        optax.adamw(schedule, b1=t.beta1, b2=t.beta2, eps=t.eps, weight_decay=t.weight_decay, mask=decay_mask),
    )
    return tx, schedule


def _loss_fn(graphdef, cfg: RunConfig):
    return make_loss_fn(graphdef, cfg.model, z_loss=cfg.train.z_loss, mlm_prob=cfg.train.mlm_prob)


def make_step(graphdef, tx, schedule, cfg: RunConfig):
    loss_fn = _loss_fn(graphdef, cfg)
    base_key = jax.random.key(cfg.train.seed)

    def step(params, opt_state, batch_BxT1, step_index):
        key = jax.random.fold_in(base_key, step_index)  # MLM masks: a function of (seed, step)
        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_BxT1, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(step_index)}
        return params, opt_state, metrics

    return step


def make_eval(graphdef, cfg: RunConfig):
    loss_fn = _loss_fn(graphdef, cfg)
    eval_key = jax.random.key(0)  # the same MLM masks at every evaluation

    def evaluate(params, val_NxBxT1):
        def body(total, indexed):
            i, batch = indexed
            return total + loss_fn(params, batch, jax.random.fold_in(eval_key, i))[1], None

        indices = jnp.arange(val_NxBxT1.shape[0])
        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (indices, val_NxBxT1))
        return total / val_NxBxT1.shape[0]

    return evaluate


def abstract_model(cfg: RunConfig):
    """(graphdef, abstract parameter state) without allocating anything."""
    abstract = nnx.eval_shape(lambda: Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed)))
    return nnx.split(abstract, nnx.Param)


def _create(cfg: RunConfig, tx):
    def create():
        model = Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed))
        params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
        return params, tx.init(params)

    return create


def state_shardings(cfg: RunConfig, mesh, tx):
    """(param shardings, optimizer-state shardings, abstract (params, opt_state)) — no allocation.
    Adam's moments take their parameter's sharding; scalars (step counts) are replicated."""
    param_sh = sharding.param_shardings(abstract_model(cfg)[1], mesh)
    abstract = jax.eval_shape(_create(cfg, tx))
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract[1], param_sh,
                                   transform_non_params=lambda _: sharding.replicated(mesh))
    return param_sh, opt_sh, abstract


def init_state(cfg: RunConfig, mesh):
    """Parameters and optimizer state, created directly in their shardings."""
    graphdef = abstract_model(cfg)[0]
    tx, schedule = make_optimizer(cfg)
    param_sh, opt_sh, _ = state_shardings(cfg, mesh, tx)
    params, opt_state = jax.jit(_create(cfg, tx), out_shardings=(param_sh, opt_sh))()
    return graphdef, tx, schedule, params, opt_state, (param_sh, opt_sh)


def sharded_rows(sharding_, shape, make_rows):
    """A global array whose addressable shards are built by `make_rows(row_range)` on this host:
    each process generates only the batch rows its devices hold."""
    def shard(index):
        rows = index[0]
        return make_rows(range(rows.start or 0, rows.stop if rows.stop is not None else shape[0]))[:, index[1]]

    return jax.make_array_from_callback(shape, sharding_, shard)


def memory_report(compiled, params, opt_state) -> dict:
    """Bytes per device of the compiled step (XLA's memory analysis) and of the live state."""
    report = {"param_bytes_per_device": sharding.bytes_per_device(params),
              "opt_state_bytes_per_device": sharding.bytes_per_device(opt_state)}
    try:
        mem = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        mem = None
    for key in ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
                "generated_code_size_in_bytes", "alias_size_in_bytes"):
        if mem is not None and hasattr(mem, key):
            report[f"step_{key}"] = int(getattr(mem, key))
    return report
