"""Progress of a study: one bar over the study's FLOPs (cells done, FLOPs done / total, and an
ETA from the FLOP rate so far, so a grid of unequal cells gets an honest estimate), and one bar per
active run. Runs are read from their metrics.jsonl, so it works for runs in worker processes, on
Ray or under SLURM with a shared filesystem."""

from __future__ import annotations

import time
from collections.abc import Callable

from lab.rundir import RunDir


def _flops(x: float) -> str:
    return f"{x:.3g}"


def eta_text(done: float, total: float, elapsed_s: float) -> str:
    """`ETA 3m20s` from the FLOP rate so far (`ETA ?` before any FLOPs are done)."""
    if done <= 0 or elapsed_s <= 0:
        return "ETA ?"
    left = max(0.0, (total - done) / (done / elapsed_s))
    return f"ETA {int(left // 60)}m{int(left % 60):02d}s"


class StudyProgress:
    """`flops`: each cell's planned FLOPs (cells finished before this run count as done)."""

    def __init__(
        self, flops: dict[str, float], finished: set[str], run_dir: Callable[[str], RunDir], enabled: bool = True
    ):
        from tqdm.auto import tqdm

        self.tqdm, self.enabled, self.run_dir, self.flops = tqdm, enabled, run_dir, flops
        self.total = float(sum(flops.values()))
        self.n_cells, self.n_done = len(flops), len(finished)
        self.done_flops = float(sum(flops[c] for c in finished if c in flops))
        self.start_flops, self.t0 = self.done_flops, time.monotonic()
        self.bar = tqdm(
            total=self.n_cells,
            initial=self.n_done,
            desc="cells",
            unit="cell",
            disable=not enabled,
            position=0,
            bar_format="{desc}: {n_fmt}/{total_fmt} |{bar}| {postfix}",
        )
        self.waiting: dict[str, int] = {}  # cell_id -> steps, not yet logging
        self.active: dict[str, object] = {}  # cell_id -> its bar
        self.counts: dict[str, int] = {}
        self._postfix()

    def running_flops(self) -> float:
        """FLOPs of the active runs so far (their logged share of steps)."""
        return sum(self.flops.get(c, 0.0) * min(1.0, bar.n / max(1, bar.total)) for c, bar in self.active.items())

    def line(self) -> str:
        done = self.done_flops + self.running_flops()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        return (
            f"FLOPs {_flops(done)}/{_flops(self.total)} ({done / max(self.total, 1e-30):.0%}), "
            f"{eta_text(done - self.start_flops, self.total - self.start_flops, time.monotonic() - self.t0)}"
            + (f", {counts}" if counts else "")
        )

    def _postfix(self) -> None:
        self.bar.set_postfix_str(self.line())

    def start(self, steps: dict[str, int]) -> None:
        self.waiting.update(steps)

    def poll(self) -> None:
        for cell_id, total in list(self.waiting.items()):
            if self.run_dir(cell_id).last_logged_step() > 0:  # a run is active once it logs
                del self.waiting[cell_id]
                self.active[cell_id] = self.tqdm(
                    total=total,
                    desc=cell_id[:28],
                    unit="step",
                    leave=False,
                    disable=not self.enabled,
                    position=len(self.active) + 1,
                )
        for cell_id, bar in self.active.items():
            bar.n = min(self.run_dir(cell_id).last_logged_step(), bar.total)
            bar.refresh()
        self._postfix()

    def done(self, cell_id: str, status: str) -> None:
        self.waiting.pop(cell_id, None)
        bar = self.active.pop(cell_id, None)
        if bar is not None:
            bar.close()
        self.done_flops += self.flops.get(cell_id, 0.0)
        self.counts[status] = self.counts.get(status, 0) + 1
        self.bar.update(1)
        self._postfix()

    def close(self) -> None:
        for bar in self.active.values():
            bar.close()
        self.bar.close()
