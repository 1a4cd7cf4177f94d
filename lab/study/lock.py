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

from lab.config import ConfigError
from lab.files import LOCK, DirLock

__all__ = ["LOCK", "StudyLock"]


class StudyLock(DirLock):
    """`with StudyLock(DIR):` — exclusive use of a study directory, or ConfigError naming the holder."""

    def refusal(self, holder: str) -> Exception:
        return ConfigError(
            f"{self.directory} is in use by another lab study ({holder}); wait for it to "
            "finish or stop it, or use another --out"
        )

    def warning(self, e: OSError) -> str:
        return (
            f"lab study: warning: cannot lock {self.path} ({e.strerror}); make sure no other "
            "lab study uses this directory"
        )
