"""Emergence you can watch on a laptop: exact-match accuracy of in-context copying (lab.data.induction)
rising from chance to 100% inside a CPU grid of 2-layer byte-level decoders, and its task law.

    lab study experiments/emergence_cpu.py --out runs/emergence
    lab fit runs/emergence --method task --json     # two-step law, direct law, both back-tested
    lab plot runs/emergence --figures i --out runs/emergence/figures

The task: half of the training rows (`data.copy_mix=0.5`) are lines `S|:S` of a fresh random 8-letter
string S over 26 letters and its copy; the rest is the stdlib corpus. Every run records the held-out
copy scores (lab.evals.induction: 64 prompts from their own seed; `copy_accuracy` = every letter of
the copy the argmax, teacher-forced; `copy_accuracy_greedy` = the greedy span; chance 26^-8 ≈ 5e-12).
Grid: widths 16, 24, 32, 48, 64 (2 layers, 4 heads) x 2^17 to 2^20 tokens in steps of sqrt 2 (128 to
1,024 steps of 8 x 128 bytes), WSD with cooldown branches off each width's long run: 35 cells, 3.0e12
FLOPs (54% saved by branching).

Measured 2026-12-05 on the shared 2-core Intel Xeon VM (lscpu), CPU only, under `nice -n 19` beside
four other helpers' jobs (load average 12-22), so its wall time (grid 39 min, 3,100 s of run wall time
summed over cells) says nothing about an idle machine; 35/35 completed. copy_accuracy (teacher-forced;
greedy identical in every run) / copy_loss (nats/byte), by steps:

| width (params) | 128 | 182 | 256 | 363 | 512 | 725 | 1,024 |
|---|---|---|---|---|---|---|---|
| d16 (10k) | 0 / 3.46 | 0 / 3.43 | 0 / 3.42 | 0 / 3.30 | 0 / 3.26 | 0 / 3.27 | 0 / 3.26 |
| d24 (20k) | 0 / 3.41 | 0 / 3.41 | 0 / 3.29 | 0 / 3.28 | 0 / 3.26 | 0.02 / 1.53 | 1.00 / 0.09 |
| d32 (33k) | 0 / 3.40 | 0 / 3.31 | 0 / 3.14 | 0 / 2.07 | 1.00 / 0.32 | 1.00 / 0.04 | 1.00 / 0.02 |
| d48 (68k) | 0 / 3.19 | 0 / 2.31 | 0.58 / 0.83 | 1.00 / 0.08 | 1.00 / 0.02 | 1.00 / 0.01 | 1.00 / 0.01 |
| d64 (115k) | 0 / 3.24 | 0 / 2.07 | 0.91 / 0.53 | 1.00 / 0.06 | 1.00 / 0.02 | 1.00 / 0.01 | 1.00 / 0.00 |

Smallest compute (d16, 128 steps, 1.4e10 FLOPs): 0, chance 26^-8 ≈ 5e-12; largest (d64, 1,024 steps,
9.3e11): 1.00. A loss of ln 26 = 3.26 is a uniform guess over letters. The ability appears abruptly, at
1.4e11-2.3e11 FLOPs for every width from d24 to d64 (the first run at ≥ 0.5: d24 2.0e11, d32 1.5e11, d48
1.4e11, d64 2.3e11), and never for d16 (head dim 4) within 1,024 steps; four runs sit inside the jump
(d24 at 725 steps, d32 at 363, d48 and d64 at 256), which is what identifies the sigmoid.

`lab fit DIR --method task --json` on this table (35 runs; 200 bootstrap refits; a few seconds of CPU
once the load fell): step 2, accuracy = b + a/(1 + exp(k (L − L0))) with b = 26^-8, a = 1.00 [1.00, 1.00],
k = 6.98 [6.57, 51.8], L0 = 0.873 [0.571, 1.352] nats/byte (95% bootstrap intervals: the sigmoid is
identified, its midpoint within the losses seen); the direct law acc = b + (1 − b) exp(−A C^−γ), A = 5.4e69,
γ = 6.24 (a steep step in compute, as the table is). Back-test on the largest compute (d64 at 9.3e11 FLOPs,
both laws refitted on the other 34 runs): two-step predicts 0.998 (error 0.2 points), direct 1.000
(error 0.001 points), measured 1.00. Step 1 is flagged (alpha = 3.44, beta = 3.57: "unusual exponents").

A first, coarser grid (widths 16, 32, 64 x 2^16-2^20 tokens, 15 cells, 1.6e12 FLOPs, same VM and load:
grid 16 min) gave the same picture with one run inside the jump (d32 at 512 steps: 0.98 / 0.56); its
`lab fit --method task --json`: a = 1.00, k = 74 [74, 83], L0 = 0.618 [0.612, 0.618] — pinned by that one
run; the direct law a step (gamma = 23); both back-tests exact (1.00 predicted, 1.00 measured). Step 1
(Chinchilla's L(N, D) for the task loss) fits badly on such tables (alpha = 49, flagged): the task loss is
a plateau, then a collapse, so the two-step law's per-size curves and its frontier read-out ("half
accuracy at C ≈ 1.8e10" there) are not to be trusted; the sigmoid of step 2 and the direct law are.

Timed on the merged tree 2026-12-05 23:26 (same VM, normal priority, warm compile cache, persistent
workers; load average 7-13: another job's A/B study ran beside it): `lab study experiments/emergence_cpu.py
--out DIR` 441 s wall (7 min 21 s: grid, task fit with 200 bootstrap refits, figure, report), 35/35
completed, every copy_accuracy above reproduced to two decimals and the same fit (k = 6.98 [6.57, 51.8],
L0 = 0.873 [0.571, 1.352]). Its cells are short (128-1,024 steps), so 71% of their 764 s of wall time
is outside the training steps (start-up 222 s, final scores with the copy evaluation 151 s, compile
105 s; `overhead_s` in results.csv): the grid costs more in set-up than in training.

What was tried (single runs, `lab train --model tiny` = d64, 2 layers, batch 8 x 128, lr 3e-3, same VM
and load):

* copy_len 8, alphabet 26, copy_mix 0.5, no gap: learned by step 250 (accuracy 0.95, loss 0.49 at the
  250-step checkpoint; 1.00 by step 500) — the copy control of the seed-studies issue, reproduced.
* The same with `copy_gap=16` (0-16 filler dots drawn per line, so no fixed offset finds S and only
  content matching, an induction head, copies): accuracy 0 and loss 3.27-3.32 (= ln 26) at every
  checkpoint to 1,000 steps (1M tokens). The variable-distance task needs more than this CPU's budget,
  as dict recall did.
* So the fixed-offset line is the chosen difficulty, and what the grid measures is in-context copying
  from a fixed distance back (attention to a relative position, learnable by 2 layers), not general
  induction: the per-length ladder (`copy_accuracy_len2/4/16`) stays 0 in every run of the coarse grid,
  i.e. the models copy 8-letter strings only. Harder dials (longer S, distractors, a gap) move the jump
  to larger compute; difficulty as a study axis was not run (Study variants are model fields; a
  difficulty is a `data.copy_*` override, one study per difficulty).
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
        sizes=[{"d_model": d, "n_layers": 2, "n_heads": 4} for d in (16, 24, 32, 48, 64)],
        tokens=[round(2 ** (17 + k / 2)) for k in range(7)],  # 128 to 1,024 steps of 8 x 128 bytes
        branches=True,
        laws=("task",),
        workers=2,  # two single-threaded workers, as the quick study
    )
