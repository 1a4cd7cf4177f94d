"""Simulate a study design: results tables and training curves drawn from a known law.

Before spending compute on a grid of runs, check that the design can recover the law it is meant
to measure — enough budgets, sizes spanning each budget's minimum, noise like your seeds' — by
fitting a simulated copy of it:

    import analysis
    design = analysis.simulate_isoflop(budgets=(1e17, 1e18, 1e19), n_per_budget=7, noise=0.01, seed=0)
    fit = analysis.fit(analysis.load(design), "isoflop", bootstrap=200)
    fit.a, fit.ci["a"], analysis.CHINCHILLA_EPOCH.a        # recovered vs true exponent

`simulate_like` draws copies of a table you already have — its own sizes, budgets and seeds —
from a known law, with the noise `noise_of` measures on it (the audit, `analysis.uncertainty.audit`).

`write_study` lays a table out as `lab study` does (results.csv and runs/<cell>/metrics.jsonl),
so `lab report` and `analysis.report` run on it unchanged. The tests use the same functions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AnalysisError
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
    offset=1.0,
) -> pd.DataFrame:
    """An IsoFLOP grid: per budget, `n_per_budget` model sizes log-spaced over a factor `span`
    either side of the law's optimum times `offset` (a number, or one per budget: an off-centre
    grid), D = C/(kN), loss = L(N, D) * exp(noise * N(0, 1)), each cell run `replicates` times
    (seeds 0, 1, ...; independent noise).
    Columns follow the lab's results contract (params_total, tokens, flops_exact, budget_flops, ...)."""
    rng = np.random.default_rng(seed)
    rows = []
    offsets = np.broadcast_to(np.asarray(offset, float), (len(budgets),))
    for c, off in zip(budgets, offsets):
        n_opt, _ = law.optimal(c, k)
        for j, n in enumerate(off * n_opt * np.geomspace(1 / span, span, n_per_budget)):
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


LAW_PARAMS = 5  # E, A, B, alpha, beta


def require_simulable(data) -> None:
    """An AnalysisError (one line) unless `data` can be simulated: at least one row more than the
    law's parameters (so its residuals measure noise), and both N and D varied."""
    from .table import require_spread

    if len(data) <= LAW_PARAMS:
        raise AnalysisError(
            f"--audit: the table has {len(data)} rows; simulating it needs more than the law's "
            f"{LAW_PARAMS} parameters (E, A, B, alpha, beta)"
        )
    require_spread(data, "--audit")


def within_cells(data, rows=None) -> tuple[float, int]:
    """The sum of squares of log loss about each cell's mean (a cell: the rows with the same N and D
    to 1% — seeds, replicates) and its degrees of freedom, over all rows or the boolean mask `rows`."""
    frame = pd.DataFrame(
        {"n": np.round(np.log(data.N) / 0.01), "d": np.round(np.log(data.D) / 0.01), "y": np.log(data.L)}
    )
    groups = (frame if rows is None else frame[np.asarray(rows)]).groupby(["n", "d"])["y"]
    dof = int((groups.count() - 1).clip(lower=0).sum())
    ss = float(groups.apply(lambda g: ((g - g.mean()) ** 2).sum()).sum()) if dof else 0.0
    return ss, dof


def seed_scatter(data) -> tuple[float | None, int]:
    """Pooled std of log loss among rows of one cell (`within_cells`) and its degrees of freedom;
    (None, 0) when no cell has two rows."""
    ss, dof = within_cells(data)
    return (float(np.sqrt(ss / dof)), dof) if dof else (None, 0)


def noise_of(data, residuals) -> dict:
    """The simulation's log-normal noise: the law's residual std (degrees-of-freedom corrected)
    and the seed scatter where the table has replicates; `sigma` is the larger (the law's misfit
    counts as noise: the simulation should be no cleaner than the table)."""
    r = np.asarray(residuals, float)
    resid = float(np.sqrt(np.sum(r**2) / max(len(r) - LAW_PARAMS, 1)))
    seed, dof = seed_scatter(data)
    return {"residual": resid, "seed": seed, "seed_dof": dof, "sigma": max(resid, seed or 0.0)}


def simulate_like(data, law: Chinchilla, sigma: float, rng):
    """A copy of `data` (a FitData) with the same rows (sizes, tokens, budgets, seeds) and losses
    drawn from `law` times exp(sigma * N(0, 1)), independently per row."""
    from dataclasses import replace

    loss = law(data.N, data.D) * np.exp(sigma * rng.standard_normal(len(data)))
    return replace(data, L=loss, notes=[])
