"""Repeated data on a 2-core CPU: three byte-level decoders trained on the first 2^17 tokens
(128 KiB) of the stdlib corpus for 1/4 to 16 epochs, and the same grid on fresh data, fitted by
Muennighoff et al.'s data-constrained law (`--method data-constrained`).

Design: widths 16, 32, 48 (10k-68k parameters) x training tokens 2^15 ... 2^21 (cosine schedule
to each run's own horizon), twice: drawn from `data.unique_tokens = 2^17` (epochs D/U = 0.25 ... 16)
and from the whole 12 MB training stream (`--set data.unique_tokens=0`: at most 0.2 epochs). The
fresh runs fit the base Chinchilla law over the whole D range; the repeated ones then fit R_D*
(how fast repeated tokens lose value) and R_N*.

    lab study experiments/data_constrained_cpu.py --dry-run
    lab study experiments/data_constrained_cpu.py --out runs/data_constrained_cpu --workers 2
    lab study experiments/data_constrained_cpu.py --out runs/data_constrained_cpu_fresh --workers 2 \
        --set data.unique_tokens=0
    python experiments/data_constrained_cpu.py runs/data_constrained_cpu runs/data_constrained_cpu_fresh
        # both tables fitted together (bootstrap 200), the figure DIR/data_constrained.png and the read-out

Measured: (see the end of this docstring once run)
"""

import sys

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study

UNIQUE = 2**17


def study() -> Study:
    return Study(
        name="data_constrained_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", unique_tokens=UNIQUE, val_tokens=2**14),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="cosine"),
        ),
        sizes=[{"d_model": d} for d in (16, 32, 48)],
        tokens=[UNIQUE * 2**k for k in range(-2, 5)],
    )


def main(*study_dirs: str) -> None:
    """Fit the studies' results together and draw loss vs epochs with the fit (first DIR/data_constrained.png)."""
    import pandas as pd

    import analysis
    from analysis.plot_data_constrained import loss_vs_epochs

    table = pd.concat([pd.read_csv(f"{d}/results.csv") for d in study_dirs], ignore_index=True)
    table = table.dropna(axis=1, how="all")  # an N x D grid leaves budget_flops empty
    fit = analysis.fit(analysis.load(table, need_budget=False), "data-constrained", bootstrap=200)
    print(analysis.summary_text(fit))
    print(loss_vs_epochs(fit, f"{study_dirs[0]}/data_constrained.png"))


if __name__ == "__main__":
    main(*sys.argv[1:])
