"""The one training loop, shared by a single run (`lab.training.train`) and a pack
(`lab.training.packed.train`): its
cadence (when to log, evaluate, checkpoint and stop), the metrics lines it writes, a run's
progress between those lines (carried in its checkpoints), the batch prefetcher, the stop flag,
and the exceptions that end a run.

`run_steps(runner, cadence, start, stop, batches)` dispatches steps without waiting for them (the
state is donated, the next batch is being prefetched) and synchronises only at log, eval and
checkpoint steps, where it hands the fetched metrics to the runner (`Runner`).
"""

from __future__ import annotations

import math
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import jax
import numpy as np

from lab import sharding
from lab.config import RunConfig
from lab.costs import model_costs, run_peak

LN2 = math.log(2.0)
WALL_BEFORE = "wall_s_before"  # a completed() field `record_ended` adds to wall_s (not a result field)


class Diverged(Exception):
    pass


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint of the current step was saved before stopping."""


class RunFailed(RuntimeError):
    """The run crashed; its status `failed` and traceback are in the run directory."""


@dataclass(frozen=True)
class Due:
    """What a step that just finished calls for."""

    log: bool
    eval: bool
    checkpoint: bool


@dataclass(frozen=True)
class Cadence:
    """When a run of `steps` steps logs, evaluates and checkpoints (always after the last step;
    checkpoints also at `keep_steps`, the branch points kept for WSD cooldowns)."""

    steps: int
    log_every: int
    eval_every: int
    checkpoint_every: int | None
    keep_steps: frozenset = frozenset()

    @classmethod
    def of(cls, cfg: RunConfig, keep_steps=()) -> Cadence:
        t, steps = cfg.train, cfg.total_steps
        return cls(
            steps,
            t.log_every or max(1, steps // 100),
            t.eval_every or max(1, steps // 5),
            cfg.checkpoint_every,
            frozenset(keep_steps),
        )

    def due(self, done: int) -> Due:
        """After `done` steps."""
        last = done == self.steps
        checkpoint = (
            (self.checkpoint_every and done % self.checkpoint_every == 0) or last or done in self.keep_steps
        )
        return Due(
            log=done % self.log_every == 0 or last,
            eval=done % self.eval_every == 0 or last,
            checkpoint=bool(checkpoint),
        )


def device_peak(cfg: RunConfig) -> dict | None:
    """The per-device peak FLOP/s a run's MFU divides by (`lab.costs.run_peak`), or None."""
    return run_peak(cfg.train.peak_flops, jax.devices()[0].device_kind, cfg.model.dtype)


def mfu(flops_per_s: float | None, peak: dict | None) -> float | None:
    """Model FLOPs utilisation: the flops_exact rate over the peak of all devices."""
    if not flops_per_s or peak is None:
        return None
    return flops_per_s / (peak["flops_per_s"] * jax.device_count())


class MetricLines:
    """The lines of a run's metrics.jsonl: a training line and a validation line. A training
    line's flops_per_s is flops_exact × tokens_per_s (since the run started or resumed); its mfu,
    present where the device's peak is known or set, is that over the peak of all devices (a
    pack's member: its share of the pack's devices)."""

    def __init__(self, cfg: RunConfig, bytes_per_token: float):
        self.tokens_per_step = cfg.tokens_per_step
        self.flops_per_token = model_costs(cfg.model).flops_exact
        self.to_bits_per_byte = 1.0 / (LN2 * bytes_per_token)
        self.peak = device_peak(cfg)

    def train(self, step: int, train_loss: float, last_metrics: dict, tokens_per_s: float) -> dict:
        tokens = step * self.tokens_per_step
        return {
            "step": step,
            "tokens": tokens,
            "flops": self.flops_per_token * tokens,
            "train_loss": train_loss,
            "lr": float(last_metrics["lr"]),
            "grad_norm": float(last_metrics["grad_norm"]),
            "tokens_per_s": tokens_per_s,
            "flops_per_s": self.flops_per_token * tokens_per_s,
            **({"mfu": mfu(self.flops_per_token * tokens_per_s, self.peak)} if self.peak else {}),
        }

    def val(self, step: int, loss: float) -> dict:
        tokens = step * self.tokens_per_step
        return {
            "step": step,
            "tokens": tokens,
            "flops": self.flops_per_token * tokens,
            "val_loss": loss,
            "val_bits_per_byte": loss * self.to_bits_per_byte,
        }


@dataclass
class RunProgress:
    """One run's progress as the loop sees it: the step it started at, the training losses since
    its last log line (`window`), the last logged training loss and validation record, and the
    time it trained. Checkpoints carry the timing too (`checkpoint_meta`), so a run killed between
    its final checkpoint and result.json gets its speed and wall time back when it is re-run."""

    start: int = 0
    window: list = field(default_factory=list)
    last_train: float | None = None
    last_eval: dict | None = None
    train_time: float = 0.0  # seconds spent training by this process, as of the last record
    t_start: float = field(default_factory=time.perf_counter)
    trained: dict | None = None  # the timing of the process that wrote the restored checkpoint

    def add_losses(self, losses: list[float]) -> bool:
        """Append the fetched steps' losses; whether every loss so far is finite."""
        self.window += losses
        return all(math.isfinite(x) for x in self.window)

    def log_train(self, rundir, lines: MetricLines, step: int, last_metrics: dict, tokens_per_s: float) -> None:
        """One metrics line; train_loss is the mean over the steps since the previous line."""
        self.last_train, self.window = float(np.mean(self.window)), []
        rundir.log(lines.train(step, self.last_train, last_metrics, tokens_per_s))

    def log_eval(self, rundir, lines: MetricLines, step: int, loss: float, log: bool = True) -> dict:
        self.last_eval = lines.val(step, loss)
        if log:
            rundir.log(self.last_eval)
        return self.last_eval

    def checkpoint_meta(self, cfg: RunConfig) -> dict:
        return {
            "window": self.window,
            "last_train": self.last_train,
            "seed": cfg.train.seed,
            "config_hash": cfg.hash(),
            "timing": {
                "train_time_s": self.train_time,
                "trained_from": self.start,
                "wall_s": time.perf_counter() - self.t_start,
            },
        }

    def resume(self, rundir, restored):
        """Continue from `Checkpointer.restore_latest`'s (step, state, meta), or from the start
        (None); the metrics after the restored step are dropped. Returns the restored state."""
        if restored is None:
            rundir.truncate_metrics(0)
            return None
        self.start, state, meta = restored
        self.window, self.last_train = meta["window"], meta["last_train"]
        self.trained = meta.get("timing")  # absent in checkpoints written before issue 22
        rundir.truncate_metrics(self.start)
        return state

    def completed(self, cfg: RunConfig, mesh, train_time: float) -> dict:
        """The result fields of a run that trained to its last step (before compile facts and
        final scores)."""
        steps, start, earlier = cfg.total_steps, self.start, {}
        if start == steps and self.trained:  # restored the final checkpoint: its trainer's figures
            start, train_time = self.trained["trained_from"], self.trained["train_time_s"]
            earlier = {WALL_BEFORE: self.trained["wall_s"]}
        tokens_per_s = (steps - start) * cfg.tokens_per_step / train_time if train_time > 0 else None
        flops_per_token = model_costs(cfg.model).flops_exact
        flops_per_s = tokens_per_s * flops_per_token if tokens_per_s else None
        peak = device_peak(cfg)
        return {
            **earlier,
            "status": "completed",
            "final_train_loss": self.last_train,
            "final_val_loss": self.last_eval["val_loss"],
            "val_bits_per_byte": self.last_eval["val_bits_per_byte"],
            "tokens_per_s": tokens_per_s,
            "flops_per_s": flops_per_s,
            "mfu": mfu(flops_per_s, peak),  # the run's mean: total FLOPs over training time, over the peak
            "peak_flops": peak["flops_per_s"] if peak else None,  # per device
            "peak_flops_source": peak["source"] if peak else None,
            "resumed_from_step": start,
            "mesh": dict(mesh.shape),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
            "device_kind": jax.devices()[0].device_kind,
        }


class Runner(Protocol):
    """What `run_steps` drives: one run or a pack."""

    saved: str  # what a stop saved, for the Preempted message
    mesh: jax.sharding.Mesh

    def batch(self, step: int): ...  # the (device) batch of `step`; built ahead by `Prefetch`

    def dispatch(self, step: int, batch) -> dict: ...  # run one step, without waiting; its metrics

    def record(self, fetched: list[dict], done: int, due: Due, train_time: float) -> None: ...

    def save(self, step: int) -> None: ...

    def running(self) -> bool: ...  # False once nothing is left to train (every member diverged)


def train_steps(
    runner: Runner, cadence: Cadence, start: int, stop: StopFlag, profile: Profile | None = None
) -> float:
    """Steps start .. cadence.steps-1 with prefetched batches; returns the seconds spent training
    (evaluation and checkpointing excluded)."""
    with Prefetch(runner.batch, start, cadence.steps) as batches:
        try:
            return run_steps(runner, cadence, start, stop, batches, profile)
        finally:
            if profile is not None:
                profile.close()


def run_steps(
    runner: Runner, cadence: Cadence, start: int, stop: StopFlag, batches: Prefetch, profile: Profile | None = None
) -> float:
    """The hot loop. Metrics stay on device until a log/eval/checkpoint step (or a stop signal);
    there the runner records them, saves if due, and a stop raises Preempted after saving. On a mesh
    of several CPU devices each step is awaited before the next (`sharding.serial_steps`)."""
    serial = sharding.serial_steps(runner.mesh)
    pending, train_time = [], 0.0
    t_mark = time.perf_counter()
    for step in range(start, cadence.steps):
        if profile is not None:
            profile.before(step, pending)
        pending.append(runner.dispatch(step, batches.get(step)))
        if serial:
            jax.block_until_ready(pending[-1])
        done = step + 1
        if profile is not None:
            profile.after(done, pending)
        due = cadence.due(done)
        if not (due.log or due.eval or due.checkpoint or stop.signum):
            continue
        fetched, pending = jax.device_get(pending), []
        train_time += time.perf_counter() - t_mark
        runner.record(fetched, done, due, train_time)
        if due.checkpoint or stop.signum:
            runner.save(done)
        if stop.signum:
            raise Preempted(f"stopped by signal {stop.signum} after step {done}; {runner.saved} saved")
        if not runner.running():
            break
        t_mark = time.perf_counter()
    return train_time


class Profile:
    """A `jax.profiler` trace (TensorBoard's profile plugin / Perfetto read it) of training steps
    first .. last, counted as metrics.jsonl counts them (step k is the k-th step): the trace starts
    before step `first` is dispatched and stops once step `last` has finished on the devices; its
    files land in `directory`/plugins/profile/<time>/. The steps traced run slower (the tracer and
    the wait at the end), which the run's tokens_per_s includes. `log` gets one line saying where."""

    def __init__(self, first: int, last: int, directory, log=None):
        self.first, self.last, self.directory, self.log = first, last, directory, log
        self.started = self.active = False
        self.traced = [0, 0]  # the first and last step traced

    def before(self, step: int, pending) -> None:
        """Start tracing before the first step in range (on resume: the first one left), once the
        steps dispatched before it have finished."""
        if not self.started and self.first <= step + 1 <= self.last:
            jax.block_until_ready(pending)
            jax.profiler.start_trace(str(self.directory))
            self.started = self.active = True
            self.traced = [step + 1, step + 1]

    def after(self, done: int, pending) -> None:
        if self.active:
            self.traced[1] = done
            if done == self.last:
                jax.block_until_ready(pending)
                self.close()

    def close(self) -> None:
        if not self.active:
            return
        jax.profiler.stop_trace()
        self.active = False
        if self.log is not None:
            first, last = self.traced
            print(f"lab train: profile of steps {first}:{last} in {self.directory}", file=self.log)


class Prefetch:
    """The batches of steps start .. stop-1, each built (host rows, then put on the devices in the
    batch sharding) by a background thread up to `depth` steps ahead of the step the devices run,
    so the next batch is ready when the step is dispatched. Batches are a function of (seed, step),
    so prefetching changes nothing that is computed. An error building one is raised by `get`."""

    def __init__(self, make, start: int, stop: int, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._thread = threading.Thread(
            target=self._fill, args=(make, start, stop), daemon=True, name="lab-batch-prefetch"
        )
        self._thread.start()

    def _fill(self, make, start: int, stop: int) -> None:
        for step in range(start, stop):
            try:
                item = (step, make(step), None)
            except BaseException as e:  # handed to the training thread, raised there
                item = (step, None, e)
            while not self._halt.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None or self._halt.is_set():
                return

    def get(self, step: int):
        got, batch, error = self._queue.get()
        if error is not None:
            raise error
        assert got == step, (got, step)
        return batch

    def close(self) -> None:
        self._halt.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks once per step (main thread only)."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
