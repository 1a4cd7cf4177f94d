"""The designer against the naive extension of a grid at equal FLOPs, and against the full grid, on a known law.

Run:  python benchmarks/bench_design.py              (40 seeds; ~10 s a seed on the 2-core VM)
      python benchmarks/bench_design.py --seeds 100  (tighter averages)

Per seed: a starting IsoFLOP grid is drawn from a known law (`analysis.CHINCHILLA_EPOCH`, true
a = beta/(alpha+beta) = 0.514) with log-normal loss noise: budgets 1e17, 3e17, 1e18, five sizes a
factor 2 apart around each budget's true optimum (7e18 FLOPs). The naive ladder extends it the way a
study file would: the next budgets up (x3 each: 3e18, 9e18, 2.7e19, 8.1e19), five sizes around each
true optimum (the naive side is even given the truth). Its first two rungs cost F = 6e19 FLOPs (the
allowance), all four make the **full grid** (6.07e20 FLOPs in all). The **designed** table is the
start plus `analysis.design.propose(start, F)` (from the starting table alone: its own vpnls law
and noise, not the truth), the proposed runs drawn from the same law and noise.

Every table is refitted by the same estimator, `vpnls` with a 200-resample row bootstrap (what
`lab fit --method vpnls --bootstrap 200` prints; the estimator the designer designs for and the
audit trusts). Figures, means over seeds:

    width            = hi - lo of the 95% interval of a;  covers = share of seeds whose interval holds 0.514
    designed / naive = mean width designed / mean width naive, both spending F on top of the start
    naive FLOPs for the designed width = the naive ladder's FLOPs (log-log interpolation of its mean
                       width between rungs) at the designed table's mean width
    share of the full grid = the designed table's FLOPs (start + F) / the full grid's FLOPs

Same seeds, one process; the noise of a seed's ladder and of its designed runs are separate streams.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

import analysis
from analysis import design
from analysis.design import propose

LAW = analysis.CHINCHILLA_EPOCH
START = (1e17, 3e17, 1e18)
LADDER = (3e18, 9e18, 2.7e19, 8.1e19)
SIZES = 5
ALLOWANCE = SIZES * (LADDER[0] + LADDER[1])  # 6e19: the naive extension's first two rungs


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


def _width(table, seed):
    fit = analysis.fit(analysis.load(table), "vpnls", bootstrap=200, seed=seed)
    ci = fit.ci["a"]
    return ci["hi"] - ci["lo"], ci["lo"] <= LAW.a <= ci["hi"]


def one_seed(seed: int, flops: float, noise: float) -> dict:
    rng = np.random.default_rng(seed)
    start = _rows(_grid(START), rng, noise)
    ladder = _rows(_grid(LADDER), np.random.default_rng(seed + 10_000), noise)
    out = {"start_flops": float(sum(c for c, _ in _grid(START)))}
    for rung in range(1, len(LADDER) + 1):  # nested: rung r = the start plus the first r budgets
        w, cov = _width(pd.concat([start, ladder.iloc[: SIZES * rung]]), seed)
        out |= {
            f"naive{rung}_width": w,
            f"naive{rung}_covers": cov,
            f"naive{rung}_flops": SIZES * sum(LADDER[:rung]),
        }
    t0 = time.perf_counter()
    p = propose(analysis.load(start), flops, bootstrap=200, seed=seed)
    out["design_seconds"] = time.perf_counter() - t0
    new = _rows([(x["budget"], x["n"]) for x in p["cells"]], np.random.default_rng(seed + 20_000), noise)
    w, cov = _width(pd.concat([start, new]), seed)
    out |= {
        "designed_width": w,
        "designed_covers": cov,
        "designed_flops": p["flops_proposed"],
        "designed_runs": len(p["cells"]),
        "designed_expected_ratio": p["expected_std_after"] / p["expected_std_now"],
    }
    return out


def naive_flops_for(width: float, flops, widths) -> float | None:
    """The ladder's FLOPs at `width` (log-log interpolation; None beyond the full grid)."""
    lf, lw = np.log(np.asarray(flops)), np.log(np.asarray(widths))
    if np.log(width) < lw.min():
        return None
    return float(np.exp(np.interp(-np.log(width), -lw, lf)))


def report(rows: pd.DataFrame, args) -> None:
    start = rows.start_flops.mean()
    full = start + rows[f"naive{len(LADDER)}_flops"].mean()
    ladder = [(rows[f"naive{r}_flops"].mean(), rows[f"naive{r}_width"].mean()) for r in range(1, len(LADDER) + 1)]
    for r, (f, w) in enumerate(ladder, 1):
        print(
            f"naive ladder, {r} budget(s) up: +{f:.3g} FLOPs ({(start + f) / full:.1%} of the full grid), "
            f"mean 95% width of a {w:.4f}, covers {rows[f'naive{r}_covers'].mean():.0%}"
        )
    dw = rows.designed_width.mean()
    same = [r for r, (f, _) in enumerate(ladder, 1) if abs(f / args.flops - 1) < 1e-6]  # the rung that spends F
    nw = rows[f"naive{same[0]}_width"] if same else None
    print(
        f"designed (lab design, F = {args.flops:.3g}): +{rows.designed_flops.mean():.3g} FLOPs "
        f"({(start + rows.designed_flops.mean()) / full:.1%} of the full grid), "
        f"{rows.designed_runs.mean():.0f} runs (a naive rung: {SIZES}), "
        f"mean 95% width of a {dw:.4f} (median {rows.designed_width.median():.4f}), "
        f"covers {rows.designed_covers.mean():.0%}; designer's own expected std ratio "
        f"{rows.designed_expected_ratio.mean():.3f}; designer {rows.design_seconds.mean():.1f} s a seed"
    )
    need = naive_flops_for(dw, [f for f, _ in ladder], [w for _, w in ladder])
    equal = (
        f"ratio designed / naive width at equal FLOPs (rung {same[0]}): {dw / nw.mean():.3f} (mean), "
        f"{rows.designed_width.median() / nw.median():.3f} (median); "
        if same
        else "no naive rung spends exactly F; "
    )
    print(
        equal
        + f"designed / full-grid width: {dw / ladder[-1][1]:.3f}; naive FLOPs for the designed width: "
        + ("beyond the full grid" if need is None else f"+{need:.3g} ({need / rows.designed_flops.mean():.1f}x)")
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.01, help="loss noise (log-normal sigma; default 0.01)")
    ap.add_argument(
        "--flops", type=float, default=ALLOWANCE, help="allowance F (default 6e19: the ladder's rungs 1-2)"
    )
    ap.add_argument(
        "--span",
        type=float,
        default=design.SPAN,
        help=f"the designer's candidate sizes within this factor of N_opt either side (default {design.SPAN:g}; "
        "4 keeps them within the naive grid's own spread)",
    )
    args = ap.parse_args()
    design.SPAN = args.span
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    rows = pd.DataFrame([one_seed(s, args.flops, args.noise) for s in range(args.seeds)])
    print(
        f"law: CHINCHILLA_EPOCH (true a = {LAW.a:.4f}); start budgets {START}, {SIZES} sizes each; noise "
        f"{args.noise}; designer's size span x{args.span:g}; every table refitted by vpnls, 200-resample "
        f"bootstrap; {args.seeds} seeds; "
        f"load average {load0:.1f} -> {os.getloadavg()[0]:.1f}; {time.perf_counter() - t0:.0f} s"
    )
    report(rows, args)


if __name__ == "__main__":
    main()
