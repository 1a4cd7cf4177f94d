"""Where a study's tasks run, behind one small interface.

    launcher.run(tasks, on_done, on_poll)

runs every task (a task file for `python -m lab.study.worker`), calls `on_done(task, exit_code)`
in the driver as each one ends, and `on_poll()` about every half second so the driver can draw
progress. Three implementations:

* `local`: up to K worker processes on this machine.
* `ray`: one Ray task per study task (`ray.init()` starts a local cluster; pass an address for a
  real one), with its CPU/GPU resources and retries on worker loss.
* `slurm`: one job per task through submitit (`cluster="local"` runs them as local processes,
  which is how it is tested here).

Every launcher ends up executing `lab.study.worker.launch`, so a cell runs identically anywhere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Task:
    task_id: str
    path: Path  # the task file
    log: Path  # where the worker's output goes
    env: dict = field(default_factory=dict)  # extra environment for the worker


def worker_env(extra: dict) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


class LocalLauncher:
    def __init__(self, workers: int = 1):
        self.workers = max(1, workers)

    def run(self, tasks: list[Task], on_done: Callable, on_poll: Callable = lambda: None) -> None:
        queue, active = list(tasks), {}
        while queue or active:
            while queue and len(active) < self.workers:
                task = queue.pop(0)
                log = open(task.log, "a")
                proc = subprocess.Popen([sys.executable, "-m", "lab.study.worker", str(task.path)],
                                        env=worker_env(task.env), stdout=log, stderr=subprocess.STDOUT)
                active[task.task_id] = (task, proc, log)
            for task_id, (task, proc, log) in list(active.items()):
                if proc.poll() is not None:
                    log.close()
                    del active[task_id]
                    on_done(task, proc.returncode)
            on_poll()
            time.sleep(0.2)


def _ray_task(path: str, log: str, env: dict) -> int:
    from lab.study.worker import launch

    return launch(path, worker_env(env), log)


class RayLauncher:
    def __init__(self, address: str | None = None, cpus_per_task: float = 1, gpus_per_task: float = 0,
                 retries: int = 2):
        try:
            import ray
        except ImportError:
            from lab.config import ConfigError

            raise ConfigError("the ray launcher needs Ray: pip install 'scaling-lab[ray]'") from None
        self.ray = ray
        if not ray.is_initialized():
            kwargs = {"address": address} if address else {"include_dashboard": False}
            # Workers must import this package: ship the source tree with the job on a cluster.
            root = str(Path(__file__).resolve().parents[2])
            ray.init(**kwargs, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": root}})
        self.remote = ray.remote(num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=retries)(_ray_task)

    def run(self, tasks: list[Task], on_done: Callable, on_poll: Callable = lambda: None) -> None:
        refs = {self.remote.remote(str(t.path), str(t.log), t.env): t for t in tasks}
        while refs:
            ready, _ = self.ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in ready:
                task = refs.pop(ref)
                try:
                    code = self.ray.get(ref)
                except Exception as e:  # the task died even after its retries
                    with open(task.log, "a") as f:
                        f.write(f"ray task failed: {type(e).__name__}: {e}\n")
                    code = 1
                on_done(task, code)
            on_poll()


class SlurmLauncher:
    def __init__(self, folder: Path, cluster: str | None = None, partition: str | None = None,
                 cpus_per_task: int = 1, gpus_per_task: int = 0, timeout_min: int = 24 * 60):
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

    def run(self, tasks: list[Task], on_done: Callable, on_poll: Callable = lambda: None) -> None:
        jobs = {self.executor.submit(_ray_task, str(t.path), str(t.log), t.env): t for t in tasks}
        while jobs:
            for job, task in list(jobs.items()):
                if job.done():
                    del jobs[job]
                    try:
                        code = job.result()
                    except Exception as e:
                        with open(task.log, "a") as f:
                            f.write(f"slurm job failed: {type(e).__name__}: {e}\n")
                        code = 1
                    on_done(task, code)
            on_poll()
            time.sleep(0.5)


def make_launcher(name: str, out: Path, *, workers: int = 1, address: str | None = None,
                  partition: str | None = None, cpus_per_task: int = 1, gpus_per_task: int = 0):
    if name == "local":
        return LocalLauncher(workers)
    if name == "ray":
        return RayLauncher(address, cpus_per_task, gpus_per_task)
    if name == "slurm":
        return SlurmLauncher(out / "slurm", partition=partition, cpus_per_task=cpus_per_task,
                             gpus_per_task=gpus_per_task)
    from lab.config import ConfigError

    raise ConfigError(f"unknown launcher {name!r} (choose local, ray or slurm)")
