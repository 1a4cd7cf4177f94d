"""A run directory: config.json, metrics.jsonl, result.json (the contract other tools read).

Writes of config.json and result.json are atomic (temp file + rename), so a crash never leaves a
half-written file; metrics.jsonl is appended line by line and, on resume, cut back to the
checkpointed step so the resumed log equals an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from lab.config import ConfigError

CONFIG, METRICS, RESULT, ERROR = "config.json", "metrics.jsonl", "result.json", "error.txt"


def read_config(run_dir):
    """The RunConfig saved in RUN_DIR/config.json (keys it does not know, e.g. derived costs, are
    ignored), or None when the file is absent."""
    import dataclasses

    from lab.config import RunConfig, from_dict

    path = Path(run_dir) / CONFIG
    if not path.exists():
        return None
    saved = json.loads(path.read_text())
    return from_dict(RunConfig, {k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(RunConfig)}})


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


def write_json_atomic(path: Path, data: dict) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(clean_json(data), f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


class RunDir:
    def __init__(self, path: Path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer  # only process 0 of a multi-host run writes

    @classmethod
    def prepare(cls, path, *, resume: bool = False, overwrite: bool = False, writer: bool = True) -> "RunDir":
        """Check the directory may be used; creates it. Refuses to clobber without a flag."""
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path} exists and is not a directory")
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        if not writer:  # another process of a multi-host run checks and creates it
            return cls(path, writer)
        nonempty = path.is_dir() and any(path.iterdir())
        if nonempty and not (resume or overwrite):
            raise ConfigError(f"run directory {path} is not empty; pass --resume to continue it or --overwrite to replace it")
        if nonempty and overwrite:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path, writer)

    # ------------------------------------------------------------------ files
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_config(self, config: dict) -> None:
        if self.writer:
            write_json_atomic(self.path / CONFIG, config)

    def read_config(self) -> dict | None:
        p = self.path / CONFIG
        return read_json(p) if p.exists() else None

    def write_result(self, result: dict) -> None:
        if self.writer:
            write_json_atomic(self.path / RESULT, result)

    def read_result(self) -> dict | None:
        p = self.path / RESULT
        return read_json(p) if p.exists() else None

    def write_error(self, text: str) -> Path:
        p = self.path / ERROR
        if self.writer:
            p.write_text(text)
        return p

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged after `after_step` (they will be produced again)."""
        p = self.path / METRICS
        if not (self.writer and p.exists()):
            return
        keep = []
        for line in p.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= after_step:
                    keep.append(line)
            except (ValueError, KeyError):
                break  # a torn last line from a kill: drop it and everything after
        p.write_text("".join(line + "\n" for line in keep))

    def log(self, record: dict) -> None:
        if self.writer:
            with open(self.path / METRICS, "a") as f:
                f.write(json.dumps(clean_json(record)) + "\n")

    def metrics(self) -> list[dict]:
        p = self.path / METRICS
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []


@lru_cache(maxsize=1)
def git_sha() -> str:
    """Commit of the lab's source tree, with '-dirty' if it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
