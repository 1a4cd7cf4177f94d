"""The quick study: the first command a new user runs. Twelve byte-level decoders on the stdlib
corpus at three FLOP budgets a factor 2 apart, on the tuned frontier; after the grid `lab study` fits
the laws and writes the report, the figures (each with its CSV) and fits.json (target: under 5 minutes
on a 2-core laptop CPU).

    lab study experiments/quick_cpu.py --dry-run
    lab study experiments/quick_cpu.py --out runs/quick
    lab study experiments/quick_cpu.py --out runs/quick --validate 3   # + the law's prediction, tested
    lab design runs/quick --flops 3e12            # where the next FLOPs would narrow the CI most

Design (issue 24; after ../shared/CPU_STUDY_NOTES.md and measured runs of this lab): every cell's
peak rate from the tuned η_opt(N) = 0.254 · N^-0.285 (`lr_law`, experiments/lr_sweep_cpu.py; the old
policy's 3e-3 sat 3-6x below it); four sizes per budget (d16, d24 (head dim 12), d32, d48), because
with three the verdict trusted no method ("fewer than 4 sizes"); budgets 2e11-8e11, where the tuned
optima (2e4-3.5e4 parameters) lie between d16 and d48. Two single-threaded workers.

Measured 2026-12-05 23:20 on the merged tree (2-core Intel Xeon VM, warm compile cache, persistent
workers; load average 7.3 at the start, 13.6 at the end: another job's A/B study runs beside it):
`lab study experiments/quick_cpu.py --out DIR` 279 s wall (4 min 39 s: grid, fits, the audit of 20
copies, figures, report), 12/12 completed, overhead share 32.5% of the cells' 468 s (start-up 74 s,
final scores 48 s, compile 15 s). An earlier run on the branch at load 8-11 took 385 s and one at load
23-27 1193 s, with the same losses to the last digit.

Final scores off (issue 25): the report uses no quantized, in-context or copy score, so the cells skip
them (`final_scores="off"`: their columns stay empty; "defer" or `lab eval RUN_DIR` computes them), and
the workers take the longest cells first. Measured 2026-12-06 on a 2-core AMD EPYC VM at load 8-10,
paired and interleaved with main (2105352): 162 s and 178 s against 183 s and 208 s (-13%), the same
losses to the last digit; what is left is the training steps (117-122 s of two workers) and the
analysis after the grid (18-31 s on one core, half of it the audit), benchmarks/README.md.

Pinned workers (issue 25): each worker runs on one core of its own (`pin_workers=True`), so XLA's
thread pool has one thread instead of one per core and the two workers stop contending: the training
steps' sum fell 10-20% (147.2/136.2/160.8 s unpinned, 119.2/124.6/169.8 s pinned, same rounds, on the
issue's 9-cell file). The losses change once, by up to 1.8e-6 for d32 and d48 (d16's are equal):
YNNPACK splits a dot's work by the pool's thread count, so pinned losses are the same whatever the
machine's core count (same CPU type and jaxlib). Measured 2026-12-06 03:20-03:49 on the 2-core AMD EPYC
VM, quiet, interleaved: the issue's 9-cell quick study took 108.5 s at 3e1aea2 (median of 5) and 77.7 s
pinned (median of 5), pair ratios 0.69/0.77/0.92/0.73/0.73 (median 0.73); unpinned 93.5 s (0.86).

    budget   d16     d24     d32     d48
    2e11     1.934   1.810   1.872   2.027
    4e11     1.840   1.644   1.622   1.746
    8e11     1.766   1.554   1.486   1.487

Every minimum is interior. The verdict trusts parametric, chosen by the audit (RMSE of a 0.058,
coverage 20/20; isoflop 0.159): a = 0.461 [0.269, 0.583], E = 1.03 (off its bound); isoflop a = 0.668
[0.223, 1.07]; the envelope (0.077, interval across 0) disagrees and the report says so. (Old policy,
2026-12-01: nine cells, three sizes per budget, no method trusted.)
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
from lab.study.policy import shape_for_width


def study() -> Study:
    return Study(
        name="quick_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14),
            train=TrainConfig(batch_size=8, schedule="wsd"),
        ),
        sizes=[
            shape_for_width(d, head_dim=h) for d, h in ((16, 16), (24, 12), (32, 16), (48, 16))
        ],  # d24: head dim 12
        budgets=[2e11, 4e11, 8e11],  # flops_exact per run
        seeds=[0],
        workers=2,  # two single-threaded workers: ~1.3x one two-threaded process on 2 cores
        lr_law="lr_law_cpu.json",  # the tuned frontier: eta_opt(N) from experiments/lr_sweep_cpu.py
        final_scores="off",  # its report uses no quantized, in-context or copy score (issue 25)
        pin_workers=True,  # each worker on a core of its own: ~10% faster steps here (issue 25)
    )
