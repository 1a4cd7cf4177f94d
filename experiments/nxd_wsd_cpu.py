"""An N x D grid with WSD cooldown branches: four widths, four token counts each, where the
three shorter counts branch off the longest run's stable phase and only pay for their decay.
Fit with Chinchilla's approach 3 (parametric L(N, D)).

    lab study experiments/nxd_wsd_cpu.py --dry-run      # prints the FLOPs the branches save
    lab study experiments/nxd_wsd_cpu.py --out runs/nxd_wsd_cpu --workers 2
    lab fit runs/nxd_wsd_cpu --method parametric --bootstrap 200
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="nxd_wsd_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib"),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd", decay_frac=0.2),
        ),
        sizes=[{"d_model": d} for d in (16, 32, 48, 64)],
        tokens=[2**18, 2**19, 2**20, 2**21],
        branches=True,
    )
