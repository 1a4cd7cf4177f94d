"""Progress of a study: one bar over cells, one bar per active run (read from its metrics.jsonl,
so it works for runs in worker processes, on Ray or under SLURM with a shared filesystem)."""

from __future__ import annotations

from typing import Callable

from lab.rundir import RunDir


class StudyProgress:
    def __init__(self, total: int, initial: int, run_dir: Callable[[str], RunDir], enabled: bool = True):
        from tqdm.auto import tqdm

        self.tqdm, self.enabled, self.run_dir = tqdm, enabled, run_dir
        self.cells = tqdm(total=total, initial=initial, desc="cells", unit="cell", disable=not enabled, position=0)
        self.waiting: dict[str, int] = {}  # cell_id -> steps, not yet logging
        self.active: dict[str, object] = {}  # cell_id -> its bar
        self.counts: dict[str, int] = {}

    def start(self, steps: dict[str, int]) -> None:
        self.waiting.update(steps)

    def poll(self) -> None:
        for cell_id, total in list(self.waiting.items()):
            if self.run_dir(cell_id).last_logged_step() > 0:  # a run is active once it logs
                del self.waiting[cell_id]
                self.active[cell_id] = self.tqdm(total=total, desc=cell_id[:28], unit="step", leave=False,
                                                 disable=not self.enabled, position=len(self.active) + 1)
        for cell_id, bar in self.active.items():
            bar.n = min(self.run_dir(cell_id).last_logged_step(), bar.total)
            bar.refresh()

    def done(self, cell_id: str, status: str) -> None:
        self.waiting.pop(cell_id, None)
        bar = self.active.pop(cell_id, None)
        if bar is not None:
            bar.close()
        self.counts[status] = self.counts.get(status, 0) + 1
        self.cells.update(1)
        self.cells.set_postfix(self.counts)

    def close(self) -> None:
        for bar in self.active.values():
            bar.close()
        self.cells.close()
