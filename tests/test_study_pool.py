"""Persistent study workers (`lab.study.pool`, issue 25): one process runs task after task, each in
its own log; a task that raises is that task's failure and the worker goes on; a worker that dies
fails only its task; a study's rows are those of one process per cell (the smoke study, slow)."""

import csv
import fcntl
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.result import OVERHEAD, TIMING
from lab.study import worker
from lab.study.launchers import Task
from lab.study.pool import PoolLauncher, PoolWorker
from lab.study.results import overhead_share

ROOT = Path(__file__).resolve().parents[1]


def _serve(monkeypatch, tmp_path, names, behaviour) -> tuple[int, list[str]]:
    """worker.serve in this process over task files `names`; run_task replaced by `behaviour`."""
    paths = [tmp_path / f"{n}.json" for n in names]
    monkeypatch.setattr(worker, "run_task", lambda path, started: behaviour(Path(path).stem, started))
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(f"{p}\t{time.time()!r}\n" for p in paths)))
    read, write = os.pipe()
    code = worker.serve(write, started=123.0)
    with os.fdopen(read) as f:
        return code, f.read().splitlines()


def test_serve_runs_each_task_in_its_own_log_and_survives_a_failing_one(monkeypatch, tmp_path):
    seen = {}

    def behaviour(name, started):
        seen[name] = started
        print(f"training {name}")
        if name == "b":
            raise RuntimeError("boom in b")
        if name == "c":
            sys.exit(3)
        return 0

    code, replies = _serve(monkeypatch, tmp_path, ["a", "b", "c", "d"], behaviour)
    assert (code, replies) == (0, ["0", "1", "3", "0"])
    assert "training a" in (tmp_path / "a.log").read_text()
    log_b = (tmp_path / "b.log").read_text()
    assert "training b" in log_b and "RuntimeError: boom in b" in log_b and "training a" not in log_b
    assert seen["a"] == 123.0  # the first task counts from the worker's start, the next from its hand-over
    assert all(abs(seen[n] - time.time()) < 60 for n in "bcd")


def test_a_stopped_task_ends_the_worker(monkeypatch, tmp_path):
    code, replies = _serve(monkeypatch, tmp_path, ["a", "b"], lambda name, started: worker.STOPPED)
    assert (code, replies) == (worker.STOPPED, [str(worker.STOPPED)])
    assert not (tmp_path / "b.log").exists()


def test_one_worker_runs_every_task_and_a_killed_one_fails_only_its_task(tmp_path, monkeypatch):
    """Two damaged task files fail in one worker process (each with its traceback in its log); a
    task whose worker is killed (it waits on TASK.lock, held here) fails with -9 and the task
    after it starts in a new worker."""
    names = ["bad1", "bad2", "held", "bad3"]
    tasks = []
    for n in names:
        (tmp_path / f"{n}.json").write_text("{not json")
        tasks.append(Task(n, tmp_path / f"{n}.json", tmp_path / f"{n}.log"))
    started = []
    real_start = PoolWorker.start
    monkeypatch.setattr(
        PoolWorker, "start", classmethod(lambda cls, task, *a: started.append(real_start(task, *a)) or started[-1])
    )
    held = open(tmp_path / "held.lock", "a")
    fcntl.flock(held, fcntl.LOCK_EX)
    done, t_held = {}, []

    def on_done(task, code):
        done[task.task_id] = code

    def on_poll():
        if started and started[0].task is not None and started[0].task.task_id == "held":
            t_held.append(time.monotonic())
            if t_held[-1] - t_held[0] > 1:
                os.kill(started[0].proc.pid, signal.SIGKILL)

    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    PoolLauncher(workers=1, grace_s=30).run(tasks, on_done, on_poll)
    held.close()
    assert done == {"bad1": 1, "bad2": 1, "held": -9, "bad3": 1}
    assert len(started) == 2  # one worker for bad1, bad2 and held; a new one for bad3
    for n in ("bad1", "bad2", "bad3"):
        assert "Traceback" in (tmp_path / f"{n}.log").read_text()


def test_overhead_share_is_the_sum_of_overheads_over_the_sum_of_wall_times():
    rows = [
        {"overhead_s": "2.0", "cell_wall_s": "10.0"},
        {"overhead_s": 1.0, "cell_wall_s": 30.0},
        {"overhead_s": "", "cell_wall_s": "5"},  # a failed run: no figures
        {"cell_id": "old"},
    ]
    assert overhead_share(rows) == pytest.approx(3.0 / 40.0)
    assert overhead_share([{"cell_id": "x"}]) is None


def _rows(out: Path) -> dict:
    with open(out / "results.csv") as f:
        return {r["cell_id"]: r for r in csv.DictReader(f)}


TIMED = set(TIMING + OVERHEAD) | {"flops_per_s", "mfu", "git_sha"}  # measured time, provenance


@pytest.mark.slow
def test_the_smoke_study_gives_the_same_rows_in_persistent_workers(tmp_path):
    """experiments/smoke.py with a process per cell (LAB_STUDY_POOL=0, as before issue 25) and in
    two persistent workers: every value of every row but the timings is equal, and so is every
    loss of every metrics line."""
    outs = {}
    for pool, workers in (("0", "1"), ("1", "2")):
        out = tmp_path / f"pool{pool}"
        env = {**os.environ, "LAB_STUDY_POOL": pool, "PYTHONPATH": str(ROOT)}
        cmd = [sys.executable, "-m", "lab", "study", str(ROOT / "experiments" / "smoke.py"), "--out", str(out)]
        proc = subprocess.run(
            [*cmd, "--workers", workers, "--quiet", "--no-analysis"], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        summary = json.loads(proc.stdout.strip().splitlines()[-1])
        assert summary["completed"] == 6 and 0 < summary["overhead_share"] < 1
        outs[pool] = out
    fresh, pooled = _rows(outs["0"]), _rows(outs["1"])
    assert fresh.keys() == pooled.keys() and len(fresh) == 6
    for cell, row in fresh.items():
        assert {k: v for k, v in row.items() if k not in TIMED} == {
            k: v for k, v in pooled[cell].items() if k not in TIMED
        }, cell
        assert float(row["final_val_loss"]) > 0 and all(float(pooled[cell][k]) >= 0 for k in OVERHEAD)

        def losses(out, cell=cell):
            lines = (out / "runs" / cell / "metrics.jsonl").read_text().splitlines()
            return [{k: v for k, v in json.loads(x).items() if "loss" in k} for x in lines]

        assert losses(outs["0"]) == losses(outs["1"])


@pytest.mark.slow
def test_gpu_sh_measures_a_packed_and_an_unpacked_sweeps_overhead_share_dry_run_on_cpu(tmp_path):
    """benchmarks/gpu.sh's sweep part on the CPU (the benches, install and tests skipped): the smoke
    study unpacked and with --pack 2, each one's share in summary.json."""
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "SKIP_INSTALL": "1",
        "SKIP_TESTS": "1",
        "SKIP_BENCH": "1",
        "SWEEP_STUDY": "experiments/smoke.py",
        "SWEEP_PACK": "2",
        "SWEEP_S": "400",
        "TOTAL_S": "900",
        "JAX_PLATFORMS": "cpu",
    }
    out = tmp_path / "gpu-out"
    proc = subprocess.run(
        ["bash", "benchmarks/gpu.sh", str(out)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["parts"]["sweep_pack1"]["exit"] == "0" and summary["parts"]["sweep_pack2"]["exit"] == "0"
    for name in ("sweep_pack1", "sweep_pack2"):
        sweep = summary["sweeps"][name]
        assert sweep["cells"] == 6 and 0 < sweep["overhead_share"] < 1
        assert sweep["overhead_s"] >= sum(sweep["parts_s"].values()) * 0.99


def test_an_idle_worker_takes_the_next_task_of_the_shape_it_ran_last(tmp_path):
    from lab.study.pool import next_task, shape_of

    def task(name, data, seed):  # two shapes (their data differ) of one cost
        path = tmp_path / f"{name}.json"
        cfg = {"model": {"d_model": 16}, "data": {"name": data}, "train": {"batch_size": 8, "seed": seed}}
        path.write_text(json.dumps({"cell_id": name, "config": cfg}))
        return Task(name, path, tmp_path / f"{name}.log")

    a, b, c, d = task("a", "x", 0), task("b", "y", 0), task("c", "x", 1), task("d", "y", 1)
    assert shape_of(a) == shape_of(c) != shape_of(b) == shape_of(d)  # the seed does not change the shape
    queue = [b, c, d]
    assert next_task(queue, shape_of(a)) is c and queue == [b, d]
    assert next_task(queue, None) is b and next_task(queue, shape_of(a)) is d and queue == []
    assert shape_of(Task("gone", tmp_path / "gone.json", tmp_path / "gone.log")) is None


def test_the_longest_tasks_go_first_and_a_worker_keeps_its_shape_only_among_them(tmp_path):
    """Longest-processing-time order (`lab.study.pool.longest_first`): FLOPs of the steps plus a fixed
    cost per step, so at one budget the smaller model (more steps) goes first; an idle worker takes
    its shape's task only if it is about as long as the longest queued one."""
    from lab.study.pool import STEP_FLOPS, cost_of, longest_first, next_task, shape_of

    def task(name, d_model, tokens):
        path = tmp_path / f"{name}.json"
        cfg = {
            "model": {"d_model": d_model, "vocab_size": 256, "seq_len": 32},
            "train": {"batch_size": 4, "tokens": tokens},
        }
        path.write_text(json.dumps({"cell_id": name, "config": cfg}))
        return Task(name, path, tmp_path / f"{name}.log")

    small, big = task("d16-short", 16, 12800), task("d48-long", 48, 128000)
    d16_long, d48_short = task("d16-long", 16, 128000), task("d48-short", 48, 12800)
    queue = longest_first([small, big, d16_long, d48_short])
    assert [t.task_id for t in queue] == ["d48-long", "d16-long", "d48-short", "d16-short"]
    from lab.config import ModelConfig
    from lab.costs import model_costs

    flops = model_costs(ModelConfig(d_model=16, vocab_size=256, seq_len=32)).flops_exact
    assert cost_of(small) == pytest.approx(100 * (flops * 128 + STEP_FLOPS))  # 100 steps of 128 tokens
    # a d16 worker does not take the short d16 cell before the long cells
    assert next_task(queue, shape_of(small)) is big
    assert next_task(queue, shape_of(small)) is d16_long
    assert next_task(queue, shape_of(small)) is d48_short and queue == [small]


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="pinning needs Linux's sched_getaffinity")
def test_pinned_workers_each_run_on_a_cpu_of_their_own(tmp_path, monkeypatch):
    """Study.pin_workers: each of two pool workers pins itself, before JAX starts, to its slot's CPU
    (`worker.worker_cpu`), and says so first in the log of the first task it runs."""
    tasks = []
    for n in ("a", "b", "c", "d"):
        (tmp_path / f"{n}.json").write_text("{not json")  # each task fails at once: only the start-up matters
        tasks.append(Task(n, tmp_path / f"{n}.json", tmp_path / f"{n}.log", workers=2))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    done = {}
    PoolLauncher(workers=2, grace_s=30, pin=True).run(tasks, lambda t, code: done.update({t.task_id: code}))
    assert done == {"a": 1, "b": 1, "c": 1, "d": 1}
    lines = [line for n in "abcd" for line in (tmp_path / f"{n}.log").read_text().splitlines()]
    pinned = [line for line in lines if line.startswith("worker: pinned")]
    assert sorted(pinned) == sorted(f"worker: pinned to CPU {worker.worker_cpu(s)}" for s in (0, 1))


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="pinning needs Linux's sched_getaffinity")
def test_a_workers_cpu_and_slot():
    cpus = sorted(os.sched_getaffinity(0))
    assert [worker.worker_cpu(s) for s in range(3)] == [cpus[s % len(cpus)] for s in range(3)]
    assert worker.free_slot(2, []) == 0 and worker.free_slot(2, [0]) == 1 and worker.free_slot(3, [2, 0]) == 1
    env = worker.worker_env(2, cpu=1)
    assert env[worker.WORKER_CPU] == "1" and worker.WORKER_CPU not in worker.worker_env(2)


def test_pin_workers_must_be_a_bool():
    from lab.config import ConfigError, RunConfig
    from lab.study.spec import Study, check_values

    with pytest.raises(ConfigError, match="pin_workers must be True or False, got 'yes'"):
        check_values(Study(name="p", base=RunConfig(), sizes=[{"d_model": 16}], budgets=[1e10], pin_workers="yes"))
