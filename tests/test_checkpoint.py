"""Checkpoints and exact resume: SIGKILL, SIGTERM, a corrupted newest checkpoint, and a
checkpoint written on 8 devices resumed on 1."""

import dataclasses
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lab.training.checkpoint import CheckpointWarning
from lab.training.train import train
from tests.helpers.runs import TINY, env, lab_cmd, losses, run_python, set_args

LONG = dataclasses.replace(
    TINY, train=dataclasses.replace(TINY.train, steps=600, log_every=10, eval_every=100), checkpoint_every=50
)


def train_cmd(out: Path) -> list[str]:
    return lab_cmd(
        "train",
        "--out",
        out,
        "--quiet",
        "--steps",
        LONG.train.steps,
        "--checkpoint-every",
        LONG.checkpoint_every,
        *set_args(LONG),
    )


def start_run(out: Path) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(out), env=env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_step(proc, out: Path, step: int, timeout: float = 240):
    """Block until metrics.jsonl has a line at or beyond `step` (the run is mid-way)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted: " + proc.stderr.read()[-2000:]
        p = out / "metrics.jsonl"
        if p.exists():
            lines = p.read_text().splitlines()
            steps = [json.loads(l)["step"] for l in lines[:-1]]  # the last line may be half-written
            if steps and max(steps) >= step:
                return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the run")


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("long") / "uninterrupted"
    train(LONG, out, progress=False)
    return losses(out)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, long_reference, sig):
    out = tmp_path / "run"
    proc = start_run(out)
    wait_for_step(proc, out, 160)
    proc.send_signal(sig)
    proc.wait(timeout=120)
    if sig == signal.SIGTERM:  # preemption: a checkpoint of the current step, then exit 143
        assert proc.returncode == 143, proc.stderr.read()
        assert "--resume" in proc.stderr.read()
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (out / "result.json").exists()
    # a requeued job runs its own command again, with --resume
    resumed = subprocess.run(
        train_cmd(out) + ["--resume"], env=env(1), capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "completed" and 0 < result["resumed_from_step"] < LONG.train.steps
    got = losses(out)
    assert got.keys() == long_reference.keys()
    assert got == long_reference  # bitwise: same program, same batches, same state


def test_corrupted_newest_checkpoint_falls_back(tmp_path, reference_run):
    cfg = dataclasses.replace(TINY, checkpoint_every=8, keep_checkpoints=3)
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [8, 16, 24]
    (out / "result.json").unlink()  # as if killed right after the last save
    for f in (out / "checkpoints" / "24" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncate the array data
    with pytest.warns(CheckpointWarning, match=r"checkpoints/24 is unreadable or corrupted"):
        result = train(cfg, out, resume=True, progress=False)
    assert result["status"] == "completed" and result["resumed_from_step"] == 16
    assert losses(out) == losses(reference_run)


def test_a_truncated_checkpoint_costs_one_warning_line(tmp_path):
    """The fallback is quiet: one warning line, not thousands of lines of asyncio tracebacks."""
    cfg = dataclasses.replace(TINY, checkpoint_every=8, keep_checkpoints=3)
    out = tmp_path / "run"
    train(cfg, out, progress=False)
    (out / "result.json").unlink()
    for f in (out / "checkpoints" / "24" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    cmd = lab_cmd(
        "train",
        "--out",
        out,
        "--quiet",
        "--steps",
        cfg.train.steps,
        "--checkpoint-every",
        8,
        *set_args(cfg),
        "--set",
        "keep_checkpoints=3",
        "--resume",
    )
    proc = subprocess.run(cmd, env=env(1), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr[:3000]
    assert "checkpoints/24 is unreadable or corrupted" in proc.stderr
    assert json.loads(proc.stdout)["status"] == "completed"


@pytest.mark.slow
def test_checkpoint_from_8_devices_resumes_on_1(tmp_path, reference_run):
    out = tmp_path / "run"
    cfg = dataclasses.replace(TINY, mesh="data=2,fsdp=2,tensor=2", checkpoint_every=8, keep_checkpoints=3)
    code = f"""
import json
from lab.config import RunConfig
from lab.overrides import from_dict
from lab.training.train import train
train(from_dict(RunConfig, json.loads({json.dumps(cfg.to_dict())!r})), {str(out)!r}, progress=False)
"""
    proc = run_python(code, devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "result.json").unlink()
    for step in ("16", "24"):  # keep only the step-8 checkpoint
        shutil.rmtree(out / "checkpoints" / step)
    result = train(dataclasses.replace(cfg, mesh=""), out, resume=True, progress=False)
    assert result["resumed_from_step"] == 8 and result["devices"] == 1
    ref, got = losses(reference_run), losses(out)
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=2e-4, abs=2e-4), key


def test_orphaned_orbax_reads_are_not_logged_but_other_asyncio_errors_are():
    import logging

    from lab.training.checkpoint import _orphaned_read_filter

    def record(msg):
        return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, msg, None, None)

    orphan = "Task exception was never retrieved\nfuture: <Task finished coro=<async_deserialize() done>>"
    assert not _orphaned_read_filter(record(orphan))
    assert _orphaned_read_filter(record("Task exception was never retrieved\nfuture: <Task coro=<fetch()>>"))
    assert _orphaned_read_filter(record("Unclosed client session"))


def _disk_fills_at(monkeypatch, full_step: int):
    """orbax's save fails at `full_step` as it does on a full disk: its temporary directory
    half-written, an absl ERROR record with the traceback from its writer thread, then tensorstore's
    ValueError (measured on a 700 KiB tmpfs: 325 lines, 4 tracebacks, exit 1 before issue 22)."""
    import logging

    import orbax.checkpoint as ocp

    real_save = ocp.CheckpointManager.save

    def save(self, step, *args, **kwargs):
        if step != full_step:
            return real_save(self, step, *args, **kwargs)
        self.wait_until_finished()  # as orbax does before a new save
        tmp = Path(self.directory) / f"{step}.orbax-checkpoint-tmp" / "state.orbax-checkpoint-tmp"
        tmp.mkdir(parents=True)
        (tmp / "manifest.ocdbt").write_bytes(b"\0" * 100)
        error = ValueError(
            f'RESOURCE_EXHAUSTED: Error writing "embed/0" in OCDBT database at local file "{tmp}": '
            "Failed to write 190467 bytes to file 17: No space left on device [os_error_code='28']"
        )
        logging.getLogger("absl").error("Failed to run 4 Handler Commit operations", exc_info=error)
        raise error

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def test_a_full_disk_while_checkpointing_is_one_line_and_resumes(tmp_path, capsys, monkeypatch, reference_run):
    """Issue 22: exit 2 with one line naming the checkpoint directory, no error.txt or result.json,
    the failed save's temporary directory removed, the checkpoint before it intact; after space is
    freed, --resume continues from it to the uninterrupted run's losses."""
    from lab.cli import main

    out = tmp_path / "full"
    args = ["train", "--out", str(out), "--quiet", "--checkpoint-every", "8", *set_args(TINY)]
    _disk_fills_at(monkeypatch, 16)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lab train: error: disk full writing "), err
    assert str(out / "checkpoints") in err[0] and "No space left on device" in err[0]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["8"]  # nothing half-written
    assert not (out / "error.txt").exists() and not (out / "result.json").exists()
    monkeypatch.undo()  # space freed
    assert main([*args, "--resume"]) == 0
    assert json.loads((out / "result.json").read_text())["resumed_from_step"] == 8
    assert losses(out) == losses(reference_run)


def test_a_kill_after_the_final_checkpoint_keeps_the_result_and_prunes_cleanly(
    tmp_path, monkeypatch, reference_run
):
    """Issue 22: a kill between the final checkpoint and result.json lost tokens_per_s, flops_per_s
    and wall_s (the re-run trained no step), and a kill while orbax pruned an older checkpoint left
    it half-deleted among the steps. The final checkpoint carries its trainer's timing, so the
    re-run writes the full result; pruned checkpoints are renamed into checkpoints/.deleted/ first,
    and what a kill leaves there is ignored by the resume and removed."""
    import warnings

    import lab.training.train as train_module
    from lab.costs import model_costs
    from lab.rundir import RunDir
    from lab.training.checkpoint import Checkpointer

    cfg = dataclasses.replace(TINY, checkpoint_every=8)
    out = tmp_path / "killed"

    def killed(*args, **kwargs):  # after the final save (the checkpointer still closes, waiting for it)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "final_scores", killed)
    monkeypatch.setattr(Checkpointer, "purge_deleted", lambda self, whole=False: None)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out, progress=False)
    assert not (out / "result.json").exists() and not (out / "checkpoints" / "8").exists()
    deleted = out / "checkpoints" / ".deleted" / "8"  # pruned, and killed while half-deleted
    for f in sorted(p for p in deleted.rglob("*") if p.is_file())[::2]:
        f.unlink()
    timing = json.loads((out / "checkpoints" / "24" / "meta" / "metadata").read_text())["timing"]
    assert timing["trained_from"] == 0 and timing["train_time_s"] > 0 and timing["wall_s"] > timing["train_time_s"]
    monkeypatch.undo()

    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)  # no half-deleted step is found
        result = train(cfg, out, resume=True, progress=False)
    tokens_per_s = 24 * TINY.tokens_per_step / timing["train_time_s"]
    assert result["tokens_per_s"] == pytest.approx(tokens_per_s, rel=1e-12) and result["resumed_from_step"] == 0
    assert result["flops_per_s"] == pytest.approx(
        tokens_per_s * model_costs(RunDir(out).load_config().model).flops_exact, rel=1e-12
    )
    assert result["wall_s"] > timing["wall_s"]  # the trainer's wall time and the re-run's
    assert json.loads((out / "result.json").read_text())["tokens_per_s"] == result["tokens_per_s"]
    ref = json.loads((reference_run / "result.json").read_text())
    assert result["final_val_loss"] == ref["final_val_loss"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["16", "24"]  # .deleted/ purged
