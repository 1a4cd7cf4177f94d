"""Stopping a run while it is still being built.

During training, SIGINT/SIGTERM only set a flag that the loop checks once per step, so that a
checkpoint is saved first. Before the first step there is nothing to save, and set-up (tracing a
deep model, XLA's compile, creating the state) can take minutes: a flag checked "after the next
step" swallows the first Ctrl-C. `interruptible` runs such set-up work in a helper thread while the
main thread waits in short slices with handlers that raise at once; XLA releases the GIL while it
compiles, so the main thread gets to the handler within ~0.1 s even mid-compile.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from collections.abc import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def interruptible(fn: Callable, *args, on_signal: Callable[[int], BaseException]):
    """`fn(*args)`, but SIGINT/SIGTERM raise `on_signal(signum)` in the caller at once. The
    abandoned work finishes in its daemon thread, or, if the interpreter exits first, the process
    ends with status 128 + signum. Outside the main thread (signals cannot be handled there) this
    is a plain call."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    box: dict = {}
    done = threading.Event()

    def work():
        try:
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            done.set()

    def handle(signum, frame):
        if not done.is_set():
            atexit.register(_exit_now, done, 128 + signum)
        raise on_signal(signum)

    worker = threading.Thread(target=work, name="lab-setup", daemon=True)
    old = {sig: signal.signal(sig, handle) for sig in SIGNALS}
    try:
        worker.start()
        while not done.wait(0.1):
            pass
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _exit_now(done: threading.Event, code: int) -> None:
    """At interpreter exit, while abandoned set-up work still runs in C++ (XLA compiling): end
    the process here, streams flushed. Letting the interpreter finalize would unwind that thread
    through C++ frames, which aborts the process ("FATAL: exception not rethrown")."""
    if not done.is_set():
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(code)
