"""Checkpoints with orbax: parameters, optimizer state and the loop's position, saved
asynchronously and restorable onto any mesh.

What is saved is enough for an exact resume: batches are a function of (seed, step) and the
model has no other randomness, so (params, opt_state, step, seed, the losses of the current
logging window) determine everything that follows.

Each checkpoint's JSON metadata carries a fingerprint of the saved arrays (per-leaf sum and sum
of squares). A checkpoint that fails to restore, or restores to different numbers, is reported
with a warning naming it and the one before is used. A read-only checkpointer (`lab sample`,
`lab eval`, `lab train --init-from`) writes nothing: it neither moves a damaged checkpoint nor
cleans up temporary directories; its caller says which step it used.

Pruning (`keep`) renames an old checkpoint out of the way before deleting it, so a kill never
leaves a half-deleted step where a resume looks.

A save that fails because the disk is full (orbax reports it from its writer threads, as a
ValueError carrying tensorstore's "No space left on device", at the next save or wait) raises
`OSError(ENOSPC)` naming the checkpoint directory, after removing what the failed save left
(`*.orbax-checkpoint-tmp`); the checkpoints before it are intact and a resume starts from them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp


class CheckpointWarning(UserWarning):
    pass


class CheckpointDamaged(Exception):
    """A checkpoint that does not restore, or restores to numbers other than those saved; the
    message is one line (the first line of orbax's error, at most 200 characters)."""


@jax.jit
def fingerprint(tree):
    """Per-leaf (sum, sum of squares) in float32: cheap, and changed by any corrupted value."""
    leaves = [x.astype(jnp.float32) for x in jax.tree.leaves(tree)]
    return jnp.stack([jnp.stack([x.sum(), (x * x).sum()]) for x in leaves])


def _same_fingerprint(a, b, rtol: float = 1e-4) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or not np.all(np.isfinite(b)):
        return False
    return bool(np.all(np.abs(a - b) <= rtol * (np.abs(a) + 1.0)))


def _drop_closed_loop_noise() -> None:
    """A restore that fails on damaged files leaves tensorstore reads in flight; when they finish,
    their callbacks reach orbax's already-closed event loop and each prints an unraisable
    `RuntimeError: Event loop is closed` traceback (thousands of lines for one bad checkpoint).
    Drop exactly those; every other unraisable exception is reported as before."""
    previous = sys.unraisablehook
    if getattr(previous, "_lab_quiet", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._lab_quiet = True
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(_orphaned_read_filter)
    logging.getLogger("absl").addFilter(_read_only_filter)


def _orphaned_read_filter(record: logging.LogRecord) -> bool:
    """The same failed restore also leaves orbax's sibling `async_deserialize` tasks with
    exceptions nobody retrieves; asyncio logs each one with its tensorstore spec (hundreds of
    lines). Those reads failed for the reason the one warning line already names."""
    message = record.getMessage()
    return not ("exception was never retrieved" in message and "async_deserialize" in message)


def _read_only_filter(record: logging.LogRecord) -> bool:
    """A read-only manager (lab sample, lab eval, --init-from) makes orbax warn that the directory
    is read only, which is what was asked for; the command's own line says which step it used."""
    return not record.getMessage().startswith(
        ("Given directory is read only", "CheckpointManagerOptions.read_only")
    )


DELETED = ".deleted"  # CHECKPOINTS/.deleted/STEP: pruned checkpoints, renamed there, then deleted
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "os_error_code='28'", "os_error_code='122'")


def is_disk_full(e: BaseException | None) -> bool:
    """Whether `e`, or an exception it was raised from, is a full disk (or quota): an OSError with
    ENOSPC/EDQUOT, or orbax's ValueError quoting tensorstore's message."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL:
            return True
        if any(text in str(e) for text in _DISK_FULL_TEXT):
            return True
        e = e.__cause__ or e.__context__
    return False


def _drop_disk_full_logs(record: logging.LogRecord) -> bool:
    """orbax's writer threads log a failed write (with its traceback) before the error reaches the
    run, which reports a full disk in one line: drop those records."""
    if record.exc_info and is_disk_full(record.exc_info[1]):
        return False
    return not any(text in record.getMessage() for text in _DISK_FULL_TEXT)


class Checkpointer:
    def __init__(
        self,
        directory: Path,
        *,
        keep: int = 2,
        async_save: bool = True,
        set_aside: Path | None = None,
        read_only: bool = False,
        writer: bool = False,
    ):
        _drop_closed_loop_noise()
        self.directory = Path(directory).absolute()
        self.read_only = read_only
        # where damaged checkpoints are moved (kept, never deleted); the run directory decides
        self.set_aside_dir = (
            Path(set_aside).absolute() if set_aside else self.directory.parent / "checkpoints_corrupted"
        )
        logging.getLogger("absl").addFilter(_drop_disk_full_logs)
        if read_only:  # every option orbax would otherwise reset (with a log line) set here
            options = ocp.CheckpointManagerOptions(
                read_only=True,
                create=False,
                max_to_keep=None,
                cleanup_tmp_directories=False,
                save_interval_steps=0,
            )
        else:
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max(1, keep),
                create=True,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=True,
                todelete_subdir=DELETED,  # pruned checkpoints are renamed away first (atomic)
            )
        self.manager = ocp.CheckpointManager(self.directory, options=options)
        self.writer = writer and not read_only  # a reader (sampling, evaluation) never deletes anything
        if self.writer:
            self.purge_deleted(whole=True)  # what a kill left of an earlier purge

    def steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def save(self, step: int, state, meta: dict) -> None:
        """Start saving `state` (a pytree of arrays) at `step`; returns before the write ends."""
        meta = {**meta, "step": int(step), "fingerprint": np.asarray(fingerprint(state)).tolist()}
        self.purge_deleted()
        with self._disk_full():
            self.manager.save(
                int(step),
                args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                force=True,
            )

    @contextlib.contextmanager
    def _disk_full(self):
        """A full disk while saving (now, or in the background since the last call) becomes
        OSError(ENOSPC), once the failed save's temporary directories are removed."""
        try:
            yield
        except Exception as e:
            if not is_disk_full(e):
                raise
            self.remove_unfinished()
            raise OSError(errno.ENOSPC, "No space left on device", str(self.directory)) from None

    def purge_deleted(self, whole: bool = False) -> None:
        """Delete the checkpoints orbax pruned (`max_to_keep`): it renames each out of the step
        directories into DELETED/ at once, so a kill while one is deleted here leaves no
        half-deleted step for a resume to find, only a remnant in DELETED/ that the next purge
        removes. Only a writer purges (at start, before each save, at close)."""
        deleted = self.directory / DELETED
        if self.writer and jax.process_index() == 0 and deleted.is_dir():
            for step in deleted.iterdir():  # not DELETED/ itself while orbax may rename into it
                shutil.rmtree(step, ignore_errors=True)
            if whole:
                shutil.rmtree(deleted, ignore_errors=True)

    def remove_unfinished(self) -> None:
        """Delete the temporary directories of saves that did not finish (after a failed save),
        once no save is in flight."""
        with contextlib.suppress(Exception):  # an in-flight save that fails too is removed below
            self.manager.wait_until_finished()
        if jax.process_index() == 0 and self.directory.is_dir():
            for tmp in self.directory.glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)

    def restore_latest(self, abstract_state):
        """(step, state, meta) of the newest checkpoint that restores intact, or None.

        `abstract_state` is a pytree of jax.ShapeDtypeStruct with the *current* run's shardings,
        so a checkpoint written on one mesh restores onto another.
        """
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore(step, abstract_state)
            except CheckpointDamaged as e:
                where = "left in place" if self.read_only else f"moved to {self._set_aside(step)}"
                warnings.warn(
                    f"checkpoint {self.directory / str(step)} is unreadable or corrupted ({e}); "
                    f"{where}, falling back to the previous one",
                    CheckpointWarning,
                    stacklevel=2,
                )
                continue
            return step, state, meta
        return None

    def restore(self, step: int, abstract_state):
        """(state, meta) of the checkpoint at `step`; CheckpointDamaged if it does not restore
        intact. Moves nothing."""
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()
                ),
            )
            state, meta = restored["state"], restored["meta"]
            if not _same_fingerprint(meta["fingerprint"], fingerprint(state)):
                raise ValueError("restored arrays do not match the saved fingerprint")
        except Exception as e:  # orbax raises many types for damaged files
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise CheckpointDamaged(reason[:200]) from None
        return state, meta

    def _set_aside(self, step: int) -> Path:
        """Move a damaged checkpoint out of the manager's way (kept, not deleted)."""
        target = self.set_aside_dir / str(step)
        if jax.process_index() == 0:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target = target.with_name(f"{step}-{len(list(target.parent.iterdir()))}")
            (self.directory / str(step)).rename(target)
        self.manager.reload()
        return target

    def wait(self) -> None:
        with self._disk_full():
            self.manager.wait_until_finished()

    def close(self) -> None:
        """Wait for an in-flight save, then release the manager (also when the save failed)."""
        if self.read_only:
            self.manager.close()
            return
        try:
            self.wait()
            self.purge_deleted(whole=True)  # no save in flight
        finally:
            with contextlib.suppress(Exception):  # the save's error, if any, was raised by wait
                self.manager.close()


def restore_read_only(directory: Path, abstract_state, step: int | None = None, what: str = ""):
    """(step, state, meta, damaged) of the checkpoint at `step` in `directory`, or of the newest
    intact one when `step` is None (`damaged`: "STEP (reason)" of each newer one that did not
    restore, left where it is). Writes nothing. A missing step, a damaged chosen step, or no intact
    checkpoint at all raise ConfigError, in one line starting with `what` (e.g. the run directory)."""
    from lab.config import ConfigError

    ckpt = Checkpointer(directory, read_only=True)
    damaged = []
    try:
        steps = ckpt.steps()
        if step is not None and step not in steps:
            there = ", ".join(map(str, steps)) if steps else "none"
            raise ConfigError(f"{what} has no checkpoint at step {step}; its checkpoint steps: {there}")
        for s in [step] if step is not None else reversed(steps):
            try:
                state, meta = ckpt.restore(s, abstract_state)
            except CheckpointDamaged as e:
                if step is not None:
                    raise ConfigError(f"{what}: the checkpoint of step {step} is damaged ({e})") from None
                damaged.append(f"{s} ({e})")
                continue
            return s, state, meta, damaged
    finally:
        ckpt.close()
    detail = f": damaged {', '.join(damaged)}" if damaged else ""
    raise ConfigError(f"{what} has no intact checkpoint{detail}")


def abstract_like(tree, shardings):
    """ShapeDtypeStructs of `tree`'s arrays with the given shardings (a matching pytree)."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)
