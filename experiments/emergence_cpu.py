"""Emergence you can watch on a laptop: exact-match accuracy of in-context copying (lab.data.induction)
rising from chance to 100% inside a CPU grid of 2-layer byte-level decoders, and its task law.

    lab study experiments/emergence_cpu.py --out runs/emergence
    lab fit runs/emergence --method task --json     # two-step law, direct law, both back-tested
    lab plot runs/emergence --figures i --out runs/emergence/figures

The task: half of the training rows (`data.copy_mix=0.5`) are lines `S|:S` of a fresh random 8-letter
string S over 26 letters and its copy; the rest is the stdlib corpus. Every run records the held-out
copy scores (lab.evals.induction: 64 prompts from their own seed; `copy_accuracy` = every letter of
the copy the argmax, teacher-forced; `copy_accuracy_greedy` = the greedy span; chance 26^-8 ≈ 5e-12).
Grid: widths 16, 32, 64 (2 layers, 4 heads), 2^16 to 2^20 tokens (64 to 1,024 steps of 8 x 128 bytes),
WSD with cooldown branches off each width's long run (15 cells, 1.6e12 FLOPs, 39% saved by branching).

Measured 2026-12-05 on the shared 2-core Intel Xeon VM (lscpu), CPU only, under `nice -n 19` beside
four other helpers' jobs (load average 13-22), so its wall time (grid 16 min) says nothing about an idle
machine; 15/15 completed. copy_accuracy (teacher-forced = greedy in every run) and copy_loss (nats/byte):

| width (params) | 64 steps | 128 | 256 | 512 | 1,024 |
|---|---|---|---|---|---|
| d16 (10k)  | 0 / 3.58 | 0 / 3.46 | 0 / 3.42 | 0 / 3.26 | 0 / 3.26 |
| d32 (33k)  | 0 / 3.45 | 0 / 3.40 | 0 / 3.26 | 0.98 / 0.56 | 1.00 / 0.020 |
| d64 (115k) | 0 / 3.41 | 0 / 2.98 | 1.00 / 0.41 | 1.00 / 0.016 | 1.00 / 0.004 |

Smallest compute (d16, 7.2e9 FLOPs): 0 (chance 5e-12); largest (d64, 9.3e11): 1.00. A loss of ln 26 = 3.26
is a uniform guess over letters; the ability appears abruptly (0 -> 0.98 between 256 and 512 steps for
d32, between 128 and 256 for d64) and never for d16 (head dim 4) within 1,024 steps. `lab fit DIR --method
task --json` on this table (48 s of CPU): sigmoid a = 1.00, k = 74 [74, 83], L0 = 0.618 [0.612, 0.618] (95%
bootstrap intervals; L0 sits on the one run inside the jump, d32 at 512 steps, so it is pinned by that run);
step 1 is not a Chinchilla curve here (alpha = 48.9, flagged): the task loss is a plateau then a collapse,
so the two-step law's per-size curves and its frontier read-out ("half accuracy at C ≈ 1.8e10") are not to
be trusted;
the direct law degenerates to a step in compute (gamma = 23.4: exp(-A C^-gamma) jumps from 0 to 1 between
the grid's budgets); back-test on the largest compute (fitted on the 14 smaller runs): two-step and direct
law both predict 1.00 (error 0 points) — at this grid's top any law that has seen 100% predicts it, so the
back-test does not yet tell the two forms apart.

Estimated wall time on an idle 2-core machine (not measured: the VM was never idle): `lab study --dry-run`
estimates 2.0 min of training for 1.6e12 FLOPs; each cell adds start-up, compile and final evaluation
(10-15 s on an idle core, 37-60 s measured under load), 15 cells on 2 workers ≈ 2 min; the task fit
with 200 bootstrap refits ≈ 1 min. About 5-6 min, well inside 20 min; the lead times it.

What was tried (single runs, `lab train --model tiny` = d64, 2 layers, batch 8 x 128, lr 3e-3, same VM
and load):

* copy_len 8, alphabet 26, copy_mix 0.5, no gap: learned by step 250 (accuracy 0.95, loss 0.49 at the
  250-step checkpoint; 1.00 by step 500) — the copy control of the seed-studies issue, reproduced.
* The same with `copy_gap=16` (0-16 filler dots drawn per line, so no fixed offset finds S and only
  content matching — an induction head — copies): accuracy 0 and loss 3.27-3.32 (= ln 26) at every
  checkpoint to 1,000 steps (1M tokens). The variable-distance task needs more than this CPU's budget,
  as dict recall did.
* So the fixed-offset line is the chosen difficulty, and what the grid measures is in-context copying
  from a fixed distance back (attention to a relative position, learnable by 2 layers), not general
  induction: the per-length ladder (`copy_accuracy_len2/4/16`) stays 0 in every run, i.e. the models
  copy 8-letter strings only. Harder dials (longer S, distractors, a gap) move the jump to larger compute.

A finer grid (widths 16, 24, 32, 48, 64; 2^17 to 2^20 tokens in steps of sqrt 2; 35 cells) was started
to put more runs inside the jump; see the report of the session that added this file for how far it got.
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
        tokens=[2**16, 2**17, 2**18, 2**19, 2**20],  # 64 to 1,024 steps of 8 x 128 bytes
        branches=True,
        laws=("task",),
        workers=2,  # two single-threaded workers, as the quick study
    )
