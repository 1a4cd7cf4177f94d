"""The study's task writer: DIR/tasks/ID.json (a `lab.study.tasks` spec) for each task to run now,
one per cell or, with `pack` > 1, one per pack of same-program cells (`lab.study.packs`), and the
`Task` a launcher runs for it. The worker writes ID.log (its output) and holds ID.lock."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lab.files import write_json_atomic
from lab.rundir import RunDir
from lab.study.launchers import Task
from lab.study.results import study_fields
from lab.study.spec import Cell, Study
from lab.study.tasks import PackSpec, Spec, TaskSpec, task_id


class TaskWriter:
    """`cells`: all of the study's cells (packs are planned over them, so a pack's id is the same
    every time); `run_dir(cell_id)`: a cell's run directory; `workers`: the study's workers sharing
    a machine (`lab.study.worker.worker_env`); `tracker`: every cell logs live into it, grouped by
    the study (`lab study --tracker`)."""

    def __init__(
        self,
        study: Study,
        cells: list[Cell],
        out: Path,
        run_dir: Callable[[str], RunDir],
        pack: int = 1,
        workers: int = 1,
        tracker: str | None = None,
    ):
        self.study, self.cells, self.run_dir, self.tracker = study, cells, run_dir, tracker
        self.dir = Path(out) / "tasks"
        self.pack, self.workers = pack, workers  # pack: members per packed task; 1 = every cell alone

    def spec(self, cell: Cell) -> TaskSpec:
        """The cell's task, alone."""
        parent = self.run_dir(cell.branch_of).path.resolve() if cell.branch_of else None
        return TaskSpec(
            cell.cell_id,
            self.run_dir(cell.cell_id).path.resolve(),
            cell.config,
            study_fields(self.study, cell),
            tuple(cell.keep_steps),
            cell.branch_of,
            cell.branch_step,
            parent,
            tracker=self.tracker,
            group=self.study.name if self.tracker else None,
            final_scores=self.study.final_scores == "on",
        )

    def log(self, task: str) -> Path:
        """The worker's output of task `task` (a cell's or a pack's id)."""
        return self.dir / f"{task}.log"

    def write(self, spec: Spec) -> Task:
        name = task_id(spec)
        path = self.dir / f"{name}.json"
        write_json_atomic(path, spec.to_dict())
        return Task(name, path.resolve(), self.log(name).resolve(), self.workers)

    def tasks(self, cells: list[Cell]) -> tuple[list[Task], dict[str, list[str]]]:
        """(tasks, {pack task id: its member cell ids among `cells`}) for the cells to run now."""
        if self.pack <= 1:
            specs = [self.spec(c) for c in cells]
        else:
            from lab.study.packs import pack_specs

            specs = pack_specs(self.cells, cells, self.pack, self.spec)
        todo = {c.cell_id for c in cells}
        members = {
            s.pack_id: [m.cell_id for m in s.members if m.cell_id in todo]
            for s in specs
            if isinstance(s, PackSpec)
        }
        return [self.write(s) for s in specs], members
