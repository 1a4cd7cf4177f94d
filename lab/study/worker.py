"""Run one cell of a study — `python -m lab.study.worker TASK.json` — in a fresh process.

TASK.json holds a `lab.study.tasks.TaskSpec` (or a `PackSpec`: a pack's members, trained as one
vmapped step). A spec with a `tracker` (`lab study --tracker`) logs live into it as it trains, in
the cell's run directory, grouped by the study (`lab.training.trackers`). `worker_env` is the one
place a worker's environment is built.

The cell's run directory is trained with `lab.training.train.train(..., resume=True)`, so a task that is
run again continues where it stopped (and a run whose result.json is damaged is re-evaluated from
its final checkpoint). A cooldown branch first receives its long run's checkpoint at the branch
step and the long run's metrics up to it.

The worker holds an exclusive lock on TASK.lock while it trains, so two workers never train one
cell at once, even when a driver was killed and its orphaned worker is still saving a checkpoint.
It also holds each of its cells' run locks (`lab.rundir.RunLock`, what `lab train` takes), waiting
for a holder (a `lab train --resume` of the cell, a worker of another pack of it) to end: locks
are taken in the order of their paths, so two workers never wait on each other. The study's own
lock (DIR/.lock) is the driver's; a worker never takes it.

Exit status: 0 completed, 1 diverged or failed (recorded in the run directory), 143 stopped by
SIGTERM/SIGINT after saving a checkpoint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.study.tasks import PackSpec, TaskSpec

STOPPED = 128 + signal.SIGTERM
# when the cell's process was started (epoch seconds, set by whoever starts it): its result's
# cell_wall_s and overhead_s count from there (lab.training.timing)
CELL_STARTED = "LAB_CELL_STARTED"


def run_cell(spec: TaskSpec | PackSpec, started: float | None = None) -> int:
    """Train a task's cell (a `lab.study.tasks.TaskSpec`), or its pack's members (a `PackSpec`),
    holding their run locks; `started`: when the cell started (None: this process's start)."""
    from lab.study.tasks import PackSpec

    runs = [m.run_dir for m in spec.members] if isinstance(spec, PackSpec) else [spec.run_dir]
    with run_locks(runs):
        if isinstance(spec, PackSpec):  # a pack: several cells in one vmapped step (lab.study.packs)
            return run_pack_task(spec, started)
        return _run_one(spec, started)


def run_locks(run_dirs) -> contextlib.ExitStack:
    """The run locks of `run_dirs`, waited for and taken in the order of their paths (no two
    workers can each hold one the other waits for); `train` takes them again (reentrant)."""
    from lab.rundir import RunLock

    stack = contextlib.ExitStack()
    try:
        for path in sorted({Path(p).absolute() for p in run_dirs}):
            path.mkdir(parents=True, exist_ok=True)
            stack.enter_context(RunLock(path, wait=True))
    except BaseException:
        stack.close()
        raise
    return stack


def _run_one(spec: TaskSpec, started: float | None = None) -> int:
    from lab.rundir import RunDir
    from lab.training.train import Preempted, RunFailed, RunOptions, train

    run = RunDir(spec.run_dir)
    if spec.branch_of:
        run.seed_branch(RunDir(spec.parent_dir), spec.branch_step)
    try:
        result = train(
            spec.config,
            run.path,
            resume=True,
            progress=False,
            extra_result=spec.extra_result,
            keep_steps=spec.keep_steps,
            # lab study --tracker: live
            options=RunOptions(
                tracker=spec.tracker, group=spec.group, started=started, final_scores=spec.final_scores
            ),
        )
    except RunFailed:  # recorded as status `failed` in the run directory
        return 1
    except (Preempted, KeyboardInterrupt) as e:
        print(f"worker: {e or 'interrupted'}", file=sys.stderr)
        return STOPPED
    return 0 if result["status"] == "completed" else 1


PARENT = "LAB_STUDY_WORKER_PARENT"  # pid of the process that started the worker


def run_pack_task(spec: PackSpec, started: float | None = None) -> int:
    """Train a pack's members (a `lab.study.tasks.PackSpec`; lab.study.packs plans them); exit
    status as `run_cell`."""
    from lab.training.packed.train import train_pack
    from lab.training.train import Preempted, RunFailed

    members = spec.members
    try:
        results = train_pack(
            [m.config for m in members],
            [str(m.run_dir) for m in members],
            pack_id=spec.pack_id,
            resume=True,
            extra_results=[m.extra_result for m in members],
            tracker=members[0].tracker,  # every member's (the task writer gives them the study's)
            group=members[0].group,
            started=started,
            final_scores=members[0].final_scores,  # the study's, the same for every member
        )
    except RunFailed:
        return 1
    except (Preempted, KeyboardInterrupt) as e:
        print(f"worker: {e or 'interrupted'}", file=sys.stderr)
        return STOPPED
    return 0 if all(r["status"] == "completed" for r in results) else 1


SINGLE_THREADED_XLA = "--xla_cpu_multi_thread_eigen=false"
WORKER_CPU = "LAB_WORKER_CPU"  # the CPU a pinned worker runs on (Study.pin_workers)


def worker_cpu(slot: int) -> int | None:
    """The CPU of worker slot `slot` (0, 1, ...): the slot-th of the CPUs this process may run on,
    round robin; None where the OS cannot pin (not Linux)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[slot % len(cpus)]


def free_slot(workers: int, used) -> int:
    """The lowest worker slot in 0..workers-1 that no running worker holds (`used`)."""
    taken = set(used)
    return next((s for s in range(workers) if s not in taken), len(taken))


def pin_to_cpu() -> None:
    """Run this process on the one CPU `WORKER_CPU` names, if it names one — before JAX creates its
    CPU client, whose thread pools are sized by the CPUs the process may use: pinned, XLA's pool
    (and the YNNPACK dots it runs) has one thread, so two workers on two cores stop contending for
    them (~10% faster steps, measured in benchmarks/README.md) and a cell's losses no longer depend on
    how many cores the machine has. Unpinned losses differ from pinned ones for widths whose dots split
    their work by the pool's thread count: by 1e-6 after a few thousand steps, up to 1.3% after the
    default study's longest runs (benchmarks/README.md)."""
    cpu = os.environ.get(WORKER_CPU)
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
        print(f"worker: pinned to CPU {cpu}", file=sys.stderr, flush=True)


def worker_env(workers: int = 1, cpu: int | None = None) -> dict:
    """The whole environment of a worker process that this process starts (the one place that
    builds it): this machine's environment; with `workers` > 1 sharing the machine, XLA on one
    thread each (several single-threaded XLA processes beat one multi-threaded one on CPU); the
    CPU it is to pin itself to (`cpu`, `pin_to_cpu`), if any; and this process's pid, for
    `die_with_parent`."""
    env = dict(os.environ)
    if workers > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + SINGLE_THREADED_XLA).strip()
    env.pop(WORKER_CPU, None)
    if cpu is not None:
        env[WORKER_CPU] = str(cpu)
    env[PARENT] = str(os.getpid())
    env[CELL_STARTED] = repr(time.time())
    return env


def die_with_parent() -> None:
    """Linux: this worker gets SIGTERM (and so saves a checkpoint) when the process that started
    it dies, however it dies (SIGKILL, a Ray worker torn down): no orphaned workers. Set here,
    after exec, rather than in a Popen preexec_fn, which would fork a multithreaded JAX process.
    The kernel signals when the parent *thread* that forked the worker exits, so workers must be
    started from a thread that lives as long as the study (every launcher starts them from the
    main thread of its process)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    parent = os.environ.get(PARENT)
    if parent and os.getppid() != int(parent):  # it died before the line above took effect
        sys.exit(STOPPED)


def run_task_file(path: str, workers: int = 1, log_path: str | None = None, grace_s: float = 300) -> int:
    """Run a task file in a child process and return its exit code: what the Ray and SLURM
    launchers execute remotely. If this process is interrupted (a cancelled Ray task or SLURM
    job), the child gets SIGTERM and `grace_s` seconds to save a checkpoint. `workers`: as in
    `worker_env`, the number of the study's workers sharing a machine."""
    cmd = [sys.executable, "-m", "lab.study.worker", path]
    take_sigint_back()
    log = open(log_path, "a") if log_path else None
    try:
        proc = subprocess.Popen(
            cmd, env=worker_env(workers), stdout=log, stderr=subprocess.STDOUT if log else None
        )
        try:
            while proc.poll() is None:  # not proc.wait(): a cancelled Ray task's KeyboardInterrupt
                time.sleep(0.2)  # is raised between bytecodes, never inside a blocking waitpid
            return proc.returncode
        except BaseException:
            stop_process(proc, grace_s)
            raise
    finally:
        if log:
            log.close()


def take_sigint_back() -> None:
    """Handle SIGINT again in this (main) thread if it is ignored. A cancelled Ray task gets its
    KeyboardInterrupt as if SIGINT had arrived, and Python drops that where SIGINT is ignored — as in
    every process a driver started in the background has (`nohup lab study ... --launcher ray &`):
    measured, the driver's SIGTERM then left the task training to its end instead of checkpointing."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def stop_process(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM, then SIGKILL if it has not ended after `grace_s` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cell_started() -> float | None:
    """When whoever started this process started it (`CELL_STARTED`), else None."""
    try:
        return float(os.environ[CELL_STARTED])
    except (KeyError, ValueError):
        return None


def run_task(task_path: Path, started: float | None = None) -> int:
    """Run a task file as `python -m lab.study.worker TASK.json` does, in this process: under
    TASK.lock, which waits for a worker of an earlier driver that still runs it."""
    from lab.study.tasks import read_task

    with open(Path(task_path).with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return run_cell(read_task(task_path), started)


def serve(reply_fd: int, started: float | None = None) -> int:
    """A persistent worker (`lab.study.pool`): run the task file named on each line of stdin, its
    output in its TASK.log, and answer its exit code on `reply_fd`; a line may carry, after a
    tab, when the driver handed the task over (its cell_wall_s counts from there; the first
    task's from `started`, this process's start). Ends at EOF, or after a task was stopped by
    SIGTERM/SIGINT."""
    with os.fdopen(reply_fd, "w", buffering=1) as reply:
        for line in sys.stdin:
            path, _, handed = line.rstrip("\n").partition("\t")
            if not path:
                continue
            when = started if started is not None else (float(handed) if handed else None)
            started = None
            code = _in_log(Path(path), when)
            reply.write(f"{code}\n")
            if code == STOPPED:
                return STOPPED
    return 0


def _in_log(task_path: Path, started: float | None) -> int:
    """`run_task` with this process's stdout and stderr in the task's log; an exception is the
    task's failure (exit code 1, its traceback in the log), as it is for a process of its own."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    fd = os.open(task_path.with_suffix(".log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)  # what writes to the file descriptors (XLA, a handler holding the old stderr)
    os.dup2(fd, 2)
    log = os.fdopen(fd, "w", buffering=1)  # what writes to sys.stdout / sys.stderr
    try:
        with log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            return _run_logged(task_path, started)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _run_logged(task_path: Path, started: float | None) -> int:
    import traceback

    try:
        return run_task(task_path, started)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        return STOPPED
    except BaseException:
        traceback.print_exc()
        return 1


def main(argv=None) -> int:
    from lab.training.runtime import setup

    die_with_parent()
    pin_to_cpu()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve":  # a persistent worker (lab.study.pool)
        setup()
        return serve(int(argv[1]), cell_started())
    setup()
    return run_task(Path(argv[0]), cell_started())


if __name__ == "__main__":
    sys.exit(main())
