"""Deferred final scores (a study's `final_scores = "defer"`): the cells train without their
quantized losses, in-context and copy scores (`lab.evals.final`); after the grid one process —
`python -m lab.study.deferred RUN_DIR ...`, started with the workers' environment
(`lab.study.worker.worker_env`), so XLA runs as it runs in a cell — computes them for each completed
run from its final checkpoint, with the function a cell calls (`lab.evals.final.final_scores`, what
`lab eval RUN_DIR` computes), and adds them to its result.json under the run's lock. The final
checkpoint holds the weights a cell scores inline, so the numbers are the ones a cell computes.
The driver then rebuilds those rows. A run whose scores could not be computed keeps its row without
them (the error is in DIR/tasks/deferred.log); the next `lab study` of the directory tries again.
"""

from __future__ import annotations

import subprocess
import sys
import time
import traceback
from pathlib import Path

from lab.result import QUANT

MARK = QUANT[0]  # a result that holds val_loss_int8 has its final scores


def pending(table, cells) -> list:
    """The cells of `cells` whose run completed without final scores."""
    out = []
    for cell in cells:
        result = table.run_dir(cell.cell_id).read_result()
        if result and result.get("status") == "completed" and result.get(MARK) is None:
            out.append(cell)
    return out


def run_deferred(table, cells, workers: int = 1, pin: bool = False) -> float:
    """Compute the missing final scores of `cells` (`pending`) in one process and rebuild their
    rows; returns the seconds it took (0.0 when none was missing). `pin`: the process pinned to one
    CPU as the study's workers were (`Study.pin_workers`), so its scores are the ones they would have
    computed inline."""
    from lab.study.worker import worker_cpu, worker_env

    todo = pending(table, cells)
    if not todo:
        return 0.0
    t0 = time.perf_counter()
    dirs = [str(table.run_dir(c.cell_id).path.resolve()) for c in todo]
    log = table.out / "tasks" / "deferred.log"
    with open(log, "a") as out:
        subprocess.run(
            [sys.executable, "-m", "lab.study.deferred", *dirs],
            env=worker_env(workers, worker_cpu(0) if pin else None),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    for cell in todo:
        result = table.run_dir(cell.cell_id).read_result()
        if result is not None:
            table.record(cell, result)
    return time.perf_counter() - t0


def score_run(run_dir) -> dict | None:
    """Add the final scores to a completed run's result.json (under its run lock), from the
    checkpoint of its last step; returns them (None: the run is not completed, or has them)."""
    import jax

    from lab import sharding
    from lab.data import load_corpus, val_batches
    from lab.evals.final import final_scores
    from lab.evals.generate import restore_run
    from lab.rundir import RunDir, RunLock

    run = RunDir(run_dir)
    with RunLock(run.path, wait=True):
        result = run.read_result()
        if not result or result.get("status") != "completed" or result.get(MARK) is not None:
            return None
        cfg, graphdef, params, step, _ = restore_run(run.path, result["steps"], who="lab study")
        corpus = load_corpus(cfg.data)
        mesh = sharding.make_mesh("")  # the one device restore_run restores to
        with jax.set_mesh(mesh):  # as a cell scores its weights (lab.training.train)
            val = val_batches(
                corpus.val,
                batch_size=cfg.train.batch_size,
                seq_len=cfg.model.seq_len,
                n_tokens=cfg.data.val_tokens,
            )
            val = jax.device_put(val, sharding.val_sharding(mesh))
            scores = final_scores(graphdef, params, cfg, corpus, val)
        run.write_result({**result, **scores})
        return scores


def main(argv=None) -> int:
    from lab.study.worker import die_with_parent, pin_to_cpu
    from lab.training.runtime import setup

    die_with_parent()
    pin_to_cpu()
    setup()
    failed = 0
    for path in sys.argv[1:] if argv is None else argv:
        try:
            score_run(Path(path))
        except Exception:  # this run keeps its row without scores; the next `lab study` tries again
            print(f"deferred final scores of {path} failed:", file=sys.stderr)
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
