"""Reproduce Epoch AI's refit of Chinchilla's approach 3 (Besiroglu et al. 2024) on their data.

Run:  python experiments/reproduce_epoch.py [--bootstrap 1000] [--scipy-inits 450] [--out out/epoch]

Data: ../shared/data/chinchilla_epoch.csv (Epoch's extraction of Hoffmann et al.'s Figure 4; no
licence, so it is read in place and never copied). As Epoch did: drop the 5 highest losses
(240 points left), D = C / (6 N), Huber (delta 1e-3) on log loss summed over points, L-BFGS from
the 4,500-point grid, best kept. Prints, side by side: our fit; the values Epoch published
(Besiroglu et al. 2024, their refit); Hoffmann et al.'s published fit (2022, eq. 10); and a
straightforward scipy L-BFGS-B run of the same objective (analytic gradient, `analysis.solvers.reference`)
computed here from every k-th grid init (--scipy-inits of them; 0 skips it). Then bootstrap
intervals; with --out, figures (a)-(e) and their CSVs.

Same as:  lab fit ../shared/data/chinchilla_epoch.csv --n-col "Model Size" --c-col "Training FLOP" \\
              --loss-col loss --drop-highest-loss 5 --bootstrap 1000 --target-flops 5.76e23
"""

import argparse
from pathlib import Path

import analysis
from analysis.fits.parametric import init_grid

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch.csv"
TABLE = analysis.TableOptions(
    n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_highest_loss=5, k=6.0
)
EPOCH = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}  # published by Epoch
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}  # published by Hoffmann et al.
CHINCHILLA_FLOPS = 5.76e23


def scipy_column(data, n_inits: int) -> tuple[dict, float, str]:
    """Parameters and objective of the scipy reference fit from `n_inits` evenly strided grid
    inits, and a note saying how it was run."""
    from analysis.solvers.reference import scipy_fit

    grid = init_grid()
    inits = grid[:: max(1, len(grid) // n_inits)]
    seconds, objective, theta = scipy_fit(data.N, data.D, data.L, inits, analytic=True)
    law = analysis.Chinchilla.from_lse(*theta)
    note = (
        f"scipy: L-BFGS-B with analytic gradient from {len(inits)} of the {len(grid)} grid inits, run here "
        f"in {seconds:.1f} s; objective {objective:.10e}"
    )
    return {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta}, objective, note


def print_fit(r, scipy: dict | None) -> None:
    print(
        f"{len(r.data)} points; objective {r.objective:.10e} ({r.extra['objective_convention']}; "
        f"mean {r.extra['objective_mean']:.4e}); "
        f"{r.extra['n_inits_at_best']} of the screened inits reached the best "
        f"(grid of {r.extra['n_inits']})"
    )
    print(f"\n{'':8s} {'ours':>10s} {'Epoch':>10s} {'diff':>8s} {'scipy':>10s} {'Hoffmann':>10s}")
    for k in ("E", "A", "B", "alpha", "beta"):
        v = r.params[k]
        s = f"{scipy[k]:10.4g}" if scipy else f"{'-':>10s}"
        print(f"{k:8s} {v:10.4g} {EPOCH[k]:10.4g} {v / EPOCH[k] - 1:+8.2%} {s} {HOFFMANN[k]:10.4g}")
    print(f"{'a':8s} {r.params['a']:10.4f} {'0.51':>10s}\n{'b':8s} {r.params['b']:10.4f} {'0.49':>10s}")
    t = r.extra["target"]
    print(
        f"\nat Chinchilla's {CHINCHILLA_FLOPS:.3g} FLOPs: N_opt {t['n_opt']:.3g}, D_opt {t['d_opt']:.3g} "
        f"({t['d_opt'] / t['n_opt']:.1f} tokens per parameter)"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument(
        "--scipy-inits", type=int, default=450, help="grid inits for the scipy reference run (0: skip)"
    )
    ap.add_argument("--out", help="write figures (a)-(e) here")
    args = ap.parse_args()
    study = analysis.load(DATA, TABLE, need_budget=False)
    r = analysis.fit(study, "parametric", target_flops=CHINCHILLA_FLOPS)
    scipy, s_obj, note = (
        scipy_column(study.data, args.scipy_inits) if args.scipy_inits else (None, None, "scipy: skipped")
    )
    print_fit(r, scipy)
    print("\n" + note + (f" (ours - scipy: {r.objective - s_obj:+.3e})" if scipy else ""))
    if args.bootstrap:
        analysis.bootstrap(r, study.data, n_boot=args.bootstrap, target_flops=CHINCHILLA_FLOPS)
        print(f"\n{args.bootstrap} bootstrap resamples (95% percentile intervals):")
        for k, v in r.ci.items():
            print(f"  {k:6s} {v['median']:10.4g}  [{v['lo']:.4g}, {v['hi']:.4g}]")
        print(
            f"  Epoch's B = {EPOCH['B']} lies inside B's interval: "
            f"{r.ci['B']['lo'] < EPOCH['B'] < r.ci['B']['hi']}"
        )
    if args.out:
        from analysis.plotting.plots import make_figures

        options = analysis.FitOptions(target_flops=CHINCHILLA_FLOPS, bootstrap=200)
        written, notes = make_figures(DATA, args.out, TABLE, options)
        print("\n" + "\n".join(written))


if __name__ == "__main__":
    main()
