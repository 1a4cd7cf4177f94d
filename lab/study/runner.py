"""`lab study`: expand a study file into cells, run the unfinished ones, collect one table.

Layout of a study directory:

    DIR/study.json          the expanded cells (full configs), for provenance
    DIR/results.csv         one row per run or cooldown branch (lab.study.results)
    DIR/runs/CELL/          each cell's run directory (config.json, metrics.jsonl, result.json)
    DIR/tasks/CELL.json     the task file a worker ran, and CELL.log its output

A cell whose run directory holds a completed or diverged result is not trained again; any other
cell is (re)started with resume, so an interrupted study continues where it stopped.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from lab.config import ConfigError
from lab.study.launchers import Task, make_launcher
from lab.study.results import read_rows, upsert_row
from lab.study.spec import Cell, Study, branch_savings
from lab.costs import model_costs

FINAL = ("completed", "diverged")


def cell_row(study: Study, cell: Cell, result: dict) -> dict:
    return {"study": study.name, "cell_id": cell.cell_id, **result,
            "budget_flops": cell.budget_flops, "branch_of": cell.branch_of}


def _extra(study: Study, cell: Cell) -> dict:
    return {"study": study.name, "cell_id": cell.cell_id, "budget_flops": cell.budget_flops,
            "branch_of": cell.branch_of}


def _read_result(run_dir: Path) -> dict | None:
    p = run_dir / "result.json"
    try:
        return json.loads(p.read_text()) if p.exists() else None
    except json.JSONDecodeError:
        return None


def _last_line(path: Path) -> str:
    try:
        lines = [l for l in path.read_text().splitlines() if l.strip()]
    except OSError:
        return "no output"
    return lines[-1][-300:] if lines else "no output"


class StudyRun:
    def __init__(self, study: Study, cells: list[Cell], out: Path):
        self.study, self.cells, self.out = study, cells, Path(out)
        self.runs, self.tasks = self.out / "runs", self.out / "tasks"
        self.results = self.out / "results.csv"
        self.status: dict[str, str] = {}

    def run_dir(self, cell: Cell) -> Path:
        return self.runs / cell.cell_id

    def write_plan(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.runs.mkdir(exist_ok=True)
        self.tasks.mkdir(exist_ok=True)
        plan = [{"cell_id": c.cell_id, "budget_flops": c.budget_flops, "branch_of": c.branch_of,
                 "branch_step": c.branch_step, "config": c.config.to_dict()} for c in self.cells]
        (self.out / "study.json").write_text(json.dumps({"study": self.study.name, "cells": plan}, indent=1))

    def collect_finished(self) -> list[Cell]:
        """Record rows of cells already done; return the cells still to run."""
        rows = {r["cell_id"]: r for r in read_rows(self.results)}
        todo = []
        for cell in self.cells:
            result = _read_result(self.run_dir(cell))
            if result and result.get("config_hash") not in (None, cell.config.hash()):
                raise ConfigError(f"{self.run_dir(cell)} was trained with another config than the study now gives "
                                  f"cell {cell.cell_id}; use a new --out (or remove that run directory)")
            if result and result.get("status") in FINAL:
                self.status[cell.cell_id] = result["status"]
                if rows.get(cell.cell_id, {}).get("status") != result["status"]:
                    upsert_row(self.results, cell_row(self.study, cell, result))
            else:
                todo.append(cell)
        return todo

    def task(self, cell: Cell, env: dict) -> Task:
        spec = {"cells": [{
            "cell_id": cell.cell_id, "run_dir": str(self.run_dir(cell).resolve()), "config": cell.config.to_dict(),
            "extra_result": _extra(self.study, cell), "keep_steps": list(cell.keep_steps),
            "branch_of": cell.branch_of, "branch_step": cell.branch_step,
            "parent_dir": str((self.runs / cell.branch_of).resolve()) if cell.branch_of else None,
        }]}
        path = self.tasks / f"{cell.cell_id}.json"
        path.write_text(json.dumps(spec, indent=1))
        return Task(cell.cell_id, path.resolve(), (self.tasks / f"{cell.cell_id}.log").resolve(), env)

    def record(self, cell: Cell, exit_code: int) -> None:
        """The run directory's result is the truth; a worker that died before writing one
        leaves a `failed` row with the last line of its log."""
        result = _read_result(self.run_dir(cell))
        if result is None or result.get("status") not in (*FINAL, "failed"):
            result = {"status": "failed", "error": f"worker exited with {exit_code}: "
                      f"{_last_line(self.tasks / f'{cell.cell_id}.log')}"}
        self.status[cell.cell_id] = result["status"]
        upsert_row(self.results, cell_row(self.study, cell, result))

    def execute(self, launcher, todo: list[Cell], env: dict, progress: bool = True) -> None:
        from lab.study.progress import StudyProgress

        by_id = {c.cell_id: c for c in todo}
        bars = StudyProgress(len(self.cells), len(self.cells) - len(todo), lambda c: self.runs / c, enabled=progress)
        first = [c for c in todo if not c.branch_of]
        later = [c for c in todo if c.branch_of]

        def on_done(task: Task, code: int) -> None:
            self.record(by_id[task.task_id], code)
            bars.done(task.task_id, self.status[task.task_id])

        for wave in (first, later):
            runnable = []
            for cell in wave:
                parent = self.status.get(cell.branch_of) if cell.branch_of else "completed"
                if parent != "completed":
                    self.status[cell.cell_id] = "failed"
                    upsert_row(self.results, cell_row(self.study, cell, {
                        "status": "failed", "error": f"its long run {cell.branch_of} ended {parent or 'unrun'}"}))
                    bars.done(cell.cell_id, "failed")
                else:
                    runnable.append(cell)
            tasks = [self.task(c, env) for c in runnable]
            bars.start({c.cell_id: c.config.total_steps for c in runnable})
            launcher.run(tasks, on_done, bars.poll)
        bars.close()


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


def run_study(study: Study, cells: list[Cell], out: Path, *, launcher: str = "local", workers: int = 1,
              progress: bool = True, **launcher_args) -> dict[str, str]:
    """Run every unfinished cell; returns {cell_id: status}."""
    if Path(out).exists() and not Path(out).is_dir():
        raise ConfigError(f"{out} exists and is not a directory")
    state = StudyRun(study, cells, out)
    plan = Path(out) / "study.json"
    if plan.exists():
        old = json.loads(plan.read_text())
        if old.get("study") != study.name:
            raise ConfigError(f"{out} holds study {old.get('study')!r}, not {study.name!r}; use another --out")
    state.write_plan()
    todo = state.collect_finished()
    if todo:
        env = {}
        if workers > 1:  # several single-threaded XLA processes beat one multi-threaded one on CPU
            env["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
        runner = make_launcher(launcher, Path(out), workers=workers, **launcher_args)
        state.execute(runner, todo, env, progress=progress)
    return dict(state.status)
