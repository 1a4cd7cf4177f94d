"""`lab study` under faults: a second driver on the same directory, SIGTERM to the driver,
damaged files it reads (result.json, results.csv, study.json), a foreign results table, a full
disk, and study values or study files that must end in one line and exit status 2."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.study.lock import StudyLock
from lab.study.results import read_rows, write_rows

HEADER = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))
"""
# one cell of 32 steps (~10 s in a worker process, most of it start-up)
ONE_CELL = (
    HEADER
    + """
def study():
    return Study(name="faults", base=BASE, sizes=[{"d_model": 16}], budgets=[3e8], min_steps=5)
"""
)
CELL = "d16L2-C3e+08-s0"


def write(tmp_path: Path, text: str, name: str = "study.py") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def study_cmd(path: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lab.cli", "study", str(path), "--out", str(out), "--quiet", *extra]


def one_line_error(capsys, argv: list[str]) -> str:
    """Run `lab ARGV` in this process; it must fail with exit status 2 and one stderr line."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lab study: error:"), err
    return err


@pytest.fixture(scope="module")
def done_study(tmp_path_factory) -> Path:
    """A completed one-cell study (DIR/study.py is its file); tests damage copies of it."""
    root = tmp_path_factory.mktemp("faults")
    path = write(root, ONE_CELL)
    assert main(["study", str(path), "--out", str(root / "out"), "--quiet"]) == 0
    return root / "out"


@pytest.fixture
def study_copy(done_study, tmp_path) -> tuple[Path, Path]:
    out = tmp_path / "out"
    shutil.copytree(done_study, out)
    return done_study.parent / "study.py", out


def the_row(out: Path) -> dict:
    rows = read_rows(out / "results.csv")
    assert [r["cell_id"] for r in rows] == [CELL]
    return rows[0]


# ----------------------------------------------------------------------------- one line, exit 2


@pytest.mark.parametrize(
    "body, message",
    [
        ("budgets=[float('nan')]", r"budgets must be finite numbers > 0, got nan"),
        ("budgets=[-1e9]", r"budgets must be finite numbers > 0, got -1000000000.0"),
        ("budgets=1e9", r"budgets must be a list, got 1000000000.0"),
        ("tokens=[0]", r"tokens must be finite whole numbers > 0, got 0"),
        ("tokens=[1e3, float('inf')]", r"tokens must be finite whole numbers > 0, got inf"),
        ("budgets=[1e9], seeds=[-1]", r"seeds must be finite whole numbers >= 0, got -1"),
        ("budgets=[1e9], seeds=[]", r"seeds must hold at least one seed"),
        ("budgets=[1e9], window=-2", r"window must be a whole number >= 0, got -2"),
        (
            "budgets=[1e9], tokens_per_param_guess=float('nan')",
            r"tokens_per_param_guess must be a finite number > 0",
        ),
    ],
)
def test_bad_study_values_fail_in_one_line(tmp_path, capsys, body, message):
    import re

    text = HEADER + f"def study():\n    return Study(name='bad', base=BASE, sizes=[{{'d_model': 16}}], {body})\n"
    err = one_line_error(capsys, ["study", str(write(tmp_path, text)), "--out", str(tmp_path / "out")])
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        (HEADER + "import sys\ndef study():\n    sys.exit(7)\n", "study() called sys.exit(7) (line 8)"),
        ("import sys\nsys.exit(3)\n", "called sys.exit(3) while loading (line 2)"),
    ],
)
def test_sys_exit_in_a_study_file_is_an_error(tmp_path, capsys, text, message):
    err = one_line_error(capsys, ["study", str(write(tmp_path, text)), "--out", str(tmp_path / "out")])
    assert message in err, err


def test_a_foreign_results_table_is_refused_not_overwritten(study_copy, capsys):
    path, out = study_copy
    foreign = b"name,loss\nmine,1.5\n"
    (out / "results.csv").write_bytes(foreign)
    err = one_line_error(capsys, ["study", str(path), "--out", str(out), "--quiet"])
    assert "not a results table written by lab study (no cell_id column)" in err
    assert (out / "results.csv").read_bytes() == foreign


def test_a_refused_study_leaves_no_lock_in_a_foreign_folder(tmp_path, capsys):
    """A user's folder holding their own results.csv: refused, and left exactly as it was (the
    lock file the driver made to check it goes again)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.csv").write_text("name,loss\nmine,1.5\n")
    err = one_line_error(capsys, ["study", str(write(tmp_path, ONE_CELL)), "--out", str(out), "--quiet"])
    assert "not a results table written by lab study" in err
    assert os.listdir(out) == ["results.csv"]


def test_a_folder_of_a_users_report_and_figures_is_not_a_study(tmp_path, capsys):
    """report.md, fits.json and figures/ are a study's only after its study.json: a user's folder
    of them is refused, so the study's analysis never takes them for its own."""
    out = tmp_path / "mine"
    (out / "figures").mkdir(parents=True)
    (out / "report.md").write_text("my report\n")
    err = one_line_error(capsys, ["study", str(write(tmp_path, ONE_CELL)), "--out", str(out), "--quiet"])
    assert f"{out} is not a study directory (it holds figures, report.md)" in err
    assert sorted(os.listdir(out)) == ["figures", "report.md"]


def test_a_path_too_long_for_the_file_system_is_one_line(tmp_path, capsys):
    err = one_line_error(capsys, ["study", str(write(tmp_path, ONE_CELL)), "--out", str(tmp_path / ("x" * 300))])
    assert "path too long for the file system" in err and len(err) < 400, err


def test_a_non_utf8_results_table_is_refused(study_copy, capsys):
    path, out = study_copy
    (out / "results.csv").write_bytes(b"\xff\xfe\x00c\x00e\x00l\x00l\x00\n")
    err = one_line_error(capsys, ["study", str(path), "--out", str(out), "--quiet"])
    assert "not UTF-8" in err


def test_a_directory_that_is_not_a_study_is_refused(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes\n")
    err = one_line_error(capsys, ["study", str(write(tmp_path, ONE_CELL)), "--out", str(out), "--quiet"])
    assert f"{out} is not a study directory (it holds notes.txt)" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_disk_full_is_one_line_and_leaves_no_temporary_files(study_copy, capsys, monkeypatch):
    import lab.files

    path, out = study_copy
    (out / "results.csv").unlink()  # the driver must write it again (it is rebuilt first)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(lab.files.os, "fsync", full)
    err = one_line_error(capsys, ["study", str(path), "--out", str(out), "--quiet"])
    assert f"disk full writing {out / 'results.csv'} (No space left on device)" in err
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- healing


def test_a_torn_results_row_is_rebuilt_from_its_run(study_copy):
    path, out = study_copy
    result = json.loads((out / "runs" / CELL / "result.json").read_text())
    text = (out / "results.csv").read_bytes()
    (out / "results.csv").write_bytes(text[: len(text) * 2 // 3])  # cut inside the row
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0
    row = the_row(out)
    assert row["status"] == "completed"
    assert float(row["final_val_loss"]) == pytest.approx(result["final_val_loss"], rel=1e-12)
    assert float(row["final_train_loss"]) == pytest.approx(result["final_train_loss"], rel=1e-12)
    assert row["corpus_fingerprint"] == result["corpus_fingerprint"]


def test_rows_of_cells_the_study_no_longer_has_are_kept(study_copy):
    path, out = study_copy
    row = the_row(out)
    old = {**row, "cell_id": "d8L2-C3e+08-s0", "final_val_loss": "4.25"}
    write_rows(out / "results.csv", [old, row])
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0
    assert read_rows(out / "results.csv") == [row, old]  # the study's cells first, in its order


@pytest.mark.parametrize("cut", [0, 12])  # empty, or cut inside the header
def test_a_table_cut_to_its_header_is_rebuilt(study_copy, cut):
    path, out = study_copy
    good = (out / "results.csv").read_bytes()
    (out / "results.csv").write_bytes(good[:cut])
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / "results.csv").read_bytes() == good


def test_a_truncated_study_json_is_rewritten(study_copy):
    path, out = study_copy
    good = (out / "study.json").read_text()
    (out / "study.json").write_text(good[:100])
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0
    assert (out / "study.json").read_text() == good
    assert json.loads(good)["cells"][0]["cell_id"] == CELL


def test_files_for_colleagues_follow_the_umask(tmp_path, done_study):
    for name in ("results.csv", "study.json", f"tasks/{CELL}.json"):
        assert (done_study / name).stat().st_mode & 0o777 == 0o666 & ~_umask(), name


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_damaged_result_is_healed_from_the_final_checkpoint(study_copy):
    path, out = study_copy
    result_file = out / "runs" / CELL / "result.json"
    good = json.loads(result_file.read_text())
    result_file.write_text(result_file.read_text()[:200])
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0
    healed = json.loads(result_file.read_text())
    assert healed["status"] == "completed" and healed["resumed_from_step"] == good["resumed_from_step"]
    assert healed["tokens_per_s"] == good["tokens_per_s"]  # the final checkpoint's timing (issue 22)
    assert healed["final_val_loss"] == pytest.approx(good["final_val_loss"], rel=1e-6)
    assert healed["final_train_loss"] == good["final_train_loss"]
    row = the_row(out)
    assert float(row["final_val_loss"]) == pytest.approx(healed["final_val_loss"], rel=1e-12)


# ----------------------------------------------------------------------------- one driver


def test_a_second_driver_is_refused_naming_the_holder(study_copy, capsys):
    path, out = study_copy
    before = (out / "results.csv").read_bytes()
    with StudyLock(out):
        err = one_line_error(capsys, ["study", str(path), "--out", str(out), "--quiet"])
    assert f"is in use by another lab study (pid {os.getpid()} on " in err
    assert (out / "results.csv").read_bytes() == before
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0  # free again once released


def test_the_lock_of_a_killed_driver_does_not_block(study_copy):
    path, out = study_copy
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom lab.study.lock import StudyLock\n"
            f"with StudyLock({str(out)!r}):\n    print('locked', flush=True)\n    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    holder.kill()
    holder.wait()
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0


def _metric_steps(run_dir: Path, kind: str) -> list[int]:
    """Steps of the metrics lines that hold `kind` (train_loss or val_loss), in file order."""
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in records if kind in r]


@pytest.mark.slow
def test_two_concurrent_studies_train_each_cell_once(tmp_path):
    text = (
        HEADER
        + """
def study():
    return Study(name="twice", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[1e9], min_steps=5)
"""
    )
    path, out = write(tmp_path, text), tmp_path / "out"
    procs = [
        subprocess.Popen(study_cmd(path, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = sorted((p.wait(timeout=600), p.stderr.read()) for p in procs)
    assert [code for code, _ in outcomes] == [0, 2], outcomes
    assert "is in use by another lab study (pid " in outcomes[1][1]
    for run_dir in (out / "runs").iterdir():
        for kind in ("train_loss", "val_loss"):
            steps = _metric_steps(run_dir, kind)
            assert steps and steps == sorted(set(steps)), (run_dir, kind, steps)  # strictly increasing
        assert json.loads((run_dir / "result.json").read_text())["resumed_from_step"] == 0
    assert [r["status"] for r in read_rows(out / "results.csv")] == ["completed", "completed"]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130), (signal.SIGKILL, -9)])
def test_stopping_the_driver_stops_its_workers(tmp_path, sig, code):
    text = (
        HEADER
        + """
def study():
    return Study(name="long", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[1e11], min_steps=5)
"""
    )
    path, out = write(tmp_path, text), tmp_path / "out"
    driver = subprocess.Popen(study_cmd(path, out, "--workers", "2"), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(p.exists() and p.stat().st_size for p in (out / "runs").glob("*/metrics.jsonl")):
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()
        time.sleep(0.2)
    workers = _children(driver.pid)
    assert len(workers) == 2
    driver.send_signal(sig)
    assert driver.wait(timeout=300) == code
    stop = time.monotonic() + 120  # after SIGKILL the workers get SIGTERM from the kernel (PDEATHSIG)
    while any(_alive(w) for w in workers) and time.monotonic() < stop:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    if sig != signal.SIGKILL:
        assert f"stopped by {sig.name}" in driver.stderr.read().strip().splitlines()[-1]
    stopped = [d for d in (out / "runs").iterdir() if (d / "metrics.jsonl").exists()]
    assert all(not (d / "result.json").exists() for d in stopped)  # unfinished, not failed
    assert any(any((d / "checkpoints").iterdir()) for d in stopped)  # the worker saved where it stopped


def _workers_of(out: Path) -> list[int]:
    """Pids of `lab.study.worker` processes running a task file of the study in OUT."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if "lab.study.worker" in args and any(a.startswith(str(out.resolve())) for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers through /proc")
@pytest.mark.parametrize("launcher", ["ray", "slurm"])
def test_sigterm_cancels_ray_tasks_and_slurm_jobs(tmp_path, launcher):
    pytest.importorskip({"ray": "ray", "slurm": "submitit"}[launcher])
    text = (
        HEADER
        + """
def study():
    return Study(name="long", base=BASE, sizes=[{"d_model": 16}], budgets=[1e12], min_steps=5)
"""
    )
    path, out = write(tmp_path, text), tmp_path / "out"
    driver = subprocess.Popen(study_cmd(path, out, "--launcher", launcher), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(p.stat().st_size for p in (out / "runs").glob("*/metrics.jsonl")):
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()
        time.sleep(0.2)
    workers = _workers_of(out)
    assert len(workers) == 1
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=300) == 143
    stop = time.monotonic() + 120
    while any(_alive(w) for w in workers) and time.monotonic() < stop:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers)
    assert not (out / "runs" / "d16L2-C1e+12-s0" / "result.json").exists()
    assert [int(p.name) for p in (out / "runs" / "d16L2-C1e+12-s0" / "checkpoints").iterdir()]  # saved on SIGTERM


def test_a_cell_too_large_for_the_machine_is_refused_up_front(tmp_path, capsys):
    text = HEADER + (
        "def study():\n    return Study(name='big', base=BASE, sizes=[{'d_model': 16}, "
        "{'d_model': 4096, 'n_layers': 2000, 'n_heads': 32}], tokens=[4096], min_steps=1)\n"
    )
    for extra in (["--dry-run", "--no-timing"], ["--out", str(tmp_path / "out")]):
        err = one_line_error(capsys, ["study", str(write(tmp_path, text)), *extra])
        assert "cell d4096" in err and "GiB per device" in err, err
    assert not (tmp_path / "out").exists()
