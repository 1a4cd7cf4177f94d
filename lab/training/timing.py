"""Where a run's time goes besides its training steps: the result fields of issue 25.

    cell_wall_s    the cell's wall time: from its process's start (a pool worker: from the moment
                   the driver handed it the cell; its first cell from the worker's start) to the
                   moment its result is written
    train_s        the training steps' own time in this process (the loop's, evaluation and
                   checkpointing excluded; what tokens_per_s divides by)
    overhead_s     cell_wall_s - train_s
    startup_s      before the first step, compile_s excluded: interpreter and JAX start-up, the
                   corpus, the run directory, the initial state, restoring a checkpoint
    compile_s      the training step's compile (`lab.training.step.compile_step`)
    eval_s         the periodic validation evaluations (their compile included)
    final_eval_s   the final scores (`lab.evals.final`)
    checkpoint_s   saving checkpoints (and waiting for an asynchronous save to end)

The parts do not add up to overhead_s: what is left is the metrics lines, the progress bar and
the result files, milliseconds. A study's overhead share is sum(overhead_s) / sum(cell_wall_s)
over its rows (`lab.study.results.overhead_share`).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from lab.result import OVERHEAD

_IMPORTED = time.time()
PARTS = OVERHEAD[3:]  # startup_s, compile_s, eval_s, final_eval_s, checkpoint_s


def process_started() -> float:
    """This process's start (epoch seconds): Linux's /proc, else when this module was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


class Timings:
    """A run's clock: `started` (epoch seconds; None: this process's start) and the parts
    measured so far."""

    def __init__(self, started: float | None = None):
        self.started = process_started() if started is None else started
        self.parts = dict.fromkeys(PARTS, 0.0)

    @contextmanager
    def part(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] += time.perf_counter() - t0

    def before_first_step(self, compile_s: float) -> None:
        """Call just before the first step: startup_s is what has passed since the start, less
        the step's compile."""
        self.parts["compile_s"] = compile_s
        self.parts["startup_s"] = max(0.0, time.time() - self.started - compile_s)

    def fields(self, train_s: float) -> dict:
        cell = time.time() - self.started
        return {"cell_wall_s": cell, "train_s": train_s, "overhead_s": cell - train_s, **self.parts}
