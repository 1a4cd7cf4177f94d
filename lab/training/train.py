"""One training run: the jitted, donated, sharded step of `lab.step` over batches that are a
function of (seed, step), periodic evaluation on a fixed validation set, orbax checkpoints, exact
resume, and the run directory's files.
"""

from __future__ import annotations

import errno
import math
import queue
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import jax
import numpy as np

from lab import sharding
from lab.training.checkpoint import Checkpointer, abstract_like
from lab.config import ConfigError, RunConfig, model_impl
from lab.costs import model_costs
from lab.data import Corpus, check_streams, load_corpus, repeat_fields, train_batch, val_batches
from lab.result import FINAL, LOSSES, MODEL, VARIANT
from lab.rundir import RunDir, git_sha
from lab.training.interrupt import interruptible
from lab.memory import check_compiled, check_fits
from lab.evals.final import final_scores
from lab.training.step import (abstract_model, check_batch_split, compile_step, jit_eval, memory_report, resolve_config,
                      sharded_rows, warmup_steps)

LN2 = math.log(2.0)


class Diverged(Exception):
    pass


class Preempted(Exception):
    """SIGTERM/SIGINT arrived; a checkpoint of the current step was saved before stopping."""


class RunFailed(RuntimeError):
    """The run crashed; its status `failed` and traceback are in the run directory."""


class _Prefetch:
    """The batches of steps start .. stop-1, each built (host rows, then put on the devices in the
    batch sharding) by a background thread up to `depth` steps ahead of the step the devices run,
    so the next batch is ready when the step is dispatched. Batches are a function of (seed, step),
    so prefetching changes nothing that is computed. An error building one is raised by `get`."""

    def __init__(self, make, start: int, stop: int, depth: int = 2):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._fill, args=(make, start, stop), daemon=True,
                                        name="lab-batch-prefetch")
        self._thread.start()

    def _fill(self, make, start: int, stop: int) -> None:
        for step in range(start, stop):
            try:
                item = (step, make(step), None)
            except BaseException as e:  # handed to the training thread, raised there
                item = (step, None, e)
            while not self._halt.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None or self._halt.is_set():
                return

    def get(self, step: int):
        got, batch, error = self._queue.get()
        if error is not None:
            raise error
        assert got == step, (got, step)
        return batch

    def close(self) -> None:
        self._halt.set()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks once per step (main thread only)."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


# ----------------------------------------------------------------------------- the run


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, extra_result: dict | None = None, keep_steps: tuple[int, ...] = ()) -> dict:
    """Train one model; returns the result dict (also written to OUT/result.json).

    User errors (bad config, a corpus too short for it, a model that does not fit, an occupied or
    foreign run directory) raise ConfigError before anything is written. A NaN/inf loss ends the
    run with status `diverged`; SIGTERM/SIGINT save a checkpoint and raise Preempted (no result is
    written: the run is unfinished); any other exception is recorded as status `failed`
    (traceback in OUT/error.txt) and raised as RunFailed. `keep_steps`: steps whose checkpoints are
    also kept in OUT/branch_points/STEP (the starting points of WSD cooldown branches).
    """
    cfg, corpus, mesh = _checked_setup(cfg)
    rundir = RunDir.prepare(out, resume=resume, overwrite=overwrite, writer=jax.process_index() == 0)
    if resume:
        done = _same_run(rundir, cfg)
        if done is not None:
            return done
    costs = model_costs(cfg.model)
    result = {**_result_header(cfg, corpus, rundir, costs), **(extra_result or {})}
    rundir.write_config({**cfg.to_dict(), "config_hash": cfg.hash(), "costs": costs.as_dict(),
                         "warmup_steps": warmup_steps(cfg)})
    return _run(cfg, corpus, rundir, mesh, result, progress=progress, keep_steps=keep_steps)


def _checked_setup(cfg: RunConfig):
    """(resolved config, corpus, mesh), after every check that needs no run directory."""
    cfg.validate()
    sharding.parse_mesh(cfg.mesh, jax.device_count())  # a mesh that does not fit: error before any write
    corpus = load_corpus(cfg.data)
    cfg = resolve_config(cfg, corpus)
    check_streams(corpus, cfg)
    mesh = sharding.make_mesh(cfg.mesh)
    check_batch_split(cfg, dict(mesh.shape))  # micro-batches split evenly over the data-parallel devices
    check_fits(cfg, mesh)  # a model that cannot fit: one line with the numbers, before any write
    sharding.param_shardings(abstract_model(cfg)[1], mesh)  # every dimension divides its mesh axes
    return cfg, corpus, mesh


def _same_run(rundir: RunDir, cfg: RunConfig) -> dict | None:
    """On resume: the finished result if the run already ended; an error if the directory holds
    a run of another config; None when training should continue."""
    saved = rundir.config_dict()
    if saved is not None and saved.get("config_hash", cfg.hash()) != cfg.hash():
        raise ConfigError(f"{rundir.path} holds a run of another config ({saved['config_hash']}, this is "
                          f"{cfg.hash()}); resume it with its own config, or use another directory")
    done = rundir.read_result()
    if done and done["status"] in FINAL and done.get("config_hash") in (None, cfg.hash()):
        return done
    return None


def _result_header(cfg: RunConfig, corpus: Corpus, rundir: RunDir, costs) -> dict:
    """The result fields known before training (identity, model, costs, data)."""
    m = cfg.model
    return {
        "run_id": rundir.path.resolve().name, "config_hash": cfg.hash(), "git_sha": git_sha(), "status": "running",
        "seed": cfg.train.seed, **{k: getattr(m, k) for k in MODEL + VARIANT}, **costs.totals(cfg.total_tokens),
        "steps": cfg.total_steps, "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
        "dataset": corpus.name, "tokenizer": corpus.tokenizer, "corpus_fingerprint": corpus.text_fingerprint,
        "tokens_fingerprint": corpus.tokens_fingerprint,
        "entropy_nats_per_token": corpus.entropy_nats_per_token,
        **repeat_fields(cfg.data.unique_tokens, cfg.total_tokens, len(corpus.train)),
        "recall_mix": cfg.data.recall_mix,
    }


def _run(cfg, corpus, rundir: RunDir, mesh, result: dict, *, progress: bool, keep_steps) -> dict:
    """Train, then write the result: completed, diverged, or failed (and raise RunFailed)."""
    t_start = time.perf_counter()
    try:
        result.update(_Loop(cfg, corpus, rundir, mesh, progress=progress, keep_steps=keep_steps).run())
    except Diverged as e:
        result.update(status="diverged", error=str(e))
    except (Preempted, KeyboardInterrupt):
        raise
    except Exception as e:
        if _is_disk_full(e):
            raise
        path = rundir.write_error(traceback.format_exc())
        result.update(status="failed", error=f"{type(e).__name__}: {e} (traceback in {path})")
        rundir.write_result({**result, "wall_s": time.perf_counter() - t_start})
        raise RunFailed(result["error"]) from e
    for key in LOSSES:
        result.setdefault(key, None)
    result["wall_s"] = time.perf_counter() - t_start
    rundir.write_result(result)
    return result


def _is_disk_full(e: BaseException) -> bool:
    """A full disk is the user's to fix, not a failed run: the CLI says so in one line."""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)  # as analysis.errors.run_command


class _Loop:
    """The state of one run's training loop; `run()` returns the result fields it measured."""

    def __init__(self, cfg: RunConfig, corpus: Corpus, rundir: RunDir, mesh, *, progress: bool,
                 keep_steps: tuple[int, ...] = ()):
        t = cfg.train
        self.keep_steps = set(keep_steps)
        self.cfg, self.corpus, self.rundir, self.mesh, self.progress = cfg, corpus, rundir, mesh, progress
        self.steps = cfg.total_steps
        self.costs = model_costs(cfg.model)
        self.log_every = t.log_every or max(1, self.steps // 100)
        self.eval_every = t.eval_every or max(1, self.steps // 5)
        self.to_bits_per_byte = 1.0 / (LN2 * corpus.bytes_per_token)
        self.window: list[float] = []  # per-step train losses since the last log line
        self.last_train = self.last_eval = None

    def batch(self, step: int):
        t, T = self.cfg.train, self.cfg.model.seq_len
        return sharded_rows(self.batch_sh, (t.batch_size, T + 1), lambda rows: train_batch(
            self.corpus.train, seed=t.seed, step=step, batch_size=t.batch_size, seq_len=T, rows=rows,
            unique_tokens=self.cfg.data.unique_tokens, recall_mix=self.cfg.data.recall_mix))

    def compile(self) -> dict:
        """The compiled step (refused if XLA says it cannot fit), then the initial state in its
        shardings and the eval function; returns compile facts. SIGINT/SIGTERM stop it at once
        (nothing is trained yet, so there is nothing to save)."""
        cfg, mesh = self.cfg, self.mesh
        stopped = lambda signum: Preempted(f"stopped by signal {signum} while compiling, before the first step")
        step = interruptible(compile_step, cfg, mesh, on_signal=stopped)
        check_compiled(step.memory)  # before allocating the state
        self.step_fn, self.state_sh, self.batch_sh = step.executable, step.state_sh, step.batch_sh
        self.params, self.opt_state = interruptible(step.init_state, on_signal=stopped)
        val = val_batches(self.corpus.val, batch_size=cfg.train.batch_size, seq_len=cfg.model.seq_len,
                          n_tokens=cfg.data.val_tokens)
        self.val = jax.device_put(val, sharding.val_sharding(mesh))
        self.eval_fn = jit_eval(step)
        # the attention kernel that ran (`auto` resolved): tokens_per_s depends on it
        return {"compile_s": step.compile_s, "attn_impl": model_impl(cfg.model),
                **memory_report(step, self.params, self.opt_state)}

    def restore(self, ckpt: Checkpointer) -> int:
        """Continue from the newest intact checkpoint, if any; returns the step to start at."""
        restored = ckpt.restore_latest(abstract_like((self.params, self.opt_state), self.state_sh))
        if restored is None:
            self.rundir.truncate_metrics(0)
            return 0
        start, (self.params, self.opt_state), meta = restored
        self.window, self.last_train = meta["window"], meta["last_train"]
        self.rundir.truncate_metrics(start)
        return start

    def save(self, ckpt: Checkpointer, step: int) -> None:
        ckpt.save(step, (self.params, self.opt_state), {"window": self.window, "last_train": self.last_train,
                                                        "seed": self.cfg.train.seed, "config_hash": self.cfg.hash()})
        if step in self.keep_steps:
            ckpt.wait()
            self.rundir.keep_branch_point(step)

    def run(self) -> dict:
        with jax.set_mesh(self.mesh), _StopFlag() as stop:
            facts = self.compile()
            if self.progress and self.rundir.writer:
                print(_memory_line(facts, self.mesh), file=sys.stderr)
            ckpt = Checkpointer(self.rundir.checkpoints, keep=self.cfg.keep_checkpoints,
                                 set_aside=self.rundir.corrupted_checkpoints)
            try:
                start = self.restore(ckpt)
                train_time = self.train_steps(ckpt, start, stop)
                if self.last_eval is None:  # resumed from the final checkpoint: evaluate it again
                    self.last_eval = self.evaluate(self.steps, log=False)
                final = final_scores(abstract_model(self.cfg)[0], self.params, self.cfg, self.corpus, self.val)
            finally:
                ckpt.close()  # waits for an in-flight async save

        tokens_per_s = (self.steps - start) * self.cfg.tokens_per_step / train_time if train_time > 0 else None
        return {
            "status": "completed",
            "final_train_loss": self.last_train,
            "final_val_loss": self.last_eval["val_loss"],
            "val_bits_per_byte": self.last_eval["val_bits_per_byte"],
            "tokens_per_s": tokens_per_s,
            "flops_per_s": tokens_per_s * self.costs.flops_exact if tokens_per_s else None,
            "resumed_from_step": start,
            "mesh": dict(self.mesh.shape),
            "devices": jax.device_count(),
            "processes": jax.process_count(),
            "device_kind": jax.devices()[0].device_kind,
            **facts,
            **final,  # quantized losses, weight bytes, in-context recall (lab.final_eval)
        }

    def train_steps(self, ckpt: Checkpointer, start: int, stop: _StopFlag) -> float:
        """The hot loop. Metrics stay on device until a log/eval/checkpoint step; returns the
        seconds spent training (evaluation excluded)."""
        bar = _progress(self.steps, start, self.progress)
        with _Prefetch(self.batch, start, self.steps) as batches:
            train_time = self._loop(ckpt, start, stop, bar, batches)
        bar.close()
        return train_time

    def _loop(self, ckpt: Checkpointer, start: int, stop: _StopFlag, bar, batches: _Prefetch) -> float:
        """Dispatch steps without waiting for them (the state is donated, the next batch is being
        prefetched); synchronise only at log, eval and checkpoint steps."""
        cfg = self.cfg
        pending, train_time = [], 0.0
        t_mark = time.perf_counter()
        for step in range(start, self.steps):
            self.params, self.opt_state, metrics = self.step_fn(self.params, self.opt_state, batches.get(step),
                                                                np.int32(step))
            pending.append(metrics)
            done = step + 1
            is_log = done % self.log_every == 0 or done == self.steps
            is_eval = done % self.eval_every == 0 or done == self.steps
            is_ckpt = ((cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == self.steps
                       or done in self.keep_steps)
            if not (is_log or is_eval or is_ckpt or stop.signum):
                continue
            fetched, pending = jax.device_get(pending), []
            train_time += time.perf_counter() - t_mark
            self.window += [float(m["loss"]) for m in fetched]
            if not all(math.isfinite(x) for x in self.window):
                raise Diverged(f"non-finite training loss by step {done}")
            if is_log:
                self.log_train(done, fetched[-1], (done - start) * cfg.tokens_per_step / train_time)
            if is_eval:
                self.last_eval = self.evaluate(done)
            bar.update(len(fetched))
            bar.set_postfix(loss=f"{self.last_train or float('nan'):.3f}",
                            val=f"{self.last_eval['val_loss']:.3f}" if self.last_eval else "-")
            if is_ckpt or stop.signum:
                self.save(ckpt, done)
            if stop.signum:
                raise Preempted(f"stopped by signal {stop.signum} after step {done}; checkpoint saved")
            t_mark = time.perf_counter()
        return train_time

    def log_train(self, step: int, last_metrics: dict, tokens_per_s: float) -> None:
        """One metrics line; train_loss is the mean over the steps since the previous line."""
        tokens = step * self.cfg.tokens_per_step
        self.last_train = float(np.mean(self.window))
        self.window = []
        self.rundir.log({"step": step, "tokens": tokens, "flops": self.costs.flops_exact * tokens,
                         "train_loss": self.last_train, "lr": float(last_metrics["lr"]),
                         "grad_norm": float(last_metrics["grad_norm"]), "tokens_per_s": tokens_per_s})

    def evaluate(self, step: int, log: bool = True) -> dict:
        loss = float(self.eval_fn(self.params, self.val))
        tokens = step * self.cfg.tokens_per_step
        rec = {"step": step, "tokens": tokens, "flops": self.costs.flops_exact * tokens,
               "val_loss": loss, "val_bits_per_byte": loss * self.to_bits_per_byte}
        if log:
            self.rundir.log(rec)
        return rec


def _memory_line(facts: dict, mesh) -> str:
    mb = lambda key: facts.get(key, 0) / 2**20
    return (f"compiled step in {facts['compile_s']:.1f}s on mesh {dict(mesh.shape)} (attention: {facts['attn_impl']}); "
            f"per device: params "
            f"{mb('param_bytes_per_device'):.2f} MiB, optimizer {mb('opt_state_bytes_per_device'):.2f} MiB, "
            f"step arguments {mb('step_argument_size_in_bytes'):.2f} MiB, temporaries "
            f"{mb('step_temp_size_in_bytes'):.2f} MiB (XLA memory analysis)")


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
