"""Do logged points help the N-D law? Back-tests of the parametric law fitted on final losses only
vs on final losses plus the loss-curve law's points (`lab fit --curve-points K`), on finished
study directories.

For each study and each number H of held-out largest budgets, both fits see only the smaller
budgets' runs (a held-out run's curve points are held out with it) and predict the held-out runs'
final losses; the table prints the mean |relative error| of those predictions and the fitted
exponents of each fit on all runs.

    python experiments/curve_points_cpu.py runs/data_constrained_cpu_fresh
    python experiments/curve_points_cpu.py runs/arch_cpu --where "variant == 'arch.decoder'"

Measured outcome: see the closing lines below (machine and numbers stated there).
"""

from __future__ import annotations

import argparse

import analysis


def compare(study_dir: str, where: str | None, per_run: int, holdouts=(1, 2, 3)) -> list[dict]:
    rows = []
    for k in (0, per_run):
        s = analysis.load(study_dir, where=where, curve_points=k)
        full = analysis.fit(s, "parametric")
        row = {"study": study_dir, "curve_points": k, "points": len(s.data), "alpha": full.params["alpha"],
               "beta": full.params["beta"], "a": full.params["a"]}
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
    print("| study | curve points per run | rows | alpha | beta | a | back-test mean abs rel err, H=1 | H=2 | H=3 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in args.studies:
        for r in compare(d, args.where, args.curve_points):
            errs = " | ".join(f"{r[f'H{h}']:.2%}" if isinstance(r[f"H{h}"], float) else r[f"H{h}"] for h in (1, 2, 3))
            print(f"| {d} | {r['curve_points']} | {r['points']} | {r['alpha']:.3f} | {r['beta']:.3f} | {r['a']:.3f} | {errs} |")


if __name__ == "__main__":
    main()
