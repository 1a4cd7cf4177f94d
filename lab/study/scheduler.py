"""The study's scheduler: runs the cells still to do through a launcher (`lab.study.launchers`), long
runs first, then the cooldown branches that start from their checkpoints, and records each cell's
end in the results table (`lab.study.results.ResultsTable`). A branch whose long run did not
complete is recorded `failed` without running; a worker that ended without a trusted result leaves
a `failed` row with the last line of its log (the cell runs again next time)."""

from __future__ import annotations

from pathlib import Path

from lab.study.launchers import Task
from lab.study.results import ResultsTable
from lab.study.signals import StopSignals
from lab.study.spec import Cell
from lab.study.taskwriter import TaskWriter


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][-300:] if lines else "no output"


class Scheduler:
    def __init__(
        self, table: ResultsTable, writer: TaskWriter, launcher, stop: StopSignals, progress: bool = True
    ):
        self.table, self.writer, self.launcher, self.stop, self.progress = table, writer, launcher, stop, progress
        self.pack_members: dict[str, list[str]] = {}  # pack task id -> its member cell ids

    def run(self, todo: list[Cell]) -> None:
        """Long runs first, then the cooldown branches that start from their checkpoints."""
        from lab.study.progress import StudyProgress

        by_id = {c.cell_id: c for c in todo}
        flops = {c.cell_id: c.flops * (1 - c.branch_step / c.config.total_steps) for c in self.table.cells}
        bars = StudyProgress(flops, set(flops) - set(by_id), self.table.run_dir, enabled=self.progress)

        def on_done(task: Task, code: int) -> None:
            for cell_id in self.pack_members.get(task.task_id, [task.task_id]):
                self.finished(by_id[cell_id], code)
                bars.done(cell_id, self.table.status[cell_id])

        def on_poll() -> None:
            self.stop.check()
            bars.poll()

        try:
            for wave in ([c for c in todo if not c.branch_of], [c for c in todo if c.branch_of]):
                cells = self.runnable(wave, bars)
                tasks, members = self.writer.tasks(cells)
                self.pack_members.update(members)
                bars.start({c.cell_id: c.config.total_steps for c in cells})
                self.launcher.run(tasks, on_done, on_poll)
        finally:
            bars.close()

    def finished(self, cell: Cell, exit_code: int) -> None:
        """The run directory's result is the truth; a worker that ended without a trusted one
        leaves a `failed` row with the last line of its log (the cell runs again next time)."""
        result = self.table.run_dir(cell.cell_id).read_result()
        if result is None:
            result = {
                "status": "failed",
                "error": f"worker exited with {exit_code}: {_last_line(self.writer.log(cell.cell_id))}",
            }
        self.table.record(cell, result)

    def runnable(self, wave: list[Cell], bars) -> list[Cell]:
        """The cells of a wave that can start: a branch needs its long run completed."""
        out = []
        for cell in wave:
            parent = self.table.status.get(cell.branch_of) if cell.branch_of else "completed"
            if parent == "completed":
                out.append(cell)
                continue
            self.table.record(
                cell, {"status": "failed", "error": f"its long run {cell.branch_of} ended {parent or 'unrun'}"}
            )
            bars.done(cell.cell_id, "failed")
        return out
