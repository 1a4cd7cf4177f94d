"""The first Ctrl-C stops a run that is still compiling, at once (it used to be held until the
compile and one training step were done)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from lab.training.interrupt import interruptible
from tests.helpers.runs import REPO, env


class Stopped(Exception):
    pass


def test_signal_raises_at_once_while_work_runs_outside_python():
    finished = threading.Event()

    def work():
        time.sleep(1.5)  # releases the GIL, as XLA's compile does
        finished.set()

    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    t0 = time.perf_counter()
    with pytest.raises(Stopped, match="signal 2"):
        interruptible(work, on_signal=lambda signum: Stopped(f"signal {signum}"))
    assert time.perf_counter() - t0 < 1.0 and not finished.is_set()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    assert finished.wait(5)  # the abandoned work ends on its own


def test_results_and_errors_pass_through():
    assert interruptible(lambda a, b: a + b, 2, 3, on_signal=Stopped) == 5
    with pytest.raises(ZeroDivisionError):
        interruptible(lambda: 1 / 0, on_signal=Stopped)


@pytest.mark.slow
def test_ctrl_c_while_compiling_stops_lab_train_at_once(tmp_path):
    """A 40-layer model compiles for tens of seconds here; SIGINT 8 s in ends the process
    within a few seconds, before any checkpoint (it used to take 47 s: compile, then a step)."""
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lab",
            "train",
            "--out",
            str(out),
            "--steps",
            "5",
            "--quiet",
            "--set",
            "model.n_layers=40",
            "--set",
            "model.d_model=32",
            "--set",
            "model.seq_len=32",
        ],
        env=env(1, LAB_COMPILATION_CACHE="0"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(8)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert time.perf_counter() - t0 < 5, err[-2000:]
    assert proc.returncode != 0 and "Traceback" not in err, err[-2000:]
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
