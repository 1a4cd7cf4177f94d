"""Post-training quantization damage and in-context recall against training, on one N x D grid of
byte-level decoders (every run records val_loss_int8/int4/bf16 and icl_accuracy; lab.evals.final).

Three widths × four token counts with WSD cooldown branches (the three shorter counts branch off
the longest run's stable phase), so tokens per parameter D/N spans ~1 to ~60.

    lab study experiments/quant_icl_cpu.py --out runs/quant_icl_cpu --workers 2
    lab fit runs/quant_icl_cpu --method ptq --bootstrap 200     # damage ∝ D^gD / N^gN per format
    lab plot runs/quant_icl_cpu --figures q --out runs/quant_icl_cpu/figures   # loss vs bits per size
    lab fit runs/quant_icl_cpu --method task                    # accuracy as a sigmoid of task loss

Questions: does int4/int8 damage grow with tokens per parameter, as Kumar et al. 2024 ("Scaling
Laws for Precision") report for post-training quantization? Where does in-context recall appear?

Measured 2026-12-01 on the shared 2-core AMD EPYC VM (one worker, load average 10-25 from other
jobs, so wall times are not representative; 12 of 12 cells completed; these runs predate the fix
that stopped weight decay on the per-layer norm scales, c8fa99e):

* int4 damage (val_loss_int4 / final_val_loss - 1) grows with training: 0.14%, 0.57%, 1.9%, 3.0%
  for d32 at D = 0.26M, 0.52M, 1.05M, 2.1M tokens, and 0.23% -> 2.4% for d96. `lab fit --method ptq
  --bootstrap 200`: int4 damage = C · D^1.13 [0.84, 1.43] / N^0.09 [-0.05, 0.29] (95% CIs), i.e.
  as (D/N)^s, s = 0.50 [0.27, 0.69] — damage rises with tokens per parameter, the direction Kumar
  et al. report for post-training quantization; here it depends on D far more than on N.
* int8 damage is below 0.02% in every run (4 of 12 runs lost nothing): its exponents are not
  identified (CIs span zero). bf16-rounded weights: at most 0.01%.
* In-context recall: accuracy 0.0 in all 12 runs (chance 1/676), answer loss 4.8-5.8 nats per byte;
  the largest model (3.6e5 parameters, 2.1M tokens, 5.4e12 FLOPs) does not use the dict in its
  prompt. The two-step law's step 2 is therefore not identified (`lab fit --method task` says
  so): at this scale the ability has not appeared, so this grid cannot show where it does.

Follow-up, 2026-12-01 evening (same VM, quiet): does recall appear when the training text contains
the pattern? `data.recall_mix=f` makes a fraction f of training rows multi-query recall lines in the
evaluation's format (fresh random pairs in every line; `lab/data/recall.py`). Single runs,
`lab train --model tiny --tokens T --set data.recall_mix=f [--set model.n_layers=L]`, scored with
RecallTask(pairs=1, 2, 4, 8):

| d_model / layers | f | tokens (recall tokens) | steps | icl_accuracy (1-8 pairs) | answer loss |
|---|---|---|---|---|---|
| 64 / 2 | 0.25 (one query per line) | 1M, 4M (0.25M, 1M) | 977, 3,907 | 0 | 3.26-3.42 |
| 64 / 2 | 0.25 (from here on, every key queried) | 2M (0.5M) | 1,954 | ≤ 0.016 | 3.26-3.31 |
| 64 / 2 | 0.5 | 4M (2M) | 3,907 | ≤ 0.016 | 3.24-5.14 |
| 64 / 2 | 0.9 | 4M (3.6M) | 3,907 | ≤ 0.016 | 3.25-3.27 |
| 64 / 2 | 0.5 | 12M (6M) | 11,719 | ≤ 0.016 | 3.26-3.33 |
| 64 / 4 | 0.5 | 8M (4M) | 7,813 | 0 | 3.26-3.30 |

An answer loss of ln 26 = 3.26 nats is a uniform guess over letters: every model learned that the
answer is two lowercase letters and nothing about which. Per-byte losses on training lines say the
same of the queried key (3.2-3.4 nats, where copying one of the dict's keys would give ln(pairs)):
no run formed the copying circuit. With two-letter keys a byte model must match a bigram 4-6
positions back; Zoology's MQAR models (single-token keys) train for hundreds of millions of tokens.
At up to 12M tokens on this CPU the ability does not appear with or without the pattern in the
training text; where it appears needs a GPU-sized grid (the same study with `recall_mix` set).

Two controls. (1) Attention can learn copying here: the tiny preset trained on lines of an 8-letter
random string and its repeat (`data.source_dir` of such files, 1M tokens, 46 s) reached a train
loss of 1.56 nats/byte by step ~300, against 2.90 without copying and 1.45 with perfect copying.
(2) A query that repeats the key's own context (`d|={'ze':'` -> `tw`, plain induction) did not
help: at 1M and 2M tokens (f = 0.25, 0.5) its answer loss stayed at 3.3-4.9 nats. The code-trained
models also do not continue a literal repeat (`x = '<20 letters>'` then `y = '<first 3>`): loss on
the repeat 5.2-5.5 nats, as on the first copy, for the d64 runs above.
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
