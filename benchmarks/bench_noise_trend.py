"""Coverage of the rung's PIs with the pooled seed scatter vs its trend with compute, on two-seed
simulated tables of the default study's design (4 budgets 3e11-2.4e12, 5 sizes over 4x each side),
exact Chinchilla law (E 1, A 8, B 40, alpha = beta = 0.35), the rung at 7.2e12 (3 runs: the optimum x
0.7, 1, 1.4), 40 fresh draws of each run's truth. Noise: constant 0.015, or falling 0.03 (C/3e11)^-0.45.

Run:  PYTHONPATH=. python benchmarks/bench_noise_trend.py constant 20   (then: falling 20)
Results: benchmarks/README.md, "The run noise read off its trend with compute"."""

import json
import sys
import time

import numpy as np
import pandas as pd

import analysis.uncertainty.noise_trend as NT
from analysis.fitting import fit as run_fit
from analysis.laws import Chinchilla
from analysis.options import FitOptions
from analysis.synthetic import isoflop_table
from analysis.table import fit_data
from analysis.uncertainty.form import rung_form_term
from analysis.uncertainty.predict import predict_runs
from analysis.uncertainty.residual import RUNG_DRAWS, prediction_draws, rung_draws

BASE = Chinchilla(E=1.0, A=8.0, B=40.0, alpha=0.35, beta=0.35)
BUDGETS = (3e11, 6e11, 1.2e12, 2.4e12)
FLOPS = 7.2e12
MODELS = {"constant": lambda C: 0.015 + 0 * C, "falling": lambda C: 0.03 * (C / 3e11) ** -0.45}
OPTS = FitOptions(bootstrap=200, seed=0)


def one(s: int, sig) -> dict:
    """Simulated table `s`: the rung's PIs by both rules, and how many of 40 x 3 fresh truths fall inside."""
    t0 = time.time()
    rng = np.random.default_rng(1000 + s)
    t = isoflop_table(BASE, BUDGETS, n_per_budget=5, span=4.0, noise=0.0, seed=s, replicates=2)
    t["final_val_loss"] *= np.exp(sig(t["budget_flops"].to_numpy()) * rng.standard_normal(len(t)))
    data = fit_data(t, need_budget=True)
    f = run_fit(data, "parametric")
    n_opt, _ = BASE.optimal(FLOPS, 6.0)
    N = n_opt * np.array([0.7, 1.0, 1.4])
    D = FLOPS / (6 * N)
    truth = BASE(N, D)[None] * np.exp(sig(FLOPS) * rng.standard_normal((40, 3)))
    row, default = {"sim": s}, NT.NOISE_AT
    for rule in ("pooled", "trend"):
        NT.NOISE_AT = rule  # the form term's back-tests and the rung read the noise alike
        try:
            form = rung_form_term(f, None, data, OPTS, pi_draws=RUNG_DRAWS)
            drawn = prediction_draws(f, data, OPTS, rung_draws(form, data))
            p = predict_runs(drawn, N, D, FLOPS, data, None, 0.95, 0, form=form)
        finally:
            NT.NOISE_AT = default
        lo, hi = np.array(p["pi_lo"]), np.array(p["pi_hi"])
        row[f"inside_{rule}"] = int(np.sum((truth >= lo) & (truth <= hi)))
        row[f"half_{rule}"] = float(np.mean((hi - lo) / (2 * np.array(p["predicted"]))))
        row[f"sigma_{rule}"] = p["noise"]["sigma"]
        row[f"k_{rule}"] = form["k"]
    row["sec"] = round(time.time() - t0, 1)
    return row


def main() -> None:
    model, n_sims = sys.argv[1], int(sys.argv[2])
    out = []
    for s in range(n_sims):
        out.append(one(s, MODELS[model]))
        print(json.dumps(out[-1]), flush=True)
    df = pd.DataFrame(out)
    summary = {c: int(df[c].sum()) for c in df if c.startswith("inside")}
    summary.update({c: round(float(df[c].mean()), 4) for c in df if c.startswith(("half", "sigma", "k_"))})
    print(model, "of", len(df) * 120, json.dumps(summary))


if __name__ == "__main__":
    main()
