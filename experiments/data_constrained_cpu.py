"""Repeated data on a 2-core CPU: three byte-level decoders trained on the first 2^17 tokens
(128 KiB) of the stdlib corpus for 1/4 to 16 epochs, fitted by Muennighoff et al.'s
data-constrained law (`lab fit --method data-constrained`).

Design: widths 16, 32, 48 (17k-80k parameters) x training tokens 2^15 ... 2^21, all drawn from
`data.unique_tokens = 2^17` (epochs D/U = 0.25, 0.5, 1, 2, 4, 8, 16; cosine schedule to each
run's own horizon). The runs of at most one epoch see only fresh data and fit the base Chinchilla
law; the repeated ones then fit R_D* (how fast repeated tokens lose value) and R_N*.

    lab study experiments/data_constrained_cpu.py --dry-run
    lab study experiments/data_constrained_cpu.py --out runs/data_constrained_cpu --workers 2
    lab fit runs/data_constrained_cpu --method data-constrained --bootstrap 200
    python experiments/data_constrained_cpu.py runs/data_constrained_cpu   # the figure and the read-out

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


def main(study_dir: str) -> None:
    """Fit the study's results and draw loss vs epochs with the fit (DIR/data_constrained.png)."""
    import analysis
    from analysis.plot_data_constrained import loss_vs_epochs

    fit = analysis.fit(analysis.load(study_dir, need_budget=False), "data-constrained", bootstrap=200)
    print(analysis.summary_text(fit))
    print(loss_vs_epochs(fit, f"{study_dir}/data_constrained.png"))


if __name__ == "__main__":
    main(sys.argv[1])
