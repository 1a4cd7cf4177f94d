"""Muennighoff et al. (2023) on their runs: which choices reproduce R_D* = 15.39, R_N* = 5.31.

Run:  python experiments/reproduce_muennighoff.py [--bootstrap 200]

Data: ../shared/data/datablations_c4_losses_colpret.csv (ColPret's table of the datablations runs;
U = token_num / epochs, see the data README). The paper's notebook (huggingface/datablations,
utils/parametric_fit.ipynb) holds a C4 base law fixed — fitted to Chinchilla's C4 IsoFLOP points,
which are not in this table — and fits only R_D*, R_N* (Huber delta 1e-3 on log loss, L-BFGS) on
its own list of runs. This script fits every combination of

  rows:     all 229 | loss < 5 (drops diverged runs and 100M-token runs far above the power law) |
            the first 182 (the paper used 182; later rows were added after the fit) | both
  base law: fitted here (the bare `lab fit --method data-constrained`: single-epoch rows, then all 7
            jointly) | the paper's C4 law held fixed (`--base-law muennighoff-c4`)

and prints R_D*, R_N* with bootstrap CIs, so what the published values depend on is on one page.

Measured 2026-12-01 on the 2-core AMD EPYC VM (jax 0.10.2 CPU; 3 min 26 s with --bootstrap 200,
sharing the cores with a study), 95% percentile CIs from 200 resamples:

| rows | base law | n | R_D* [95% CI] | R_N* [95% CI] |
|---|---|---|---|---|
| all 229 | fitted here | 229 | 40.2 [21, 7.86e+15] | 38.4 [0.141, 252] |
| all 229 | paper's C4 law | 229 | 2.12e+16 [1.07e+03, 1.02e+17] | 0.169 [9.29e-41, 0.474] |
| loss < 5 | fitted here | 198 | 9.05 [6.18, 43.3] | 1.94 [1.69e-12, 5.9e+68] |
| loss < 5 | paper's C4 law | 198 | 20.2 [8.14, 3.65e+16] | 2.16 [0.353, 8.37] |
| first 182 | fitted here | 182 | 61.4 [27.9, 473] | 120 [9.17, 3.17e+04] |
| first 182 | paper's C4 law | 182 | 3.98e+03 [16.1, 9.27e+18] | 0.363 [0.171, 4.69] |
| first 182, loss < 5 | fitted here | 157 | 11.8 [9.14, 19.2] | 1.94e+154 (unbounded) |
| first 182, loss < 5 | paper's C4 law | 157 | 15.5 [8.93, 196] | 5.34 [1.43, 9.43] |

Only the paper's base law with the paper's runs reproduces both numbers (within 1%). The bare
command (first line) does not: on all 229 rows, diverged runs (loss up to 11, rising with
repetition, which the monotone law cannot describe) pull R_D* and R_N* to 40 and 38. Dropping them
(loss < 5) with the base law fitted here gives R_D* = 9.05, whose CI [6.2, 43] holds 15.39, and an
R_N* CI that holds 5.31 but spans 80 decades: this table's 33 single-epoch rows cannot pin the base
law, and R_N* (the excess-parameter discount) trades off against it. R_D* is the robust number
(9-20 wherever the diverged runs are out); R_N* needs the base law from outside these runs.

Two more choices, tried 2026-12-01 evening and not kept (point estimates, no bootstrap):
- The paper's two stages with the base law from this table (fit it on the single-epoch rows, hold it
  fixed, fit R_D*, R_N*): 49.8 / 131 on all 229 rows, 40.1 / 2.1 with loss < 5, 36.4 / 5.1 on the
  first 182 with loss < 5. Releasing all seven parameters (the bare command) does no worse.
- Dropping every run whose loss is higher than a shorter run's at the same (N, U) — the law is
  monotone in D, so overfitting runs are outside its form — removes 58 rows and moves R_D* the
  wrong way (36-47 on all rows, 48-60 on the first 182): the published R_D* rests on those runs'
  slow loss increase as much as on the gains.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import analysis
from analysis.fits.data_constrained import (
    MUENNIGHOFF_C4_BASE,
    bootstrap_data_constrained,
    fit_data_constrained,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "datablations_c4_losses_colpret.csv"
PUBLISHED = {"R_D_star": 15.39, "R_N_star": 5.31}
ROWS = {
    "all 229": None,
    "loss < 5": "openLM_loss < 5",
    "first 182": "index < 182",
    "first 182, loss < 5": "openLM_loss < 5 and index < 182",
}
BASES = {"fitted here": None, "paper's C4 law": MUENNIGHOFF_C4_BASE}


def one(where, base, n_boot: int) -> dict:
    data = analysis.load(DATA, where=where, need_budget=False).data
    fit = fit_data_constrained(data, base=base)
    out = {"n": len(data), **{k: fit.params[k] for k in PUBLISHED}, "objective": fit.objective}
    if n_boot:
        _, ci = bootstrap_data_constrained(data, fit, n_boot=n_boot)
        out.update({f"{k}_ci": (ci[k]["lo"], ci[k]["hi"]) for k in PUBLISHED})
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", type=int, default=200)
    args = p.parse_args(argv)
    if not DATA.exists():
        raise SystemExit(f"{DATA} not found (the shared data directory sits beside the repository)")
    print(f"published: R_D* = {PUBLISHED['R_D_star']}, R_N* = {PUBLISHED['R_N_star']}\n")
    print("| rows | base law | n | R_D* [95% CI] | R_N* [95% CI] |")
    print("|---|---|---|---|---|")
    for rname, where in ROWS.items():
        for bname, base in BASES.items():
            r = one(where, base, args.bootstrap)
            cells = [
                f"{r[k]:.3g}" + (f" [{r[k + '_ci'][0]:.3g}, {r[k + '_ci'][1]:.3g}]" if args.bootstrap else "")
                for k in PUBLISHED
            ]
            print(f"| {rname} | {bname} | {r['n']} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
