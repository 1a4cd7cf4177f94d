"""Smoke study: a 3-size x 2-budget IsoFLOP grid of tiny byte-level models on the stdlib corpus.

It exercises the whole path — study file, grid expansion, worker processes, results table — in
about a minute on a 2-core CPU. The budgets are far too small for a meaningful fit.

    lab study experiments/smoke.py --dry-run
    lab study experiments/smoke.py --out runs/smoke --workers 2
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="smoke",
        base=RunConfig(
            model=ModelConfig(seq_len=64),
            data=DataConfig(name="python_stdlib", val_tokens=8192),
            train=TrainConfig(batch_size=8, lr=3e-3, eval_every=0),
        ),
        sizes=[{"d_model": 16}, {"d_model": 32}, {"d_model": 48}],
        budgets=[3e10, 6e10],  # training FLOPs per run (flops_exact)
        min_steps=20,
    )
