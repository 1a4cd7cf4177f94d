"""How many seeds a study's design needs: its validation rung re-predicted on every K-seed subset of
several study directories of the same design, and each subset's trusted exponent.

Run:  python benchmarks/bench_seed_subsets.py --study DIR [DIR ...] --k 2 3 4 --out /tmp/subsets.json

The directories are one design (the same budgets and sizes) at disjoint seeds, each the output of `lab
study ... --validate K` (pinned alike: pinning changes the numerics). Every K-seed subset of their pooled
rows is analysed as `lab study` analyses its grid (`analysis.reports.reporting.analyse`: the study's
bootstrap and audit, target 10x its largest budget), the rung's law is the one `lab study --validate`
predicts with (`lab.study.analyze.prediction_fit`), and `analysis.uncertainty.rung.rung_prediction`
predicts every measured validation run of all the directories (the same compute): per subset the
trusted method's a and its interval, the form term k, the run noise, each run's PI edges and whether its
measured loss fell inside. A summary per K counts the subsets whose PIs are all within `--pi-target` of
their predictions and whose a is within `--a-target`, and the (subset, run) pairs inside.

Subsets share seeds, so they are not independent draws: the counts say how often a K-seed table of
these seeds meets a target, not a probability with an error bar. The validation runs were measured
before this re-analysis (not a blind test). benchmarks/README.md, "How many seeds...", has the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd


def pooled(dirs: list[Path]) -> tuple[pd.DataFrame, list[dict], float]:
    """The directories' completed rows (seeds disjoint across directories), their measured validation
    runs (cell_id, n, d, measured) and the validation compute."""
    frames, runs, flops, seen = [], [], set(), {}
    for d in dirs:
        df = pd.read_csv(d / "results.csv")
        for s in sorted(df["seed"].unique()):
            if s in seen:
                sys.exit(f"bench_seed_subsets: seed {s} is in {seen[s]} and in {d}; subsets need disjoint seeds")
            seen[s] = d
        frames.append(df)
        val = d / "validation.json"
        if val.is_file():
            v = json.loads(val.read_text())
            measured = [r for r in v["runs"] if r.get("measured") is not None]
            runs += [{k: r[k] for k in ("cell_id", "n", "d", "measured")} for r in measured]
            flops |= {float(v["flops"])} if measured else set()
    if not runs:
        sys.exit("bench_seed_subsets: no measured validation runs (run lab study ... --validate K first)")
    if len(flops) > 1:
        sys.exit(f"bench_seed_subsets: the validation runs are at different computes {sorted(flops)}")
    return pd.concat(frames, ignore_index=True), runs, flops.pop()


def subset_record(rows: pd.DataFrame, seeds: tuple, runs: list, flops: float, bootstrap: int, audit: int) -> dict:
    """One subset's table analysed as `lab study` does and its rung's predictions of `runs`."""
    from analysis.options import FitOptions
    from analysis.reports.reporting import analyse
    from analysis.uncertainty.rung import rung_prediction
    from lab.study.analyze import DEFAULT_LAWS, prediction_fit

    t0 = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="seeds-"))
    try:
        table = rows[rows["seed"].isin(seeds)]
        table.to_csv(work / "results.csv", index=False)
        target = 10 * float(table["budget_flops"].max())
        options = FitOptions(bootstrap=bootstrap, target_flops=target, audit=audit or None)
        an = analyse(str(work), options=options, methods=DEFAULT_LAWS)
        method, fit, shape = prediction_fit(an)
        n, d = [r["n"] for r in runs], [r["d"] for r in runs]
        pred, form, scheme = rung_prediction(fit, shape, an["study"].data, an["options"], n, d, flops)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p, lo, hi = (np.asarray(pred[c], float) for c in ("predicted", "pi_lo", "pi_hi"))
    measured = np.array([r["measured"] for r in runs])
    trusted = an["verdict"]["trusted"]
    tf = an["suite"].get(trusted) if trusted else None
    ci = ((tf.ci or {}).get("a") or {}) if tf is not None else {}
    return {
        "seeds": [int(s) for s in seeds],
        "trusted": trusted,
        "method": method,
        "a": tf.params.get("a") if tf is not None else None,
        "a_lo": ci.get("lo"),
        "a_hi": ci.get("hi"),
        "E": fit.params.get("E"),
        "k": float(form.get("k", 0.0)),
        "sigma": float(pred["noise"]["sigma"]),
        "law_draws": scheme,
        "edge": float(np.max(np.maximum(1 - lo / p, hi / p - 1))),
        "pi_rel": [[float(a), float(b)] for a, b in zip(lo / p - 1, hi / p - 1)],  # PI bounds / predicted - 1
        "rel_error": [float(v) for v in measured / p - 1],
        "inside": int(np.sum((lo <= measured) & (measured <= hi))),
        "n_runs": len(runs),
        "seconds": time.perf_counter() - t0,
    }


def line(r: dict) -> str:
    a = "no trusted method"
    if r["a_lo"] is not None:
        a = f"{r['trusted']} a {r['a']:.3f} [{r['a_lo']:.3f}, {r['a_hi']:.3f}]"
    return (
        f"seeds {r['seeds']}: {a}, k {r['k']:.3g}, PI edge {100 * r['edge']:.1f}%, "
        f"inside {r['inside']}/{r['n_runs']} ({r['seconds']:.0f} s)"
    )


def summary(records: list[dict], pi_target: float, a_target: float) -> dict:
    """Per subset size: subsets within the PI target, with a within its target, and runs inside."""
    out = {}
    for k in sorted({len(r["seeds"]) for r in records}):
        rs = [r for r in records if len(r["seeds"]) == k]
        half = [(r["a_hi"] - r["a_lo"]) / 2 if r["a_lo"] is not None else np.inf for r in rs]
        out[str(k)] = {
            "subsets": len(rs),
            "pi_within_target": sum(r["edge"] <= pi_target for r in rs),
            "a_within_target": sum(h <= a_target for h in half),
            "runs_inside": sum(r["inside"] for r in rs),
            "runs": sum(r["n_runs"] for r in rs),
            "edge_median": float(np.median([r["edge"] for r in rs])),
            "edge_max": float(np.max([r["edge"] for r in rs])),
            "k_median": float(np.median([r["k"] for r in rs])),
            "mean_abs_error": float(np.mean([np.mean(np.abs(r["rel_error"])) for r in rs])),
        }
    return out


def each_subset(rows, subsets, runs, flops, args):
    """The subsets' records in order, `args.workers` processes at a time."""
    rest = (runs, flops, args.bootstrap, args.audit)
    if args.workers <= 1:
        yield from (subset_record(rows, s, *rest) for s in subsets)
        return
    with ProcessPoolExecutor(args.workers) as pool:
        yield from pool.map(subset_record, *zip(*[(rows, s, *rest) for s in subsets]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--study", nargs="+", required=True, type=Path, help="study directories, disjoint seeds")
    ap.add_argument("--k", nargs="+", type=int, default=[2, 3], help="subset sizes (seeds per table)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--bootstrap", type=int, default=200, help="as the study (Study.bootstrap)")
    ap.add_argument("--audit", type=int, default=20, help="as the study (Study.audit)")
    ap.add_argument("--pi-target", type=float, default=0.05)
    ap.add_argument("--a-target", type=float, default=0.12)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    rows, runs, flops = pooled(args.study)
    seeds = sorted(int(s) for s in rows["seed"].unique())
    subsets = [s for k in args.k for s in itertools.combinations(seeds, k)]
    records = []
    for r in each_subset(rows, subsets, runs, flops, args):
        records.append(r)
        print(line(r), flush=True)
    result = {"seeds": seeds, "validation_runs": runs, "flops": flops, "subsets": records}
    result["summary"] = summary(records, args.pi_target, args.a_target)
    args.out.write_text(json.dumps(result, indent=1))
    for k, s in result["summary"].items():
        print(
            f"K={k}: PIs within {100 * args.pi_target:g}% {s['pi_within_target']}/{s['subsets']}, "
            f"a within {args.a_target:g} {s['a_within_target']}/{s['subsets']}, runs inside "
            f"{s['runs_inside']}/{s['runs']}, PI edge median {100 * s['edge_median']:.1f}% (max "
            f"{100 * s['edge_max']:.1f}%), k median {s['k_median']:.3g}"
        )


if __name__ == "__main__":
    main()
