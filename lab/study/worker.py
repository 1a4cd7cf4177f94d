"""Run the cells of one task — `python -m lab.study.worker TASK.json` — in a fresh process.

A task is a list of cells (a "pack"; today one cell, later several cells of equal shape trained
together). Each cell is a run directory trained with `lab.train.train(..., resume=True)`, so a
task that is re-run continues where it stopped. A cooldown branch first receives its long
run's checkpoint at the branch step and the long run's metrics up to it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import traceback
from pathlib import Path


def seed_branch(run_dir: Path, parent_dir: Path, step: int) -> None:
    """Give a branch its starting point: the parent's kept checkpoint and its log up to `step`."""
    target = run_dir / "checkpoints" / str(step)
    if (run_dir / "checkpoints").exists() and any((run_dir / "checkpoints").iterdir()):
        return  # already seeded (or already training): resume handles it
    source = parent_dir / "branch_points" / str(step)
    if not source.exists():
        raise FileNotFoundError(f"the long run {parent_dir.name} has no checkpoint at step {step}")
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, target)
    lines = []
    metrics = parent_dir / "metrics.jsonl"
    if metrics.exists():
        lines = [l for l in metrics.read_text().splitlines() if json.loads(l)["step"] <= step]
    (run_dir / "metrics.jsonl").write_text("".join(l + "\n" for l in lines))


def run_cells(task: dict) -> int:
    from lab.config import RunConfig, from_dict
    from lab.train import RunFailed, train

    ok = True
    for cell in task["cells"]:
        run_dir = Path(cell["run_dir"])
        if cell.get("branch_of"):
            seed_branch(run_dir, Path(cell["parent_dir"]), cell["branch_step"])
        cfg = from_dict(RunConfig, cell["config"])
        try:
            result = train(cfg, run_dir, resume=True, progress=False, extra_result=cell["extra_result"],
                           keep_steps=tuple(cell.get("keep_steps", ())))
        except RunFailed:  # recorded as status `failed` in the run directory
            ok = False
            continue
        except Exception:  # failed before training began (e.g. a bad dataset): the driver records it
            traceback.print_exc()
            ok = False
            continue
        ok &= result["status"] == "completed"
    return 0 if ok else 1


def launch(task_path: str, env: dict | None = None, log_path: str | None = None) -> int:
    """Run a task file in a child process (what every launcher executes); returns its exit code."""
    cmd = [sys.executable, "-m", "lab.study.worker", task_path]
    if log_path is None:
        return subprocess.run(cmd, env=env).returncode
    with open(log_path, "a") as log:
        return subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def main(argv=None) -> int:
    from lab.cli import _enable_compilation_cache

    _enable_compilation_cache()
    argv = sys.argv[1:] if argv is None else argv
    task = json.loads(Path(argv[0]).read_text())
    return run_cells(task)


if __name__ == "__main__":
    sys.exit(main())
