"""The default study: an IsoFLOP grid of byte-level decoders on the stdlib corpus that fits a
compute-optimal frontier on a 2-core laptop CPU (target: <= 15 minutes with two workers, the
analysis included), then writes the report, figures and fits.json.

Design (after ../shared/CPU_STUDY_NOTES.md and this study's earlier 3-budget version): widths
16-128 at head dim 16 and n_layers = max(2, round(d/32)); four FLOP budgets a factor 3 apart
(1e11-2.7e12: a factor 27 in compute, so the exponent's CI narrows by ~sqrt(6.05/2.42) = 1.6x
against three budgets); per budget the five sizes nearest a guessed optimum. The guess, 35
tokens per parameter, is low on purpose: the measured optima had 65-200, and a low guess keeps
the expensive d16 runs (many steps at ~1e5 FLOPs per token) out of the two larger budgets while
every budget still brackets its optimum (the measured N_opt: 2.6e4 at 3e11, 8.4e4 at 2.7e12).
Cheap small cells: a 16k-token validation set (evaluated 5 times per run), batch 8 x 128 tokens.

    lab study experiments/isoflop_cpu.py --dry-run
    lab study experiments/isoflop_cpu.py --out runs/isoflop_cpu --workers 2     # grid + fits + report
    lab study experiments/isoflop_cpu.py --out runs/isoflop_cpu --workers 2 --validate 3
    lab fit runs/isoflop_cpu --method isoflop --bootstrap 200                   # still works alone
    lab report runs/isoflop_cpu

Measured 2026-11-25 for the earlier 3-budget version (3e11, 9e11, 2.7e12; 15 cells, 16 min 11 s
on an idle 2-core AMD EPYC VM): every budget had an interior minimum, N_opt ∝ C^0.53 [0.41, 0.67].
This 4-budget version (20 cells) has not yet been timed on an idle machine.
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="isoflop_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd"),
        ),
        # one size below the width grid (d16 with one layer: 7.3k parameters), because the smallest budget's
        # optimum sits near 1.8e4 parameters, between d16 (1.0e4) and d32 (3.3e4)
        sizes=[{"d_model": 16, "n_layers": 1, "n_heads": 1, "d_ff": 64}]
        + [{"d_model": d} for d in (16, 32, 48, 64, 80, 96, 128)],
        budgets=[1e11, 3e11, 9e11, 2.7e12],  # flops_exact per run
        window=5,
        tokens_per_param_guess=35,
        seeds=[0],
    )
