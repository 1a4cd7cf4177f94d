"""The typed task files of a study (lab.study.tasks): TaskSpec/PackSpec JSON round trips, the
on-disk format (the keys task files have always had), packing as a transformation, what the task
writer writes, and the one function that builds a worker's environment."""

import dataclasses
import json
from pathlib import Path

import pytest

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.files import read_json
from lab.rundir import RunDir
from lab.study import Study, expand
from lab.study.packs import pack_specs
from lab.study.results import study_fields
from lab.study.tasks import PackSpec, TaskSpec, read_task, spec_from_dict, task_id
from lab.study.taskwriter import TaskWriter
from lab.study.worker import PARENT, SINGLE_THREADED_XLA, worker_env

BASE = RunConfig(
    model=ModelConfig(seq_len=32),
    data=DataConfig(val_tokens=1024),
    train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0),
)
KEYS = ["cell_id", "run_dir", "config", "extra_result", "keep_steps", "branch_of", "branch_step", "parent_dir"]


def _branches() -> tuple[Study, list]:
    study = Study(
        name="branches", base=BASE, sizes=[{"d_model": 16}], tokens=[4096, 8192, 16384], branches=True, min_steps=5
    )
    return study, expand(study, vocab_size=256)


def _seeds() -> tuple[Study, list]:
    study = Study(name="seeds", base=BASE, sizes=[{"d_model": 16}], tokens=[5120], seeds=[0, 1, 2], min_steps=5)
    return study, expand(study, vocab_size=256)


def _writer(tmp_path, study, cells, pack=1, workers=1) -> TaskWriter:
    (tmp_path / "tasks").mkdir(exist_ok=True)
    return TaskWriter(study, cells, tmp_path, lambda cid: RunDir(tmp_path / "runs" / cid), pack, workers)


def test_a_task_spec_survives_json(tmp_path):
    study, cells = _branches()
    writer = _writer(tmp_path, study, cells)
    long, branch = writer.spec(cells[0]), writer.spec(cells[1])
    assert long.keep_steps == (26, 51) and long.branch_of is None and long.parent_dir is None
    assert branch.branch_of == cells[0].cell_id and branch.branch_step == 26
    assert branch.parent_dir == (tmp_path / "runs" / cells[0].cell_id).resolve()
    for spec in (long, branch):
        text = json.dumps(spec.to_dict())
        back = TaskSpec.from_dict(json.loads(text))
        assert back == spec and back.config == cells[0 if spec is long else 1].config
        assert json.dumps(back.to_dict()) == text
        assert list(json.loads(text)) == KEYS  # the format task files have always had


def test_a_pack_spec_survives_json_and_packing_copies(tmp_path):
    study, cells = _seeds()
    writer = _writer(tmp_path, study, cells)
    alone = [writer.spec(c) for c in cells]
    specs = pack_specs(cells, cells[1:], 2, writer.spec)  # cells[0] finished: idle in its pack
    pack, single = specs
    assert isinstance(pack, PackSpec) and isinstance(single, TaskSpec)
    assert task_id(pack) == pack.pack_id == f"pack-{cells[0].cell_id}" and task_id(single) == cells[2].cell_id
    assert [m.cell_id for m in pack.members] == [cells[0].cell_id, cells[1].cell_id]
    assert all(
        m.extra_result == {**study_fields(study, c), "pack_id": pack.pack_id} for m, c in zip(pack.members, cells)
    )
    assert all("pack_id" not in s.extra_result for s in alone)  # in_pack copies, never mutates
    data = json.loads(json.dumps(pack.to_dict()))
    assert list(data) == ["pack_id", "members"] and [list(m) for m in data["members"]] == [KEYS, KEYS]
    assert spec_from_dict(data) == pack and spec_from_dict(json.loads(json.dumps(single.to_dict()))) == single
    with pytest.raises(dataclasses.FrozenInstanceError):
        pack.pack_id = "other"  # frozen


def test_the_tracker_travels_in_the_task_spec(tmp_path):
    """`lab study --tracker`: every spec (alone or a pack's member) carries the tracker and the study's
    name as its group, written after the keys task files have always had; without one, neither key."""
    study, cells = _seeds()
    writer = _writer(tmp_path, study, cells)
    writer.tracker = "tensorboard"
    alone = writer.spec(cells[0])
    assert (alone.tracker, alone.group) == ("tensorboard", "seeds")
    data = json.loads(json.dumps(alone.to_dict()))
    assert list(data) == [*KEYS, "tracker", "group"] and TaskSpec.from_dict(data) == alone
    (pack, *_) = pack_specs(cells, cells, 2, writer.spec)
    back = spec_from_dict(json.loads(json.dumps(pack.to_dict())))
    assert back == pack and [(m.tracker, m.group) for m in back.members] == [("tensorboard", "seeds")] * 2
    writer.tracker = None
    assert writer.spec(cells[0]).tracker is None and list(writer.spec(cells[0]).to_dict()) == KEYS


def test_an_old_task_file_without_optional_keys_is_read(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(
        json.dumps(
            {"cell_id": "c", "run_dir": "/x/runs/c", "config": BASE.to_dict(), "extra_result": {"study": "s"}}
        )
    )
    spec = read_task(path)
    assert spec == TaskSpec("c", Path("/x/runs/c"), BASE, {"study": "s"})
    assert spec.keep_steps == () and spec.branch_of is None and spec.branch_step == 0 and spec.parent_dir is None
    assert spec.tracker is None and spec.group is None


def test_the_writer_writes_task_files_and_names_pack_members(tmp_path):
    study, cells = _seeds()
    writer = _writer(tmp_path, study, cells, pack=2, workers=3)
    tasks, members = writer.tasks(cells[1:])
    assert [t.task_id for t in tasks] == [f"pack-{cells[0].cell_id}", cells[2].cell_id]
    assert members == {tasks[0].task_id: [cells[1].cell_id]}  # only the members to run now
    for t in tasks:
        assert t.workers == 3 and t.path == (tmp_path / "tasks" / f"{t.task_id}.json").resolve()
        assert t.log == (tmp_path / "tasks" / f"{t.task_id}.log").resolve()
        assert read_task(t.path).to_dict() == read_json(t.path)


def test_one_function_builds_a_workers_environment(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("SOMETHING_ELSE", "kept")
    one, two = worker_env(1), worker_env(2)
    assert one["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2" and one["SOMETHING_ELSE"] == "kept"
    assert two["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {SINGLE_THREADED_XLA}"
    assert one[PARENT] == two[PARENT] and int(one[PARENT]) > 0
    monkeypatch.delenv("XLA_FLAGS")
    assert worker_env(2)["XLA_FLAGS"] == SINGLE_THREADED_XLA and "XLA_FLAGS" not in worker_env(1)


def test_a_ray_task_takes_sigint_back_where_it_starts_ignored():
    """Ray cancels a running task by a KeyboardInterrupt that Python drops where SIGINT is ignored (a
    driver started in the background): run_task_file handles SIGINT again first (the slow test
    test_sigterm_cancels_ray_tasks_and_slurm_jobs[ray] failed under `nohup ... &` without it)."""
    import signal

    from lab.study.worker import take_sigint_back

    before = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        take_sigint_back()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        mine = lambda signum, frame: None  # a handler of the caller's stays
        signal.signal(signal.SIGINT, mine)
        take_sigint_back()
        assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, before)
