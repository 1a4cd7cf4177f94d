"""Post-training quantization damage and in-context recall against training, on one N x D grid of
byte-level decoders (every run records val_loss_int8/int4/bf16 and icl_accuracy; lab.final_eval).

Three widths × four token counts with WSD cooldown branches (the three shorter counts branch off
the longest run's stable phase), so tokens per parameter D/N spans ~1 to ~60.

    lab study experiments/quant_icl_cpu.py --out runs/quant_icl_cpu --workers 2
    lab fit runs/quant_icl_cpu --method ptq --bootstrap 200     # damage ∝ D^gD / N^gN per format
    lab plot runs/quant_icl_cpu --figures q --out runs/quant_icl_cpu/figures   # loss vs bits per size
    lab fit runs/quant_icl_cpu --method task                    # accuracy as a sigmoid of task loss

Questions: does int4/int8 damage grow with tokens per parameter, as Kumar et al. 2024 ("Scaling
Laws for Precision") report for post-training quantization? Where does in-context recall appear?

Measured outcome: see the closing lines below (filled in from a run; the machine, its load and
the numbers are stated there).
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="quant_icl_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd", decay_frac=0.2),
        ),
        sizes=[{"d_model": d} for d in (32, 64, 96)],
        tokens=[2**18, 2**19, 2**20, 2**21],
        branches=True,
        laws=("parametric", "ptq", "task"),
    )
