"""The default study: an IsoFLOP grid of byte-level decoders on the stdlib corpus that fits a
compute-optimal frontier on a 2-core laptop CPU (~16 minutes with two workers).

Design (after ../shared/CPU_STUDY_NOTES.md): widths 16-96 at head dim 16 and
n_layers = max(2, round(d/32)); three FLOP budgets a factor 3 apart; per budget the five sizes
nearest a guessed optimum (tokens per parameter ~100 for bytes in this regime), so every
IsoFLOP curve has an interior minimum. Batch 8 x 128 tokens keeps the step count high enough.

    lab study experiments/isoflop_cpu.py --dry-run
    lab study experiments/isoflop_cpu.py --out runs/isoflop_cpu --workers 2
    lab fit runs/isoflop_cpu --method isoflop --bootstrap 200
    lab report runs/isoflop_cpu

Measured 2026-11-25 on an idle 2-core AMD EPYC VM (16 min 11 s, 15 cells, all completed): every
budget has an interior minimum — N_opt ≈ 2.6e4, 5.3e4, 8.4e4 total parameters at C = 3e11, 9e11,
2.7e12 flops_exact (best val loss 1.90, 1.56, 1.32 nats/byte); `lab fit --method isoflop
--bootstrap 200` gives N_opt ∝ C^0.53 [0.41, 0.67] and D_opt ∝ C^0.54 [0.44, 0.63] (95% CIs); the
parametric back-test (fit C ≤ 9e11, predict the 2.7e12 runs) misses by 2.0% mean, 5.0% max.
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="isoflop_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib"),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd"),
        ),
        sizes=[{"d_model": d} for d in (16, 32, 48, 64, 80, 96, 128)],
        budgets=[3e11, 9e11, 2.7e12],  # flops_exact per run
        window=5,
        tokens_per_param_guess=100,
        seeds=[0],
    )
