"""Parametric (Chinchilla approach 3) fit: our batched JAX fit against a straightforward scipy
implementation of the same procedure, side by side in one run.

Run:  python benchmarks/bench_parametric_fit.py            (~5-7 min on 2 cores, mostly scipy)
      python benchmarks/bench_parametric_fit.py --baseline-inits 450   (quick: scipy on every 10th
      init, its time scaled up to the 4,500-init grid and marked "extrapolated")

Same data (Epoch's 240 Chinchilla points, D = C/(6N)), same objective (Huber delta 1e-3 on log
loss, summed), same 4,500-point initialisation grid. Baselines:

- scipy (straightforward): `scipy.optimize.minimize(method="L-BFGS-B")` per init, numpy objective,
  finite-difference gradients (scipy's default, as in the Epoch notebook-style code);
- scipy + analytic gradient: the same with the exact gradient (`jac=True`), a stronger baseline.

Ours: `analysis.fits.parametric` warm (compiled, in process), cold (first call, in process), and the
whole `lab fit ... --json` command in a fresh process with the persistent compilation cache warm.
Also a 1,000-resample bootstrap. Timings on a shared machine are noisy: the load average is printed.
The 100,000-row case (time, peak memory, exactness) is `benchmarks/bench_analysis_scale.py`.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.solvers.reference import scipy_fit

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "chinchilla_epoch.csv"
DELTA = 1e-3


def load():
    df = pd.read_csv(DATA)
    df = df[df["loss"] < np.sort(df["loss"].to_numpy())[-5]]
    N, C, L = (df[c].to_numpy(float) for c in ("Model Size", "Training FLOP", "loss"))
    return N, C / (6 * N), L


def epoch_grid():
    return np.array(
        list(
            itertools.product(
                np.arange(0, 30, 5),
                np.arange(0, 30, 5),
                np.arange(-1, 1.5, 0.5),
                np.arange(0, 2.5, 0.5),
                np.arange(0, 2.5, 0.5),
            )
        ),
        float,
    )


def fresh_process_times(repeats: int, env) -> tuple[float, list[float], str]:
    lab = shutil.which("lab")
    cmd = ([lab] if lab else [sys.executable, "-m", "analysis"]) + [
        "fit",
        str(DATA),
        "--n-col",
        "Model Size",
        "--c-col",
        "Training FLOP",
        "--loss-col",
        "loss",
        "--drop-highest-loss",
        "5",
        "--json",
    ]
    times = []
    for _i in range(repeats + 1):  # the first run fills the persistent cache if it is empty
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    import json

    return json.loads(out.stdout)["objective"], times, "lab" if lab else "python -m analysis"


def scipy_rows(N, D, L, grid, baseline_inits: int, analytic_too: bool) -> list[tuple]:
    """(name, seconds scaled to the whole grid, objective) for the scipy baselines."""
    inits = grid[:: max(1, len(grid) // baseline_inits)]
    scale = len(grid) / len(inits)
    note = "" if scale == 1 else f" (ran {len(inits)} inits, time x{scale:.0f}: extrapolated)"
    t, obj, _ = scipy_fit(N, D, L, inits, analytic=False)
    rows = [("scipy L-BFGS-B, FD gradient (straightforward)" + note, t * scale, obj)]
    if analytic_too:
        t, obj, _ = scipy_fit(N, D, L, inits, analytic=True)
        rows.append(("scipy L-BFGS-B, analytic gradient" + note, t * scale, obj))
    return rows


def our_rows(data, repeats: int, env) -> tuple[list[tuple], object]:
    """(rows for ours: in process warm and cold, fresh `lab fit` processes), and the fit."""
    from analysis.fits.parametric import fit_parametric

    t0 = time.perf_counter()
    res = fit_parametric(data)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fit_parametric(data)
        warm.append(time.perf_counter() - t0)
    obj_cli, fresh, cmd = fresh_process_times(repeats, env)
    return [
        ("ours: fit_parametric, warm (compiled), median", statistics.median(warm), res.objective),
        ("ours: fit_parametric, first call in process (compiles, no disk cache)", cold, res.objective),
        (f"ours: `{cmd} fit --json` fresh process, cache warm, median", statistics.median(fresh[1:]), obj_cli),
        (f"ours: `{cmd} fit --json` fresh process, first run", fresh[0], obj_cli),
    ], res


def bootstrap_times(data, res) -> tuple[float, float, dict]:
    """(first call seconds, warm seconds, ci) of a 1,000-resample bootstrap."""
    from analysis.fits.parametric import bootstrap_parametric

    t0 = time.perf_counter()
    bootstrap_parametric(data, res, n_boot=1000)
    b_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ci = bootstrap_parametric(data, res, n_boot=1000, seed=1)
    return b_cold, time.perf_counter() - t0, ci


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--baseline-inits", type=int, default=4500, help="scipy inits actually run (time scaled to 4,500)"
    )
    ap.add_argument("--skip-analytic", action="store_true", help="skip the analytic-gradient scipy baseline")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--cache-dir", default=None, help="persistent compilation cache (default ~/.cache/scaling-lab/jax)"
    )
    args = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"needs {DATA} (the shared reference data)")
    env = dict(os.environ)
    if args.cache_dir:
        env["SCALING_LAB_JAX_CACHE"] = args.cache_dir
    load0 = os.getloadavg()
    N, D, L = load()
    grid = epoch_grid()
    rows = scipy_rows(N, D, L, grid, args.baseline_inits, not args.skip_analytic)
    from analysis.table import fit_data

    data = fit_data(pd.DataFrame({"N": N, "D": D, "loss": L}), n_col="N", d_col="D", loss_col="loss")
    ours, res = our_rows(data, args.repeats, env)
    rows += ours
    b_cold, b_warm, ci = bootstrap_times(data, res)

    base = rows[0][1]
    print(
        f"\nparametric fit, Epoch's 240 points, {len(grid)} inits; load average before {load0[0]:.1f}, "
        f"after {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n"
    )
    print(f"{'':70s} {'seconds':>9s} {'speed-up':>9s} {'objective':>16s}")
    for name, t, obj in rows:
        print(f"{name:70s} {t:9.3f} {base / t:8.1f}x {obj:16.10e}")
    print(f"\nobjective difference ours - scipy: {res.objective - rows[0][2]:+.3e} (negative = ours lower)")
    p = res.params
    print(f"ours: E={p['E']:.4f} A={p['A']:.2f} B={p['B']:.1f} alpha={p['alpha']:.4f} beta={p['beta']:.4f}")
    print(
        f"\nbootstrap, 1000 resamples (4 starts each: optimum + 3 perturbations): first call {b_cold:.2f} s, "
        f"warm {b_warm:.2f} s; alpha 95% CI [{ci['alpha']['lo']:.4f}, {ci['alpha']['hi']:.4f}]"
    )
    print(
        "\ngoals: warm >= 100x, fresh process >= 50x vs the straightforward scipy; "
        "bootstrap < 15 s; 100k rows: see bench_analysis_scale.py"
    )


if __name__ == "__main__":
    main()
