"""Files the lab writes for people to read: written whole or not at all, readable by colleagues.

* `write_text_atomic` writes a temporary file beside the target, fsyncs it and renames it into
  place, so a reader (or a re-run after a crash) never sees half a file; on failure (disk full)
  the temporary file is removed and the old file, if any, is left as it was.
* Files get the mode the user's umask gives new files (0644 under the usual 022), not the 0600 of
  `tempfile.mkstemp`: results on a shared filesystem are for colleagues too.
* `read_json` tells a missing file (None) from a damaged one (`DamagedFile`), so callers can
  rebuild what they derived rather than trust or crash on it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
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
