"""`lab study`: expand a study file into cells, run the unfinished ones, collect one table.

Layout of a study directory:

    DIR/.lock               held by the running driver (lab.study.lock): one driver at a time
    DIR/study.json          the expanded cells (full configs), for provenance; derived, rewritten
    DIR/results.csv         one row per run or cooldown branch (lab.study.results); derived, rebuilt
    DIR/runs/CELL/          each cell's run directory (lab.rundir.RunDir): the truth
    DIR/report.md, fits.json, figures/, .lab-outputs   the analysis after the grid (lab.study.analyze)
    DIR/tracker/CELL        --tracker: a cell that ended without logging live, replayed (lab.training.trackers)
    DIR/tasks/CELL.json     the task file a worker ran (lab.study.tasks), CELL.log its output, CELL.lock its lock
                            (PACK.json, .log, .lock for a pack of cells: lab.study.packs)

A cell whose run directory holds a trusted completed or diverged result (`RunDir.read_result`) is
not trained again; any other cell is (re)started with resume, so an interrupted study continues
where it stopped and a cell whose result.json was damaged is re-evaluated from its final
checkpoint. Every run rebuilds each row of results.csv from its run directory.

`run_study` composes the three parts of a run: the results table (`lab.study.results.ResultsTable`),
the task writer (`lab.study.taskwriter.TaskWriter`, writing `lab.study.tasks` specs) and the
scheduler (`lab.study.scheduler.Scheduler`, driving a `lab.study.launchers` launcher).
"""

from __future__ import annotations

import math
from pathlib import Path

from analysis.outputs import MANIFEST
from lab.config import ConfigError
from lab.costs import model_costs
from lab.files import DamagedFile, foreign_entries, name_list, read_json, write_json_atomic
from lab.study.launchers import make_launcher
from lab.study.lock import LOCK, StudyLock
from lab.study.results import ResultsTable
from lab.study.scheduler import Scheduler
from lab.study.signals import StopSignals
from lab.study.spec import Cell, Study, branch_savings
from lab.study.taskwriter import TaskWriter

# what a study directory holds before its study.json is written (a driver stopped that early)
BEFORE_PLAN = {LOCK, "results.csv", "runs", "tasks"}
# what a study directory holds (see the layout above); `slurm` is submitit's folder; the analysis's
# report, fits, figures and their manifest (analysis.outputs) are written after study.json
OWN_ENTRIES = BEFORE_PLAN | {
    "study.json",
    "slurm",
    "report.md",
    "fits.json",
    "figures",
    MANIFEST,
    "validation",
    "validation.json",
    "tracker",
}


def check_directory(out: Path) -> None:
    """--out must be new, empty, or a study directory (one with study.json, or one a driver
    stopped before writing it): a study never writes its files among someone else's, nor takes
    a folder of a user's report.md or figures/ for its own."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    if not out.is_dir() or (out / "study.json").exists():
        return
    foreign = foreign_entries(out, BEFORE_PLAN)
    if foreign:
        raise ConfigError(
            f"{out} is not a study directory (it holds {name_list(foreign)}); use an empty or new --out"
        )


def check_plan(out: Path, study: Study) -> None:
    """DIR/study.json, if any, must be this study's; a damaged one is rewritten (it is derived)."""
    try:
        old = read_json(out / "study.json")
    except DamagedFile:
        return
    if old is not None and old.get("study") != study.name:
        raise ConfigError(f"{out} holds study {old.get('study')!r}, not {study.name!r}; use another --out")


def write_plan(out: Path, study: Study, cells: list[Cell]) -> None:
    """DIR/runs/, DIR/tasks/ and DIR/study.json (the expanded cells; rewritten only when it changed)."""
    (out / "runs").mkdir(exist_ok=True)
    (out / "tasks").mkdir(exist_ok=True)
    plan = [
        {
            "cell_id": c.cell_id,
            "budget_flops": c.budget_flops,
            "branch_of": c.branch_of,
            "branch_step": c.branch_step,
            "config": c.config.to_dict(),
        }
        for c in cells
    ]
    data = {"study": study.name, "cells": plan}
    try:
        if read_json(out / "study.json") == data:
            return
    except DamagedFile:
        pass
    write_json_atomic(out / "study.json", data)


def describe(study: Study, cells: list[Cell], step_seconds: dict | None = None) -> str:
    """The grid as a table (what `--dry-run` prints)."""
    head = (
        f"{'cell':<28} {'d':>5} {'L':>3} {'H':>3} {'N_non_emb':>10} {'N_total':>10} {'D tokens':>10} "
        f"{'C exact':>9} {'C budget':>9} {'steps':>7} {'est':>8}"
    )
    lines = [f"study {study.name}: {len(cells)} cells", head, "-" * len(head)]
    total_s = 0.0
    for c in cells:
        m, costs = c.config.model, model_costs(c.config.model)
        est = ""
        if step_seconds is not None:
            sec = (
                step_seconds[(m, c.config.train.batch_size)]
                * c.config.total_steps
                * (1 - c.branch_step / c.config.total_steps)
            )
            total_s += sec
            est = _duration(sec)
        lines.append(
            f"{c.cell_id:<28} {m.d_model:>5} {m.n_layers:>3} {m.n_heads:>3} {costs.params_non_embedding:>10,} "
            f"{costs.params_total:>10,} {c.config.total_tokens:>10.3g} {c.flops:>9.3g} "
            f"{(c.budget_flops or math.nan):>9.3g} {c.config.total_steps:>7} {est:>8}"
            + (f"  branch of {c.branch_of} at step {c.branch_step}" if c.branch_of else "")
        )
    planned, independent = branch_savings(cells)
    lines.append(
        f"total compute {planned:.3g} FLOPs (flops_exact)"
        + (f"; estimated {_duration(total_s)} of training on this machine, one worker" if step_seconds else "")
    )
    if planned < independent:
        lines.append(
            f"WSD branches save {independent - planned:.3g} FLOPs ({1 - planned / independent:.0%}) "
            f"versus {independent:.3g} for independent runs"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def run_study(
    study: Study,
    cells: list[Cell],
    out: Path,
    *,
    launcher: str = "local",
    workers: int = 1,
    progress: bool = True,
    tracker: str | None = None,
    pack: int = 1,
    **launcher_args,
) -> dict[str, str]:
    """Run every unfinished cell; returns {cell_id: status}. One driver per directory (a second
    is refused, naming the first); SIGTERM/SIGINT stop the workers, then raise
    `lab.study.signals.Interrupted`. `tracker` ("tensorboard" or "wandb", `lab.training.trackers`): each
    cell logs live into that tracker, offline, from its worker, grouped by the study."""
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
        try:
            check_plan(out, study)
            table = ResultsTable(study, cells, out, tracker)
            todo = table.collect()  # refuses a foreign table or stale runs before writing anything else
        except (ConfigError, DamagedFile):
            lock.discard()  # a refused study leaves nothing behind, not even its lock file
            raise
        pinned = study.pin_workers and workers > 1  # one worker keeps every core (lab.study.worker.pin_to_cpu)
        write_plan(out, study, cells)
        if todo:
            writer = TaskWriter(study, cells, out, table.run_dir, pack=pack, workers=workers, tracker=tracker)
            runner = make_launcher(launcher, out, workers=workers, pin=pinned, **launcher_args)
            with StopSignals() as stop:  # after the launcher: ray.init installs its own SIGTERM handler
                Scheduler(table, writer, runner, stop, progress=progress).run(todo)
        if study.final_scores == "defer":  # after the grid, in one process (lab.study.deferred)
            from lab.study.deferred import run_deferred

            run_deferred(table, cells, workers, pin=pinned)
    return dict(table.status)


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
