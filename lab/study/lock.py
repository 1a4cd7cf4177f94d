"""One driver per study directory.

`lab study` holds an exclusive `flock` on DIR/.lock for its whole life. A second driver on the
same directory is refused at once, with the holder's pid, host, start time and command (written
into the lock file by the holder). The kernel releases the lock when the holding process ends,
however it ends (exit, crash, SIGKILL), so there is no stale lock to clean up; the file itself
stays, with the last holder's details, and means nothing while it is unlocked. On Linux NFS,
`flock` is carried out as a POSIX byte-range lock, so drivers on different hosts exclude each other
too.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from lab.config import ConfigError

LOCK = ".lock"


def _holder_text(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['cmd']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its details"


class StudyLock:
    """`with StudyLock(DIR):` — exclusive use of a study directory, or ConfigError naming the holder."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.path = self.directory / LOCK
        self._file = None
        self.created = False

    def __enter__(self) -> StudyLock:
        return self if self._file is not None else self.acquire()

    def acquire(self) -> StudyLock:
        self.created = not self.path.exists()
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(f)
            f.close()
            raise ConfigError(
                f"{self.directory} is in use by another lab study ({holder}); wait for it to "
                "finish or stop it, or use another --out"
            ) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                f.close()
                raise
            print(
                f"lab study: warning: cannot lock {self.path} ({e.strerror}); make sure no other "
                "lab study uses this directory",
                file=sys.stderr,
            )
        self._write_holder(f)
        self._file = f
        return self

    @staticmethod
    def _write_holder(f) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cmd": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        }
        f.seek(0)
        f.truncate()
        f.write(json.dumps(info) + "\n")
        f.flush()

    @staticmethod
    def _read_holder(f, attempts: int = 10) -> str:
        """The holder writes its details just after it locks: give it a moment."""
        for _ in range(attempts):
            f.seek(0)
            text = f.read()
            if text.strip():
                return _holder_text(text)
            time.sleep(0.05)
        return _holder_text("")

    def discard(self) -> None:
        """Remove the lock file when this lock created it (a refused study leaves no trace in a
        folder it was not allowed to use); called while held, before `__exit__` releases it."""
        if self._file is not None and self.created:
            self.path.unlink(missing_ok=True)

    def __exit__(self, *exc) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
