"""The learning-rate law: which peak learning rate is best for each (N, D), and how it moves.

A study with a learning-rate axis (`lrs=[...]` or `lr_multipliers=[...]`, lab.study.spec) trains
every (N, D) at several rates. `best_lr_table` averages seeds per (N, D, lr), takes each (N, D)'s
lowest loss and, where that optimum is interior to the LR grid, refines it by a parabola through
it and its two neighbours in log lr (an optimum at either end of the grid is kept at the grid value
and flagged `edge`: the true optimum lies outside what was measured). Then

    η_opt(N, D) = c · N^a_N · D^b_D        (least squares in logs, interior optima only)
    η_opt(C)    = c_C · C^g_C               (C = the runs' exact FLOPs)

with bootstrap percentile CIs (seeds resampled within each (N, D, lr) point, then the optima
resampled). DeepSeek LLM's η_opt(C) = 0.3118 · C^-0.125 (lab.study.policy) is the reference for
g_C. `lab fit DIR --method lr`; `lab plot DIR --figures l` draws loss vs learning rate per size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..result import FitResult, percentile_ci

DEEPSEEK_G = -0.125  # η_opt(C) ∝ C^-0.125 (DeepSeek LLM, 2024)


def _columns(frame: pd.DataFrame, N, D, C, L) -> pd.DataFrame:
    if "lr" not in frame.columns:
        raise AnalysisError(
            "the table has no lr column: the learning-rate law needs runs at several learning rates "
            "(a study with lrs=[...] or lr_multipliers=[...])"
        )
    return pd.DataFrame({"N": N, "D": D, "C": C, "loss": L, "lr": frame["lr"].to_numpy(float)})


def best_lr_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (N, D): the LR grid, the best lr (refined when interior), its loss, `edge`."""
    mean = runs.groupby(["N", "D", "lr"], as_index=False).agg(loss=("loss", "mean"), C=("C", "mean"))
    rows = []
    for (n, d), g in mean.groupby(["N", "D"]):
        g = g.sort_values("lr").reset_index(drop=True)
        i = int(np.argmin(g["loss"].to_numpy()))
        edge = "low" if i == 0 else "high" if i == len(g) - 1 else ""
        lr = float(g["lr"][i])
        if not edge:
            lr = _vertex(np.log(g["lr"][i - 1 : i + 2].to_numpy()), g["loss"][i - 1 : i + 2].to_numpy(), lr)
        rows.append(
            {
                "N": n,
                "D": d,
                "C": float(g["C"].mean()),
                "lr_best": lr,
                "lr_grid_best": float(g["lr"][i]),
                "loss_best": float(g["loss"][i]),
                "n_lrs": len(g),
                "edge": edge,
            }
        )
    return pd.DataFrame(rows)


def _vertex(x, y, fallback: float) -> float:
    """exp of the vertex of the parabola through three (log lr, loss) points, kept within them."""
    a, b, _ = np.polyfit(x, y, 2)
    if a <= 0:
        return fallback
    return float(np.exp(np.clip(-b / (2 * a), x[0], x[-1])))


def _fit_law(best: pd.DataFrame) -> dict:
    """log η = log c + a_N log N + b_D log D (b_D = 0 when D does not vary), and η(C)."""
    y, lN, lD, lC = (np.log(best[k].to_numpy(float)) for k in ("lr_best", "N", "D", "C"))
    cols = [lN] + (
        [lD]
        if np.ptp(lD) > 1e-9 and np.linalg.matrix_rank(np.column_stack([lN, lD, np.ones_like(y)])) == 3
        else []
    )
    X = np.column_stack([np.ones_like(y), *cols])
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    g = np.polyfit(lC, y, 1) if np.ptp(lC) > 1e-9 else (np.nan, np.nan)
    return {
        "c": float(np.exp(coef[0])),
        "a_N": float(coef[1]),
        "b_D": float(coef[2]) if len(coef) > 2 else 0.0,
        "c_C": float(np.exp(g[1])),
        "g_C": float(g[0]),
    }


def _usable(best: pd.DataFrame) -> pd.DataFrame:
    return best[best["edge"] == ""]


def fit_lr(data, n_boot: int = 200, seed: int = 0, **_) -> FitResult:
    """The LR law of `data` (a FitData whose frame has an `lr` column)."""
    runs = _columns(data.frame, data.N, data.D, data.C, data.L)
    best = best_lr_table(runs)
    if (best["n_lrs"] < 2).all():
        raise AnalysisError("every (N, D) was trained at one learning rate: nothing to choose from")
    interior = _usable(best)
    warnings = [
        f"N={r.N:.3g}, D={r.D:.3g}: best lr {r.lr_grid_best:.3g} is at the {r.edge} edge of the LR grid "
        "(left out of the law; extend the grid)"
        for r in best.itertuples()
        if r.edge
    ]
    if len(interior) < 2 or interior["N"].nunique() < 2:
        raise AnalysisError(
            f"{len(interior)} (N, D) points have an interior LR optimum (of {len(best)}); the law "
            "needs two sizes or more: " + "; ".join(warnings)
        )
    params = _fit_law(interior)
    samples = pd.DataFrame(_bootstrap(runs, n_boot, seed))
    return FitResult(
        "lr",
        params,
        None,
        np.zeros(0),
        best,
        warnings=warnings,
        ci=percentile_ci(samples),
        bootstrap_samples=samples,
        extra={
            "optima": best.to_dict("records"),
            "deepseek_g_C": DEEPSEEK_G,
            "n_points": len(interior),
            **provenance(data, interior),
        },
    )


CORPUS_COLUMNS = ("dataset", "tokenizer", "vocab_size", "corpus_fingerprint")


def provenance(data, interior: pd.DataFrame) -> dict:
    """What a study needs to reuse the law (lab.study.lr_law): the corpus, tokenizer and vocabulary the
    runs trained on (one value each, a list when they differ; absent columns left out), the N column,
    and the ranges of N and D of the interior optima it was fitted on (d_range None when D did not vary)."""
    corpus = {}
    for col in CORPUS_COLUMNS:
        if col in data.frame.columns:
            values = sorted({v for v in data.frame[col].dropna().tolist()}, key=str)
            corpus[col] = values[0] if len(values) == 1 else values
    n, d = interior["N"].to_numpy(float), interior["D"].to_numpy(float)
    return {
        "corpus": corpus,
        "n_column": data.columns.get("N"),
        "n_range": [float(n.min()), float(n.max())],
        "d_range": [float(d.min()), float(d.max())] if np.ptp(d) > 1e-9 else None,
    }


def _bootstrap(runs: pd.DataFrame, n_boot: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    groups = [g for _, g in runs.groupby(["N", "D", "lr"])]
    out = []
    for _ in range(n_boot):
        rows = pd.concat([g.iloc[rng.integers(0, len(g), len(g))] for g in groups])
        best = _usable(best_lr_table(rows))
        if len(best) < 2:
            continue
        best = best.iloc[rng.integers(0, len(best), len(best))]
        if best["N"].nunique() >= 2:
            out.append(_fit_law(best))
    return out


def resample_lr(data, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Bootstrap samples of the law's parameters (the `lab fit --bootstrap` hook)."""
    return pd.DataFrame(_bootstrap(_columns(data.frame, data.N, data.D, data.C, data.L), n_boot, seed))


def summary(fit: FitResult) -> list[str]:
    p, ci = fit.params, fit.ci or {}
    iv = lambda k: f" [{ci[k]['lo']:.3f}, {ci[k]['hi']:.3f}]" if k in ci else ""
    lines = [f"  {'N':>10} {'D':>10} {'best lr':>9} {'grid best':>9} {'loss':>7}  edge"]
    for r in fit.extra["optima"]:
        lines.append(
            f"  {r['N']:>10.3g} {r['D']:>10.3g} {r['lr_best']:>9.3g} {r['lr_grid_best']:>9.3g} "
            f"{r['loss_best']:>7.4f}  {r['edge'] or '-'}"
        )
    lines.append(
        f"  η_opt(N, D) = {p['c']:.3g} · N^{p['a_N']:.3f}{iv('a_N')} · D^{p['b_D']:.3f}{iv('b_D')} "
        f"({fit.extra['n_points']} interior optima)"
    )
    lines.append(
        f"  η_opt(C) = {p['c_C']:.3g} · C^{p['g_C']:.3f}{iv('g_C')}; DeepSeek LLM: C^{DEEPSEEK_G} "
        f"({'inside' if _covers(ci.get('g_C'), DEEPSEEK_G) else 'outside'} the interval)"
    )
    return lines


def _covers(interval, value) -> bool:
    return bool(interval) and interval["lo"] <= value <= interval["hi"]


def plot_loss_vs_lr(table: pd.DataFrame, out_dir, formats=("png",)) -> list:
    """lr.png: final validation loss against peak learning rate, one line per (N, D) (seeds
    averaged), the best point of each ringed; plus lr.csv (the plotted means)."""
    import matplotlib.pyplot as plt

    n_col = "params_total" if "params_total" in table.columns else "params"
    if "lr" not in table.columns or table["lr"].nunique() < 2:
        raise AnalysisError("the table has no lr column with two values or more: nothing to plot against lr")
    df = table.groupby([n_col, "tokens", "lr"], as_index=False)["final_val_loss"].mean()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for (n, d), g in df.groupby([n_col, "tokens"]):
        g = g.sort_values("lr")
        (line,) = ax.plot(g["lr"], g["final_val_loss"], "o-", label=f"N={n:.3g}, D={d:.3g}")
        best = g.loc[g["final_val_loss"].idxmin()]
        ax.plot(best["lr"], best["final_val_loss"], "o", ms=12, mfc="none", color=line.get_color())
    ax.set(
        xscale="log", xlabel="peak learning rate", ylabel="final validation loss", title="loss vs learning rate"
    )
    ax.legend(fontsize=7)
    from ..plotting.figure_files import save_figure

    return save_figure(fig, df.rename(columns={n_col: "params"}), out_dir, "lr", formats)


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "lr"
DESCRIPTION = (
    "best learning rate per (N, D) (edges of the LR grid flagged), then eta_opt = c N^a D^b and "
    "eta_opt(C) vs DeepSeek's C^-0.125, bootstrap CIs (needs runs at several learning rates)"
)
FIGURES = "l"  # loss vs learning rate
SUITE_BOOTSTRAP = False
COLUMNS = ("lr",)
VARIES = True


def fit(data, curves, **kw) -> FitResult:
    return fit_lr(data, **kw)


def resample(fit, data, curves, n_boot, seed, target_flops) -> pd.DataFrame:
    return resample_lr(data, n_boot, seed)


def options(o) -> dict:
    return {"n_boot": o.bootstrap or 200, "seed": o.seed}


def figure(source, table, options, out, formats, fit=None) -> list:
    """Figure l, drawn from the table's rows (not from the fit)."""
    from ..table import filter_rows, load_table

    return plot_loss_vs_lr(filter_rows(load_table(source), where=table.where, status=table.status), out, formats)
