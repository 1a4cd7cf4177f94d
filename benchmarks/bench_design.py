"""The designer against the naive extension of a fixed grid, at equal FLOPs, on a known law.

Run:  python benchmarks/bench_design.py              (~1 min on 2 cores; 40 seeds)
      python benchmarks/bench_design.py --seeds 200  (tighter averages)

Per seed: a starting IsoFLOP grid is drawn from a known law (`analysis.CHINCHILLA_EPOCH`, true
a = beta/(alpha+beta) = 0.514) with log-normal loss noise: budgets 1e17, 3e17, 1e18, five sizes a
factor 2 apart around each budget's true optimum. An allowance F buys, either

- **naive**: the grid extended the way the study file would be — the next budgets up (x3 each),
  five sizes around each budget's true optimum (the naive side is even given the truth), as many
  whole budgets as F pays for; or
- **designed**: `analysis.design.propose(study, F)` on the starting grid (its current isoflop fit
  and bootstrap), the proposed cells then drawn from the same law and noise.

Both tables are fitted by `isoflop` with a 200-resample bootstrap (and, for comparison, the
starting grid alone and the naive table by `vpnls`, Approach 3, with a 200-resample row bootstrap);
the figures are the mean 95% CI width of a over seeds, the ratio designed / naive (< 1: the
designer's CI is narrower), both methods' coverage of the true a, and the FLOPs each spent. Same
seeds, same noise draws per cell rule, one process.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

import analysis
from analysis.design import propose

LAW = analysis.CHINCHILLA_EPOCH
START = (1e17, 3e17, 1e18)
SIZES = 5


def _rows(cells, rng, noise):
    """Results rows for (budget, N) cells drawn from LAW with multiplicative noise."""
    out = []
    for i, (c, n) in enumerate(cells):
        d = c / (6 * n)
        out.append(
            {
                "params_total": n,
                "tokens": d,
                "flops_exact": c,
                "budget_flops": c,
                "final_val_loss": float(LAW(n, d) * np.exp(noise * rng.standard_normal())),
                "status": "completed",
                "cell_id": f"x{i}",
            }
        )
    return pd.DataFrame(out)


def _grid(budgets):
    return [(c, LAW.optimal(c)[0] * f) for c in budgets for f in np.geomspace(1 / 4, 4, SIZES)]


def _width(table, seed, method="isoflop"):
    fit = analysis.fit(analysis.load(table), method, bootstrap=200, seed=seed)
    ci = fit.ci["a"]
    return ci["hi"] - ci["lo"], ci["lo"] <= LAW.a <= ci["hi"]


def one_seed(seed: int, flops: float, noise: float) -> dict:
    rng = np.random.default_rng(seed)
    start = _rows(_grid(START), rng, noise)
    naive_budgets, c, spent = [], START[-1], 0.0
    while spent + SIZES * c * 3 <= flops * (1 + 1e-9):
        c *= 3
        naive_budgets.append(c)
        spent += SIZES * c
    naive = pd.concat([start, _rows(_grid(naive_budgets), np.random.default_rng(seed + 10_000), noise)])
    p = propose(analysis.load(start), flops, bootstrap=200, seed=seed)
    designed = pd.concat(
        [start, _rows([(x["budget"], x["n"]) for x in p["cells"]], np.random.default_rng(seed + 10_000), noise)]
    )
    wn, cn = _width(naive, seed)
    wd, cd = _width(designed, seed)
    ws, cs = _width(start, seed, "vpnls")  # the starting grid alone, fitted as a law (no new FLOPs)
    wv, cv = _width(naive, seed, "vpnls")
    return {
        "start_vpnls_width": ws,
        "start_vpnls_covers": cs,
        "start_flops": float(sum(c for c, _ in _grid(START))),
        "naive_vpnls_width": wv,
        "naive_vpnls_covers": cv,
        "naive_width": wn,
        "naive_covers": cn,
        "naive_flops": spent,
        "designed_width": wd,
        "designed_covers": cd,
        "designed_flops": p["flops_proposed"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.01, help="loss noise (log-normal sigma; default 0.01)")
    ap.add_argument(
        "--flops",
        type=float,
        default=SIZES * (3e18 + 9e18),
        help="allowance F (default 6e19: exactly the naive extension's next two budgets, 3e18 and 9e18, "
        "five runs each, so both sides spend the same)",
    )
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = pd.DataFrame([one_seed(s, args.flops, args.noise) for s in range(args.seeds)])
    ratio = rows.designed_width.mean() / rows.naive_width.mean()
    print(
        f"law: CHINCHILLA_EPOCH (true a = {LAW.a:.4f}); start budgets {START}, {SIZES} sizes each; "
        f"noise {args.noise}; "
        f"allowance F = {args.flops:.3g} FLOPs; {args.seeds} seeds; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"naive    (next budgets up):  FLOPs {rows.naive_flops.mean():.3g}, mean 95% CI width of a "
        f"{rows.naive_width.mean():.4f} (median {rows.naive_width.median():.4f}), "
        f"covers true a {rows.naive_covers.mean():.0%}"
    )
    print(
        f"designed (lab design):       FLOPs {rows.designed_flops.mean():.3g}, mean 95% CI width of a "
        f"{rows.designed_width.mean():.4f} (median {rows.designed_width.median():.4f}), covers true a "
        f"{rows.designed_covers.mean():.0%}"
    )
    print(
        f"vpnls on the starting grid alone: FLOPs {rows.start_flops.mean():.3g} (no allowance spent), mean 95% CI "
        f"width {rows.start_vpnls_width.mean():.4f}, covers true a {rows.start_vpnls_covers.mean():.0%}; vpnls on "
        f"the naive table: {rows.naive_vpnls_width.mean():.4f}, covers {rows.naive_vpnls_covers.mean():.0%}"
    )
    print(
        f"ratio designed / naive CI width: {ratio:.3f} (mean), "
        f"{rows.designed_width.median() / rows.naive_width.median():.3f} (median); "
        f"{time.perf_counter() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
