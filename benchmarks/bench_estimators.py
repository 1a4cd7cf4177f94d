"""Allocation estimators against known truth: bias, RMSE and 95% coverage of a, side by side.

Run:  python benchmarks/bench_estimators.py                 (40 draws per design; ~5 min of CPU)
      python benchmarks/bench_estimators.py --auto-all --auto-copies 40 --auto-bootstrap 50 --pi-draws 40

Per design, `--draws` IsoFLOP tables are drawn from a known law (seeds 1000, 1001, ...): budgets
1e17, 1e18, 1e19, 1e20, seven sizes per budget log-spaced over a factor 4 either side of the
budget's true optimum times an offset, log-normal loss noise (`--noise`, default 0.01). Each table
is fitted by

- vpnls and parametric: Approach 3, the fitted law's optimum exponent a = beta/(alpha+beta), with
  its row-bootstrap interval;
- isoflop (Akima minima, the lab's default) and isoflop-quadratic (a parabola per budget, the
  classic Approach 2), with their noise-draw intervals;
- isoflop-corrected: isoflop's a minus the bias `lab fit --audit` measures on that table (its own
  design simulated `--auto-copies` times from its vpnls law), the same interval shifted;
- auto: `lab fit --method auto`'s choice on that table (the audit's lowest-RMSE method among those
  whose coverage is 90-98%), and its a and interval — on the issue's design (alpha != beta, sizes
  off-centre by x2) unless `--auto-all`; isoflop-corrected comes with it.

The audit per draw here runs vpnls and isoflop only (parametric minimises the same Huber objective
as vpnls and gives the same a to ~1e-9 on these tables; `lab fit --method auto` audits all three).
bias = mean(a_hat) - a, RMSE = sqrt(mean((a_hat - a)^2)), coverage = share of draws whose 95%
interval holds the true a. One process, the same tables for every method.

`--pi-draws K` adds the back-test of prediction intervals: K tables with every cell run twice
(two seeds), budgets 1e17 ... 1e19 (five, x3 apart), the largest held out; the parametric law
fitted on the rest (100-resample bootstrap) predicts each held-out run with a 95% interval from the
law's uncertainty alone, and with the run-to-run noise added (`analysis.uncertainty.intervals.run_intervals`);
the figures are the share of held-out runs inside each, and the mean half-width.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from analysis.laws import Chinchilla
from analysis.options import FitOptions
from analysis.synthetic import CHINCHILLA_EPOCH, isoflop_table
from analysis.table import fit_data
from analysis.uncertainty.audit import audit, estimate, run_copies, score

ASYM = Chinchilla(E=1.8, A=400.0, B=2000.0, alpha=0.30, beta=0.40)  # a = 0.5714
BUDGETS = (1e17, 1e18, 1e19, 1e20)
DESIGNS = {  # name: (law, offset of each budget's size grid from its true optimum)
    "Epoch law (alpha~beta), centred": (CHINCHILLA_EPOCH, 1.0),
    "alpha=0.30 beta=0.40, sizes x2 off-centre": (ASYM, 2.0),
    "alpha=0.30 beta=0.40, sizes x1/2 off-centre": (ASYM, 0.5),
    "alpha=0.30 beta=0.40, x1/2 -> x2 across budgets": (ASYM, np.geomspace(0.5, 2.0, len(BUDGETS))),
}


def tables(law, offset, draws: int, noise: float):
    return [
        fit_data(
            isoflop_table(law, BUDGETS, n_per_budget=7, span=4.0, noise=noise, offset=offset, seed=1000 + s),
            need_budget=True,
        )
        for s in range(draws)
    ]


def audited(data, copies: int, bootstrap: int, seed: int) -> tuple[tuple, tuple, float, str]:
    """One table's auto row (a, b, lo_a, hi_a, lo_b, hi_b of the method its audit chose, with a
    100-resample interval), its isoflop-corrected row, the audit's seconds and the choice."""
    t0 = time.perf_counter()
    r = audit(data, copies=copies, methods=("vpnls", "isoflop"), bootstrap=bootstrap, seed=seed)
    took = time.perf_counter() - t0
    rows = {m: estimate(data, m, 100, 0.95, seed, FitOptions()) for m in ("vpnls", "isoflop")}
    chosen = r["choice"]["method"] or "vpnls"
    auto = rows[chosen]
    bias = r["methods"]["isoflop"]["bias_a"] or 0.0
    iso = rows["isoflop"]
    corrected = (iso[0] - bias, iso[1] + bias, iso[2] - bias, iso[3] - bias, iso[4] + bias, iso[5] + bias)
    return auto, corrected, took, chosen


AUTO_DESIGN = "alpha=0.30 beta=0.40, sizes x2 off-centre"  # the test of auto (the others: --auto-all)


def bench_design(law, offset, args, auto: bool) -> dict:
    data = tables(law, offset, args.draws, args.noise)
    truth = (law.a, law.b)
    out = run_copies(data, truth, ("vpnls", "parametric", "isoflop"), bootstrap=args.bootstrap)
    out["isoflop-quadratic"] = run_copies(
        data, truth, ("isoflop",), bootstrap=args.bootstrap, options=FitOptions(iso_method="quadratic")
    )["isoflop"]
    if args.auto_copies and auto:
        auto, corr, seconds, chosen = [], [], 0.0, []
        for i, d in enumerate(data):
            a, c, s, m = audited(d, args.auto_copies, args.auto_bootstrap, seed=i)
            auto.append(a), corr.append(c), chosen.append(m)
            seconds += s
        out["isoflop-corrected"] = score(corr, *truth, seconds)
        out["auto"] = score(auto, *truth, seconds)
        out["auto"]["chosen"] = {m: chosen.count(m) for m in set(chosen)}
    return out


def pi_backtest(draws: int, noise: float) -> dict:
    """Coverage of held-out runs by law-only and law + run-noise 95% intervals (see docstring)."""
    from analysis.uncertainty.holdout import backtest
    from analysis.uncertainty.intervals import run_intervals

    inside = {"law only": [], "law + run noise": []}
    half = {k: [] for k in inside}
    for s in range(draws):
        t = isoflop_table(
            ASYM, (1e17, 3e17, 1e18, 3e18, 1e19), n_per_budget=7, span=4.0, noise=noise, seed=2000 + s
        )
        t2 = isoflop_table(
            ASYM, (1e17, 3e17, 1e18, 3e18, 1e19), n_per_budget=7, span=4.0, noise=noise, seed=3000 + s
        )
        data = fit_data(pd.concat([t, t2.assign(seed=1)]), need_budget=True)
        bt = backtest(data, "parametric", holdout=1, pi_bootstrap=100, pi_seed=s)
        pts, train = bt["points"], bt["fit"]
        train_rows = bt["train_data"]
        for name, with_noise in (("law only", False), ("law + run noise", True)):
            pi = run_intervals(train, pts["N"], pts["D"], train_rows, seed=s, run_noise=with_noise)
            loss = pts["loss"].to_numpy()
            inside[name] += list((pi["pi_lo"] <= loss) & (loss <= pi["pi_hi"]))
            half[name] += list((pi["pi_hi"] - pi["pi_lo"]) / (2 * pi["predicted"]))
    return {k: (float(np.mean(inside[k])), float(np.mean(half[k])), len(inside[k])) for k in inside}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=40)
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--auto-copies", type=int, default=20, help="audit copies per table for auto (0: skip auto)")
    ap.add_argument("--auto-bootstrap", type=int, default=20)
    ap.add_argument("--auto-all", action="store_true", help="run auto on every design (default: the issue's)")
    ap.add_argument("--bootstrap", type=int, default=100, help="resamples behind each method's interval")
    ap.add_argument("--pi-draws", type=int, default=0, help="back-test prediction intervals on K tables")
    ap.add_argument("--only-pi", action="store_true", help="skip the estimator table")
    ap.add_argument("--only-auto", action="store_true", help="only the design auto is tested on")
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(
        f"{args.draws} draws per design; budgets {BUDGETS}, 7 sizes over x4 either side; noise {args.noise}; "
        f"{args.bootstrap}-resample intervals; "
        f"auto audits {args.auto_copies} copies x {args.auto_bootstrap} resamples; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print("| design | true a | method | mean a | bias a | RMSE a | coverage 95% | mean CI width | s/table |")
    print("|---|---|---|---|---|---|---|---|---|")
    designs = {} if args.only_pi else {AUTO_DESIGN: DESIGNS[AUTO_DESIGN]} if args.only_auto else DESIGNS
    for name, (law, offset) in designs.items():
        auto = args.auto_all or name == AUTO_DESIGN
        for m, s in bench_design(law, offset, args, auto).items():
            extra = f" (chose {s['chosen']})" if "chosen" in s else ""
            print(
                f"| {name} | {law.a:.4f} | {m}{extra} | {s['mean_a']:.4f} | {s['bias_a']:+.4f} | "
                f"{s['rmse_a']:.4f} | "
                f"{s['coverage_a']:.0%} | {s['ci_width_a']:.3f} | {s['seconds'] / max(s['n'], 1):.2f} |",
                flush=True,
            )
    if args.pi_draws:
        for name, (cov, half, n) in pi_backtest(args.pi_draws, args.noise).items():
            print(
                f"prediction intervals, {name}: {cov:.1%} of {n} held-out runs inside, mean half-width ±{half:.2%}"
            )
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
