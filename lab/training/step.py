"""The training step and the state it runs on: optimizer, schedule, loss, evaluation, and
parameters + optimizer state created directly in their shardings.

The step is pure: (params, opt_state, batch, step) -> (params, opt_state, metrics). Parameters
are a pure dict split from the NNX model once; the step merges them back inside the trace, so
the hot loop does no Python-side work beyond feeding the next batch.

`compile_step(cfg, mesh)` is the one place the step is jitted and compiled — with the run's
parameter, optimizer-state and batch shardings, state donated — from abstract shapes, so the
compiled program (and XLA's memory analysis of it) exists before any state is allocated.
Training, `lab bench` and `lab study --dry-run` all run what it returns.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from lab import sharding
from lab.config import ConfigError, RunConfig
from lab.costs import model_costs
from lab.data import Corpus
from lab.model.transformer import Transformer
from lab.model.objectives import make_objective
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


def decays(path, p) -> bool:
    """Whether AdamW decays this parameter: matmul weights and embeddings, not norms (whose scales
    are [L, D] in a scanned stack, so their rank alone does not tell)."""
    return p.ndim >= 2 and not any("norm" in str(getattr(k, "key", k)) for k in path)


def make_optimizer(cfg: RunConfig):
    t = cfg.train
    schedule = make_schedule(
        t.schedule, peak=t.lr, total_steps=cfg.total_steps, warmup_steps=warmup_steps(cfg),
        min_ratio=t.min_lr_ratio, decay_frac=t.decay_frac,
    )
    decay_mask = lambda params: jax.tree_util.tree_map_with_path(decays, params)
    tx = optax.chain(
        optax.clip_by_global_norm(t.grad_clip) if t.grad_clip > 0 else optax.identity(),
        optax.adamw(schedule, b1=t.beta1, b2=t.beta2, eps=t.eps, weight_decay=t.weight_decay, mask=decay_mask),
    )
    return tx, schedule


def _objective(graphdef, cfg: RunConfig):
    return make_objective(graphdef, cfg.model, z_loss=cfg.train.z_loss, mlm_prob=cfg.train.mlm_prob)


def check_batch_split(cfg: RunConfig, mesh_shape: dict[str, int]) -> None:
    """Each of the K micro-batches is split over the data-parallel devices like a whole batch:
    batch_size must be divisible by K × (data · fsdp)."""
    K, dp = cfg.train.microbatches, mesh_shape.get("data", 1) * mesh_shape.get("fsdp", 1)
    if cfg.train.batch_size % (K * dp):
        raise ConfigError(f"train.batch_size={cfg.train.batch_size} is not divisible by train.microbatches={K} "
                          f"x {dp} data-parallel devices (mesh data x fsdp)")


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


def make_step(graphdef, tx, schedule, cfg: RunConfig, param_sh=None):
    """The pure training step; `train.microbatches` K > 1 accumulates the update's gradients over
    K sequential micro-batches (activations of B/K sequences live at once; the update is the
    full batch's). `param_sh`: the parameters' shardings, for the float32 gradient accumulator."""
    objective = _objective(graphdef, cfg)
    base_key, K = jax.random.key(cfg.train.seed), cfg.train.microbatches

    def step(params, opt_state, batch_BxT1, step_index):
        key = jax.random.fold_in(base_key, step_index)  # MLM masks: a function of (seed, step)
        example, denom = objective.prepare(batch_BxT1, key)
        grads, loss = grads_and_loss(objective, params, example, denom, K, param_sh)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(step_index)}
        return params, opt_state, metrics

    return step


def make_eval(graphdef, cfg: RunConfig):
    """The mean validation loss over a [N, B, T+1] set; each batch in `train.microbatches` pieces
    (the MLM masks of batch i are drawn for the whole batch, as in training)."""
    objective = _objective(graphdef, cfg)
    eval_key, K = jax.random.key(0), cfg.train.microbatches  # the same MLM masks at every evaluation

    def evaluate(params, val_NxBxT1):
        def body(total, indexed):
            i, batch = indexed
            example, denom = objective.prepare(batch, jax.random.fold_in(eval_key, i))
            nll = summed_over_micro(lambda ex: objective.sums(params, ex)[1], example, K, jnp.zeros((), jnp.float32))
            return total + nll / denom, None

        indices = jnp.arange(val_NxBxT1.shape[0])
        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (indices, val_NxBxT1))
        return total / val_NxBxT1.shape[0]

    return evaluate


def abstract_model(cfg: RunConfig):
    """(graphdef, abstract parameter state) without allocating anything."""
    abstract = nnx.eval_shape(lambda: Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed)))
    return nnx.split(abstract, nnx.Param)


# The initializer runs once, so its code is compiled unoptimized: the random draws for every
# parameter take XLA:CPU 3-4 s to optimize for a 2-layer model, and 1 s at level 0 (the same bits).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _create(cfg: RunConfig, tx):
    def create():
        model = Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed))
        params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
        return params, tx.init(params)

    return create


def state_shardings(cfg: RunConfig, mesh, tx, abstract_state=None):
    """(param shardings, optimizer-state shardings, abstract (params, opt_state)) — no allocation.
    Adam's moments take their parameter's sharding; scalars (step counts) are replicated.
    `abstract_state`: `abstract_model(cfg)[1]`, if the caller has it already."""
    if abstract_state is None:
        abstract_state = abstract_model(cfg)[1]
    param_sh = sharding.param_shardings(abstract_state, mesh)
    abstract_params = nnx.to_pure_dict(abstract_state)
    abstract = (abstract_params, jax.eval_shape(tx.init, abstract_params))
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract[1], param_sh,
                                   transform_non_params=lambda _: sharding.replicated(mesh))
    return param_sh, opt_sh, abstract


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    """The training step of one config on one mesh, compiled once with the run's shardings.

    `executable(params, opt_state, batch_BxT1, np.int32(step))` -> (params, opt_state, metrics);
    params and opt_state are donated. `memory`: XLA's memory analysis, bytes per device."""

    cfg: RunConfig
    mesh: Any
    graphdef: Any
    tx: optax.GradientTransformation
    schedule: Callable
    param_sh: Any
    opt_sh: Any
    batch_sh: Any
    abstract: tuple  # (params, opt_state) as ShapeDtypeStructs
    executable: Any  # jax.stages.Compiled
    compile_s: float
    memory: dict

    @property
    def state_sh(self) -> tuple:
        return self.param_sh, self.opt_sh

    def init_state(self) -> tuple:
        """(params, opt_state) of `cfg.train.seed`, created directly in their shardings."""
        with jax.set_mesh(self.mesh):
            lowered = jax.jit(_create(self.cfg, self.tx), out_shardings=self.state_sh).lower()
            return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS)()


def compile_step(cfg: RunConfig, mesh, *, donate: bool = True) -> CompiledStep:
    """Trace, lower and compile the training step of `cfg` (vocabulary resolved) on `mesh`."""
    check_batch_split(cfg, dict(mesh.shape))
    graphdef, abstract_state = abstract_model(cfg)
    tx, schedule = make_optimizer(cfg)
    param_sh, opt_sh, abstract = state_shardings(cfg, mesh, tx, abstract_state)
    batch_sh, scalar = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    step_fn = jax.jit(make_step(graphdef, tx, schedule, cfg, param_sh), donate_argnums=(0, 1) if donate else (),
                      in_shardings=(param_sh, opt_sh, batch_sh, scalar), out_shardings=(param_sh, opt_sh, scalar))
    args = (_placed(abstract[0], param_sh), _placed(abstract[1], opt_sh),
            jax.ShapeDtypeStruct((cfg.train.batch_size, cfg.model.seq_len + 1), jnp.int32, sharding=batch_sh),
            jax.ShapeDtypeStruct((), jnp.int32, sharding=scalar))
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
        executable = step_fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    return CompiledStep(cfg=cfg, mesh=mesh, graphdef=graphdef, tx=tx, schedule=schedule, param_sh=param_sh,
                        opt_sh=opt_sh, batch_sh=batch_sh, abstract=abstract, executable=executable,
                        compile_s=compile_s, memory=xla_memory(executable))


def _placed(abstract_tree, shardings):
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings)


def jit_eval(step: CompiledStep):
    """The validation loss of `step`'s parameters over a [N, B, T+1] set in `sharding.val_sharding`."""
    mesh = step.mesh
    return jax.jit(make_eval(step.graphdef, step.cfg), in_shardings=(step.param_sh, sharding.val_sharding(mesh)),
                   out_shardings=sharding.replicated(mesh))


def sharded_rows(sharding_, shape, make_rows):
    """A global array whose addressable shards are built by `make_rows(row_range)` on this host:
    each process generates only the batch rows its devices hold."""
    def shard(index):
        rows = index[0]
        return make_rows(range(rows.start or 0, rows.stop if rows.stop is not None else shape[0]))[:, index[1]]

    return jax.make_array_from_callback(shape, sharding_, shard)


MEMORY_KEYS = ("argument_size_in_bytes", "output_size_in_bytes", "temp_size_in_bytes",
               "generated_code_size_in_bytes", "alias_size_in_bytes")


def xla_memory(executable) -> dict:
    """XLA's memory analysis of a compiled program, bytes per device ({} where not implemented)."""
    try:
        mem = executable.memory_analysis()
    except Exception:  # not every backend implements it
        return {}
    return {key: int(getattr(mem, key)) for key in MEMORY_KEYS if mem is not None and hasattr(mem, key)}


def memory_report(step: CompiledStep, params, opt_state) -> dict:
    """Bytes per device of the compiled step (XLA's memory analysis), of the live state, and the
    pre-flight estimate (`lab.memory`) it can be held against."""
    from lab.memory import estimate, xla_needed

    guess, xla = estimate(step.cfg, dict(step.mesh.shape)), xla_needed(step.memory)
    return {"param_bytes_per_device": sharding.bytes_per_device(params),
            "opt_state_bytes_per_device": sharding.bytes_per_device(opt_state),
            **{f"step_{key}": value for key, value in step.memory.items()},
            "estimate_bytes_per_device": guess.total,
            "estimate_over_xla": guess.total / xla if xla else None}
