"""Files the lab writes for people to read: written whole or not at all, readable by colleagues.

* `write_text_atomic` writes a temporary file beside the target, fsyncs it and renames it into
  place, so a reader (or a re-run after a crash) never sees half a file; on failure (disk full)
  the temporary file is removed and the old file, if any, is left as it was.
* Files get the mode the user's umask gives new files (0644 under the usual 022), not the 0600 of
  `tempfile.mkstemp`: results on a shared filesystem are for colleagues too.
* `read_json` tells a missing file (None) from a damaged one (`DamagedFile`), so callers can
  rebuild what they derived rather than trust or crash on it.
* `DirLock`: one writer per directory (a study's, a run's), an exclusive `flock` on DIR/.lock that
  names its holder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import socket
import sys
import tempfile
import time
from pathlib import Path


class DamagedFile(ValueError):
    """A file the lab wrote that can no longer be parsed (truncated, overwritten, not UTF-8)."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path} is damaged ({reason})")
        self.path, self.reason = Path(path), reason


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename is None:
            e.filename = str(path)  # "disk full writing PATH", not "writing a file"
        raise


def clean_json(value):
    """Non-finite floats become null (strict JSON); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(path, data) -> None:
    write_text_atomic(path, json.dumps(clean_json(data), indent=2) + "\n")


def read_json(path) -> dict | None:
    """The JSON object in `path`; None when the file does not exist; DamagedFile when it cannot
    be read as one JSON object."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise DamagedFile(path, "not UTF-8") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DamagedFile(path, f"invalid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(data, dict):
        raise DamagedFile(path, f"a JSON {type(data).__name__}, not an object")
    return data


def foreign_entries(directory, own) -> list[str]:
    """Sorted names in `directory` that are neither in `own` nor a temporary file of
    `write_text_atomic` (what a directory holds that the lab did not write)."""
    own = set(own)
    return sorted(
        p.name
        for p in Path(directory).iterdir()
        if p.name not in own and not (p.name.startswith(".") and p.name.endswith(".tmp"))
    )


def name_list(names: list[str], most: int = 3) -> str:
    """'a, b, c and 2 more': a few names for a one-line message."""
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


# ----------------------------------------------------------------------------- one writer per directory

LOCK = ".lock"


def _holder_text(text: str) -> str:
    try:
        info = json.loads(text)
        return f"pid {info['pid']} on {info['host']} since {info['since']}: {info['cmd']}"
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its details"


def _program() -> str:
    """This process's program as a person would type it: `lab` for `python -m lab`."""
    path = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    return path.parent.name if path.name == "__main__.py" else path.name


class DirLock:
    """`with DirLock(DIR):` — exclusive use of a directory, or the error `refusal` makes naming
    the holder.

    The holder keeps an exclusive `flock` on DIR/.lock for as long as it writes, and writes its pid,
    host, start time and command into the file. The kernel releases the lock when the holding
    process ends, however it ends (exit, crash, SIGKILL), so there is no stale lock to clean up;
    the file stays, with the last holder's details, and means nothing while it is unlocked. On
    Linux NFS, `flock` is carried out as a POSIX byte-range lock, so processes on different hosts
    exclude each other too. With `reentrant`, a second lock of the same directory in the process
    that holds it is granted (and counted), not refused; `wait` blocks until the holder ends
    instead of refusing."""

    reentrant = False
    _held: dict = {}  # per class that sets reentrant: resolved lock path -> [file, count]

    def __init__(self, directory, *, wait: bool = False):
        self.directory = Path(directory)
        self.path = self.directory / LOCK
        self.wait = wait
        self._file = None
        self._key = None
        self.created = False  # whether this lock made DIR/.lock (see `discard`)

    def refusal(self, holder: str) -> Exception:
        """The error when another process holds the lock."""
        from lab.config import ConfigError

        return ConfigError(f"{self.directory} is in use by another process ({holder})")

    def warning(self, e: OSError) -> str:
        return f"lab: warning: cannot lock {self.path} ({e.strerror}); make sure no other process writes there"

    def __enter__(self):
        return self if self._file is not None or self._key is not None else self.acquire()

    def acquire(self):
        if self.reentrant:
            key = str(self.path.resolve())
            if key in DirLock._held:
                DirLock._held[key][1] += 1
                self._key = key
                return self
        self.created = not self.path.exists()
        f = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f, fcntl.LOCK_EX if self.wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._read_holder(f)
            f.close()
            raise self.refusal(holder) from None
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                f.close()
                raise
            print(self.warning(e), file=sys.stderr)
        self._write_holder(f)
        if self.reentrant:
            self._key = str(self.path.resolve())
            DirLock._held[self._key] = [f, 1]
        else:
            self._file = f
        return self

    @staticmethod
    def _write_holder(f) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "cmd": " ".join([_program(), *sys.argv[1:]]),
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
        """Remove DIR/.lock when this lock created it (a refused command leaves no trace in a folder
        it was not allowed to use); called while held, before `release`."""
        if self._file is not None and self.created:
            self.path.unlink(missing_ok=True)

    def release(self) -> None:
        f = self._file
        if self._key is not None:
            held = DirLock._held[self._key]
            held[1] -= 1
            f = held[0] if held[1] == 0 else None
            if held[1] == 0:
                del DirLock._held[self._key]
            self._key = None
        self._file = None
        if f is not None:
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()

    def __exit__(self, *exc) -> None:
        self.release()
