"""Workers that stay alive across cells: the local launcher's default (`lab study --workers N`).

A study's cells are short, so a fresh process per cell spends seconds importing JAX and tracing
programs that the previous cell had already built. A pool worker — `python -m lab.study.worker
--serve` — is started once per worker slot and runs task files one after another in its own
process, so JAX is imported once and the programs that depend only on a cell's shape (its
evaluations, `lab.training.step.cached`) are built once for every cell of that shape. Each task
still runs exactly as `python -m lab.study.worker TASK.json` runs it (`lab.study.worker.run_task`):
the same task lock, run locks, resume and exit codes, its output in its own TASK.log; a result is
bitwise the one a fresh process computes (the same compiled programs on the same inputs).

Protocol: the driver writes one task file's path per line on the worker's stdin; the worker
answers `CODE` on the line of its reply pipe (a file descriptor it was given) when that task
ended. A task that fails (an exception) is that task's exit code 1, with its traceback in its log,
and the worker goes on with the next one; a task stopped by SIGTERM/SIGINT (its checkpoint saved)
answers 143 and the worker exits; a worker that dies (SIGKILL, a crash in XLA) is that task's
failure, and the next task starts in a new worker. EOF on stdin ends a worker.

`LAB_STUDY_POOL=0` in the driver's environment falls back to one process per cell.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.study.worker import CELL_STARTED, STOPPED, free_slot, stop_process, worker_cpu, worker_env


def pool_enabled() -> bool:
    return os.environ.get("LAB_STUDY_POOL", "1") != "0"


@dataclass
class PoolWorker:
    """One persistent worker process and the task it runs (None when idle)."""

    proc: subprocess.Popen
    reply: int  # read end of its reply pipe (non-blocking)
    task: object = None
    buffer: bytes = field(default=b"")
    shape: str | None = None  # `shape_of` its last task: what its in-process caches hold
    slot: int = 0  # which of the launcher's worker slots it holds (its CPU when pinned)

    @classmethod
    def start(cls, task, slot: int = 0, pin: bool = False) -> PoolWorker:
        """A new worker in `slot` (on that slot's CPU when `pin`) whose start-up output goes to
        `task`'s log (it is about to run it)."""
        read, write = os.pipe()
        env = {**worker_env(task.workers, worker_cpu(slot) if pin else None), CELL_STARTED: repr(time.time())}
        with open(task.log, "a") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "lab.study.worker", "--serve", str(write)],
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write,),
            )
        os.close(write)
        os.set_blocking(read, False)
        return cls(proc, read, slot=slot)

    def send(self, task) -> None:
        self.task, self.shape = task, shape_of(task)
        self.proc.stdin.write(f"{task.path}\t{time.time()!r}\n".encode())
        self.proc.stdin.flush()

    def poll(self) -> int | None:
        """The exit code of the running task once it ended (a reply, or the worker's death)."""
        try:
            chunk = os.read(self.reply, 64)
        except BlockingIOError:
            chunk = None
        if chunk:
            self.buffer += chunk
        if b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            return int(line)
        if chunk == b"" or self.proc.poll() is not None:  # the pipe closed: the worker is gone
            self.proc.wait()
            return self.proc.returncode if self.proc.returncode != 0 else 1
        return None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, grace_s: float) -> None:
        """EOF on stdin (an idle worker exits), then SIGTERM/SIGKILL as `stop_process`."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            stop_process(self.proc, grace_s)
        os.close(self.reply)


def shape_of(task) -> str | None:
    """What a task's evaluation programs depend on (`lab.training.step.eval_key`, the validation
    set): its model, data and objective settings, read from its task file; None if unreadable."""
    return _shape(str(task.path))


@functools.lru_cache(maxsize=4096)  # a scheduling hint: a task file's cell keeps its shape
def _shape(path: str) -> str | None:
    try:
        data = json.loads(Path(path).read_text())
        cfg = (data["members"][0] if "members" in data else data)["config"]
        train = {k: cfg["train"].get(k) for k in ("batch_size", "microbatches", "z_loss", "mlm_prob")}
        return json.dumps([cfg["model"], cfg["data"], train, cfg.get("mesh")], sort_keys=True)
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None


# A training step's fixed cost (dispatch, small kernels), in FLOPs of model compute: ~2 ms per step
# besides 23-43 GFLOP/s on the 2-core CPU (the quick study's d16-d48 cells, benchmarks/README.md)
STEP_FLOPS = 1e8
SAME_COST = 0.9  # an idle worker keeps to its shape among the queued tasks within this share of the longest


def cost_of(task) -> float:
    """A task's estimated length in FLOPs: its steps still to run (a branch's from its branch step),
    each the model's flops_exact per step plus `STEP_FLOPS`, summed over a pack's members; 0.0 if
    its file is unreadable. A scheduling hint: it orders the cells, never changes them."""
    return _cost(str(task.path))


@functools.lru_cache(maxsize=4096)
def _cost(path: str) -> float:
    from lab.config import RunConfig
    from lab.costs import model_costs
    from lab.overrides import from_dict

    try:
        data = json.loads(Path(path).read_text())
        total = 0.0
        for member in data.get("members", [data]):
            cfg = from_dict(RunConfig, member["config"])
            steps = cfg.total_steps - member.get("branch_step", 0)
            total += steps * (model_costs(cfg.model).flops_exact * cfg.tokens_per_step + STEP_FLOPS)
        return total
    except Exception:  # a hint only: an unreadable task file sorts last
        return 0.0


def longest_first(tasks: list) -> list:
    """The tasks, longest first (`cost_of`; ties in their order): the longest-processing-time
    order, so the grid does not end waiting for one long cell started last."""
    return sorted(tasks, key=lambda t: -cost_of(t))


def next_task(queue: list, shape: str | None):
    """The first queued task of `shape` (the worker's programs for it are built) among those within
    `SAME_COST` of the first's cost, else the first: the queue is longest first (`longest_first`),
    so a worker keeps to its shape without taking a short cell before a long one. The order of the
    cells within a wave changes, never what they compute."""
    least = SAME_COST * cost_of(queue[0])
    for i, task in enumerate(queue):
        if cost_of(task) < least:
            break
        if shape is not None and shape_of(task) == shape:
            return queue.pop(i)
    return queue.pop(0)


class PoolLauncher:
    """The local launcher with persistent workers: up to `workers` of them, each running the
    next queued task when its last one ended — longest first, one of the shape it ran last among
    the longest if any (`next_task`; same interface as `lab.study.launchers`)."""

    def __init__(self, workers: int = 1, grace_s: float = 300, pin: bool = False):
        self.workers, self.grace_s, self.pin = max(1, workers), grace_s, pin

    def run(self, tasks: list, on_done: Callable, on_poll: Callable = lambda: None) -> None:
        queue, slots = longest_first(tasks), []
        try:
            while queue or any(w.task is not None for w in slots):
                on_poll()
                slots = [w for w in slots if w.task is not None or w.alive()]
                for w in [w for w in slots if w.task is None]:
                    if queue:
                        w.send(next_task(queue, w.shape))
                while queue and len(slots) < self.workers:
                    task = queue.pop(0)
                    slot = free_slot(self.workers, [w.slot for w in slots])
                    slots.append(PoolWorker.start(task, slot, self.pin))
                    slots[-1].send(task)
                for w in slots:
                    code = w.poll() if w.task is not None else None
                    if code is not None:
                        task, w.task = w.task, None
                        on_done(task, code)
                time.sleep(0.05)
        except BaseException:
            self.stop(slots)
            raise
        for w in slots:
            w.close(self.grace_s)

    def stop(self, slots: list[PoolWorker]) -> None:
        """SIGTERM every worker (a running task saves its checkpoint), then wait (SIGKILL after
        grace_s)."""
        for w in slots:
            if w.alive():
                w.proc.terminate()
        deadline = time.monotonic() + self.grace_s
        for w in slots:
            stop_process(w.proc, max(0.1, deadline - time.monotonic()))
            os.close(w.reply)


__all__ = ["STOPPED", "PoolLauncher", "PoolWorker", "pool_enabled"]
