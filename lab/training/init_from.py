"""`lab train --init-from RUN_DIR [--init-step S] [--init-optimizer]`: a new run that starts from
another run's checkpoint (continued pre-training, cooldowns, more repeats of the same data).

The parameters of the source checkpoint (its newest intact one, or step S) replace the new run's
initial ones; with `--init-optimizer` its optimizer state (Adam's moments and count) too,
otherwise the optimizer starts fresh. The new run counts its own steps from 0: its learning-rate
schedule (warmup included) and its data order are its own config's. The source directory is read,
never written. Parameter names, shapes and dtypes must agree with the new model (else one line,
exit 2); the result records `init_from` and `init_step`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax

from lab.config import ConfigError


@dataclass(frozen=True)
class InitFrom:
    run_dir: str
    step: int | None = None  # None: the newest intact checkpoint
    optimizer: bool = False  # also the optimizer state


def _leaves(tree) -> dict:
    """{path: "shape dtype"} of a tree of arrays or ShapeDtypeStructs."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(k, simple=True, separator="."): f"{list(v.shape)} {v.dtype}" for k, v in flat}


def mismatch(there, here) -> str | None:
    """The first difference between two trees' leaves (name, shape, dtype), and how many differ."""
    a, b = _leaves(there), _leaves(here)
    diffs = [
        f"{k}: {a.get(k, 'absent')} there, {b.get(k, 'absent')} here"
        for k in sorted(a.keys() | b.keys())
        if a.get(k) != b.get(k)
    ]
    if not diffs:
        return None
    return diffs[0] + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "")


def check_init(init: InitFrom, cfg, mesh):
    """Everything short of reading the arrays, before the new run writes anything: the source is
    a run with checkpoints, the chosen step is there, and its parameter (and with --init-optimizer
    optimizer-state) names, shapes and dtypes are this config's. Returns the source's (param
    shardings, optimizer shardings, abstract state) on `mesh`."""
    from lab.rundir import RunDir
    from lab.training.checkpoint import Checkpointer
    from lab.training.optimizer import make_optimizer
    from lab.training.state import state_shardings

    what = f"--init-from {init.run_dir}"
    source = RunDir(init.run_dir)
    src_cfg = source.load_config()
    if src_cfg is None:
        raise ConfigError(f"{what}: not a run directory (no readable config.json)")
    steps = []
    if source.checkpoints.is_dir():
        ckpt = Checkpointer(source.checkpoints, read_only=True)
        steps = ckpt.steps()
        ckpt.close()
    if not steps:
        raise ConfigError(f"{what}: the run has no checkpoints")
    if init.step is not None and init.step not in steps:
        raise ConfigError(
            f"{what} has no checkpoint at step {init.step}; its checkpoint steps: {', '.join(map(str, steps))}"
        )
    src = state_shardings(src_cfg, mesh, make_optimizer(src_cfg)[0])
    here = state_shardings(cfg, mesh, make_optimizer(cfg)[0])[2]
    diff = mismatch(src[2][0], here[0])
    if diff:
        raise ConfigError(f"{what}: its parameters do not fit this model: {diff}")
    if init.optimizer and (diff := mismatch(src[2][1], here[1])):
        raise ConfigError(f"{what} --init-optimizer: its optimizer state does not fit this run's: {diff}")
    return src


def load_init(init: InitFrom, cfg, mesh, shardings, log=None):
    """(params, opt_state or None, step) from the source run, placed in this run's `shardings`
    (param and optimizer shardings)."""
    from lab.rundir import RunDir
    from lab.training.checkpoint import abstract_like, restore_read_only

    src_param_sh, src_opt_sh, src_abstract = check_init(init, cfg, mesh)
    step, state, _, damaged = restore_read_only(
        RunDir(init.run_dir).checkpoints,
        abstract_like(src_abstract, (src_param_sh, src_opt_sh)),
        init.step,
        what=f"--init-from {init.run_dir}",
    )
    params = jax.device_put(state[0], shardings[0])
    opt_state = jax.device_put(state[1], shardings[1]) if init.optimizer else None
    if log is not None:
        note = f"; newer checkpoint damaged, left in place: {', '.join(damaged)}" if damaged else ""
        parts = "parameters and optimizer state" if init.optimizer else "parameters"
        print(f"lab train: {parts} from {init.run_dir} at step {step}{note}", file=log)
    return params, opt_state, step
