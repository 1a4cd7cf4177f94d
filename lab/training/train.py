"""One training run: the jitted, donated, sharded step of `lab.training.step` over batches that are a
function of (seed, step), periodic evaluation on a fixed validation set, orbax checkpoints, exact
resume, and the run directory's files. The loop and its cadence are `lab.training.loop`'s (a pack,
`lab.training.packed.train`, runs the same); what a run does around it is `lab.training.runs`'.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from lab import sharding
from lab.config import ConfigError, RunConfig, model_impl
from lab.costs import model_costs
from lab.data import Corpus, val_batches
from lab.evals.final import final_scores
from lab.memory import check_compiled
from lab.result import INIT
from lab.rundir import RunDir
from lab.training.batches import run_batch
from lab.training.checkpoint import Checkpointer, abstract_like, is_disk_full
from lab.training.init_from import InitFrom, check_init, load_init
from lab.training.interrupt import interruptible
from lab.training.loop import (
    Cadence,
    Diverged,
    Due,
    MetricLines,
    Preempted,
    Profile,
    RunFailed,
    RunProgress,
    StopFlag,
    train_steps,
)
from lab.training.runs import (
    checked_setup,
    disk_full_error,
    finished_result,
    record_ended,
    record_failed,
    result_header,
    write_config,
)
from lab.training.state import abstract_model
from lab.training.step import compile_step, jit_eval
from lab.training.timing import Timings
from lab.training.trackers import attach, check_available
from lab.training.xla_memory import memory_report

__all__ = [
    "Diverged",
    "InitFrom",
    "Preempted",
    "RunFailed",
    "RunOptions",
    "train",
]  # what a caller of `train` uses


@dataclass(frozen=True)
class RunOptions:
    """What `lab train` may add to a run besides its config (none of it enters the config hash):
    `profile_steps` (first, last): a jax.profiler trace of those steps in OUT/profile;
    `init`: start from another run's checkpoint (`lab.training.init_from`); `tracker`:
    "tensorboard" | "wandb", a live log in OUT/<tracker>/ (`lab.training.trackers.LiveTracker`),
    grouped by `group` (a study's name); `started`: when the run's cell started (epoch seconds;
    None: this process's start), what its overhead_s counts from (`lab.training.timing`); `final_scores`:
    False leaves the final scores (`lab.evals.final`) out of the result (a study's `final_scores`)."""

    profile_steps: tuple[int, int] | None = None
    init: InitFrom | None = None
    tracker: str | None = None
    group: str | None = None
    started: float | None = None
    final_scores: bool = True

    def check(self, cfg: RunConfig, mesh) -> None:
        if self.init is not None:
            check_init(self.init, cfg, mesh)
        if self.tracker:
            check_available(self.tracker)
        if self.profile_steps:
            first, last = self.profile_steps
            if not 1 <= first <= last <= cfg.total_steps:
                raise ConfigError(
                    f"--profile-steps {first}:{last}: need 1 <= A <= B <= {cfg.total_steps} (the run's steps)"
                )


# ----------------------------------------------------------------------------- the run


def train(
    cfg: RunConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    extra_result: dict | None = None,
    keep_steps: tuple[int, ...] = (),
    options: RunOptions = RunOptions(),
) -> dict:
    """Train one model; returns the result dict (also written to OUT/result.json).

    User errors (bad config, a corpus too short for it, a model that does not fit, an occupied or
    foreign run directory, one another process is writing) raise ConfigError before anything is
    written. A NaN/inf loss ends the
    run with status `diverged`; SIGTERM/SIGINT save a checkpoint and raise Preempted (no result is
    written: the run is unfinished); any other exception is recorded as status `failed`
    (traceback in OUT/error.txt) and raised as RunFailed. `keep_steps`: steps whose checkpoints are
    also kept in OUT/branch_points/STEP (the starting points of WSD cooldown branches).
    """
    cfg, corpus, mesh = checked_setup(cfg)
    options.check(cfg, mesh)
    rundir = RunDir.prepare(out, resume=resume, overwrite=overwrite, writer=jax.process_index() == 0)
    try:  # the run directory is locked (one writer) until the run ends, however it ends
        if resume:
            done = finished_result(rundir, cfg)
            if done is not None:
                return done
        costs = model_costs(cfg.model)
        result = {**result_header(cfg, corpus, rundir, costs), **(extra_result or {})}
        write_config(rundir, cfg, costs)
        tracker = attach(options.tracker, rundir, cfg, options.group)  # --tracker: logs live
        try:
            return _run(
                cfg, corpus, rundir, mesh, result, progress=progress, keep_steps=keep_steps, options=options
            )
        finally:
            if tracker is not None:
                tracker.finish(result)
    finally:
        rundir.release()


def _run(cfg, corpus, rundir: RunDir, mesh, result: dict, *, progress: bool, keep_steps, options) -> dict:
    """Train, then write the result: completed, diverged, or failed (and raise RunFailed)."""
    t_start = time.perf_counter()
    try:
        loop = _Loop(cfg, corpus, rundir, mesh, progress=progress, keep_steps=keep_steps, options=options)
        result.update(loop.run())
    except Diverged as e:
        result.update(status="diverged", error=str(e))
    except (Preempted, KeyboardInterrupt):
        raise
    except Exception as e:
        if is_disk_full(e):  # the user's to fix, not a failed run: the CLI says so in one line
            raise disk_full_error(e) from None
        record_failed(rundir, result, e, t_start)
        raise RunFailed(result["error"]) from e
    record_ended(rundir, result, t_start)
    return result


class _Loop:
    """One run driven by `lab.training.loop` (a `Runner`); `run()` returns the result fields it
    measured."""

    saved = "checkpoint"

    def __init__(
        self,
        cfg: RunConfig,
        corpus: Corpus,
        rundir: RunDir,
        mesh,
        *,
        progress: bool,
        keep_steps: tuple[int, ...] = (),
        options: RunOptions = RunOptions(),
    ):
        self.cfg, self.corpus, self.rundir, self.mesh, self.progress = cfg, corpus, rundir, mesh, progress
        self.options, self.started_from = options, {}
        self.steps = cfg.total_steps
        self.cadence = Cadence.of(cfg, keep_steps)
        self.lines = MetricLines(cfg, corpus.bytes_per_token)
        self.state = RunProgress()
        self.bar = None
        self.timings = Timings(options.started)

    def batch(self, step: int):
        return run_batch(self.cfg, self.corpus, self.batch_sh, step)

    def compile(self) -> dict:
        """The compiled step (refused if XLA says it cannot fit), then the initial state in its
        shardings and the eval function; returns compile facts. SIGINT/SIGTERM stop it at once
        (nothing is trained yet, so there is nothing to save)."""
        cfg, mesh = self.cfg, self.mesh
        stopped = lambda signum: Preempted(f"stopped by signal {signum} while compiling, before the first step")
        step = interruptible(compile_step, cfg, mesh, on_signal=stopped)
        check_compiled(step.memory)  # before allocating the state
        self.step_fn, self.state_sh, self.batch_sh = step, step.state_sh, step.batch_sh
        self.params, self.opt_state = interruptible(step.init_state, on_signal=stopped)
        val = val_batches(
            self.corpus.val,
            batch_size=cfg.train.batch_size,
            seq_len=cfg.model.seq_len,
            n_tokens=cfg.data.val_tokens,
        )
        self.val = jax.device_put(val, sharding.val_sharding(mesh))
        self.eval_fn = jit_eval(step)
        # the attention kernel that ran (`auto` resolved): tokens_per_s depends on it
        return {
            "compile_s": step.compile_s,
            "attn_impl": model_impl(cfg.model),
            **memory_report(cfg, mesh, step.memory, self.params, self.opt_state),
        }

    def restore(self, ckpt: Checkpointer) -> int:
        """Continue from the newest intact checkpoint, if any; returns the step to start at."""
        restored = ckpt.restore_latest(abstract_like((self.params, self.opt_state), self.state_sh))
        state = self.state.resume(self.rundir, restored)
        if state is not None:
            self.params, self.opt_state = state
        init = self.options.init
        if init is not None:
            step = init.step
            if state is None:  # a resumed run continues from its own checkpoint
                log = sys.stderr if self.rundir.writer else None
                params, opt_state, step = load_init(init, self.cfg, self.mesh, self.state_sh, log)
                self.params, self.opt_state = params, self.opt_state if opt_state is None else opt_state
            self.started_from = dict(zip(INIT, (str(init.run_dir), step)))
        return self.state.start

    def save(self, step: int) -> None:
        with self.timings.part("checkpoint_s"):
            self.ckpt.save(step, (self.params, self.opt_state), self.state.checkpoint_meta(self.cfg))
            if step in self.cadence.keep_steps:
                self.ckpt.wait()
                self.rundir.keep_branch_point(step)

    def run(self) -> dict:
        with jax.set_mesh(self.mesh), StopFlag() as stop:
            facts = self.compile()
            if self.progress and self.rundir.writer:
                print(_memory_line(facts, self.mesh), file=sys.stderr)
            self.ckpt = Checkpointer(
                self.rundir.checkpoints,
                keep=self.cfg.keep_checkpoints,
                set_aside=self.rundir.corrupted_checkpoints,
                writer=True,
            )
            timings = self.timings
            try:
                start = self.restore(self.ckpt)
                self.bar = _progress(self.steps, start, self.progress)
                timings.before_first_step(facts["compile_s"])
                train_time = train_steps(self, self.cadence, start, stop, self._profile())
                self.bar.close()
                if self.state.last_eval is None:  # resumed from the final checkpoint: evaluate it again
                    self.evaluate(self.steps, log=False)
                final = {}
                if self.options.final_scores:
                    with timings.part("final_eval_s"):
                        final = final_scores(
                            abstract_model(self.cfg)[0], self.params, self.cfg, self.corpus, self.val
                        )
            finally:
                with timings.part("checkpoint_s"):
                    self.ckpt.close()  # waits for an in-flight async save
        return {
            **self.state.completed(self.cfg, self.mesh, train_time),
            **self.started_from,
            **facts,
            **final,  # quantized losses, weight bytes, in-context recall (lab.evals.final)
            **timings.fields(train_time),  # where the time went besides training (lab.training.timing)
        }

    def _profile(self) -> Profile | None:
        if not self.options.profile_steps:
            return None
        log = sys.stderr if self.rundir.writer else None
        return Profile(*self.options.profile_steps, self.rundir.profile, log)

    def dispatch(self, step: int, batch) -> dict:
        self.params, self.opt_state, metrics = self.step_fn(self.params, self.opt_state, batch, np.int32(step))
        return metrics

    def running(self) -> bool:
        return True

    def record(self, fetched: list[dict], done: int, due: Due, train_time: float) -> None:
        """The fetched steps' losses (a non-finite one ends the run), then the due log and eval
        lines and the progress bar."""
        state = self.state
        state.train_time = train_time
        if not state.add_losses([float(m["loss"]) for m in fetched]):
            raise Diverged(f"non-finite training loss by step {done}")
        if due.log:
            state.log_train(
                self.rundir,
                self.lines,
                done,
                fetched[-1],
                (done - state.start) * self.cfg.tokens_per_step / train_time,
            )
        if due.eval:
            self.evaluate(done)
        self.bar.update(len(fetched))
        self.bar.set_postfix(
            loss=f"{state.last_train or float('nan'):.3f}",
            val=f"{state.last_eval['val_loss']:.3f}" if state.last_eval else "-",
        )

    def evaluate(self, step: int, log: bool = True) -> dict:
        with self.timings.part("eval_s"):
            loss = float(self.eval_fn(self.params, self.val))
        return self.state.log_eval(self.rundir, self.lines, step, loss, log)


def _memory_line(facts: dict, mesh) -> str:
    mb = lambda key: facts.get(key, 0) / 2**20
    return (
        f"compiled step in {facts['compile_s']:.1f}s on mesh {dict(mesh.shape)} "
        f"(attention: {facts['attn_impl']}); "
        f"per device: params "
        f"{mb('param_bytes_per_device'):.2f} MiB, optimizer {mb('opt_state_bytes_per_device'):.2f} MiB, "
        f"step arguments {mb('step_argument_size_in_bytes'):.2f} MiB, temporaries "
        f"{mb('step_temp_size_in_bytes'):.2f} MiB (XLA memory analysis)"
    )


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
