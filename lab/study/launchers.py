"""Where a study's tasks run, behind one small interface.

    launcher.run(tasks, on_done, on_poll)

runs every task (a task file for `python -m lab.study.worker`), calls `on_done(task, exit_code)`
in the driver as each one ends, and `on_poll()` about every half second so the driver can draw
progress. If `on_poll` raises (the driver got SIGTERM/SIGINT: `lab.study.signals`), or anything else
goes wrong in the driver, the launcher stops what it started before the exception leaves `run`:
local workers get SIGTERM and `grace_s` seconds to save a checkpoint, Ray tasks and SLURM jobs are
cancelled (their worker gets SIGTERM the same way). Three implementations:

* `local`: up to K worker processes on this machine; by default persistent ones that run cell
  after cell (`lab.study.pool`; LAB_STUDY_POOL=0: a process per cell).
* `ray`: one Ray task per study task (`ray.init()` starts a local cluster; pass an address for a
  real one), with its CPU/GPU resources and retries on worker loss.
* `slurm`: one job per task through submitit (`cluster="local"` runs them as local processes,
  which is how it is tested here).

Every launcher ends up running `lab.study.worker.run_task(TASK.json)` (`python -m lab.study.worker
TASK.json`, or a pool worker's loop), so a cell runs identically anywhere.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.study.worker import free_slot, run_task_file, stop_process, worker_cpu, worker_env


@dataclass
class Task:
    task_id: str
    path: Path  # the task file
    log: Path  # where the worker's output goes
    workers: int = 1  # the study's workers sharing a machine (lab.study.worker.worker_env)


class LocalLauncher:
    """One process per cell, up to `workers` at a time; `pin`: each on a CPU of its own (`worker_cpu`)."""

    def __init__(self, workers: int = 1, grace_s: float = 300, pin: bool = False):
        self.workers, self.grace_s, self.pin = max(1, workers), grace_s, pin

    def start(self, task: Task, slot: int = 0) -> tuple:
        log = open(task.log, "a")
        proc = subprocess.Popen(
            [sys.executable, "-m", "lab.study.worker", str(task.path)],
            env=worker_env(task.workers, worker_cpu(slot) if self.pin else None),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return task, proc, log

    def run(self, tasks: list[Task], on_done: Callable, on_poll: Callable = lambda: None) -> None:
        queue, active = list(tasks), {}
        try:
            while queue or active:
                on_poll()
                while queue and len(active) < self.workers:
                    task = queue.pop(0)
                    slot = free_slot(self.workers, [a[3] for a in active.values()])
                    active[task.task_id] = (*self.start(task, slot), slot)
                for task_id, (task, proc, log, _) in list(active.items()):
                    if proc.poll() is not None:
                        log.close()
                        del active[task_id]
                        on_done(task, proc.returncode)
                time.sleep(0.2)
        finally:
            self.stop(list(active.values()))

    def stop(self, active: list[tuple]) -> None:
        """SIGTERM every running worker, then wait (SIGKILL after grace_s)."""
        for _, proc, _, _ in active:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + self.grace_s
        for _, proc, log, _ in active:
            stop_process(proc, max(0.1, deadline - time.monotonic()))
            log.close()


class RayLauncher:
    def __init__(
        self,
        address: str | None = None,
        cpus_per_task: float = 1,
        gpus_per_task: float = 0,
        retries: int = 2,
        grace_s: float = 300,
    ):
        try:
            import ray
        except ImportError:
            from lab.config import ConfigError

            raise ConfigError("the ray launcher needs Ray: pip install 'scaling-lab[ray]'") from None
        self.ray, self.grace_s = ray, grace_s
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"include_dashboard": False}
            # Workers must import this package: ship the source tree with the job on a cluster.
            root = str(Path(__file__).resolve().parents[2])
            ray.init(**kwargs, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": root}})
        self.remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=retries)(
            run_task_file
        )

    def run(self, tasks: list[Task], on_done: Callable, on_poll: Callable = lambda: None) -> None:
        refs = {self.remote.remote(str(t.path), t.workers, str(t.log)): t for t in tasks}
        try:
            while refs:
                on_poll()
                ready, _ = self.ray.wait(list(refs), num_returns=1, timeout=0.5)
                for ref in ready:
                    task = refs.pop(ref)
                    on_done(task, self.exit_code(ref, task))
        finally:
            self.cancel(list(refs))

    def exit_code(self, ref, task: Task) -> int:
        try:
            return self.ray.get(ref)
        except Exception as e:  # the task died even after its retries
            with open(task.log, "a") as f:
                f.write(f"ray task failed: {type(e).__name__}: {e}\n")
            return 1

    def cancel(self, refs: list) -> None:
        """A running task gets KeyboardInterrupt, and run_task_file passes SIGTERM to its worker."""
        for ref in refs:
            self.ray.cancel(ref)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=self.grace_s)


class SlurmLauncher:
    def __init__(
        self,
        folder: Path,
        cluster: str | None = None,
        partition: str | None = None,
        cpus_per_task: int = 1,
        gpus_per_task: int = 0,
        timeout_min: int = 24 * 60,
        grace_s: float = 300,
    ):
        try:
            import submitit
        except ImportError:
            from lab.config import ConfigError

            raise ConfigError("the slurm launcher needs submitit: pip install 'scaling-lab[slurm]'") from None
        # cluster=None: SLURM where `sbatch` exists, else submitit's local executor.
        self.executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        params = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task, "gpus_per_node": gpus_per_task}
        if partition:
            params["slurm_partition"] = partition
        self.executor.update_parameters(**params)
        self.grace_s = grace_s

    def run(self, tasks: list[Task], on_done: Callable, on_poll: Callable = lambda: None) -> None:
        jobs = {self.executor.submit(run_task_file, str(t.path), t.workers, str(t.log)): t for t in tasks}
        try:
            while jobs:
                on_poll()
                for job, task in list(jobs.items()):
                    if job.done():
                        del jobs[job]
                        on_done(task, self.exit_code(job, task))
                time.sleep(0.5)
        finally:
            self.cancel(list(jobs))

    @staticmethod
    def exit_code(job, task: Task) -> int:
        try:
            return job.result()
        except Exception as e:
            with open(task.log, "a") as f:
                f.write(f"slurm job failed: {type(e).__name__}: {e}\n")
            return 1

    def cancel(self, jobs: list) -> None:
        """scancel (SLURM signals every process of the job: the worker saves a checkpoint), or
        SIGINT to a local job (run_task_file passes SIGTERM to its worker); then wait."""
        for job in jobs:
            job.cancel(check=False)
        deadline = time.monotonic() + self.grace_s
        while jobs and time.monotonic() < deadline:
            jobs = [j for j in jobs if not j.done()]
            time.sleep(0.5)


def make_launcher(
    name: str,
    out: Path,
    *,
    workers: int = 1,
    pin: bool = False,
    address: str | None = None,
    partition: str | None = None,
    cpus_per_task: int = 1,
    gpus_per_task: int = 0,
):
    if name == "local":
        from lab.study.pool import PoolLauncher, pool_enabled

        return PoolLauncher(workers, pin=pin) if pool_enabled() else LocalLauncher(workers, pin=pin)
    if name == "ray":
        return RayLauncher(address, cpus_per_task, gpus_per_task)
    if name == "slurm":
        return SlurmLauncher(
            out / "slurm", partition=partition, cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task
        )
    from lab.config import ConfigError

    raise ConfigError(f"unknown launcher {name!r} (choose local, ray or slurm)")
