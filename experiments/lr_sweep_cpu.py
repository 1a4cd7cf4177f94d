"""A learning-rate sweep on CPU: the best peak learning rate per (N, D) and the law η_opt(N, D).

Three widths × two token counts × five peak learning rates (30 runs of byte-level decoders, WSD
schedule), trained five at a time: every (size, tokens) cell's five learning rates share one
program, so each is one pack (`--pack 5`, lab.training.packed) — six packed tasks instead of 30 processes.

    lab study experiments/lr_sweep_cpu.py --out runs/lr_sweep_cpu --pack 5
    lab fit runs/lr_sweep_cpu --method lr --bootstrap 200          # best-LR table, η_opt law, CIs
    lab plot runs/lr_sweep_cpu --figures l --out runs/lr_sweep_cpu/figures   # loss vs LR per size

Re-measured 2026-12-01 15:50 UTC on the same VM, quiet, cold compile cache: `lab study
experiments/lr_sweep_cpu.py --out DIR --pack 5` took 2 min 54 s for 30/30 runs (the earlier 26 min
was the load); its report.md now carries the best-LR table, η_opt with 95% CIs and the loss-vs-LR
figure (figures/lr.png + lr.csv). Best lr per (N, D): 0.0090, 0.0089 (N 1.0e4); 0.0080, 0.0192
(3.3e4); 0.0033, 0.0038 (1.2e5); η_opt(N, D) = 0.0018 · N^-0.39 [-1.30, 0.66] · D^0.48 [-0.88, 3.27],
η_opt(C) ∝ C^-0.31 [-1.07, 0.50] (DeepSeek's -0.125 inside).

Question: how does the optimal learning rate move with N and D at this scale, and how does its
exponent in compute compare with DeepSeek LLM's η_opt(C) ∝ C^-0.125 (lab.study.policy)?

Measured outcome (2026-12-01, 2-core AMD EPYC VM, jax 0.10.2 CPU, float32, shared with other
jobs: load average 7-25 during the run; `--pack 5`, one worker): 30/30 runs completed in 26 min
wall (six packs of ~4 min, about half of it compiling under that load), no divergence even at
lr = 0.1. Best learning rate per (N, D), seeds = 1 (interior optima refined by a parabola in
log lr; none at an edge of the grid 1e-3 .. 1e-1):

    N (params)    D tokens   best lr  (grid)   loss
    1.04e+04      6.55e+04   0.0109   (0.01)   2.863
    1.04e+04      1.31e+05   0.0098   (0.01)   2.530
    3.31e+04      6.55e+04   0.0085   (0.01)   2.617
    3.31e+04      1.31e+05   0.0211   (0.03)   2.332
    1.15e+05      6.55e+04   0.0032   (0.003)  2.523
    1.15e+05      1.31e+05   0.0038   (0.003)  2.237

    η_opt(N, D) = 0.0043 · N^-0.46 [-1.37, 0.67] · D^0.47 [-0.75, 3.25]   (95% bootstrap, 200)
    η_opt(C)    = 63 · C^-0.38 [-1.18, 0.46]     DeepSeek LLM: C^-0.125 (inside the interval)

The optimum falls with size (0.01 at 10k-33k parameters, 0.003 at 115k) as μP-style 1/width
scaling expects, but six single-seed points over a 2x range of D cannot pin the exponents: the
intervals span zero for b_D and g_C. More seeds, a finer grid around each optimum and a wider D
range are what would narrow them.
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
