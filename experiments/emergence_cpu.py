"""Emergence you can watch on a laptop: exact-match accuracy of in-context copying (lab.data.induction)
rising from chance inside a CPU grid of byte-level decoders, and its task law.

    lab study experiments/emergence_cpu.py --out runs/emergence
    lab fit runs/emergence --method task --json     # two-step law, direct law, both back-tested

(Draft: measurements below are being filled in.)
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="emergence_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128, n_layers=2),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14, copy_mix=0.5, copy_len=8, copy_alphabet=26),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd", decay_frac=0.2),
        ),
        sizes=[{"d_model": d, "n_layers": 2, "n_heads": 4} for d in (16, 32, 64)],
        tokens=[2**16, 2**17, 2**18, 2**19, 2**20],
        branches=True,
        laws=("task",),
        workers=2,
    )
