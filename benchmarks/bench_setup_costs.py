"""Set-up costs that unit tests used to assert as wall-clock thresholds, measured side by side here
(issue 22: no timing thresholds in unit tests).

Run:  python benchmarks/bench_setup_costs.py        (~1 min on 2 idle cores; the stdlib corpus is
                                                     prepared in a temporary folder)

* batches: `lab.data.train_batch` of 8 x 129 tokens, mean of 500 after one warm-up call (the
  former test's goal: < 1 ms per batch).
* stdlib corpus: `load_corpus` of the default (Python standard library, byte tokens) into an empty
  data folder, then again from its cache; ratio = prepare / cached (the former goals: prepare < 30 s,
  cached < 1 s).
* abstract model: `lab.training.state.abstract_model` of the tiny preset at 8 and at 64 layers, best
  of 3 each, alternating; ratio = 64 / 8 (the former goal: < 16, ~8 expected; it was ~50 when every
  init key's draw scanned the whole trace).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import numpy as np

from lab.config import DataConfig
from lab.data import load_corpus, train_batch
from lab.presets import preset_config
from lab.training.state import abstract_model


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def batches() -> None:
    tokens = np.random.default_rng(0).integers(0, 256, 100_000).astype(np.uint8)
    train_batch(tokens, seed=0, step=0, batch_size=8, seq_len=128)
    s = timed(lambda: [train_batch(tokens, seed=0, step=i, batch_size=8, seq_len=128) for i in range(500)])
    print(f"train_batch 8x129: {s / 500 * 1e6:.0f} us per batch (goal < 1000 us)")


def stdlib_corpus() -> None:
    with tempfile.TemporaryDirectory() as d:
        cfg = DataConfig(data_dir=d)
        prepare = timed(lambda: load_corpus(cfg))
        cached = timed(lambda: load_corpus(cfg))
    print(
        f"stdlib corpus: prepare {prepare:.2f} s, cached load {cached:.3f} s, "
        f"ratio {prepare / cached:.0f}x (goals: prepare < 30 s, cached < 1 s)"
    )


def abstract_depth() -> None:
    base, _ = preset_config("tiny")
    cfgs = {
        L: dataclasses.replace(base, model=dataclasses.replace(base.model, n_layers=L, vocab_size=256))
        for L in (8, 64)
    }
    best = {L: float("inf") for L in cfgs}
    for _ in range(3):
        for L, cfg in cfgs.items():
            best[L] = min(best[L], timed(lambda cfg=cfg: abstract_model(cfg)))
    print(
        f"abstract_model: 8 layers {best[8] * 1e3:.0f} ms, 64 layers {best[64] * 1e3:.0f} ms, "
        f"ratio {best[64] / best[8]:.1f}x (goal < 16x; linear in depth would be 8x)"
    )


if __name__ == "__main__":
    print(f"load average {os.getloadavg()[0]:.1f}, {os.cpu_count()} CPUs")
    batches()
    stdlib_corpus()
    abstract_depth()
