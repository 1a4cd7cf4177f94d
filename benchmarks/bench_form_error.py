"""Prediction-interval coverage in back-tests, before and after the law's form-error term.

Run:  python benchmarks/bench_form_error.py --out /tmp/form.json [--study DIR ...] [--sim-draws 8]

For every table and every outer hold-out h (the h largest budgets), the parametric law fitted on the
rest predicts each held-out run with a 95% interval (`analysis.uncertainty.holdout.backtest`,
`--bootstrap` resamples):

- before: the fit's bootstrap (`--pi-draws`: rows, the default of every back-test, or residuals, what
  the validation rung draws where its form term is measured) plus the run-to-run noise
  (`intervals.run_intervals`);
- after: the same plus the form-error term sigma_form(x) = k x, k measured on the *training part
  only* by its own nested back-tests (hold out its 1 and 2 largest budgets;
  `analysis.uncertainty.form`), x = log(held-out budget / largest training budget).

The tables: Chinchilla as extracted by Epoch (240 rows, budgets = compute binned into half decades,
10^(round(2 log10 C) / 2)), Porian et al.'s IsoFLOP points (each experiment its own table, budgets
1.25e16 x 2^k), Muennighoff et al.'s single-epoch runs (epochs == 1, loss < 5, the first 182 rows;
half-decade budgets), study directories given with `--study` (their budget column), and simulated
tables with the default study's design and one budget below it (1.5e11-2.4e12, a factor 2 apart, 5 sizes
over a factor 4 each side, noise 0.0065 in log) drawn from an exact Chinchilla law (E 1, A 8, B 40,
alpha = beta = 0.35: losses 1.3-1.7 like the CPU study's) and from a mis-specified one (the same plus
0.02 log(N D / 1e11)^2, a bend the fitted form lacks). Counts are k of n held-out runs inside.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.errors import AnalysisError
from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table
from analysis.table import fit_data
from analysis.uncertainty.form import MIN_TRAIN, SCALE, SCALES, backtest_form
from analysis.uncertainty.residual import PI_DRAWS, SCHEMES

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BASE = Chinchilla(E=1.0, A=8.0, B=40.0, alpha=0.35, beta=0.35)  # a small-model law near the CPU study's


class Misspecified:
    """BASE plus 0.02 log(N D / 1e11)^2: the loss bends up in log-log, which the fitted form lacks
    (optimum placed by BASE)."""

    def __call__(self, N, D):
        return BASE(N, D) + 0.02 * np.log(np.asarray(N) * np.asarray(D) / 1e11) ** 2

    def optimal(self, C, k):
        return BASE.optimal(C, k)


def half_decades(C) -> np.ndarray:
    return 10 ** (np.round(2 * np.log10(np.asarray(C, float))) / 2)


def published() -> dict:
    tables = {}
    df = pd.read_csv(SHARED / "chinchilla_epoch.csv")
    d = fit_data(df, n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_highest=5)
    d.budget = half_decades(d.C)
    tables["Chinchilla (Epoch)"] = d
    p = pd.read_csv(SHARED / "porian2024_isoflop_points.csv")
    for (ds, ex), g in p.groupby(["dataset", "experiment"]):
        t = g[["params", "tokens", "flops_budget", "loss"]].rename(columns={"flops_budget": "budget"})
        tables[f"Porian {ds} / {ex}"] = fit_data(t, need_budget=True)
    m = pd.read_csv(SHARED / "datablations_c4_losses_colpret.csv").query("openLM_loss < 5 and index < 182")
    m = m[m.epochs == 1]
    d = fit_data(m, n_col="num_params", d_col="token_num", loss_col="openLM_loss", c_col="flops")
    d.budget = half_decades(d.C)
    tables["Muennighoff (C4, 1 epoch)"] = d
    return tables


def simulated(draws: int) -> dict:
    tables = {}
    budgets = (1.5e11, 3e11, 6e11, 1.2e12, 2.4e12)
    for name, law in (("sim exact", BASE), ("sim mis-specified", Misspecified())):
        for s in range(draws):
            t = isoflop_table(law, budgets, n_per_budget=5, span=4.0, noise=0.0065, seed=500 + s)
            tables[f"{name} #{s}"] = fit_data(t, need_budget=True)
    return tables


def one(data, h: int, n_boot: int, pi_draws: str, scale: str = SCALE, min_train: int = MIN_TRAIN) -> dict:
    t0 = time.perf_counter()
    bt = backtest_form(
        data,
        "parametric",
        holdout=h,
        pi_bootstrap=n_boot,
        pi_seed=0,
        pi_draws=pi_draws,
        scale=scale,
        min_train=min_train,
    )
    s, pts = bt["summary"], bt["points"]
    return {
        "holdout": h,
        "n_test": s["n_test"],
        "inside_before": s["pi_inside"],
        "inside_after": s.get("pi_form_inside"),
        "half_before": s["pi_mean_rel_halfwidth"],
        "half_after": s.get("pi_form_mean_rel_halfwidth"),
        "k": s.get("pi_form_k"),
        "inside_corrected": s.get("pi_formc_inside"),
        "half_corrected": s.get("pi_formc_mean_rel_halfwidth"),
        "rms_log_error_corrected": s.get("formc_rmse_log"),
        "bias_per_log": s.get("pi_form_bias_per_log"),
        "mean_log_error": float(pts["log_error"].mean()),
        "rms_log_error": s["rmse_log"],
        "distance": [float(pts["distance"].min()), float(pts["distance"].max())] if "distance" in pts else None,
        "form_source": s.get("pi_form_source"),
        "seconds": time.perf_counter() - t0,
    }


def group_of(name: str) -> str:
    return name.split(" #")[0] if name.startswith("sim") else ("Porian (11 tables)" if "Porian" in name else name)


def markdown(out: dict) -> str:
    """Per group of tables and hold-out: k of n held-out runs inside, before / after / corrected, and
    the mean half-widths (relative) and rms log errors."""
    rows = [
        "| tables | hold out | inside before | inside after (spread) | inside (bias-corrected) "
        "| mean half-width before / after / corrected | rms log error / corrected | median k |",
        "|---|---|---|---|---|---|---|---|",
    ]
    groups: dict = {}
    for name, rs in out.items():
        for r in rs:
            if "error" not in r and r.get("inside_after") is not None:
                groups.setdefault((group_of(name), r["holdout"]), []).append(r)
    for (g, h), rs in groups.items():
        n = sum(r["n_test"] for r in rs)
        tot = lambda key: sum(r[key] for r in rs)
        avg = lambda key: np.average([r[key] for r in rs], weights=[r["n_test"] for r in rs])
        rms = lambda key: np.sqrt(np.average([r[key] ** 2 for r in rs], weights=[r["n_test"] for r in rs]))
        counts = " | ".join(f"{tot(k)}/{n}" for k in ("inside_before", "inside_after", "inside_corrected"))
        rows.append(
            f"| {g} | {h} | {counts} "
            f"| ±{avg('half_before'):.1%} / ±{avg('half_after'):.1%} / ±{avg('half_corrected'):.1%} "
            f"| {rms('rms_log_error'):.4f} / {rms('rms_log_error_corrected'):.4f} "
            f"| {np.median([r['k'] for r in rs]):.3g} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--study", action="append", default=[], help="a study directory (its results.csv)")
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--sim-draws", type=int, default=8)
    ap.add_argument("--holdouts", default="1,2")
    ap.add_argument(
        "--pi-draws",
        default=PI_DRAWS,
        choices=SCHEMES,
        help="the law's draws in every interval (residual.SCHEMES)",
    )
    ap.add_argument("--form-scale", default=SCALE, choices=SCALES, help="the form term's distance (form.SCALES)")
    ap.add_argument(
        "--form-min-train", type=int, default=MIN_TRAIN, help="the fewest budgets a nested back-test may fit"
    )
    ap.add_argument("--only", default="", help="comma-separated substrings: run only tables whose name has one")
    ap.add_argument("--summary", action="store_true", help="print the Markdown table of --out and exit")
    args = ap.parse_args()
    if args.summary:
        print(markdown(json.loads(Path(args.out).read_text())))
        return
    import analysis

    tables = {}
    for s in args.study:
        tables[f"study {s}"] = analysis.load(s, need_budget=True).data
    if args.sim_draws:
        tables.update(simulated(args.sim_draws))
    tables.update(published())
    out = {}
    for name, data in tables.items():
        if args.only and not any(o in name for o in args.only.split(",")):
            continue
        for h in map(int, args.holdouts.split(",")):
            try:
                r = one(data, h, args.bootstrap, args.pi_draws, args.form_scale, args.form_min_train)
            except AnalysisError as e:
                r = {"holdout": h, "error": str(e)}
            out.setdefault(name, []).append(r)
            print(name, json.dumps({k: v for k, v in r.items() if k != "form_source"}), flush=True)
            Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
