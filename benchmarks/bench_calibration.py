"""Does an interval calibrated by one table's audit cover the truth across independent tables?

Run:  python benchmarks/bench_calibration.py TABLE --tables 40 --copies 100 --save runs.pkl
      python benchmarks/bench_calibration.py --load runs.pkl          (re-score saved runs)

The known law is TABLE's own vpnls fit, the noise its residual std (`analysis.synthetic.noise_of`);
`--tables` independent tables with TABLE's design (its sizes, tokens, budgets, row for row) are drawn
from that law (seeds `--seed`, `--seed`+1, ...). Each table is then treated as `lab fit TABLE
--audit N` treats a real one: fitted (vpnls with a 100-resample bootstrap, isoflop with its own
interval), and audited — `--copies` copies drawn from *its own* fitted law and noise, each fitted
the same way. The first n copies (n = 20, the study's default audit, and all of them) give the
factor k (`analysis.uncertainty.calibrate`) by two rules: `conformal` (the conformal rank alone) and
`lab` (`scale_factor`: k only where the copies resolve the raw interval's departure from nominal,
else 1). Across tables:

    coverage = share of tables whose interval (raw, or k x half-widths) holds the known law's a
    width = mean (hi - lo) over tables;  k = mean, and the share of tables with k < 1 and k > 1
"""

from __future__ import annotations

import argparse
import pickle
import time

import numpy as np

from analysis.inputs import load
from analysis.options import FitOptions
from analysis.synthetic import noise_of, simulate_like
from analysis.uncertainty.audit import estimate, truth_of
from analysis.uncertainty.calibrate import conformal_k, needed_scale, scale_factor

METHODS = ("vpnls", "isoflop")
RULES = {"conformal": conformal_k, "lab": scale_factor}


def draw(table: str, tables: int, copies: int, seed: int, save: str | None = None) -> dict:
    """Every table's fit and its copies' fits (rows of `estimate`), with the laws they came from
    (pickled to `save` after every table)."""
    base = load(table).data
    truth, res = truth_of(base)
    sigma = noise_of(base, res)["sigma"]
    out = {"truth_a": truth.a, "sigma": sigma, "tables": []}
    t0 = time.perf_counter()
    for t in range(tables):
        data = simulate_like(base, truth, sigma, np.random.default_rng(seed + t))
        law, r = truth_of(data)
        s = noise_of(data, r)["sigma"]
        real = {m: estimate(data, m, 100, 0.95, 0, FitOptions()) for m in METHODS}
        rng = np.random.default_rng(10_000 + seed + t)
        rows = {m: [] for m in METHODS}
        for i in range(copies):
            c = simulate_like(data, law, s, rng)
            for m in METHODS:
                rows[m].append(estimate(c, m, 100, 0.95, i, FitOptions()))
        out["tables"].append({"law_a": law.a, "sigma": s, "real": real, "copies": rows})
        print(f"  table {t}: a {law.a:.4f}, sigma {s:.4g}; {time.perf_counter() - t0:.0f} s", flush=True)
        if save:
            with open(save, "wb") as fh:
                pickle.dump(out, fh)
    return out


def _k(rows, truth: float, n: int, rule) -> float | None:
    ok = np.array([r for r in rows[:n] if r is not None], float).reshape(-1, 6)
    return rule(needed_scale(ok[:, 0], ok[:, 2], ok[:, 3], truth))


def summarise(runs: dict) -> list[str]:
    """One line per method, copies and rule: coverage of the known a across tables, widths, k."""
    a = runs["truth_a"]
    copies = len(runs["tables"][0]["copies"]["vpnls"])
    lines = [f"{len(runs['tables'])} tables, known a = {a:.4f}, noise {runs['sigma']:.4g}; {copies} copies each"]
    for m in METHODS:
        real = [t["real"][m] for t in runs["tables"]]
        keep = [i for i, r in enumerate(real) if r is not None and np.isfinite(r[2]) and np.isfinite(r[3])]
        est, lo, hi = (np.array([real[i][j] for i in keep]) for j in (0, 2, 3))
        need = needed_scale(est, lo, hi, a)
        lines.append(
            f"{m:8} raw: coverage {np.mean(need <= 1):.3f}, width {np.mean(hi - lo):.4f}, "
            f"rmse {np.sqrt(np.mean((est - a) ** 2)):.4f} ({len(keep)} tables)"
        )
        for n in sorted({20, copies}):
            for name, rule in RULES.items():
                ks = [_k(runs["tables"][i]["copies"][m], runs["tables"][i]["law_a"], n, rule) for i in keep]
                k = np.array([1.0 if x is None else x for x in ks])
                lines.append(
                    f"{m:8} {n:3} copies, {name:9}: coverage {np.mean(need <= k):.3f}, width "
                    f"{np.mean(k * (hi - lo)):.4f}, k mean {k.mean():.3f} (median {np.median(k):.3f}), "
                    f"k<1 in {np.mean(k < 1):.0%}, k>1 in {np.mean(k > 1):.0%} of tables"
                )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", nargs="?")
    p.add_argument("--tables", type=int, default=40)
    p.add_argument("--copies", type=int, default=100)
    p.add_argument("--seed", type=int, default=2000)
    p.add_argument("--save")
    p.add_argument("--load", nargs="+", help="saved runs (several: their tables pooled)")
    args = p.parse_args()
    if args.load:
        parts = [pickle.load(open(p, "rb")) for p in args.load]
        runs = {**parts[0], "tables": [t for p in parts for t in p["tables"]]}
    else:
        t0 = time.perf_counter()
        runs = draw(args.table, args.tables, args.copies, args.seed, args.save)
        print(f"drawn in {time.perf_counter() - t0:.0f} s")
    print("\n".join(summarise(runs)))


if __name__ == "__main__":
    main()
