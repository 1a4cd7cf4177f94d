"""The quick study: the first command a new user runs. Twelve byte-level decoders on the stdlib
corpus at three FLOP budgets a factor 3 apart; after the grid `lab study` fits the laws and writes
the report, the figures (each with its CSV) and fits.json — a scaling law in a few minutes on a
2-core laptop CPU.

    lab study experiments/quick_cpu.py --dry-run
    lab study experiments/quick_cpu.py --out runs/quick --workers 2
    lab design runs/quick --flops 3e12            # where the next FLOPs would narrow the CI most

Design (after ../shared/CPU_STUDY_NOTES.md and measured runs of this lab): three budgets a factor 2
apart, 2e11-8e11 FLOPs, four sizes each nearest a guessed optimum (50 tokens per parameter keeps
the slow d16 runs out of the largest budget). Budgets start at 2e11 because at 1e11 the runs are
step-starved: there every size from 7k to 115k parameters was measured and the smallest won
(the minimum sat at the grid's edge). At 3e11 the measured minimum was interior (d32: 1.90
nats/byte, d16 1.98, d48 1.97). About 15M training tokens in all; two single-threaded workers.
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
        window=4,
        tokens_per_param_guess=50,
        seeds=[0],
        workers=2,  # two single-threaded workers: ~1.3x one two-threaded process on 2 cores
    )
