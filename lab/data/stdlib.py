"""`python_stdlib`: the running Python's standard-library `.py` files as a TFDS text dataset.

The corpus exists on every machine without a download. Directories named `test`, `tests` and
`site-packages` are skipped (as in the CPU study notes: 799 files, ~12.6 MB on Python 3.11;
`idlelib` and `turtledemo` are kept). Files are sorted by their POSIX path relative to the
stdlib directory. A file goes to validation when a hash of that relative path falls in 1 of 20
buckets, so its split never depends on the machine, the Python patch version or which other
files exist (Python 3.11.7: 45 files, 664,915 bytes of validation, as in the study notes).
`fingerprint` (sha256 over the sorted (path, sha256(content)) pairs and the split rule)
identifies exactly what went in; the TFDS builder (`lab.data.builders.PythonStdlib`) stores it
in its metadata.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from pathlib import Path

SKIP_DIRS = frozenset({"test", "tests", "site-packages", "__pycache__"})
SPLIT_RULE = "int(sha256(relpath).hexdigest()[:8], 16) % 20 == 0 -> validation"
VAL_BUCKETS = 20


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(relpath: str) -> str:
    """'validation' for ~1 in 20 relative POSIX paths, else 'train': a pure function of the path."""
    bucket = int(hashlib.sha256(relpath.encode()).hexdigest()[:8], 16) % VAL_BUCKETS
    return "validation" if bucket == 0 else "train"


def list_sources(source_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """Sorted (relative POSIX path, absolute path) of the `.py` files under `source_dir`."""
    root = Path(source_dir) if source_dir else stdlib_dir()
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            if name.endswith(".py"):
                path = Path(dirpath, name)
                found.append((path.relative_to(root).as_posix(), path))
    return sorted(found)


def fingerprint(files: list[tuple[str, bytes]]) -> str:
    """sha256 over sorted (path, sha256(content)) pairs plus the split rule: what went in."""
    h = hashlib.sha256(SPLIT_RULE.encode())
    for rel, content in sorted(files):
        h.update(b"\0" + rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return h.hexdigest()


def read_sources(source_dir=None) -> list[tuple[str, bytes]]:
    return [(rel, path.read_bytes()) for rel, path in list_sources(source_dir)]


def source_fingerprint(source_dir=None) -> str:
    """The fingerprint of the files now on disk (reads them all: ~0.1 s for the stdlib)."""
    return fingerprint(read_sources(source_dir))
