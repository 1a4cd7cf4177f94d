"""Seconds per training step of each distinct model shape in a study, measured here on a few
steps of random tokens (for `lab study --dry-run`'s wall-time estimate)."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from lab import sharding
from lab.study.spec import Cell


def step_seconds(cells: list[Cell], repeats: int = 5) -> dict:
    from lab.step import init_state, make_step

    out = {}
    mesh = sharding.make_mesh("")
    for cell in cells:
        key = (cell.config.model, cell.config.train.batch_size)
        if key in out:
            continue
        cfg = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, steps=100, tokens=0))
        with jax.set_mesh(mesh):
            graphdef, tx, schedule, params, opt_state, _ = init_state(cfg, mesh)
            step = jax.jit(make_step(graphdef, tx, schedule, cfg), donate_argnums=(0, 1))
            rng = np.random.default_rng(0)
            batch = rng.integers(0, cfg.model.vocab_size, (cfg.train.batch_size, cfg.model.seq_len + 1), np.int32)
            params, opt_state, m = step(params, opt_state, batch, np.int32(0))  # compile
            jax.block_until_ready(m)
            t0 = time.perf_counter()
            for i in range(repeats):
                params, opt_state, m = step(params, opt_state, batch, np.int32(i))
            jax.block_until_ready(m)
        out[key] = (time.perf_counter() - t0) / repeats
    return out
