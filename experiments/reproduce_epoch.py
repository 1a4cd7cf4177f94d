"""Reproduce Epoch AI's refit of Chinchilla's approach 3 (Besiroglu et al. 2024) on their data.

Run:  python experiments/reproduce_epoch.py [--bootstrap 1000] [--out out/epoch]

Data: ../shared/data/chinchilla_epoch.csv (Epoch's extraction of Hoffmann et al.'s Figure 4; no
licence, so it is read in place and never copied). As Epoch did: drop the 5 highest losses
(240 points left), D = C / (6 N), Huber (delta 1e-3) on log loss summed over points, L-BFGS from
the 4,500-point grid, best kept. Prints our fit beside Epoch's published values and a
straightforward scipy run of the same objective, then bootstrap intervals; with --out, writes
figures (a)-(e) and their CSVs.

Same as:  lab fit ../shared/data/chinchilla_epoch.csv --n-col "Model Size" --c-col "Training FLOP" \\
              --loss-col loss --drop-highest-loss 5 --bootstrap 1000 --target-flops 5.76e23
"""

import argparse
from pathlib import Path


from analysis import fit_data, load_table
from analysis.fit_parametric import bootstrap_parametric, fit_parametric

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinchilla_epoch.csv"
EPOCH = {"E": 1.82, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
SCIPY = {"E": 1.817, "A": 477.8, "B": 2143, "alpha": 0.3473, "beta": 0.3672, "objective": 1.018e-3}
HOFFMANN = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
CHINCHILLA_FLOPS = 5.76e23


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", help="write figures (a)-(e) here")
    args = ap.parse_args()
    data = fit_data(load_table(DATA), n_col="Model Size", c_col="Training FLOP", loss_col="loss", drop_highest=5)
    r = fit_parametric(data, target_flops=CHINCHILLA_FLOPS)
    print(f"{len(data)} points; objective {r.objective:.10e} ({r.extra['objective_convention']}; "
          f"mean {r.extra['objective_mean']:.4e}); {r.extra['n_inits_at_best']} of the screened inits reached the best "
          f"(grid of {r.extra['n_inits']})")
    print(f"\n{'':8s} {'ours':>10s} {'Epoch':>10s} {'diff':>8s} {'scipy':>10s} {'Hoffmann':>10s}")
    for k in ("E", "A", "B", "alpha", "beta"):
        v = r.params[k]
        print(f"{k:8s} {v:10.4g} {EPOCH[k]:10.4g} {v / EPOCH[k] - 1:+8.2%} {SCIPY[k]:10.4g} {HOFFMANN[k]:10.4g}")
    print(f"{'a':8s} {r.params['a']:10.4f} {'0.51':>10s}\n{'b':8s} {r.params['b']:10.4f} {'0.49':>10s}")
    t = r.extra["target"]
    print(f"\nat Chinchilla's {CHINCHILLA_FLOPS:.3g} FLOPs: N_opt {t['n_opt']:.3g}, D_opt {t['d_opt']:.3g} "
          f"({t['d_opt'] / t['n_opt']:.1f} tokens per parameter)")
    if args.bootstrap:
        samples, ci = bootstrap_parametric(data, r, n_boot=args.bootstrap, target_flops=CHINCHILLA_FLOPS)
        print(f"\n{args.bootstrap} bootstrap resamples (95% percentile intervals):")
        for k, v in ci.items():
            print(f"  {k:6s} {v['median']:10.4g}  [{v['lo']:.4g}, {v['hi']:.4g}]")
        print(f"  Epoch's B = {EPOCH['B']} lies inside B's interval: {ci['B']['lo'] < EPOCH['B'] < ci['B']['hi']}")
    if args.out:
        import types

        from analysis.plots import make_figures

        ns = types.SimpleNamespace(n_col="Model Size", d_col=None, c_col="Training FLOP", loss_col="loss",
                                   budget_col=None, where=None, status="completed", drop_highest_loss=5, k=6.0,
                                   curve_loss=None, target_flops=CHINCHILLA_FLOPS, bootstrap=200, level=0.95, seed=0,
                                   delta=1e-3, iso_method="akima", loss_noise=None, figures="abcde", format="png,svg")
        written, notes = make_figures(DATA, ns, Path(args.out))
        print("\n" + "\n".join(written))


if __name__ == "__main__":
    main()
