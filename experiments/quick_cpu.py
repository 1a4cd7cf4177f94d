"""The quick study: the first command a new user runs. Nine byte-level decoders on the stdlib
corpus at three FLOP budgets a factor 2 apart; after the grid `lab study` fits the laws and writes
the report, the figures (each with its CSV) and fits.json — a scaling law in under 5 minutes on a
2-core laptop CPU.

    lab study experiments/quick_cpu.py --dry-run
    lab study experiments/quick_cpu.py --out runs/quick
    lab study experiments/quick_cpu.py --out runs/quick --validate 3   # + the law's prediction, tested
    lab design runs/quick --flops 3e12            # where the next FLOPs would narrow the CI most

Design (after ../shared/CPU_STUDY_NOTES.md and measured runs of this lab): three budgets a factor 2
apart, 2e11-8e11 FLOPs, the three sizes nearest a guessed optimum at 120 tokens per parameter (by C = 6ND)
(d16, d32, d48 at every budget, so that each budget has a size on both sides of its minimum). Budgets start at 2e11 because at 1e11 the runs are step-starved:
there every size from 7k to 115k parameters was measured and the smallest won (the minimum sat at
the grid's edge). Two single-threaded workers.

Measured 2026-12-01 (2-core AMD EPYC VM, idle, cold compile cache) with the earlier 12-cell version
(four sizes per budget, 50 tokens per parameter): grid 5 min 04 s, then the fits and report; measured
minima d32 at 2e11 and 4e11 (interior), but at 8e11 d32 was the smallest size of that budget (the
window had left d16 out), so its minimum sat at the grid's edge. `--validate 3` (two runs at 2.4e12)
added 3 min 20 s: predicted vs measured loss -5.65% (d32) and -0.30% (d64), mean |error| 2.97%.
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="quick_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd"),
        ),
        sizes=[{"d_model": d} for d in (16, 32, 48, 64, 80, 96)],
        budgets=[2e11, 4e11, 8e11],  # flops_exact per run
        window=3,
        tokens_per_param_guess=120,
        seeds=[0],
        workers=2,  # two single-threaded workers: ~1.3x one two-threaded process on 2 cores
    )
