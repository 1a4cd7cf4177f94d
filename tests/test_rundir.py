"""The run directory: the lab deletes only what it wrote, resumes with the same command, refuses
bad values before writing anything, heals a damaged result, and writes files colleagues can read."""

import json
import os
import stat

import pytest

from lab.cli import main
from lab.result import FIELDS
from lab.rundir import RunDir
from tests.helpers.runs import TINY, losses, set_args

SMALL_RUN = ["--steps", "8", "--quiet", *set_args(TINY)[:8]]  # the tiny test model (its first model fields)


def train_cli(out, *extra) -> int:
    return main(["train", "--out", str(out), *SMALL_RUN, *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    assert train_cli(out) == 0
    return out


def test_overwrite_refuses_a_directory_with_foreign_files(tmp_path, capsys):
    d = tmp_path / "D"
    (d / "sub").mkdir(parents=True)
    (d / "thesis.tex").write_text("x")
    assert train_cli(d, "--overwrite") == 2
    assert "holds files the lab did not write (sub, thesis.tex)" in one_error_line(capsys)
    assert sorted(p.name for p in d.iterdir()) == ["sub", "thesis.tex"] and (d / "thesis.tex").read_text() == "x"


def test_overwrite_of_the_current_directory_deletes_nothing(tmp_path, capsys, monkeypatch):
    d = tmp_path / "D"
    d.mkdir()
    (d / "notes.md").write_text("keep")
    monkeypatch.chdir(d)
    assert main(["train", "--out", ".", *SMALL_RUN, "--overwrite"]) == 2
    one_error_line(capsys)
    assert [p.name for p in d.iterdir()] == ["notes.md"]


def test_overwrite_never_deletes_in_a_run_directory_holding_the_cwd(finished_run, capsys, monkeypatch):
    before = sorted(p.name for p in finished_run.iterdir())
    monkeypatch.chdir(finished_run / "checkpoints")
    assert train_cli(finished_run, "--overwrite") == 2
    assert "holds the current directory" in one_error_line(capsys)
    assert sorted(p.name for p in finished_run.iterdir()) == before


def test_overwrite_replaces_a_run_directory(tmp_path, capsys):
    out = tmp_path / "R"
    assert train_cli(out) == 0
    first = json.loads((out / "result.json").read_text())
    assert main(["train", "--out", str(out), "--steps", "12", "--quiet", *set_args(TINY)[:8], "--overwrite"]) == 0
    second = json.loads((out / "result.json").read_text())
    assert (first["steps"], second["steps"]) == (8, 12) and (out / ".lab-run").is_file()
    assert max(step for _, step in losses(out)) == 12


def test_overwrite_through_a_symlink_to_a_run(tmp_path, capsys):
    real = tmp_path / "real"
    assert train_cli(real) == 0
    link = tmp_path / "link"
    link.symlink_to(real)
    assert train_cli(link, "--overwrite") == 0
    assert link.is_symlink() and (real / "result.json").is_file()


def test_resume_into_a_foreign_directory_is_refused(tmp_path, capsys):
    d = tmp_path / "D"
    d.mkdir()
    (d / "data.csv").write_text("a,b\n")
    assert train_cli(d, "--resume") == 2
    assert "did not write (data.csv)" in one_error_line(capsys)
    assert [p.name for p in d.iterdir()] == ["data.csv"]


def test_resume_with_the_original_command_and_a_conflicting_flag(finished_run, capsys):
    assert train_cli(finished_run, "--resume") == 0  # the same command: the finished run is returned
    capsys.readouterr()
    assert train_cli(finished_run, "--resume", "--seed", "3", "--set", "train.lr=0.1") == 2
    line = one_error_line(capsys)
    assert "train.seed is 0 there, 3 here" in line and "train.lr is 0.003 there, 0.1 here" in line
    assert train_cli(finished_run, "--resume", "--checkpoint-every", "4") == 0  # cadence may change


def test_resume_of_an_empty_directory_starts_the_run(tmp_path):
    out = tmp_path / "new"
    assert train_cli(out, "--resume") == 0
    assert json.loads((out / "result.json").read_text())["status"] == "completed"


def test_damaged_result_is_rebuilt_from_the_final_checkpoint(tmp_path):
    out = tmp_path / "R"
    assert train_cli(out) == 0
    good = json.loads((out / "result.json").read_text())
    text = (out / "result.json").read_text()
    (out / "result.json").write_text(text[: len(text) // 2])
    assert RunDir(out).read_result() is None
    assert train_cli(out, "--resume") == 0
    healed = json.loads((out / "result.json").read_text())
    assert healed["final_val_loss"] == good["final_val_loss"]
    # the final checkpoint's timing: the figures of the process that trained (issue 22)
    assert healed["resumed_from_step"] == 0 and healed["tokens_per_s"] == good["tokens_per_s"]
    assert healed["flops_per_s"] == good["flops_per_s"] and healed["wall_s"] > good["wall_s"] * 0.5
    assert all(k in healed for k in FIELDS)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("train.lr=inf", "train.lr must be a positive finite number"),
        ("train.beta2=2", "train.beta2=2.0 must lie in [0.0, 1.0)"),
        ("train.grad_clip=nan", "train.grad_clip=nan must lie in"),
        ("train.seed=1e30", "train.seed="),
        ("checkpoint_every=-1", "checkpoint_every=-1 must lie in"),
        ("data.bpe_vocab_size=1e9", "data.bpe_vocab_size=1000000000 must lie in [1, 1048576]"),
        ("data.val_tokens=1e12", "data.val_tokens=1,000,000,000,000 exceeds"),
        ("model.seq_len=100000", "fewer than one batch"),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(tmp_path, capsys, flag, message):
    out = tmp_path / "R"
    assert train_cli(out, "--set", flag) == 2
    assert message in one_error_line(capsys)
    assert not out.exists()


def test_run_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "R"
        assert train_cli(out) == 0
    finally:
        os.umask(old)
    for name in ("config.json", "result.json", "metrics.jsonl"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o644, name


def test_disk_full_is_one_line_and_leaves_no_temporary_files(tmp_path, capsys, monkeypatch):
    import errno

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    out = tmp_path / "R"
    assert train_cli(out) == 2
    line = one_error_line(capsys)
    assert "disk full writing" in line and "config.json" in line and "No space left on device" in line
    assert not [p for p in out.rglob("*.tmp")]


def test_a_model_too_large_is_refused_before_anything_is_written(tmp_path, capsys):
    import time

    out = tmp_path / "R"
    t0 = time.perf_counter()
    assert (
        train_cli(out, "--set", "model.d_model=4096", "--set", "model.n_layers=2000", "--set", "model.n_heads=32")
        == 2
    )
    assert time.perf_counter() - t0 < 30
    line = one_error_line(capsys)
    assert "GiB per device" in line and "params" in line and "optimizer" in line and "activations" in line
    assert not out.exists()


@pytest.mark.parametrize(
    "make",
    [
        lambda d: (
            (d / "checkpoints" / "mymodel").mkdir(parents=True)
            or (d / "checkpoints" / "mymodel" / "w.bin").write_text("w")
        ),
        lambda d: (d / "result.json").write_text('{"a": 1}'),
        lambda d: (d / "config.json").write_text('{"model": "bert"}'),
    ],
)
@pytest.mark.parametrize("mode", ["--resume", "--overwrite"])
def test_files_named_like_a_run_are_not_taken_over(tmp_path, capsys, make, mode):
    """A directory whose entries only look like a run's (no marker, no config hash) is not the lab's:
    neither --resume nor --overwrite writes or deletes there."""
    d = tmp_path / "D"
    d.mkdir()
    make(d)
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    assert train_cli(d, mode) == 2
    assert "not a run directory the lab recognises" in one_error_line(capsys)
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("where", ["name", "path"])
def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path, capsys, where):
    """A 300-character name (over the 255-byte limit of a name), or a path over PATH_MAX: one line,
    exit 2, no traceback, nothing written."""
    out = tmp_path / ("x" * 300) if where == "name" else tmp_path.joinpath(*["y" * 200] * 25)
    assert train_cli(out) == 2
    line = one_error_line(capsys)
    assert line.startswith("lab train: error: path too long for the file system:") and len(line) < 400, line
    assert os.listdir(tmp_path) == []


LONG_RUN = ["--steps", "100000", "--quiet", *set_args(TINY)[:8], "--set", "model.n_heads=8"]
LONG_RUN += ["--set", "model.seq_len=32", "--set", "train.log_every=10", "--set", "train.eval_every=5000"]


def test_a_second_writer_of_a_live_run_is_refused_naming_the_holder(tmp_path, capsys):
    """Issue 22: two `lab train --out X --resume` (a requeued job while the old one still runs)
    interleaved their metrics, and a concurrent --overwrite deleted a live run's files. The second
    command is refused in one line naming the holder, exit 2, and changes nothing."""
    import signal
    import subprocess
    import time

    from tests.helpers.runs import env, lab_cmd

    out = tmp_path / "live"
    cmd = lab_cmd("train", "--out", out, *LONG_RUN, "--checkpoint-every", "50")
    first = subprocess.Popen(cmd, env=env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not ((out / "metrics.jsonl").is_file() and any((out / "checkpoints").glob("[0-9]*"))):
            assert first.poll() is None and time.time() < deadline, first.stderr.read() if first.poll() else "slow"
            time.sleep(0.2)
        assert json.loads((out / ".lock").read_text())["pid"] == first.pid
        for mode in ("--resume", "--overwrite"):
            assert main(["train", "--out", str(out), *LONG_RUN, mode]) == 2
            line = one_error_line(capsys)
            assert f"run directory {out} is in use by another process (pid {first.pid} on " in line, line
            assert "lab train --out" in line and "(nothing was changed)" in line
            assert (out / "config.json").is_file() and (out / ".lab-run").is_file(), mode
        first.send_signal(signal.SIGTERM)  # the first run saves a checkpoint and stops (143)
        assert first.wait(120) == 143, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    steps = [step for kind, step in losses(out) if kind == "train"]
    assert steps == list(range(10, steps[-1] + 1, 10))  # one writer: every step once, in order
    saved = max(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] <= saved < steps[-1] + 10  # the log goes up to the checkpoint the stop saved


def test_a_study_worker_holds_its_cells_run_locks(tmp_path):
    """A worker takes each of its cells' run locks (waiting for a holder, in path order) before it
    trains; `lab train` on a cell is refused meanwhile, and `train` in the worker takes it again."""
    import subprocess
    import sys
    import time

    from lab.study.worker import run_locks
    from tests.helpers.runs import env

    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    probe = (
        "from lab.rundir import RunLock\nprint('trying', flush=True)\ntry:\n    RunLock({!r}).acquire()\n"
        "    print('got it')\nexcept Exception as e:\n    print(e)"
    )
    with run_locks([b, a]):
        other = subprocess.run(
            [sys.executable, "-c", probe.format(str(a))], env=env(), capture_output=True, text=True
        )
        assert f"run directory {a} is in use by another process (pid {os.getpid()} on " in other.stdout, other
        RunDir.prepare(b, resume=True).release()  # reentrant: the worker's own train
        waiter = subprocess.Popen(
            [sys.executable, "-c", probe.replace("RunLock({!r})", "RunLock({!r}, wait=True)").format(str(b))],
            env=env(),
            stdout=subprocess.PIPE,
            text=True,
        )
        assert waiter.stdout.readline().strip() == "trying"
        time.sleep(1.0)
        assert waiter.poll() is None  # waits for the worker
    assert waiter.communicate(timeout=60)[0].strip() == "got it"  # and gets it once the worker ends
