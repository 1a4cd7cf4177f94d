"""The training step and its evaluation, and the one place the step is compiled. The optimizer is
`lab.training.optimizer`'s, micro-batching `lab.training.microbatch`'s, the state's shapes and
shardings `lab.training.state`'s, XLA's memory analysis `lab.training.xla_memory`'s.

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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lab import sharding
from lab.config import RunConfig
from lab.model.objectives import make_objective
from lab.schedules import SCHEDULE_CONSTANTS, runtime_schedule
from lab.training.microbatch import check_batch_split, grads_and_loss, summed_over_micro
from lab.training.optimizer import make_optimizer, make_tx, schedule_args
from lab.training.state import INIT_COMPILER_OPTIONS, abstract_model, placed, state_creator, state_shardings
from lab.training.xla_memory import xla_memory


def _objective(graphdef, cfg: RunConfig):
    return make_objective(graphdef, cfg.model, z_loss=cfg.train.z_loss, mlm_prob=cfg.train.mlm_prob)


def make_step(graphdef, cfg: RunConfig, param_sh=None):
    """The pure training step; `train.microbatches` K > 1 accumulates the update's gradients over
    K sequential micro-batches (activations of B/K sequences live at once; the update is the
    full batch's). `param_sh`: the parameters' shardings, for the float32 gradient accumulator.
    The learning-rate schedule's numbers (`optimizer.schedule_args`: peak, length, warmup) are the
    step's last argument, not constants in it: the runs of one shape share one program."""
    objective = _objective(graphdef, cfg)
    base_key, K = jax.random.key(cfg.train.seed), cfg.train.microbatches
    schedule = runtime_schedule(cfg.train.schedule)

    def step(params, opt_state, batch_BxT1, step_index, constants):
        key = jax.random.fold_in(base_key, step_index)  # MLM masks: a function of (seed, step)
        example, denom = objective.prepare(batch_BxT1, key)
        grads, loss = grads_and_loss(objective, params, example, denom, K, param_sh)
        tx = make_tx(cfg, lambda count: schedule(count, constants))
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "lr": schedule(step_index, constants)}
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
            nll = summed_over_micro(
                lambda ex: objective.sums(params, ex)[1], example, K, jnp.zeros((), jnp.float32)
            )
            return total + nll / denom, None

        indices = jnp.arange(val_NxBxT1.shape[0])
        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (indices, val_NxBxT1))
        return total / val_NxBxT1.shape[0]

    return evaluate


@dataclasses.dataclass(frozen=True)
class CompiledStep:
    """The training step of one config on one mesh, compiled once per shape with the run's shardings.

    Called as `step(params, opt_state, batch_BxT1, np.int32(step))` -> (params, opt_state, metrics);
    params and opt_state are donated. `executable`: the compiled program, which also takes the
    run's `constants` (its schedule's numbers). `memory`: XLA's memory analysis, bytes per device."""

    cfg: RunConfig
    mesh: Any
    graphdef: Any
    tx: optax.GradientTransformation
    schedule: Callable
    constants: dict  # the schedule's numbers (optimizer.schedule_args), on the mesh
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

    def __call__(self, params, opt_state, batch_BxT1, step_index):
        return self.executable(params, opt_state, batch_BxT1, step_index, self.constants)

    def init_state(self) -> tuple:
        """(params, opt_state) of `cfg.train.seed`, created directly in their shardings."""
        with jax.set_mesh(self.mesh):
            lowered = jax.jit(state_creator(self.cfg, self.tx), out_shardings=self.state_sh).lower()
            return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS)()


def compile_step(cfg: RunConfig, mesh, *, donate: bool = True) -> CompiledStep:
    """The training step of `cfg` (vocabulary resolved) on `mesh`: traced, lowered and compiled once
    per `step_key` in this process (`cached`), so a persistent study worker compiles a shape once."""
    check_batch_split(cfg, dict(mesh.shape))
    tx, schedule = make_optimizer(cfg)
    built = []
    program = cached(("step", step_key(cfg), mesh, donate), lambda: built.append(0) or _compile(cfg, mesh, donate))
    constants = jax.device_put(schedule_args(cfg), sharding.replicated(mesh))
    return CompiledStep(
        cfg=cfg,
        mesh=mesh,
        tx=tx,
        schedule=schedule,
        constants=constants,
        **{**program, "compile_s": program["compile_s"] if built else 0.0},
    )


def _compile(cfg: RunConfig, mesh, donate: bool) -> dict:
    graphdef, abstract_state = abstract_model(cfg)
    param_sh, opt_sh, abstract = state_shardings(cfg, mesh, make_optimizer(cfg)[0], abstract_state)
    batch_sh, scalar = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    step_fn = jax.jit(
        make_step(graphdef, cfg, param_sh),
        donate_argnums=(0, 1) if donate else (),
        in_shardings=(param_sh, opt_sh, batch_sh, scalar, scalar),
        out_shardings=(param_sh, opt_sh, scalar),
    )
    args = (
        placed(abstract[0], param_sh),
        placed(abstract[1], opt_sh),
        jax.ShapeDtypeStruct((cfg.train.batch_size, cfg.model.seq_len + 1), jnp.int32, sharding=batch_sh),
        jax.ShapeDtypeStruct((), jnp.int32, sharding=scalar),
        {k: jax.ShapeDtypeStruct((), jnp.float32, sharding=scalar) for k in SCHEDULE_CONSTANTS},
    )
    t0 = time.perf_counter()
    with jax.set_mesh(mesh):
        executable = step_fn.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    return dict(
        graphdef=graphdef,
        param_sh=param_sh,
        opt_sh=opt_sh,
        batch_sh=batch_sh,
        abstract=abstract,
        executable=executable,
        compile_s=compile_s,
        memory=xla_memory(executable),
    )


def step_key(cfg: RunConfig) -> RunConfig:
    """Everything of a config that the training step's program depends on (`make_step`): the config
    without the schedule's numbers (learning rate, length, warmup: the step's arguments) and the
    cadences of evaluation, logging and checkpoints."""
    t = dataclasses.replace(
        cfg.train, tokens=0, steps=0, lr=1.0, warmup_steps=0, eval_every=0, log_every=0, peak_flops=0.0
    )
    return dataclasses.replace(cfg, train=t, checkpoint_every=0, keep_checkpoints=0)


def jit_eval(step: CompiledStep):
    """The validation loss of `step`'s parameters over a [N, B, T+1] set in `sharding.val_sharding`;
    one jitted function per model shape in a process (`cached`), so the runs of one shape that a
    persistent study worker trains one after another trace and compile it once."""
    mesh = step.mesh
    return cached(
        ("eval", eval_key(step.cfg), mesh, step.cfg.mesh),
        lambda: jax.jit(
            make_eval(step.graphdef, step.cfg),
            in_shardings=(step.param_sh, sharding.val_sharding(mesh)),
            out_shardings=sharding.replicated(mesh),
        ),
    )


def eval_key(cfg: RunConfig) -> tuple:
    """Everything of a config that an evaluation's program depends on (`make_eval`): the model and
    the objective's settings, not the run's seed, learning rate or length."""
    t = cfg.train
    return cfg.model, t.z_loss, t.mlm_prob, t.microbatches


_CACHE: dict = {}
CACHE_SIZE = 16  # programs kept: a study's shapes, a few at a time per worker


def cached(key, build: Callable):
    """`build()`, once per `key` in this process (the `CACHE_SIZE` most recent): a jitted
    function kept alive keeps its compiled programs, so the next run of the same shape reuses
    them rather than tracing and compiling again. The same program on the same inputs: results
    are bitwise those of a fresh process."""
    if key in _CACHE:
        _CACHE[key] = _CACHE.pop(key)  # most recent last
        return _CACHE[key]
    while len(_CACHE) >= CACHE_SIZE:
        _CACHE.pop(next(iter(_CACHE)))
    _CACHE[key] = value = build()
    return value
