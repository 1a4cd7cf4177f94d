"""Do logged points help the N-D law? Back-tests of the parametric law fitted on final losses only
vs on final losses plus the loss-curve law's points (`lab fit --curve-points K`), on finished
study directories.

Two tests. (1) The points themselves: a longer run's curve point at the token count of a shorter
run of the same size (split by whether it lies in the second half of the longer run, where points
are taken) is a prediction of that run's final loss; it is scored against it, beside the
naive point (the longer run's logged, un-annealed train loss there plus its final val - train gap).
(2) The law: for each number H of held-out largest budgets, the fit with and without curve points
sees only the smaller budgets' runs (a held-out run's curve points are held out with it) and
predicts the held-out runs' final losses; the table prints the mean |relative error| and the
fitted exponents of each fit on all runs.

    python experiments/curve_points_cpu.py runs/data_constrained_cpu_fresh
    python experiments/curve_points_cpu.py runs/arch_cpu --where "variant == 'arch.decoder'"

Measured 2026-12-01 on the 2-core AMD EPYC VM (14 s per study), with 8 points per run:

| study (runs) | points: mean abs rel err vs the shorter run's loss | naive | back-test H=1: final only / + points | H=2 | H=3 |
|---|---|---|---|---|---|
| data_constrained_cpu_fresh, cosine (21) | 4.75% (18 runs in the 2nd half), 6.18% (45 in the 1st) | 6.14%, 7.74% | 5.00% / 2.92% | 3.37% / 2.17% | 2.30% / 2.49% |
| arch_cpu decoder, WSD (9) | 1.08% (7, all in the 1st half) | 1.70% | 6.41% / 6.23% | - | - |
| arch_cpu windowed decoder, WSD (9) | 1.35% (7) | 4.36% | 3.46% / 3.24% | - | - |

The points are better than the naive reading of an un-annealed curve in every case. How good they
are depends on the loss-curve law: on the WSD runs of the arch study they predict the shorter runs
within 1-1.4%. On the cosine runs of the data-constrained grid the per-size law fits the logged
train loss poorly (rmse 0.16-0.23 nats; L0 at its bound; many runs are only 32-256 steps long), and
its points sit 2-9% below the real shorter runs. `lab fit` states that rmse with the points. For
the N-D law, adding the points helps the extrapolation back-test in 4 of the 5 comparisons (by up
to 2.1 points of error) and hurts in one (+0.2). They do not replace runs at new budgets.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

import analysis
from analysis.curves import MIN_FRAC, branch_loss
from analysis.fits.loss_curve import fit_law, predict, read_run


def point_errors(study_dir: str, where: str | None) -> pd.DataFrame:
    """Each run's curve point at each shorter same-size run's token count, against that run's final loss."""
    table = pd.read_csv(Path(study_dir) / "results.csv")
    table = table.query(where) if where else table
    runs = [
        (row, read_run(next(Path(study_dir).glob(f"**/{row.run_id}/metrics.jsonl")).parent))
        for _, row in table.iterrows()
    ]
    out = []
    for n in sorted(table["params_total"].unique()):
        group = [(row, r) for row, r in runs if row.params_total == n]
        law = fit_law([r for _, r in group])
        for row, r in group:
            last = int(r["steps"][-1])
            offset = row.final_val_loss - predict(law, r["eta"])[last]
            for short, _ in group:
                if short.tokens >= 0.95 * row.tokens:
                    continue
                s = int(round(last * short.tokens / row.tokens))
                naive = (
                    r["loss"][min(np.searchsorted(r["steps"], s), len(r["steps"]) - 1)]
                    + row.final_val_loss
                    - r["loss"][-1]
                )
                out.append(
                    {
                        "N": n,
                        "from": row.run_id,
                        "D": short.tokens,
                        "frac": short.tokens / row.tokens,
                        "loss": short.final_val_loss,
                        "curve_point": branch_loss(law, r, s) + offset,
                        "naive": naive,
                    }
                )
    return pd.DataFrame(out)


def compare(study_dir: str, where: str | None, per_run: int, holdouts=(1, 2, 3)) -> list[dict]:
    rows = []
    for k in (0, per_run):
        s = analysis.load(study_dir, where=where, curve_points=k)
        full = analysis.fit(s, "parametric")
        row = {
            "study": study_dir,
            "curve_points": k,
            "points": len(s.data),
            "alpha": full.params["alpha"],
            "beta": full.params["beta"],
            "a": full.params["a"],
        }
        for h in holdouts:
            try:
                bt = analysis.backtest(s.data, "parametric", holdout=h)
                row[f"H{h}"] = bt["summary"]["mean_abs_rel_error"]
            except analysis.AnalysisError as e:
                row[f"H{h}"] = f"n/a ({e})"
        rows.append(row)
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+")
    p.add_argument("--where")
    p.add_argument("--curve-points", type=int, default=8)
    args = p.parse_args(argv)
    for d in args.studies:
        e = point_errors(d, args.where)
        for name, part in (
            ("in the second half", e[e["frac"] >= MIN_FRAC]),
            ("in the first half", e[e["frac"] < MIN_FRAC]),
        ):
            if len(part):
                cp, nv = (np.abs(part[c] / part["loss"] - 1) for c in ("curve_point", "naive"))
                print(
                    f"{d}: {len(part)} shorter runs {name} of a longer run: mean |rel err| curve point "
                    f"{cp.mean():.2%} (max {cp.max():.2%}), naive {nv.mean():.2%} (max {nv.max():.2%})"
                )
    print(
        "| study | curve points per run | rows | alpha | beta | a | back-test mean abs rel err, H=1 | H=2 | H=3 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for d in args.studies:
        for r in compare(d, args.where, args.curve_points):
            errs = " | ".join(
                f"{r[f'H{h}']:.2%}" if isinstance(r[f"H{h}"], float) else r[f"H{h}"] for h in (1, 2, 3)
            )
            print(
                f"| {d} | {r['curve_points']} | {r['points']} | {r['alpha']:.3f} | {r['beta']:.3f} | "
                f"{r['a']:.3f} | {errs} |"
            )


if __name__ == "__main__":
    main()
