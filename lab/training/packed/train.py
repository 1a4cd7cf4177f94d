"""Train a pack: K runs of one shape in one process and one vmapped step (`lab.training.packed.step`),
each member writing its own run directory exactly as `lab.training.train.train` would: config.json,
metrics.jsonl, result.json (with `pack_id`), and checkpoints.

Checkpoints are saved per member, in the member's own run directory, with `lab.training.train`'s tree and
metadata, at the steps an unpacked run saves them. A re-run (resume) restores each member from its
newest intact checkpoint; a member restored further ahead than another (a kill between two
members' saves) waits, its state untouched, until the pack reaches its step. Batches are a
function of (seed, step) and members do not interact, so a killed and resumed pack continues
every member bitwise as the uninterrupted pack does. A member's run directory can also be resumed
alone with `lab train --resume`.

A member with a non-finite training loss is recorded `diverged` (and stops updating) while the
others go on. A member that finished before a re-run (a diverged one) stays in the pack, idle, so
the others resume in the very program they started in. SIGTERM/SIGINT save every running
member's checkpoint, then raise Preempted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import numpy as np

from lab import sharding
from lab.config import RunConfig, model_impl
from lab.costs import model_costs
from lab.data import val_batches
from lab.evals.final import final_scores
from lab.result import LOSSES
from lab.rundir import RunDir
from lab.training.batches import pack_batch
from lab.training.checkpoint import Checkpointer, is_disk_full
from lab.training.loop import Cadence, Due, MetricLines, Preempted, RunFailed, RunProgress, StopFlag, train_steps
from lab.training.packed.step import (
    check_packable,
    compile_packed,
    member_slice,
    member_values,
    packed_batch_sharding,
    stacked_sharding,
)
from lab.training.runs import (
    checked_setup,
    disk_full_error,
    finished_result,
    record_ended,
    record_failed,
    resolve_config,
    result_header,
    write_config,
)
from lab.training.state import abstract_model
from lab.training.timing import Timings
from lab.training.trackers import attach, check_available
from lab.training.xla_memory import memory_report, xla_memory


@dataclass
class Member:
    cfg: RunConfig
    rundir: RunDir
    result: dict
    alive: bool = True
    done: bool = False  # finished before this process started: kept in the pack, not trained
    state: RunProgress = field(default_factory=RunProgress)


def train_pack(
    cfgs: list[RunConfig],
    outs: list,
    *,
    pack_id: str,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    extra_results: list[dict] | None = None,
    tracker: str | None = None,
    group: str | None = None,
    started: float | None = None,
    final_scores: bool = True,
) -> list[dict]:
    """Train every member of a pack; returns their results (also in each OUT/result.json).

    Members whose run directory already holds a finished result are not trained again. Errors as
    `lab.training.train.train`: ConfigError before anything is written, RunFailed after recording `failed`.
    `tracker` ("tensorboard" | "wandb"): each member trained logs live in its own run directory, as
    `train`'s `RunOptions.tracker` does, grouped by `group` (the study). `started`: as `RunOptions.started`
    (every member's overhead fields are the pack's); `final_scores`: as `RunOptions.final_scores`."""
    check_packable(cfgs)
    if tracker:
        check_available(tracker)
    cfg0, corpus, mesh = checked_setup(cfgs[0])
    cfgs = [cfg0] + [resolve_config(c, corpus) for c in cfgs[1:]]
    extras = extra_results or [{} for _ in cfgs]
    rundirs, members = [], []
    try:  # every member's run directory is locked (one writer) until the pack ends
        for cfg, out, extra in zip(cfgs, outs, extras):
            rundirs.append(
                RunDir.prepare(out, resume=resume, overwrite=overwrite, writer=jax.process_index() == 0)
            )
            members.append(_member(cfg, rundirs[-1], corpus, resume, {**extra, "pack_id": pack_id}))
        if all(m.done for m in members):
            return [m.result for m in members]
        trackers = [(m, attach(tracker, m.rundir, m.cfg, group)) for m in members if not m.done]
        try:
            return _run(members, corpus, mesh, progress, Timings(started), final_scores)
        finally:
            for m, live in trackers:
                if live is not None:
                    live.finish(m.result)
    finally:
        for rundir in rundirs:
            rundir.release()


def _member(cfg: RunConfig, rundir: RunDir, corpus, resume: bool, extra: dict) -> Member:
    """A member, with its header written (config.json); one that finished before (found on
    resume) stays in the pack, idle, so the others run the program they started in."""
    done = finished_result(rundir, cfg) if resume else None
    if done is not None:
        return Member(cfg, rundir, done, alive=False, done=True)
    costs = model_costs(cfg.model)
    header = {**result_header(cfg, corpus, rundir, costs), **extra}
    write_config(rundir, cfg, costs)
    return Member(cfg, rundir, header)


def _run(members: list[Member], corpus, mesh, progress: bool, timings: Timings, final: bool = True) -> list[dict]:
    t_start = time.perf_counter()
    try:
        PackLoop(members, corpus, mesh, progress, timings, final).run()
    except (Preempted, KeyboardInterrupt):
        raise
    except Exception as e:
        if is_disk_full(e):  # the user's to fix, not a failed pack: the CLI says so in one line
            raise disk_full_error(e) from None
        for m in members:
            if m.result["status"] == "running" and not m.done:
                record_failed(m.rundir, m.result, e, t_start)
        raise RunFailed(f"pack failed: {type(e).__name__}: {e}") from e
    for m in members:
        if not m.done:
            record_ended(m.rundir, m.result, t_start)
    return [m.result for m in members]


class PackLoop:
    """The training loop of a pack: `lab.training.loop`'s, as `lab.training.train`'s, over K members (a
    `Runner`)."""

    saved = "checkpoints"

    def __init__(
        self,
        members: list[Member],
        corpus,
        mesh,
        progress: bool,
        timings: Timings | None = None,
        final: bool = True,
    ):
        self.members, self.corpus, self.mesh, self.progress = members, corpus, mesh, progress
        self.timings = timings or Timings()
        self.final = final  # compute the members' final scores (lab.evals.final)
        cfg = members[0].cfg
        self.cfg, self.k, self.steps = cfg, len(members), cfg.total_steps
        self.cadence = Cadence.of(cfg)
        self.lines = MetricLines(cfg, corpus.bytes_per_token)
        self.values = member_values([m.cfg for m in members])

    def compile(self) -> dict:
        cfg, mesh = self.cfg, self.mesh
        self.graphdef = abstract_model(cfg)[0]
        t0 = time.perf_counter()
        self.step_fn, init_fn, self.eval_fn, self.abstract, self.state_sh = compile_packed(
            cfg, self.graphdef, mesh, self.k
        )
        compile_s = time.perf_counter() - t0
        member_sh = stacked_sharding(mesh, self.k)
        self.values_dev = jax.device_put(self.values, member_sh)
        self.params, self.opt_state = init_fn(self.values_dev["seed"])
        self.batch_sh, self.member_sh = packed_batch_sharding(mesh, self.k), member_sh
        val = val_batches(
            self.corpus.val,
            batch_size=cfg.train.batch_size,
            seq_len=cfg.model.seq_len,
            n_tokens=cfg.data.val_tokens,
        )
        self.val = jax.device_put(val, sharding.val_sharding(mesh))
        # the whole pack's bytes per device; the estimate is K single runs'
        memory = memory_report(cfg, mesh, xla_memory(self.step_fn), self.params, self.opt_state, members=self.k)
        return {"compile_s": compile_s, "attn_impl": model_impl(cfg.model), **memory}

    def batch(self, step: int):
        return pack_batch([m.cfg for m in self.members], self.corpus, self.batch_sh, step)

    def restore(self, ckpts: list[Checkpointer]) -> int:
        """Each member from its newest intact checkpoint; returns the step the pack starts at."""
        params, opt_state = jax.tree.map(np.array, jax.device_get((self.params, self.opt_state)))
        abstract = jax.tree.map(
            lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype, sharding=sharding.replicated(self.mesh)),
            (self.abstract[0], self.abstract[1]),
        )
        for i, (m, ckpt) in enumerate(zip(self.members, ckpts)):
            if m.done:
                continue
            state = m.state.resume(m.rundir, ckpt.restore_latest(abstract))
            if state is None:
                continue
            for stacked, one in zip(jax.tree.leaves((params, opt_state)), jax.tree.leaves(jax.device_get(state))):
                stacked[i] = one
        self.params, self.opt_state = jax.device_put((params, opt_state), self.state_sh)
        return min((m.state.start for m in self.members if not m.done), default=self.steps)

    def save(self, step: int) -> None:
        with self.timings.part("checkpoint_s"):
            for i, (m, ckpt) in enumerate(zip(self.members, self.ckpts)):
                if m.alive and step > m.state.start:
                    ckpt.save(step, member_slice((self.params, self.opt_state), i), m.state.checkpoint_meta(m.cfg))

    def run(self) -> None:
        with jax.set_mesh(self.mesh), StopFlag() as stop:
            facts = self.compile()
            self.ckpts = [
                Checkpointer(
                    m.rundir.checkpoints,
                    keep=self.cfg.keep_checkpoints,
                    set_aside=m.rundir.corrupted_checkpoints,
                    writer=True,
                )
                for m in self.members
            ]
            try:
                start = self.restore(self.ckpts)
                self.timings.before_first_step(facts["compile_s"])
                train_time = train_steps(self, self.cadence, start, stop)
                self.finish(facts, train_time)
            finally:
                with self.timings.part("checkpoint_s"):
                    for ckpt in self.ckpts:
                        ckpt.close()
            timing = self.timings.fields(train_time)
            for m in self.members:
                if m.alive:
                    m.result.update(timing)

    def _active(self, step: int) -> np.ndarray:
        return np.array([m.alive and step >= m.state.start for m in self.members])

    def dispatch(self, step: int, batch) -> dict:
        active = jax.device_put(self._active(step), self.member_sh)
        self.params, self.opt_state, metrics = self.step_fn(
            self.params, self.opt_state, batch, np.int32(step), self.values_dev, active
        )
        return metrics

    def running(self) -> bool:
        return any(m.alive for m in self.members)

    def record(self, fetched: list[dict], done: int, due: Due, train_time: float) -> None:
        """Per member: the losses of the fetched steps, divergence, log and eval lines."""
        first = done - len(fetched)
        losses = None
        for i, m in enumerate(self.members):
            if not m.alive or done <= m.state.start:
                continue
            m.state.train_time = train_time
            losses_i = [float(f["loss"][i]) for s, f in enumerate(fetched, first) if s >= m.state.start]
            if not m.state.add_losses(losses_i):
                m.alive = False
                m.result.update(status="diverged", error=f"non-finite training loss by step {done}")
                m.rundir.write_result({**{k: None for k in LOSSES}, **m.result})
                continue
            if due.log:
                m.state.log_train(
                    m.rundir,
                    self.lines,
                    done,
                    {k: v[i] for k, v in fetched[-1].items()},
                    (done - m.state.start) * self.cfg.tokens_per_step / train_time,
                )
            if due.eval:
                if losses is None:
                    with self.timings.part("eval_s"):
                        losses = np.asarray(self.eval_fn(self.params, self.val))
                m.state.log_eval(m.rundir, self.lines, done, float(losses[i]))

    def finish(self, facts: dict, train_time: float) -> None:
        """The result fields of every member that completed (diverged ones are recorded already)."""
        losses = None
        for i, m in enumerate(self.members):
            if not m.alive:
                continue
            if m.state.last_eval is None:  # resumed from the final checkpoint: evaluate it again
                losses = self.eval_fn(self.params, self.val) if losses is None else losses
                m.state.log_eval(m.rundir, self.lines, self.steps, float(losses[i]), log=False)
            params = member_slice(self.params, i)
            m.result.update(
                {
                    **m.state.completed(self.cfg, self.mesh, train_time),
                    **facts,
                    **self._final_scores(params, m.cfg),
                }
            )

    def _final_scores(self, params, cfg) -> dict:
        if not self.final:
            return {}
        with self.timings.part("final_eval_s"):
            return final_scores(self.graphdef, params, cfg, self.corpus, self.val)
