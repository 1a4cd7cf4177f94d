"""`lab study`: expand a study file into cells, run the unfinished ones, collect one table.

Layout of a study directory:

    DIR/.lock               held by the running driver (lab.study.lock): one driver at a time
    DIR/study.json          the expanded cells (full configs), for provenance; derived, rewritten
    DIR/results.csv         one row per run or cooldown branch (lab.study.results); derived, rebuilt
    DIR/runs/CELL/          each cell's run directory (lab.rundir.RunDir): the truth
    DIR/tasks/CELL.json     the task file a worker ran, CELL.log its output, CELL.lock its lock
                            (PACK.json, .log, .lock for a pack of cells: lab.study.packs)

A cell whose run directory holds a trusted completed or diverged result (`RunDir.read_result`) is
not trained again; any other cell is (re)started with resume, so an interrupted study continues
where it stopped and a cell whose result.json was damaged is re-evaluated from its final
checkpoint. Every run rebuilds each row of results.csv from its run directory.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from lab.config import ConfigError
from lab.costs import model_costs
from lab.files import DamagedFile, foreign_entries, name_list, read_json, write_json_atomic
from lab.result import FINAL
from lab.rundir import RunDir
from lab.study.launchers import Task, make_launcher
from lab.study.lock import LOCK, StudyLock
from lab.study.results import read_rows, write_rows
from lab.study.signals import StopSignals
from lab.study.spec import Cell, Study, branch_savings


def _extra(study: Study, cell: Cell) -> dict:
    """The study's own fields of a cell's result (and row)."""
    return {"study": study.name, "cell_id": cell.cell_id, "variant": cell.variant, "budget_flops": cell.budget_flops,
            "branch_of": cell.branch_of}


def cell_row(study: Study, cell: Cell, result: dict) -> dict:
    return {**result, **_extra(study, cell)}


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][-300:] if lines else "no output"


# what a study directory holds (see the layout above); `slurm` is submitit's folder
OWN_ENTRIES = {LOCK, "study.json", "results.csv", "runs", "tasks", "slurm",
               "report.md", "fits.json", "figures", "validation", "validation.json", "tracker"}  # + the analysis


def check_directory(out: Path) -> None:
    """--out must be new, empty, or a study directory (one with study.json): a study never
    writes its files among someone else's."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    if not out.is_dir() or (out / "study.json").exists():
        return
    foreign = foreign_entries(out, OWN_ENTRIES)
    if foreign:
        raise ConfigError(f"{out} is not a study directory (it holds {name_list(foreign)}); use an empty or new --out")


def check_plan(out: Path, study: Study) -> None:
    """DIR/study.json, if any, must be this study's; a damaged one is rewritten (it is derived)."""
    try:
        old = read_json(out / "study.json")
    except DamagedFile:
        return
    if old is not None and old.get("study") != study.name:
        raise ConfigError(f"{out} holds study {old.get('study')!r}, not {study.name!r}; use another --out")


class StudyRun:
    def __init__(self, study: Study, cells: list[Cell], out: Path, tracker: str | None = None, pack: int = 1):
        self.study, self.cells, self.out, self.tracker = study, cells, Path(out), tracker
        self.pack = pack  # members per packed task (lab.study.packs); 1 = every cell alone
        self.pack_members: dict[str, list[str]] = {}  # pack task id -> its member cell ids
        self.tracker_runs: dict[str, str] = {}  # cell_id -> its tracker run (lab.trackers)
        self.runs, self.tasks = self.out / "runs", self.out / "tasks"
        self.results = self.out / "results.csv"
        self.status: dict[str, str] = {}
        self.rows: dict[str, dict] = {}  # cell_id -> row, for cells of this study
        self.other_rows: list[dict] = []  # intact rows of cells the study no longer has

    def run_dir(self, cell_id: str) -> RunDir:
        return RunDir(self.runs / cell_id)

    def write_plan(self) -> None:
        self.runs.mkdir(exist_ok=True)
        self.tasks.mkdir(exist_ok=True)
        plan = [{"cell_id": c.cell_id, "budget_flops": c.budget_flops, "branch_of": c.branch_of,
                 "branch_step": c.branch_step, "config": c.config.to_dict()} for c in self.cells]
        data = {"study": self.study.name, "cells": plan}
        try:
            if read_json(self.out / "study.json") == data:
                return
        except DamagedFile:
            pass
        write_json_atomic(self.out / "study.json", data)

    def save_rows(self) -> None:
        rows = [self.rows[c.cell_id] for c in self.cells if c.cell_id in self.rows] + self.other_rows
        if rows or self.results.exists():
            write_rows(self.results, rows)

    def collect_finished(self) -> list[Cell]:
        """Rebuild every row from its run directory; return the cells still to run."""
        ids = {c.cell_id for c in self.cells}
        self.other_rows = [r for r in read_rows(self.results) if r["cell_id"] not in ids]
        todo = []
        for cell in self.cells:
            result = self.run_dir(cell.cell_id).read_result()
            if result and result.get("config_hash") not in (None, cell.config.hash()):
                raise ConfigError(f"{self.run_dir(cell.cell_id).path} was trained with another config than the "
                                  f"study now gives cell {cell.cell_id}; use a new --out (or remove that run "
                                  "directory)")
            if result:
                self.rows[cell.cell_id] = self.row(cell, result)
            if result and result["status"] in FINAL:
                self.status[cell.cell_id] = result["status"]
            else:
                todo.append(cell)
        self.save_rows()
        return todo

    def task_spec(self, cell: Cell) -> dict:
        return {
            "cell_id": cell.cell_id, "run_dir": str(self.run_dir(cell.cell_id).path.resolve()),
            "config": cell.config.to_dict(), "extra_result": _extra(self.study, cell),
            "keep_steps": list(cell.keep_steps), "branch_of": cell.branch_of, "branch_step": cell.branch_step,
            "parent_dir": str(self.run_dir(cell.branch_of).path.resolve()) if cell.branch_of else None,
        }

    def task(self, cell: Cell, env: dict) -> Task:
        spec = self.task_spec(cell)
        path = self.tasks / f"{cell.cell_id}.json"
        write_json_atomic(path, spec)
        return Task(cell.cell_id, path.resolve(), (self.tasks / f"{cell.cell_id}.log").resolve(), env)

    def row(self, cell: Cell, result: dict) -> dict:
        """The cell's row; with a tracker, `tracker_run` links it (TensorBoard: DIR/tracker/CELL)."""
        row = cell_row(self.study, cell, result)
        link = self.tracker_runs.get(cell.cell_id)
        if link is None and self.tracker == "tensorboard" and (self.out / "tracker" / cell.cell_id).is_dir():
            link = str(Path("tracker") / cell.cell_id)
        return {**row, "tracker_run": link} if link else row

    def record(self, cell: Cell, result: dict) -> None:
        self.status[cell.cell_id] = result["status"]
        if self.tracker and result["status"] in FINAL:
            from lab.training.trackers import log_run

            path = Path(log_run(self.tracker, self.out / "tracker", self.study.name, cell.cell_id,
                                self.run_dir(cell.cell_id).path))
            self.tracker_runs[cell.cell_id] = str(path.relative_to(self.out.resolve()) if path.is_absolute()
                                                  and path.is_relative_to(self.out.resolve()) else path)
        self.rows[cell.cell_id] = self.row(cell, result)
        self.save_rows()

    def finished(self, cell: Cell, exit_code: int) -> None:
        """The run directory's result is the truth; a worker that ended without a trusted one
        leaves a `failed` row with the last line of its log (the cell runs again next time)."""
        result = self.run_dir(cell.cell_id).read_result()
        if result is None:
            result = {"status": "failed", "error": f"worker exited with {exit_code}: "
                      f"{_last_line(self.tasks / f'{cell.cell_id}.log')}"}
        self.record(cell, result)

    def runnable(self, wave: list[Cell], bars) -> list[Cell]:
        """The cells of a wave that can start: a branch needs its long run completed."""
        out = []
        for cell in wave:
            parent = self.status.get(cell.branch_of) if cell.branch_of else "completed"
            if parent == "completed":
                out.append(cell)
                continue
            self.record(cell, {"status": "failed", "error": f"its long run {cell.branch_of} ended {parent or 'unrun'}"})
            bars.done(cell.cell_id, "failed")
        return out

    def execute(self, launcher, todo: list[Cell], env: dict, stop: StopSignals, progress: bool = True) -> None:
        """Long runs first, then the cooldown branches that start from their checkpoints."""
        from lab.study.progress import StudyProgress

        by_id = {c.cell_id: c for c in todo}
        flops = {c.cell_id: c.flops * (1 - c.branch_step / c.config.total_steps) for c in self.cells}
        bars = StudyProgress(flops, set(flops) - set(by_id), self.run_dir, enabled=progress)

        def on_done(task: Task, code: int) -> None:
            for cell_id in self.pack_members.get(task.task_id, [task.task_id]):
                self.finished(by_id[cell_id], code)
                bars.done(cell_id, self.status[cell_id])

        def on_poll() -> None:
            stop.check()
            bars.poll()

        try:
            for wave in ([c for c in todo if not c.branch_of], [c for c in todo if c.branch_of]):
                cells = self.runnable(wave, bars)
                tasks = self.task_list(cells, env)
                bars.start({c.cell_id: c.config.total_steps for c in cells})
                launcher.run(tasks, on_done, on_poll)
        finally:
            bars.close()


    def task_list(self, cells: list[Cell], env: dict) -> list[Task]:
        """One task per cell, or with `pack` > 1 one per pack of same-program cells (lab.study.packs)."""
        if self.pack <= 1:
            return [self.task(c, env) for c in cells]
        from lab.study.packs import pack_tasks

        tasks, members = pack_tasks(self, cells, env, self.pack)
        self.pack_members.update(members)
        return tasks


def describe(study: Study, cells: list[Cell], step_seconds: dict | None = None) -> str:
    """The grid as a table (what `--dry-run` prints)."""
    head = f"{'cell':<28} {'d':>5} {'L':>3} {'H':>3} {'N_non_emb':>10} {'N_total':>10} {'D tokens':>10} " \
           f"{'C exact':>9} {'C budget':>9} {'steps':>7} {'est':>8}"
    lines = [f"study {study.name}: {len(cells)} cells", head, "-" * len(head)]
    total_s = 0.0
    for c in cells:
        m, costs = c.config.model, model_costs(c.config.model)
        est = ""
        if step_seconds is not None:
            sec = step_seconds[(m, c.config.train.batch_size)] * c.config.total_steps * (
                1 - c.branch_step / c.config.total_steps)
            total_s += sec
            est = _duration(sec)
        lines.append(
            f"{c.cell_id:<28} {m.d_model:>5} {m.n_layers:>3} {m.n_heads:>3} {costs.params_non_embedding:>10,} "
            f"{costs.params_total:>10,} {c.config.total_tokens:>10.3g} {c.flops:>9.3g} "
            f"{(c.budget_flops or math.nan):>9.3g} {c.config.total_steps:>7} {est:>8}"
            + (f"  branch of {c.branch_of} at step {c.branch_step}" if c.branch_of else ""))
    planned, independent = branch_savings(cells)
    lines.append(f"total compute {planned:.3g} FLOPs (flops_exact)"
                 + (f"; estimated {_duration(total_s)} of training on this machine, one worker" if step_seconds else ""))
    if planned < independent:
        lines.append(f"WSD branches save {independent - planned:.3g} FLOPs ({1 - planned / independent:.0%}) "
                     f"versus {independent:.3g} for independent runs")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _worker_env(workers: int) -> dict:
    env = {}
    if workers > 1:  # several single-threaded XLA processes beat one multi-threaded one on CPU
        env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    return env


def run_study(study: Study, cells: list[Cell], out: Path, *, launcher: str = "local", workers: int = 1,
              progress: bool = True, tracker: str | None = None, pack: int = 1,
              **launcher_args) -> dict[str, str]:
    """Run every unfinished cell; returns {cell_id: status}. One driver per directory (a second
    is refused, naming the first); SIGTERM/SIGINT stop the workers, then raise
    `lab.study.signals.Interrupted`. `tracker` ("tensorboard" or "wandb", `lab.trackers`) replays
    each finished run into that tracker, offline."""
    if tracker:
        from lab.training.trackers import check_available

        check_available(tracker)
    out = Path(out)
    check_directory(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = StudyLock(out).acquire()
    except PermissionError as e:
        raise ConfigError(f"cannot write in {out}: {e.strerror}; use another --out") from None
    with lock:
        check_plan(out, study)
        state = StudyRun(study, cells, out, tracker, pack=pack)
        todo = state.collect_finished()  # refuses a foreign table or stale runs before writing anything else
        state.write_plan()
        if todo:
            runner = make_launcher(launcher, out, workers=workers, **launcher_args)
            with StopSignals() as stop:  # after the launcher: ray.init installs its own SIGTERM handler
                state.execute(runner, todo, _worker_env(workers), stop, progress=progress)
    return dict(state.status)


def check_cells_fit(cells: list[Cell], workers: int = 1) -> None:
    """Refuse, before anything is written or trained, a study with a cell whose run cannot fit this
    machine (`lab.memory`); K local workers share the memory, so each gets 1/K of it."""
    from lab.memory import available_bytes, check_fits

    available, source = available_bytes()
    if available is None:
        return
    seen = set()
    for cell in cells:
        key = (cell.config.model, cell.config.train.batch_size, cell.config.mesh)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_fits(cell.config, available=available // max(1, workers))
        except ConfigError as e:
            share = f" (--workers {workers}: each gets 1/{workers} of {source})" if workers > 1 else ""
            raise ConfigError(f"cell {cell.cell_id}: {e}{share}") from None

