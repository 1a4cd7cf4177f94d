"""Progress lines on stderr for analysis work that takes more than a few seconds (large tables,
big bootstraps). Small jobs print nothing, so a study-sized `lab fit` stays quiet."""

from __future__ import annotations

import sys
import time

LARGE_ROWS = 4096  # tables with more rows than this get progress lines
QUIET = False  # True: no progress lines at all (the CLI's --quiet sets it while a command runs)


class Progress:
    """`progress("message")` prints `<what>: message (elapsed s)` on stderr when enabled."""

    def __init__(self, what: str, enabled: bool):
        self.what, self.enabled, self.t0 = what, enabled, time.perf_counter()

    def __call__(self, message: str) -> None:
        if self.enabled and not QUIET:
            print(f"{self.what}: {message} ({time.perf_counter() - self.t0:.1f} s)", file=sys.stderr, flush=True)
