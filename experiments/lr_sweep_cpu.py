"""A learning-rate sweep on CPU: the best peak learning rate per (N, D) and the law η_opt(N, D).

Three widths × two token counts × five peak learning rates (30 runs of byte-level decoders, WSD
schedule), trained five at a time: every (size, tokens) cell's five learning rates share one
program, so each is one pack (`--pack 5`, lab.pack) — six packed tasks instead of 30 processes.

    lab study experiments/lr_sweep_cpu.py --out runs/lr_sweep_cpu --pack 5
    lab fit runs/lr_sweep_cpu --method lr --bootstrap 200          # best-LR table, η_opt law, CIs
    lab plot runs/lr_sweep_cpu --figures l --out runs/lr_sweep_cpu/figures   # loss vs LR per size

Question: how does the optimal learning rate move with N and D at this scale, and how does its
exponent in compute compare with DeepSeek LLM's η_opt(C) ∝ C^-0.125 (lab.study.policy)?

Measured outcome: see the closing lines below (filled in from a run; the machine, its load and
the numbers are stated there).
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="lr_sweep_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=64),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 13),
            train=TrainConfig(batch_size=8, schedule="wsd", decay_frac=0.2),
        ),
        sizes=[{"d_model": d} for d in (16, 32, 64)],
        tokens=[2**16, 2**17],
        lrs=[1e-3, 3e-3, 1e-2, 3e-2, 1e-1],
        laws=("lr",),
        pack=5,
    )
