"""Variable projection (`--method vpnls`) against the Epoch-procedure fit (`--method parametric`)
on the shared data sets, side by side in one process: time, Huber objective, parameters.

Run:  python benchmarks/bench_vpnls.py            (~1-3 min on 2 cores; prints a Markdown table)

Both minimise the same objective — the Huber(delta = 1e-3) sum of log-loss residuals of
L = E + A/N^alpha + B/D^beta. parametric: 4,500 starts screened by batched float32 L-BFGS, the
best polished in float64 (JAX; timed warm, i.e. compiled, and cold, its first call in this
process). vpnls: exponent grid x exact NNLS (relative squared error), zoomed, then Huber polished by
damped Newton (numpy). The vpnls row also gives its own least-squares optimum (`vp_objective`).
Data sets: Epoch's 240 Chinchilla points; Porian et al.'s IsoFLOP points (val loss, standard
counting) of the "Cosine decay" and "Optimizer tuning" configurations on both corpora; the
single-epoch runs of the datablations table.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import analysis
from analysis.fits.parametric import fit_parametric
from analysis.fits.vpnls import fit_vpnls
from analysis.solvers.jaxcache import enable_persistent_cache

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PORIAN = "dataset == '{}' and experiment == '{}' and loss_source == 'val'"
SETS = [
    ("Chinchilla (Epoch), 240 pts", SHARED / "chinchilla_epoch.csv", {"drop_highest_loss": 5}),
    *[
        (
            f"Porian {ds} / {ex}",
            SHARED / "porian2024_isoflop_points.csv",
            {"where": PORIAN.format(ds, ex), "n_col": "params", "d_col": "tokens", "c_col": "flops_budget"},
        )
        for ds in ("RefinedWeb", "OpenWebText2")
        for ex in ("Cosine decay", "Optimizer tuning (no decay)")
    ],
    ("datablations, single-epoch runs", SHARED / "datablations_c4_losses_colpret.csv", {"where": "epochs == 1"}),
]


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return time.perf_counter() - t0, out


def params(fit) -> str:
    p = fit.params
    return f"E={p['E']:.4g}, A={p['A']:.4g}, B={p['B']:.4g}, α={p['alpha']:.4f}, β={p['beta']:.4f}"


def main() -> None:
    enable_persistent_cache()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print("| data set | rows | fitter | seconds | Huber objective | parameters |\n|---|---|---|---|---|---|")
    for name, path, opts in SETS:
        if not path.exists():
            print(f"| {name} | – | skipped: {path} not found | | | |")
            continue
        data = analysis.load(path, need_budget=False, **opts).data
        cold, _ = timed(fit_parametric, data)
        warm, par = timed(fit_parametric, data)
        t_vp, vp = timed(fit_vpnls, data)
        faster = warm / t_vp
        better = "≤" if vp.objective <= par.objective * (1 + 1e-9) else ">"
        print(
            f"| {name} | {len(data)} | parametric (JAX; cold {cold:.2f} s) | {warm:.3f} | "
            f"{par.objective:.7e} | {params(par)} |"
        )
        print(
            f"| | | vpnls ({faster:.1f}x the warm parametric; objective {better} parametric's; "
            f"VP least-squares optimum {vp.extra['vp_objective']:.4g}) | {t_vp:.3f} | "
            f"{vp.objective:.7e} | {params(vp)} |"
        )


if __name__ == "__main__":
    main()
