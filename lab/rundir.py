"""A run directory, the one owner of its layout: every other module asks `RunDir` for a path.

    OUT/.lab-run                 marker: the lab created this directory (what --overwrite checks)
    OUT/.lock                    held by the one process that writes the run (`RunLock`)
    OUT/config.json              the resolved config, its hash, costs per token
    OUT/metrics.jsonl            one line per log or eval step
    OUT/result.json              the run's record (`lab.result.FIELDS`), written when it ends
    OUT/error.txt                the traceback of a failed run
    OUT/checkpoints/STEP/        orbax checkpoints (the newest `keep_checkpoints`)
    OUT/checkpoints/.deleted/    pruned checkpoints, renamed here before they are deleted
    OUT/checkpoints_corrupted/   damaged checkpoints, set aside (never deleted)
    OUT/branch_points/STEP/      kept checkpoints that WSD cooldown branches start from
    OUT/profile/                 a jax.profiler trace of chosen steps (lab train --profile-steps)
    OUT/tensorboard/, OUT/wandb/ live tracker logs (lab train --tracker, lab study --tracker)

config.json and result.json are written atomically (`lab.files`); metrics.jsonl is appended line
by line and, on resume, cut back to the checkpointed step so the resumed log equals an
uninterrupted one. The lab deletes only what it can prove it wrote: `--overwrite` replaces a
directory that holds nothing but a run's own files, and never a directory that holds the current
directory, a home directory or a filesystem root. One process writes a run directory at a time: a
second `lab train` on it (a requeued job while the old one still runs, a concurrent --overwrite)
is refused naming the holder, before it changes anything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from lab.config import ConfigError
from lab.files import (
    LOCK,
    DamagedFile,
    DirLock,
    clean_json,
    foreign_entries,
    name_list,
    read_json,
    write_json_atomic,
)
from lab.result import problems

MARKER, CONFIG, METRICS, RESULT, ERROR = ".lab-run", "config.json", "metrics.jsonl", "result.json", "error.txt"
CHECKPOINTS, CORRUPTED, BRANCH_POINTS = "checkpoints", "checkpoints_corrupted", "branch_points"
PROFILE, TRACKERS = "profile", ("tensorboard", "wandb")  # lab train --profile-steps, --tracker
OWN_ENTRIES = (
    MARKER,
    CONFIG,
    METRICS,
    RESULT,
    ERROR,
    CHECKPOINTS,
    CORRUPTED,
    BRANCH_POINTS,
    LOCK,
    PROFILE,
    *TRACKERS,
)


class RunLock(DirLock):
    """One writer per run directory (`lab.files.DirLock` on OUT/.lock); reentrant, so a study
    worker that holds it while it seeds a branch can call `train`, which takes it again."""

    reentrant = True

    def refusal(self, holder: str) -> Exception:
        return ConfigError(
            f"run directory {self.directory} is in use by another process ({holder}); wait for it to "
            "finish or stop it (nothing was changed)"
        )

    def warning(self, e: OSError) -> str:
        return (
            f"lab: warning: cannot lock {self.path} ({e.strerror}); make sure no other process "
            "trains in this run directory"
        )


class RunDir:
    def __init__(self, path, writer: bool = True):
        self.path = Path(path)
        self.writer = writer  # only process 0 of a multi-host run writes
        self.listeners: list = []  # called with each metrics line once written (a live tracker's log)
        self.lock: RunLock | None = None  # held from `prepare` until `release`

    # ------------------------------------------------------------------ layout
    @property
    def config_file(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def result_file(self) -> Path:
        return self.path / RESULT

    @property
    def error_file(self) -> Path:
        return self.path / ERROR

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def corrupted_checkpoints(self) -> Path:
        return self.path / CORRUPTED

    @property
    def profile(self) -> Path:
        return self.path / PROFILE

    @property
    def branch_points(self) -> Path:
        return self.path / BRANCH_POINTS

    def branch_point(self, step: int) -> Path:
        return self.branch_points / str(step)

    # ------------------------------------------------------------------ ownership
    @classmethod
    def prepare(
        cls, path, *, resume: bool = False, overwrite: bool = False, writer: bool = True, wait: bool = False
    ) -> RunDir:
        """Check the directory may be used, lock it (`RunLock`; `wait`: until its holder ends,
        else refuse), then create it (and its marker); the caller `release`s the lock. An occupied
        directory needs --resume or --overwrite; a directory with files the lab did not write
        is refused either way, and --overwrite deletes only the run's own entries."""
        run = cls(path, writer)
        if run.path.exists() and not run.path.is_dir():
            raise ConfigError(f"{run.path} exists and is not a directory")
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite exclude each other")
        if not writer:  # another process of a multi-host run checks and creates it
            return run
        if run.occupied():  # checks that change nothing, before the lock file is created
            run.check_occupied(resume, overwrite)
        run.path.mkdir(parents=True, exist_ok=True)
        run.lock = RunLock(run.path, wait=wait).acquire()
        try:
            if overwrite and run.occupied():
                run.delete_own()
            run.mark()
        except BaseException:
            run.release()
            raise
        return run

    def release(self) -> None:
        """Let another process write this run directory."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def occupied(self) -> bool:
        return self.path.is_dir() and any(p.name != LOCK for p in self.path.iterdir())

    def check_occupied(self, resume: bool, overwrite: bool) -> None:
        """An occupied directory may be used if it is a run's, with --resume or --overwrite."""
        self.check_own()
        if not self.is_run():  # a run's file names, but not a run the lab wrote: never take it over
            raise ConfigError(
                f"{self.path} is not a run directory the lab recognises (no {MARKER} or "
                "config.json with a config hash); use an empty or new directory for --out"
            )
        if not (resume or overwrite):
            raise ConfigError(
                f"run directory {self.path} is not empty; pass --resume to continue it "
                "or --overwrite to replace it"
            )

    def is_run(self) -> bool:
        """Whether the lab wrote this directory: its marker, or (older runs) a config.json with a
        config hash."""
        if (self.path / MARKER).is_file():
            return True
        try:
            return "config_hash" in (read_json(self.config_file) or {})
        except DamagedFile:
            return False

    def check_own(self) -> None:
        foreign = foreign_entries(self.path, OWN_ENTRIES)
        if foreign:
            raise ConfigError(
                f"{self.path} holds files the lab did not write ({name_list(foreign)}); use an empty "
                "or new directory for --out (nothing was deleted)"
            )

    def delete_own(self) -> None:
        """Delete the run's own entries (for --overwrite); `prepare` has checked they are a run's."""
        _refuse_protected(self.path)
        for name in OWN_ENTRIES:
            if name == LOCK:  # held by this process
                continue
            p = self.path / name
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()

    def mark(self) -> None:
        if self.writer and not (self.path / MARKER).exists():
            (self.path / MARKER).write_text(json.dumps({"lab": "run directory", "version": 1}) + "\n")

    # ------------------------------------------------------------------ files
    def write_config(self, config: dict) -> None:
        if self.writer:
            write_json_atomic(self.config_file, config)

    def config_dict(self) -> dict | None:
        """config.json as written (config + hash + costs); None when absent or damaged."""
        try:
            return read_json(self.config_file)
        except DamagedFile:
            return None

    def load_config(self):
        """The RunConfig saved in config.json (derived keys such as costs are ignored), or None."""
        import dataclasses

        from lab.config import RunConfig
        from lab.overrides import from_dict

        saved = self.config_dict()
        if saved is None or "config_hash" not in saved:  # absent, damaged, or not the lab's
            return None
        names = {f.name for f in dataclasses.fields(RunConfig)}
        try:
            return from_dict(RunConfig, {k: v for k, v in saved.items() if k in names})
        except (TypeError, AttributeError, ValueError) as e:
            raise ConfigError(f"{self.config_file} does not hold a run config ({type(e).__name__}: {e})") from None

    def write_result(self, result: dict) -> None:
        if self.writer:
            write_json_atomic(self.result_file, result)

    def read_result(self) -> dict | None:
        """The run's result when it can be trusted; None when absent, damaged or incomplete (the
        run is then unfinished: resuming it rewrites the result from its newest checkpoint)."""
        try:
            result = read_json(self.result_file)
        except DamagedFile:
            return None
        return result if result is not None and not problems(result) else None

    def write_error(self, text: str) -> Path:
        if self.writer:
            self.error_file.write_text(text)
        return self.error_file

    def log(self, record: dict) -> None:
        if self.writer:
            with open(self.metrics_file, "a") as f:
                f.write(json.dumps(clean_json(record)) + "\n")
            for listen in self.listeners:
                listen(record)

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines logged after `after_step` (they will be produced again)."""
        if self.writer and self.metrics_file.exists():
            keep = self._metric_lines(after_step)
            self.metrics_file.write_text("".join(line + "\n" for line in keep))

    def _metric_lines(self, up_to_step: int) -> list[str]:
        keep = []
        for line in self.metrics_file.read_text(errors="replace").splitlines():
            try:
                if json.loads(line)["step"] > up_to_step:
                    break
            except (ValueError, KeyError, TypeError):
                break  # a torn last line from a kill: drop it and everything after
            keep.append(line)
        return keep

    def last_logged_step(self) -> int:
        """The step of metrics.jsonl's last intact line (0 when there is none); reads the tail only."""
        try:
            with open(self.metrics_file, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
                tail = f.read().decode(errors="replace").splitlines()
        except OSError:
            return 0
        for line in reversed(tail):
            try:
                return int(json.loads(line)["step"])
            except (ValueError, KeyError, TypeError):
                continue
        return 0

    def seed_branch(self, parent: RunDir, step: int) -> None:
        """Give a cooldown branch its starting point: the parent's kept checkpoint at `step` and
        its metrics up to `step`. A branch already seeded (or training) is left alone."""
        if self.checkpoints.exists() and any(p.name.isdigit() for p in self.checkpoints.iterdir()):
            return
        source = parent.branch_point(step)
        if not source.exists():
            raise FileNotFoundError(f"the long run {parent.path.name} has no checkpoint at step {step}")
        self.path.mkdir(parents=True, exist_ok=True)
        self.mark()
        shutil.copytree(source, self.checkpoints / str(step))
        lines = parent._metric_lines(step) if parent.metrics_file.exists() else []
        self.metrics_file.write_text("".join(line + "\n" for line in lines))

    def keep_branch_point(self, step: int) -> None:
        """Copy the checkpoint of `step` to branch_points/STEP (the checkpoint must be written)."""
        if self.writer:
            target = self.branch_point(step)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(self.checkpoints / str(step), target)


def _refuse_protected(path: Path) -> None:
    """Never delete in a filesystem root, a home directory, or a directory holding the cwd."""
    real = path.resolve()
    cwd = Path.cwd().resolve()
    if real == Path(real.anchor) or real == Path.home().resolve() or real.parent == Path("/home"):
        raise ConfigError(f"refusing to delete in {path}: it is a filesystem root or a home directory")
    if cwd == real or real in cwd.parents:
        raise ConfigError(f"refusing to delete in {path}: it holds the current directory; run from elsewhere")


@lru_cache(maxsize=1)
def git_sha() -> str:
    """Commit of the lab's source tree, with '-dirty' if it has uncommitted changes."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if sha.returncode:
            return "unknown"
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
