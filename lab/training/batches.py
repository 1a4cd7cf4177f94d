"""Host batch assembly: the training batch of a step, a function of (seed, step), put on the
devices in the batch sharding: a run's (each process builds only the rows its devices hold) and a
pack's (the members' batches stacked on a leading member axis).
"""

from __future__ import annotations

import jax
import numpy as np

from lab.config import RunConfig
from lab.data import Corpus, train_batch
from lab.data.induction import task_of


def sharded_rows(sharding_, shape, make_rows):
    """A global array whose addressable shards are built by `make_rows(row_range)` on this host:
    each process generates only the batch rows its devices hold."""

    def shard(index):
        rows = index[0]
        return make_rows(range(rows.start or 0, rows.stop if rows.stop is not None else shape[0]))[:, index[1]]

    return jax.make_array_from_callback(shape, sharding_, shard)


def run_batch(cfg: RunConfig, corpus: Corpus, batch_sh, step: int):
    """The [B, T+1] batch of `step` of a run, in `batch_sh`."""
    t, T = cfg.train, cfg.model.seq_len
    return sharded_rows(
        batch_sh,
        (t.batch_size, T + 1),
        lambda rows: train_batch(
            corpus.train,
            seed=t.seed,
            step=step,
            batch_size=t.batch_size,
            seq_len=T,
            rows=rows,
            unique_tokens=cfg.data.unique_tokens,
            recall_mix=cfg.data.recall_mix,
            copy_mix=cfg.data.copy_mix,
            copy_task=task_of(cfg.data),
        ),
    )


def pack_batch(cfgs: list[RunConfig], corpus: Corpus, batch_sh, step: int):
    """The [K, B, T+1] batch of `step` of a pack of K members (one shape), in `batch_sh`."""
    t, T = cfgs[0].train, cfgs[0].model.seq_len
    rows = [
        train_batch(
            corpus.train,
            seed=c.train.seed,
            step=step,
            batch_size=t.batch_size,
            seq_len=T,
            unique_tokens=c.data.unique_tokens,
            recall_mix=c.data.recall_mix,
            copy_mix=c.data.copy_mix,
            copy_task=task_of(c.data),
        )
        for c in cfgs
    ]
    return jax.device_put(np.stack(rows), batch_sh)
