"""Stopping a study cleanly.

SIGTERM or SIGINT to the `lab study` driver sets a flag; the launcher's poll (about every half
second) sees it and raises `Interrupted`, and each launcher then stops what it started before the
driver exits: local workers get SIGTERM (`lab.training.train` saves a checkpoint and exits 143), Ray tasks
and SLURM jobs are cancelled. The driver exits 128 + the signal's number (143 for SIGTERM, 130 for
SIGINT); re-running the same command continues from the checkpoints.
"""

from __future__ import annotations

import signal
import threading


class Interrupted(Exception):
    """The driver received SIGTERM/SIGINT; its workers have been stopped."""

    def __init__(self, signum: int):
        self.signum = signum
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name}; the workers were stopped (each saves a checkpoint first); "
            "run the same command again to continue"
        )

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopSignals:
    """`with StopSignals() as stop:` — SIGTERM/SIGINT set `stop.signum` (main thread only);
    `stop.check()` raises Interrupted once one arrived."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self._old: dict = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}
