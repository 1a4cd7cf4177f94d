"""The first Ctrl-C stops a run that is still compiling, at once (it used to be held until the
compile and one training step were done)."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from lab.training.interrupt import interruptible
from tests.helpers.runs import REPO, env


class Stopped(Exception):
    pass


def test_signal_raises_at_once_while_work_runs_outside_python():
    """The signal raises while the work is still blocked (it cannot finish before `release` is set,
    which happens only after interruptible has returned): no waiting for the work, by construction."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def work():
        started.set()
        release.wait(60)  # blocks outside the GIL, as XLA's compile does
        finished.set()

    before = signal.getsignal(signal.SIGINT)  # Python's default; SIG_IGN under a shell's background job
    threading.Thread(target=lambda: started.wait(60) and os.kill(os.getpid(), signal.SIGINT)).start()
    with pytest.raises(Stopped, match="signal 2"):
        interruptible(work, on_signal=lambda signum: Stopped(f"signal {signum}"))
    assert not finished.is_set()
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    release.set()
    assert finished.wait(60)  # the abandoned work ends on its own


def test_results_and_errors_pass_through():
    assert interruptible(lambda a, b: a + b, 2, 3, on_signal=Stopped) == 5
    with pytest.raises(ZeroDivisionError):
        interruptible(lambda: 1 / 0, on_signal=Stopped)


def wait_for_line(stream, marker: str, timeout: float) -> list[str]:
    """Lines read from `stream` up to and including the first that holds `marker` (a reader thread,
    so a process that never prints it fails the test after `timeout` instead of hanging it)."""
    lines, found = [], threading.Event()

    def read():
        for line in stream:
            lines.append(line)
            if marker in line:
                found.set()
                return

    threading.Thread(target=read, daemon=True).start()
    assert found.wait(timeout), f"no {marker!r} line in {timeout} s:\n" + "".join(lines)[-2000:]
    return lines


@pytest.mark.slow
def test_ctrl_c_while_compiling_stops_lab_train_at_once(tmp_path):
    """SIGINT sent as soon as JAX logs that it is compiling the training step (JAX_LOG_COMPILES) ends
    the process before that compile finishes (its "Finished XLA compilation" line never comes) and
    before any checkpoint; it used to wait for the compile and one step. A condition, not a fixed
    sleep, so a slow machine does not send the signal before the compile has started."""
    out = tmp_path / "run"
    overrides = ["model.n_layers=40", "model.d_model=32", "model.seq_len=32"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "train", "--out", str(out), "--steps", "5", "--quiet"]
        + [a for o in overrides for a in ("--set", o)],
        env=env(1, LAB_COMPILATION_CACHE="0", JAX_LOG_COMPILES="1"),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        before = wait_for_line(proc.stderr, "Compiling jit(step)", timeout=300)
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=300)
    finally:
        proc.kill()
    err = "".join(before) + rest
    assert proc.returncode != 0 and "Traceback" not in err, err[-2000:]
    assert "while compiling" in err, err[-2000:]
    assert "Finished XLA compilation of jit(step)" not in err, err[-2000:]
    assert not (out / "checkpoints").exists() or not any((out / "checkpoints").iterdir())
