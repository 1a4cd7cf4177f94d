"""Train a pack: K runs of one shape in one process and one vmapped step (`lab.pack.step`),
each member writing its own run directory exactly as `lab.train.train` would: config.json,
metrics.jsonl, result.json (with `pack_id`), and checkpoints.

Checkpoints are saved per member, in the member's own run directory, with `lab.train`'s tree and
metadata, at the steps an unpacked run saves them. A re-run (resume) restores each member from its
newest intact checkpoint; a member restored further ahead than another (a kill between two
members' saves) waits, its state untouched, until the pack reaches its step. Batches are a
function of (seed, step) and members do not interact, so a killed and resumed pack continues
every member bitwise as the uninterrupted pack does. A member's run directory can also be resumed
alone with `lab train --resume`.

A member with a non-finite training loss is recorded `diverged` (and stops updating) while the
others go on. A member that finished before a re-run (a diverged one) stays in the pack, idle, so
the others resume in the very program they started in. SIGTERM/SIGINT save every running member's checkpoint, then raise Preempted.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field

import jax
import numpy as np

from lab import sharding
from lab.training.checkpoint import Checkpointer
from lab.config import RunConfig, model_impl
from lab.costs import model_costs
from lab.data import train_batch, val_batches
from lab.evals.final import final_scores
from lab.training.packed.step import (check_packable, compile_packed, member_slice, member_values, packed_batch_sharding,
                           stacked_sharding)
from lab.result import LOSSES
from lab.rundir import RunDir
from lab.training.step import abstract_model, resolve_config, warmup_steps, xla_memory
from lab.training.train import LN2, Preempted, RunFailed, _checked_setup, _Prefetch, _result_header, _same_run, _StopFlag


@dataclass
class Member:
    cfg: RunConfig
    rundir: RunDir
    result: dict
    start: int = 0
    alive: bool = True
    done: bool = False  # finished before this process started: kept in the pack, not trained
    window: list = field(default_factory=list)
    last_train: float | None = None
    last_eval: dict | None = None


def train_pack(cfgs: list[RunConfig], outs: list, *, pack_id: str, resume: bool = False, overwrite: bool = False,
               progress: bool = False, extra_results: list[dict] | None = None) -> list[dict]:
    """Train every member of a pack; returns their results (also in each OUT/result.json).

    Members whose run directory already holds a finished result are not trained again. Errors as
    `lab.train.train`: ConfigError before anything is written, RunFailed after recording `failed`."""
    check_packable(cfgs)
    cfg0, corpus, mesh = _checked_setup(cfgs[0])
    cfgs = [cfg0] + [resolve_config(c, corpus) for c in cfgs[1:]]
    extras = extra_results or [{} for _ in cfgs]
    results, members = [None] * len(cfgs), []
    for i, (cfg, out, extra) in enumerate(zip(cfgs, outs, extras)):
        rundir = RunDir.prepare(out, resume=resume, overwrite=overwrite, writer=jax.process_index() == 0)
        done = _same_run(rundir, cfg) if resume else None
        if done is not None:  # stays in the pack, idle, so the others run the program they started in
            results[i] = done
            members.append((i, Member(cfg, rundir, done, alive=False, done=True)))
            continue
        costs = model_costs(cfg.model)
        header = {**_result_header(cfg, corpus, rundir, costs), **extra, "pack_id": pack_id}
        rundir.write_config({**cfg.to_dict(), "config_hash": cfg.hash(), "costs": costs.as_dict(),
                             "warmup_steps": warmup_steps(cfg)})
        members.append((i, Member(cfg, rundir, header)))
    if any(not m.done for _, m in members):
        for (i, m), res in zip(members, _run([m for _, m in members], corpus, mesh, progress)):
            results[i] = res
    return results


def _run(members: list[Member], corpus, mesh, progress: bool) -> list[dict]:
    t_start = time.perf_counter()
    try:
        PackLoop(members, corpus, mesh, progress).run()
    except (Preempted, KeyboardInterrupt):
        raise
    except Exception as e:
        for m in members:
            if m.result["status"] == "running" and not m.done:
                path = m.rundir.write_error(traceback.format_exc())
                m.result.update(status="failed", error=f"{type(e).__name__}: {e} (traceback in {path})")
                m.rundir.write_result({**m.result, "wall_s": time.perf_counter() - t_start})
        raise RunFailed(f"pack failed: {type(e).__name__}: {e}") from e
    for m in members:
        if m.done:
            continue
        for key in LOSSES:
            m.result.setdefault(key, None)
        m.result.setdefault("wall_s", time.perf_counter() - t_start)
        m.rundir.write_result(m.result)
    return [m.result for m in members]


class PackLoop:
    """The training loop of a pack (the packed counterpart of `lab.train._Loop`)."""

    def __init__(self, members: list[Member], corpus, mesh, progress: bool):
        self.members, self.corpus, self.mesh, self.progress = members, corpus, mesh, progress
        cfg = members[0].cfg
        t = cfg.train
        self.cfg, self.k, self.steps = cfg, len(members), cfg.total_steps
        self.costs = model_costs(cfg.model)
        self.log_every = t.log_every or max(1, self.steps // 100)
        self.eval_every = t.eval_every or max(1, self.steps // 5)
        self.to_bits_per_byte = 1.0 / (LN2 * corpus.bytes_per_token)
        self.values = member_values([m.cfg for m in members])

    def compile(self) -> dict:
        cfg, mesh = self.cfg, self.mesh
        self.graphdef = abstract_model(cfg)[0]
        t0 = time.perf_counter()
        self.step_fn, init_fn, self.eval_fn, self.abstract, self.state_sh = compile_packed(cfg, self.graphdef, mesh,
                                                                                           self.k)
        compile_s = time.perf_counter() - t0
        member_sh = stacked_sharding(mesh, self.k)
        self.values_dev = jax.device_put(self.values, member_sh)
        self.params, self.opt_state = init_fn(self.values_dev["seed"])
        self.batch_sh, self.member_sh = packed_batch_sharding(mesh, self.k), member_sh
        val = val_batches(self.corpus.val, batch_size=cfg.train.batch_size, seq_len=cfg.model.seq_len,
                          n_tokens=cfg.data.val_tokens)
        self.val = jax.device_put(val, sharding.val_sharding(mesh))
        return {"compile_s": compile_s, "attn_impl": model_impl(cfg.model), **self.memory_facts()}

    def memory_facts(self) -> dict:
        """`lab.step.memory_report`'s fields for the packed step (the whole pack's bytes per device)."""
        from lab.memory import estimate, xla_needed

        xla = xla_memory(self.step_fn)
        guess, needed = estimate(self.cfg, dict(self.mesh.shape)).total * self.k, xla_needed(xla)
        return {"param_bytes_per_device": sharding.bytes_per_device(self.params),
                "opt_state_bytes_per_device": sharding.bytes_per_device(self.opt_state),
                **{f"step_{key}": value for key, value in xla.items()},
                "estimate_bytes_per_device": guess, "estimate_over_xla": guess / needed if needed else None}

    def batch(self, step: int):
        t, T = self.cfg.train, self.cfg.model.seq_len
        rows = [train_batch(self.corpus.train, seed=m.cfg.train.seed, step=step, batch_size=t.batch_size, seq_len=T,
                            unique_tokens=m.cfg.data.unique_tokens, recall_mix=m.cfg.data.recall_mix)
                for m in self.members]
        return jax.device_put(np.stack(rows), self.batch_sh)

    def restore(self, ckpts: list[Checkpointer]) -> int:
        """Each member from its newest intact checkpoint; returns the step the pack starts at."""
        params, opt_state = jax.tree.map(np.array, jax.device_get((self.params, self.opt_state)))
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype,
                                                               sharding=sharding.replicated(self.mesh)),
                                (self.abstract[0], self.abstract[1]))
        for i, (m, ckpt) in enumerate(zip(self.members, ckpts)):
            if m.done:
                continue
            restored = ckpt.restore_latest(abstract)
            if restored is None:
                m.rundir.truncate_metrics(0)
                continue
            m.start, state, meta = restored
            m.window, m.last_train = meta["window"], meta["last_train"]
            m.rundir.truncate_metrics(m.start)
            for stacked, one in zip(jax.tree.leaves((params, opt_state)), jax.tree.leaves(jax.device_get(state))):
                stacked[i] = one
        self.params, self.opt_state = jax.device_put((params, opt_state), self.state_sh)
        return min((m.start for m in self.members if not m.done), default=self.steps)

    def save(self, ckpts: list[Checkpointer], step: int) -> None:
        for i, (m, ckpt) in enumerate(zip(self.members, ckpts)):
            if m.alive and step > m.start:
                state = member_slice((self.params, self.opt_state), i)
                ckpt.save(step, state, {"window": m.window, "last_train": m.last_train, "seed": m.cfg.train.seed,
                                        "config_hash": m.cfg.hash()})

    def run(self) -> None:
        with jax.set_mesh(self.mesh), _StopFlag() as stop:
            facts = self.compile()
            ckpts = [Checkpointer(m.rundir.checkpoints, keep=self.cfg.keep_checkpoints,
                                  set_aside=m.rundir.corrupted_checkpoints) for m in self.members]
            try:
                start = self.restore(ckpts)
                train_time = self.train_steps(ckpts, start, stop)
                self.finish(facts, train_time)
            finally:
                for ckpt in ckpts:
                    ckpt.close()

    def train_steps(self, ckpts, start: int, stop) -> float:
        with _Prefetch(self.batch, start, self.steps) as batches:
            return self._loop(ckpts, start, stop, batches)

    def _active(self, step: int) -> np.ndarray:
        return np.array([m.alive and step >= m.start for m in self.members])

    def _loop(self, ckpts, start: int, stop, batches) -> float:
        """Dispatch steps without waiting; synchronise at log, eval and checkpoint steps."""
        cfg, pending, train_time = self.cfg, [], 0.0
        t_mark = time.perf_counter()
        for step in range(start, self.steps):
            active = jax.device_put(self._active(step), self.member_sh)
            self.params, self.opt_state, metrics = self.step_fn(self.params, self.opt_state, batches.get(step),
                                                                np.int32(step), self.values_dev, active)
            pending.append(metrics)
            done = step + 1
            is_log = done % self.log_every == 0 or done == self.steps
            is_eval = done % self.eval_every == 0 or done == self.steps
            is_ckpt = (cfg.checkpoint_every and done % cfg.checkpoint_every == 0) or done == self.steps
            if not (is_log or is_eval or is_ckpt or stop.signum):
                continue
            fetched, pending = jax.device_get(pending), []
            train_time += time.perf_counter() - t_mark
            self.record(fetched, done, is_log, is_eval, train_time)
            if is_ckpt or stop.signum:
                self.save(ckpts, done)
            if stop.signum:
                raise Preempted(f"stopped by signal {stop.signum} after step {done}; checkpoints saved")
            if not any(m.alive for m in self.members):
                break
            t_mark = time.perf_counter()
        return train_time

    def record(self, fetched: list[dict], done: int, is_log: bool, is_eval: bool, train_time: float) -> None:
        """Per member: the losses of the fetched steps, divergence, log and eval lines."""
        first = done - len(fetched)
        losses = None
        for i, m in enumerate(self.members):
            if not m.alive or done <= m.start:
                continue
            m.window += [float(f["loss"][i]) for s, f in enumerate(fetched, first) if s >= m.start]
            if not all(math.isfinite(x) for x in m.window):
                m.alive = False
                m.result.update(status="diverged", error=f"non-finite training loss by step {done}")
                m.rundir.write_result({**{k: None for k in LOSSES}, **m.result})
                continue
            if is_log:
                self.log_train(m, done, {k: v[i] for k, v in fetched[-1].items()},
                               (done - m.start) * self.cfg.tokens_per_step / train_time)
            if is_eval:
                losses = self.eval_fn(self.params, self.val) if losses is None else losses
                m.last_eval = self.eval_record(done, float(losses[i]))
                m.rundir.log(m.last_eval)

    def log_train(self, m: Member, step: int, last: dict, tokens_per_s: float) -> None:
        tokens = step * self.cfg.tokens_per_step
        m.last_train, m.window = float(np.mean(m.window)), []
        m.rundir.log({"step": step, "tokens": tokens, "flops": self.costs.flops_exact * tokens,
                      "train_loss": m.last_train, "lr": float(last["lr"]), "grad_norm": float(last["grad_norm"]),
                      "tokens_per_s": tokens_per_s})

    def eval_record(self, step: int, loss: float) -> dict:
        tokens = step * self.cfg.tokens_per_step
        return {"step": step, "tokens": tokens, "flops": self.costs.flops_exact * tokens, "val_loss": loss,
                "val_bits_per_byte": loss * self.to_bits_per_byte}

    def finish(self, facts: dict, train_time: float) -> None:
        """The result fields of every member that completed (diverged ones are recorded already)."""
        losses = None
        for i, m in enumerate(self.members):
            if not m.alive:
                continue
            if m.last_eval is None:  # resumed from the final checkpoint: evaluate it again
                losses = self.eval_fn(self.params, self.val) if losses is None else losses
                m.last_eval = self.eval_record(self.steps, float(losses[i]))
            params = member_slice(self.params, i)
            tps = (self.steps - m.start) * self.cfg.tokens_per_step / train_time if train_time > 0 else None
            m.result.update({
                "status": "completed", "final_train_loss": m.last_train, "final_val_loss": m.last_eval["val_loss"],
                "val_bits_per_byte": m.last_eval["val_bits_per_byte"], "tokens_per_s": tps,
                "flops_per_s": tps * self.costs.flops_exact if tps else None,
                "resumed_from_step": m.start, "mesh": dict(self.mesh.shape), "devices": jax.device_count(),
                "processes": jax.process_count(), "device_kind": jax.devices()[0].device_kind, **facts,
                **final_scores(self.graphdef, params, m.cfg, self.corpus, self.val)})
