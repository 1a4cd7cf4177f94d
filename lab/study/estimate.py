"""Seconds per training step of each distinct model shape in a study, measured here on a few
steps of random tokens (for `lab study --dry-run`'s wall-time estimate): the step `lab.training.step.compile_step`
builds for the cell's own config and mesh, timed by `lab.bench.step.time_step`, as `lab train` would run it."""

from __future__ import annotations

import dataclasses

from lab.study.spec import Cell


def step_seconds(cells: list[Cell], repeats: int = 5) -> dict:
    """{(model config, batch size): seconds per step}, each distinct shape compiled and timed once
    (one untimed step, then the mean of `repeats`)."""
    from lab.bench.step import time_step

    out = {}
    for cell in cells:
        key = (cell.config.model, cell.config.train.batch_size)
        if key not in out:
            cfg = dataclasses.replace(
                cell.config, train=dataclasses.replace(cell.config.train, steps=100, tokens=0)
            )
            out[key] = time_step(cfg, steps=repeats, warmup=1)["step_s"]
    return out
