"""The quick study: the first command a new user runs. Twelve byte-level decoders on the stdlib
corpus at three FLOP budgets a factor 3 apart; after the grid `lab study` fits the laws and writes
the report, the figures (each with its CSV) and fits.json — a scaling law in a few minutes on a
2-core laptop CPU.

    lab study experiments/quick_cpu.py --dry-run
    lab study experiments/quick_cpu.py --out runs/quick --workers 2
    lab design runs/quick --flops 3e12            # where the next FLOPs would narrow the CI most

Design (after ../shared/CPU_STUDY_NOTES.md and the default study's measurements): the three
smallest budgets of `isoflop_cpu.py` with four sizes each around a guessed optimum (tokens per
parameter 35: the measured optima had 65-200 on total parameters, and a low guess keeps the
expensive d16 runs out of the larger budgets); batch 8 x 128 tokens so the smallest budget still
gives the largest model hundreds of steps.
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
        # one size below the width grid (d16 with one layer: 7.3k parameters), because the smallest budget's
        # optimum sits near 1.8e4 parameters, between d16 (1.0e4) and d32 (3.3e4)
        sizes=[{"d_model": 16, "n_layers": 1, "n_heads": 1, "d_ff": 64}] + [{"d_model": d} for d in (16, 32, 48, 64, 80, 96)],
        budgets=[1e11, 3e11, 9e11],  # flops_exact per run
        window=4,
        tokens_per_param_guess=35,
        seeds=[0],
    )
