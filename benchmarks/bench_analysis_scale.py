"""Analysis at scale: `lab fit --method parametric` and `lab plot` on a 100,000-row results table,
timed with their peak memory, and the fit checked against an exact evaluation on every row.

Run:  python benchmarks/bench_analysis_scale.py             (~2 min on 2 cores)
      python benchmarks/bench_analysis_scale.py --exact     (+ the unsubsampled screen, ~4 min more)

Table: `analysis.simulate_isoflop` from Epoch's fitted law, 20 budgets 1e17-1e21 FLOPs x 25 sizes
x 200 seeds (noise 1% in loss) = 100,000 rows. Each command runs in a fresh process; peak RSS is
that process's `ru_maxrss` (resource.getrusage of the child), wall time includes start-up.

Checks: the reported objective equals the float64 Huber sum over all rows recomputed here from
the fitted parameters; scipy L-BFGS-B (analytic gradient) started at our optimum on all rows
cannot lower it by more than float64 noise; with --exact, the fit without the subsample screen
(every init on every row, in lane chunks) reaches the same objective.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t0 = time.perf_counter(); r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(r.stdout); sys.stderr.write(r.stderr)\n"
    "print(json.dumps({'rc': r.returncode, 'seconds': time.perf_counter() - t0,\n"
    "  'peak_rss_mb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}), file=sys.stderr)\n"
)


def measure(args: list[str]) -> tuple[dict, str, str]:
    """Run `lab ARGS` (or `python -m analysis ARGS`) in a fresh process: (timing, stdout, stderr)."""
    import shutil

    lab = shutil.which("lab")
    cmd = ([lab] if lab else [sys.executable, "-m", "analysis"]) + args
    r = subprocess.run([sys.executable, "-c", WRAPPER, *cmd], capture_output=True, text=True, cwd=ROOT)
    lines = r.stderr.strip().splitlines()
    stats = json.loads(lines[-1])
    if stats["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n" + "\n".join(lines[:-1]))
    return stats, r.stdout, "\n".join(lines[:-1])


def make_table(path: Path, rows: int, seed: int = 0) -> None:
    import analysis

    budgets, sizes = 20, 25
    t = analysis.simulate_isoflop(
        budgets=tuple(np.geomspace(1e17, 1e21, budgets)),
        n_per_budget=sizes,
        replicates=max(1, rows // (budgets * sizes)),
        noise=0.01,
        seed=seed,
    )
    t.to_csv(path, index=False)


def check_fit(path: Path, fit: dict) -> dict:
    """The exact float64 objective over all rows, and what scipy can still gain from our optimum."""
    from scipy.optimize import minimize

    import analysis
    from analysis.solvers.huber_lse import PARAM_NAMES, huber_objective
    from analysis.solvers.reference import huber_sum_and_grad

    d = analysis.load(path, need_budget=False).data
    theta = np.array([fit["lse_params"][p] for p in PARAM_NAMES])
    exact = huber_objective(theta, d.N, d.D, d.L)
    args = (np.log(d.N), np.log(d.D), np.log(d.L), 1e-3)
    r = minimize(huber_sum_and_grad, theta, args=args, jac=True, method="L-BFGS-B")
    return {"exact": exact, "scipy_from_ours": float(r.fun), "rows": len(d)}


def exact_screen(path: Path) -> tuple[float, float]:
    """(seconds, objective) of the fit screening every init on every row (lane chunks, in process)."""
    import analysis
    from analysis.fits.parametric import fit_parametric

    d = analysis.load(path, need_budget=False).data
    t0 = time.perf_counter()
    r = fit_parametric(d, screen_rows=None, screen_elements=1 << 23)
    return time.perf_counter() - t0, r.objective


def report(rows, fit, check, plot, exact) -> None:
    print(f"\n{check['rows']:,}-row table; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}\n")
    print(f"{'command':58s} {'seconds':>8s} {'peak RSS':>10s}")
    for name, s in rows:
        print(f"{name:58s} {s['seconds']:8.1f} {s['peak_rss_mb']:8.0f} MB")
    print(f"\nreported objective            {fit['objective']:.12e}")
    print(
        f"exact float64 sum, all rows   {check['exact']:.12e}  (relative difference "
        f"{abs(fit['objective'] - check['exact']) / check['exact']:.1e})"
    )
    print(
        f"scipy L-BFGS-B from ours      {check['scipy_from_ours']:.12e}  "
        f"(gain {check['exact'] - check['scipy_from_ours']:.1e})"
    )
    if exact:
        print(
            f"unsubsampled screen (in process, lane chunks): {exact[0]:.1f} s, objective {exact[1]:.12e} "
            f"(ours - it: {fit['objective'] - exact[1]:+.1e})"
        )
    p = fit
    print(
        f"fit: E={p['E']:.4f} A={p['A']:.1f} B={p['B']:.1f} alpha={p['alpha']:.4f} beta={p['beta']:.4f} "
        f"(simulated from E=1.8172 A=477.83 B=2143.4 alpha=0.34731 beta=0.36717)"
    )
    if plot:
        print(f"\nlab plot progress lines:\n{plot}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--skip-plot", action="store_true")
    ap.add_argument("--exact", action="store_true", help="also fit without the subsample screen (slow)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "results.csv"
        make_table(table, args.rows)
        measure(["fit", str(table), "--json"])  # fills the persistent compilation cache
        rows = []
        s, out, _ = measure(["fit", str(table), "--method", "parametric", "--json"])
        rows.append(("lab fit --method parametric --json", s))
        fit = json.loads(out)
        s, _, _ = measure(["fit", str(table), "--method", "parametric", "--bootstrap", "200", "--json"])
        rows.append(("lab fit --method parametric --bootstrap 200 --json", s))
        plot = None
        if not args.skip_plot:
            s, _, plot = measure(["plot", str(table), "--out", str(Path(tmp) / "figs"), "--format", "png"])
            rows.append(("lab plot --format png (all figures, bootstrap 200)", s))
        check = check_fit(table, fit)
        report(rows, fit, check, plot, exact_screen(table) if args.exact else None)


if __name__ == "__main__":
    main()
