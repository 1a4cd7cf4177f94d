"""The default study: an IsoFLOP grid of byte-level decoders on the stdlib corpus, trained on the tuned
frontier at two seeds, that fits a compute-optimal law on a 2-core laptop CPU (target: <= 15 minutes,
the analysis included), then writes the report, figures and fits.json.

    lab study experiments/isoflop_cpu.py --dry-run
    lab study experiments/isoflop_cpu.py --out runs/isoflop_cpu                 # grid + fits + report
    lab study experiments/isoflop_cpu.py --out runs/isoflop_cpu --validate 3
    lab fit runs/isoflop_cpu --method auto --audit 20 --json                    # which estimate to trust
    lab report runs/isoflop_cpu

Design (issue 24; after ../shared/CPU_STUDY_NOTES.md and measured runs of this lab):

* **The tuned frontier** (`lr_law="lr_law_cpu.json"`, lab.study.lr_law): every cell's peak rate from
  η_opt(N) = 0.254 · N^-0.285, fitted by `experiments/lr_sweep_cpu.py` on this corpus, shape and
  schedule (d16 0.018 ... d64 0.0093; the old policy gave 3e-3 to every width <= 64, 3-6x below the
  optima, which cost the small models up to 9% of loss and tilted every budget's optimum). The d80
  cell lies above the law's fitted N range (1.04e4-1.15e5) and `lab study` says so in one warning line.
* **Re-centred on the tuned optima**: tuned, the small models gain most and each budget's optimum
  moves to more tokens per parameter, so the guess is 100 tokens per parameter (was 35) and the
  budgets 3e11-2.4e12 (were 2e11-1.6e12; a first try with a milder η(N) put the 2e11 optimum at d16,
  the grid's edge). The windows: d16-d48 at 3e11 and 6e11, d24-d64 at 1.2e12, d32-d80 at 2.4e12.
* **Denser sizes where the optima are**: d24 (head dim 12) and d40 (head dim 20) fill the 16-wide
  steps between d16 and d48 (each step there is a factor 1.5-2 in N, against 3.2 from d16 to d32),
  so five sizes per budget bracket each optimum at half the spacing in log N.
* **Two seeds** (since 2026-12-06): one seed's table cannot see its run-to-run noise (σ = 0.014-0.015
  in log loss, twice the residual scatter a quiet draw reports), and two of three one-seed draws missed
  the interval target (below). The 20 pairs measure the noise the rung's intervals use — read off its
  trend with compute where that trend is measured (`analysis/uncertainty/noise_trend.py`: at seeds 5+6
  the pairs' scatter fell from 0.043 at 3e11 to 0.012 at 2.4e12, a slope 2.7 standard errors from 0).
  Pinned workers
  (`pin_workers=True`) keep the 40 cells within the limit.

Measured 2026-12-05 on the 2-core Intel Xeon VM (warm compile cache, normal priority, other helpers'
jobs still running: load average 4.3 at the start, 8.6 at the end): `lab study experiments/isoflop_cpu.py
--out DIR` 452 s wall (7 min 32 s; grid, fits, figures, report), 20/20 completed, the cells' summed
wall_s 771 s. A first run at load 13-27 took 2258 s and gave the same losses to the last digit (one
seed, deterministic) and the same fits.

    budget     sizes (final val loss)                                        N_opt (σ log)
    3e11       d16 1.861  d24 1.696  d32 1.710  d40 1.758  d48 1.859         2.3e4 (0.16)
    6e11       d16 1.785  d24 1.579  d32 1.526  d40 1.543  d48 1.589         3.5e4 (0.16)
    1.2e12     d24 1.522  d32 1.433  d40 1.412  d48 1.404  d64 1.468         6.8e4 (0.21)
    2.4e12     d32 1.384  d40 1.348  d48 1.309  d64 1.315  d80 1.352         8.1e4 (0.20)

Every minimum is interior. The report trusts parametric: a = 0.533 [0.484, 0.621] (95% bootstrap,
half-width 0.069; target <= 0.12; old policy: isoflop 0.525 [0.248, 0.806], ±0.28), with E = 1.05
off its bound (old: E = 3.9e-15, at it). `lab fit DIR --method vpnls --bootstrap 200 --json` gives
the same a = 0.533 [0.484, 0.621], E = 1.05; isoflop a = 0.643 [0.402, 0.852] (±0.225: four budgets
a factor 2 apart, each optimum ±0.16-0.21 in log N); the envelope a = 0.226 [0.094, 0.300]
disagrees and the report says so. Loss at the same budgets fell: the best at 1.2e12 is 1.404 here,
the old policy's best at 1.6e12 was 1.394.

`lab fit DIR --method auto --audit 20 --json` (the audit on 20 simulated copies of this design): vpnls,
calibrated, a = 0.533 [0.494, 0.619]; RMSE of a 0.015 for vpnls and parametric, 0.116 for isoflop.

`--validate 3` with the pre-registered rung (issue 24), measured on the merged tree 2026-12-05 23:07 on
the same VM (load average 0.9 at the start, 4.4 at the end: one helper's tests under nice 10), one
command from an empty directory: `lab study experiments/isoflop_cpu.py --out DIR --validate 3` 733 s
in all — grid, fits, audit (20 copies) and the prediction written to validation.json after 400 s (6 min
40 s), the three validation runs and the final report in 333 s more. Same losses as above; the study's
overhead share 8.9% (sum overhead_s / sum cell_wall_s, 722 s of cell wall). The audit trusts
parametric (RMSE of a 0.015, coverage 20/20). Its prediction at 7.2e12 FLOPs (N_opt 1.38e5), written
before the runs with 95% prediction intervals (the fit's 200 bootstrap laws plus run-to-run noise σ =
0.0065 in log loss, the residual scatter; no seeds in this table):

    run         predicted   95% PI             measured   error    inside
    d48 (L2)    1.249       [1.222, 1.278]     1.243      +0.4%    yes
    d64 (L2)    1.218       [1.194, 1.251]     1.195      +1.9%    yes (at its lower edge)
    d96 (L3)    1.254       [1.232, 1.297]     1.221      +2.7%    no: 0.9% below pi_lo

mean |error| 1.70% (old policy: 8.05%, every run worse than predicted); d64, nearest the predicted
optimum, won. Every PI lies within ±2.7% of its prediction (target ±5%). The run outside is the one
the law had least reason to know: every grid model has 2 layers (n_layers = max(2, round(d/32)) gives
2 up to d80), d96 is the first with 3, and its rate (N 3.6e5) is extrapolated beyond the LR law's
fitted range (1.04e4-1.15e5; `lab study` warns). All three runs beat the law, by more as N grows
(+0.4%, +1.9%, +2.7%): the law is slightly pessimistic 3x beyond the grid, and its interval holds the
fit's uncertainty and the run noise but not a change of shape. The report's verdict opens with
"VALIDATION FAILED: 1 of 3". To test the rung within the law's family, the next step is to keep the
validation sizes at 2 layers (or add 3-layer sizes to the grid).

**2026-12-06, the 2-core AMD EPYC VM** (another CPU: the same grid's losses differ in the third decimal;
every minimum interior again; load average 4-7 from helpers' jobs): grid, fits and report in 473 s.
The old rung registered d48 1.2478 [1.2275, 1.2904], d64 1.2183 [1.1969, 1.2633], d96 1.2553 [1.2266,
1.3113]; measured 1.2375, 1.2002, 1.2193 (+0.8%, +1.5%, +3.0%): again d96 below its pi_lo. Since then
the rung's interval also holds **the law's form error**, measured on the table before any validation
run (analysis/uncertainty/form.py: nested back-tests holding out the 1 and 2 largest budgets give
σ_form = k·log(C / largest budget); here k = 0.0113, σ_form = 0.0124 at 3x). Every test of it so far:

    pre-registered test                        runs (error)                         inside  PI edges
    seed 0, --validate 2 (4.8e12, fresh runs)   d48 +1.2%, d64 +1.2%, d80 +1.5%        3/3    -2.3% .. +4.2%
    seed 1 (a fresh grid), --validate 3         d48 +0.2%, d80 +3.1%, d96 L3 +1.8%     3/3    -9.8% .. +7.5%
    seeds 0 and 1 (40 cells), --validate 3      d48 +1.5%, d80 +1.9%, d96 L3 +2.0%     3/3    -3.7% .. +5.9%

(the last: a new fit and prediction, but its d48 and d96 runs at seed 0 had been measured above; d80 was
new; the seed-0 3x runs re-predicted by the new rule: 3/3 inside, edges -3.2% .. +5.3%, not a test, the
runs were known). **The noise floor, measured with a second seed**: the 20 cells' seed-0 vs seed-1 losses
differ by sd 0.0198 in log loss (up to 5% at d40, 3e11), a run-to-run σ = 0.015 — twice the residual
scatter (0.007-0.008) a one-seed table reports, so a one-seed study's intervals are too narrow by that
much. Seed 1 alone: parametric a = 0.590 [0.493, 0.865] (half-width up to 0.27; PIs ±7-10%); both seeds
(40 cells, noise from their scatter with 20 degrees of freedom): a = 0.589 [0.496, 0.666] (±0.085),
E = 1.02, PIs with half-widths 3.9-4.8% whose upper edges (the bootstrap laws skew upward 3x out) reach
+5.2% and +5.9%. Seed 0's grid took 473 s (load 4-7) and seed 1's 413 s (quiet), so the two-seed study
is about 15 minutes of grid on this VM, at this file's limit; a second seed at the noisiest (two
smallest) budgets only would measure the scatter for a fifth of that (not built yet).

**The two-seed design, 2026-12-06** (the same AMD EPYC VM; validation.json copied aside when written,
identical after the runs). One-seed draws first: seed 2, pre-registered, 3/3 inside with mean error 0.88%
but a = 0.567 [0.414, 0.741] (±0.164) and d96's PI at -5.3/+5.4% (its residual scatter 0.0156, like seed
1's). Replicates at the small budgets only (`seeds_by_budget`) did not rescue a noisy draw (seed 1:
±0.186 -> ±0.204 / ±0.135 for +7% / +20% FLOPs; benchmarks/README.md). The full second seed, tested at
two fresh seeds (3 and 4, pinned workers, quiet): `lab study FILE --out DIR --validate 3` 999 s in all —
the 40-cell grid 705 s, fits and the prediction at 728 s, the report after the rung — 40/40 + 3/3,
overhead share 9.1%. Trusted parametric a = 0.574 [0.507, 0.644] (±0.069), E = 1.02; isoflop 0.757
[0.423, 1.03]; the envelope (0.311) disagrees and the report says so. The rung (laws by a residual
bootstrap, run noise σ = 0.0138 from the 20 pairs, form term k = 0), pre-registered at 7.2e12:

    run         predicted   95% PI             measured   error    inside
    d48 (L2)    1.2575      [1.2194, 1.2946]   1.2391     +1.5%    yes
    d80 (L2)    1.2154      [1.1771, 1.2521]   1.1926     +1.9%    yes
    d96 (L3)    1.2498      [1.2076, 1.2899]   1.2385     +0.9%    yes

mean |error| 1.44%, every PI within ±3.4% of its prediction; d80, nearest the predicted N_opt (1.49e5),
won.

**This file as committed** (seeds 0 and 1, pinned; `lab study experiments/isoflop_cpu.py --out DIR
--validate 3` from a clean clone, 04:33-05:10 UTC beside the slow test suite, so its 2245 s are not a
timing): 40/40 + 3/3, overhead share 7.6%. Pinned, 36 of its 40 losses differ from the unpinned runs of
the same seeds by up to 1.26% (one rounding apart at the start; the d16 cells equal). Trusted parametric
a = 0.565 [0.504, 0.632] (±0.064), E = 1.02. The rung, pre-registered at 7.2e12 (copied aside when
written, identical after):

    run         predicted   95% PI             measured   error    inside
    d48 (L2)    1.2506      [1.1469, 1.3630]   1.2417     +0.7%    yes
    d80 (L2)    1.2124      [1.1100, 1.3247]   1.1864     +2.2%    yes
    d96 (L3)    1.2486      [1.1415, 1.3664]   1.2230     +2.1%    yes

mean |error| 1.67%, 3/3 inside, but **every PI ±8.3-9.4%, not within ±5%**: this table's back-tests
erred by 0.042 rms in log against 0.026 their intervals held, so its form term is k = 0.037 per unit log
distance (0.041 at 3x), where the unpinned table of the same seeds gave k = 0 (row draws 0.005) and
seeds 3+4 k = 0. The form term's own estimate (30 correlated back-test points) is the next limit: two
tables a rounding apart gave k = 0 and 0.037. Three ways to steady it were measured and rejected
(benchmarks/README.md, "the form term's estimate").

**A fourth draw, seeds 5 and 6** (pinned, pre-registered at 06:20 UTC, validation.json copied aside when
written and identical after; a helper's simulations shared the CPU during the rung): the prediction at
673 s, 1052 s in all, overhead share 8.5%. Trusted parametric a = 0.512 [0.459, 0.588] (±0.064), E = 1.03,
form term k = 0, but the pooled seed scatter σ = 0.0287 (seed 6's d24 and d32 3-11% worse than seed 5's
at every budget), so PIs of ±6.0-6.5%:

    run         predicted   95% PI             measured   error    inside
    d48 (L2)    1.2488      [1.1697, 1.3216]   1.2377     +0.9%    yes
    d64 (L2)    1.2197      [1.1443, 1.2929]   1.1995     +1.7%    yes
    d96 (L3)    1.2608      [1.1795, 1.3361]   1.2523     +0.7%    yes

mean |error| 1.09%. The pairs' scatter by budget, 0.043 / 0.030 / 0.020 / 0.012 from 3e11 to 2.4e12, is
why the rung now reads the noise off its trend with compute where the trend is measured (at least 3
budgets with replicates, a slope 2 standard errors from 0; pre-registered before these runs were read,
the guard added after a review; simulations in benchmarks/README.md): re-predicted, this table's PIs are
−4.2 … +3.5% (σ 0.0142); on the other three tables the slope is within 2 standard errors (z −0.7, −1.3,
−1.9), so their pooled σ and PIs stand (the committed run's ±9.1%: its form term). Over four two-seed
draws: a within ±0.12 4/4, runs inside 12/12, mean error <= 3% 4/4, PIs within ±5% 3/4 (2/4 before).

**A fifth draw, seeds 7 and 8** (pinned, pre-registered at 08:37 UTC before the run, validation.json
copied aside when written and identical after; quiet but for a 37 s test): the prediction at 698 s, 974 s
in all, overhead share 8.3%. Trusted parametric a = 0.560 [0.512, 0.625] (±0.057), E = 1.003; the
pairs' scatter trend measured (slope −0.95 ± 0.45), read at 2.4e12: σ = 0.0034 (pooled 0.0057); form term
k = 0.011:

    run         predicted   95% PI             measured   error    inside
    d48 (L2)    1.2527      [1.2160, 1.2891]   1.2371     +1.3%    yes
    d80 (L2)    1.2149      [1.1794, 1.2510]   1.1918     +1.9%    yes
    d96 (L3)    1.2513      [1.2130, 1.2901]   1.2325     +1.5%    yes

mean |error| 1.57%, every PI within ±3.1%. Over five two-seed draws: a within ±0.12 5/5, runs inside
15/15 (every one below its prediction: the law's form error, below), mean error <= 3% 5/5, PIs within
±5% 4/5.

**How often a two-seed table meets ±5%, and what would always** (benchmarks/README.md, "How many
seeds..."; `benchmarks/bench_seed_subsets.py` on the four pinned two-seed tables, each from `lab study
experiments/isoflop_cpu.py --seeds S,S --out DIR --validate 3`): over every K-seed subset of the eight
seeds, the rung re-predicting all 12 measured validation runs, PIs within ±5% for 13/28 two-seed tables,
34/56 three-seed, 47/70 four, 39/56 five, 23/28 six, 7/8 seven and all eight seeds together (±3.7%);
97.6-100% of runs inside at every K; a within ±0.12 in all 247. The runs come in 1.5% below the law at
3x at every K and the form term settles at k = 0.012: the limit is the law's form error beyond the grid
and its estimate from one table's back-tests (k 0-0.036 across two-seed tables; this file's seeds 0+1
give 0.037), not the seeds' noise (σ 0.010-0.012). The smallest study that reaches ±5% by the rule
written down beforehand (>= 95% of subsets) is all eight seeds: 160 cells, ~47 min of grid on 2 cores,
beyond the 15 minutes; this file stays at two seeds (the 15 minutes) and meets ±5% about half the time.

More information per FLOP, measured: loss-curve points (`lab fit DIR --method vpnls --curve-points 8`,
no extra FLOPs) narrowed the old policy's vpnls interval (±0.157 -> ±0.119) but widened this one's
(a = 0.457 [0.388, 0.635], ±0.123): on the tuned grid the final losses alone pin the law better, so
the study does not use them. A wider budget span was not measured; seeds, above.
"""

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
from lab.study.policy import shape_for_width


def study() -> Study:
    return Study(
        name="isoflop_cpu",
        base=RunConfig(
            model=ModelConfig(seq_len=128),
            data=DataConfig(name="python_stdlib", val_tokens=1 << 14),
            train=TrainConfig(batch_size=8, schedule="wsd"),
        ),
        sizes=[
            shape_for_width(d, head_dim=h)
            for d, h in ((16, 16), (24, 12), (32, 16), (40, 20), (48, 16), (64, 16), (80, 16))
        ],  # d24/d40: head dims 12 and 20
        budgets=[3e11, 6e11, 1.2e12, 2.4e12],  # flops_exact per run
        window=5,
        tokens_per_param_guess=100,
        seeds=[0, 1],  # two seeds: the table measures its own run-to-run noise (docstring)
        pin_workers=True,  # each worker on a core of its own: ~10% faster steps on 2 cores
        workers=2,  # two single-threaded workers: ~1.3x one two-threaded process on 2 cores
        lr_law="lr_law_cpu.json",  # the tuned frontier: eta_opt(N) from experiments/lr_sweep_cpu.py
    )
