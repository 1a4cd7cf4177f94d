"""Multi-host start-up: one `lab train` process per host (or per GPU), joined by
`jax.distributed.initialize`.

A process is part of a multi-process run when any of these holds:
* `--coordinator HOST:PORT --num-processes N --process-id I` were given,
* JAX's own variables are set (JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID),
* it runs under a scheduler JAX detects itself: a SLURM step with several tasks, Open MPI
  (mpirun), or a multi-host Cloud TPU slice.
Otherwise nothing happens and the run uses this process's devices only.
"""

from __future__ import annotations

import os

import jax


def _multi_process_env() -> bool:
    env = os.environ
    if int(env.get("SLURM_NTASKS", env.get("SLURM_STEP_NUM_TASKS", "1")) or 1) > 1:
        return True
    if int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return True
    return "," in env.get("TPU_WORKER_HOSTNAMES", "")


def maybe_initialize(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> bool:
    """Join a multi-process run if one is configured; returns whether it did. Must run before
    any JAX computation."""
    env = os.environ
    coordinator = coordinator or env.get("JAX_COORDINATOR_ADDRESS")
    if num_processes is None and env.get("JAX_NUM_PROCESSES"):
        num_processes = int(env["JAX_NUM_PROCESSES"])
    if process_id is None and env.get("JAX_PROCESS_ID"):
        process_id = int(env["JAX_PROCESS_ID"])
    explicit = coordinator is not None and (num_processes or 1) > 1
    if not (explicit or _multi_process_env()):
        return False
    # CPU processes exchange data through gloo; accelerators use their own collectives.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True
