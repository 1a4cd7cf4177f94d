"""Simulate a study design: results tables and training curves drawn from a known law.

Before spending compute on a grid of runs, check that the design can recover the law it is meant
to measure — enough budgets, sizes spanning each budget's minimum, noise like your seeds' — by
fitting a simulated copy of it:

    import analysis
    design = analysis.simulate_isoflop(budgets=(1e17, 1e18, 1e19), n_per_budget=7, noise=0.01, seed=0)
    fit = analysis.fit(analysis.load(design), "isoflop", bootstrap=200)
    fit.a, fit.ci["a"], analysis.CHINCHILLA_EPOCH.a        # recovered vs true exponent

`write_study` lays a table out as `lab study` does (results.csv and runs/<cell>/metrics.jsonl),
so `lab report` and `analysis.report` run on it unchanged. The tests use the same functions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .laws import K_FLOPS_PER_PARAM_TOKEN, Chinchilla

CHINCHILLA_EPOCH = Chinchilla(E=1.8172, A=477.83, B=2143.4, alpha=0.34731, beta=0.36717)


def isoflop_table(
    law: Chinchilla = CHINCHILLA_EPOCH,
    budgets=(1e17, 3e17, 1e18, 3e18, 1e19, 3e19),
    n_per_budget: int = 9,
    span: float = 8.0,
    noise: float = 0.005,
    k: float = K_FLOPS_PER_PARAM_TOKEN,
    seed: int = 0,
    replicates: int = 1,
) -> pd.DataFrame:
    """An IsoFLOP grid: per budget, `n_per_budget` model sizes log-spaced over a factor `span`
    either side of the law's optimum, D = C/(kN), loss = L(N, D) * exp(noise * N(0, 1)), each
    cell run `replicates` times (seeds 0, 1, ...; independent noise).
    Columns follow the lab's results contract (params_total, tokens, flops_exact, budget_flops, ...)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in budgets:
        n_opt, _ = law.optimal(c, k)
        for j, n in enumerate(n_opt * np.geomspace(1 / span, span, n_per_budget)):
            d = c / (k * n)
            for rep in range(replicates):
                loss = float(law(n, d) * np.exp(noise * rng.standard_normal()))
                cell = f"c{c:.0e}_n{j}" + (f"_s{rep}" if replicates > 1 else "")
                rows.append(
                    {
                        "run_id": hashlib.sha1(cell.encode()).hexdigest()[:12],
                        "status": "completed",
                        "seed": rep,
                        "params_total": n,
                        "params_non_embedding": 0.9 * n,
                        "tokens": d,
                        "flops_exact": c,
                        "flops_6n": K_FLOPS_PER_PARAM_TOKEN * n * d,
                        "budget_flops": c,
                        "final_val_loss": loss,
                        "final_train_loss": loss,
                        "study": "synthetic",
                        "cell_id": cell,
                    }
                )
    return pd.DataFrame(rows)


def write_study(
    out: Path,
    table: pd.DataFrame,
    law: Chinchilla = CHINCHILLA_EPOCH,
    k: float = K_FLOPS_PER_PARAM_TOKEN,
    n_log: int = 40,
    noise: float = 0.005,
    seed: int = 0,
) -> Path:
    """A study directory laid out as `lab study` does: out/results.csv and out/runs/<cell_id>/metrics.jsonl
    whose train_loss follows
    L(N, D_t) for the tokens D_t seen so far (a run is its own compute-optimal schedule at every
    point, the idealisation behind approach 1), with eval lines every fifth point."""
    rng = np.random.default_rng(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "results.csv", index=False)
    for _, r in table.iterrows():
        d = out / "runs" / str(r["cell_id"])
        d.mkdir(parents=True, exist_ok=True)
        toks = np.geomspace(r["tokens"] / 200, r["tokens"], n_log)
        with open(d / "metrics.jsonl", "w") as fh:
            for i, t in enumerate(toks):
                loss = float(law(r["params_total"], t) * np.exp(noise * rng.standard_normal()))
                rec = {
                    "step": i + 1,
                    "tokens": float(t),
                    "flops": float(k * r["params_total"] * t),
                    "train_loss": loss,
                    "lr": 1e-3,
                    "tokens_per_s": 1e5,
                }
                fh.write(json.dumps(rec) + "\n")
                if i % 5 == 4:
                    fh.write(
                        json.dumps(
                            {
                                "step": i + 1,
                                "tokens": float(t),
                                "flops": float(k * r["params_total"] * t),
                                "val_loss": loss,
                                "val_bits_per_byte": loss / np.log(2),
                            }
                        )
                        + "\n"
                    )
    return out
