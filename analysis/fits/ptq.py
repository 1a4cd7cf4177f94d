"""How post-training quantization damage grows with training: Kumar et al. 2024 ("Scaling Laws for
Precision") model the loss increase from quantizing a trained model's weights as

    δ(N, D) = L_quantized − L_float = C · D^γ_D / N^γ_N        (per precision)

— it grows with the training tokens D and falls with the parameters N, so models trained far past
Chinchilla-optimal lose more to quantization. Fitted here per format (int8, int4, bf16 columns
`val_loss_<fmt>` against `final_val_loss`) by least squares on log δ over the runs whose damage
is positive (a quantized loss at or below the float loss carries no magnitude; how many such runs
were dropped is a warning), with run-resampled percentile CIs. The formats' exponents are
parameters `gamma_D_<fmt>`, `gamma_N_<fmt>`; `slope_DN_<fmt>` is the exponent of D/N alone when
δ is fitted as C · (D/N)^s (one exponent, the simpler question "does damage grow with tokens
per parameter?").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..result import FitResult, percentile_ci

FORMATS = ("int4", "int8", "bf16")
BITS = {"float": 32, "bf16": 16, "int8": 8, "int4": 4}


def _lstsq(y, *columns):
    X = np.column_stack([np.ones_like(y), *columns])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return coef, y - X @ coef


def _one_format(N, D, delta):
    ok = delta > 0
    y, lN, lD = np.log(delta[ok]), np.log(N[ok]), np.log(D[ok])
    (c, gD, mgN), resid = _lstsq(y, lD, lN)
    (_, s), _ = _lstsq(y, lD - lN)
    return {"C": float(np.exp(c)), "gamma_D": float(gD), "gamma_N": float(-mgN), "slope_DN": float(s)}, resid, ok


def fit_ptq(data, n_boot: int = 200, seed: int = 0, loss_col: str = "final_val_loss", **_) -> FitResult:
    """Per-format damage laws of `data` (a FitData whose frame has val_loss_<fmt> columns)."""
    frame = data.frame
    formats = [f for f in FORMATS if f"val_loss_{f}" in frame.columns]
    if not formats:
        raise AnalysisError(
            "the table has no val_loss_int8 / val_loss_int4 / val_loss_bf16 column: lab runs record "
            "them (lab.evals.final); `lab eval RUN_DIR` computes them for older runs"
        )
    base = frame[loss_col].to_numpy(float) if loss_col in frame.columns else data.L
    params, warnings, samples, used = {}, [], {}, {}
    rng = np.random.default_rng(seed)
    for fmt in formats:
        delta = frame[f"val_loss_{fmt}"].to_numpy(float) - base
        finite = np.isfinite(delta)
        N, D, d = data.N[finite], data.D[finite], delta[finite]
        if (d > 0).sum() < 4 or len(np.unique(N[d > 0])) < 2 or len(np.unique(D[d > 0])) < 2:
            warnings.append(
                f"{fmt}: {(d > 0).sum()} runs with positive damage (of {len(d)}): too few, or one N or D, "
                "to fit its exponents"
            )
            continue
        p, _, ok = _one_format(N, D, d)
        if (~ok).sum():
            warnings.append(
                f"{fmt}: {(~ok).sum()} of {len(d)} runs lost nothing to quantization and were left out"
            )
        params.update({f"{k}_{fmt}": v for k, v in p.items()})
        used[fmt] = int(ok.sum())
        boot = []
        for _ in range(n_boot):
            i = rng.integers(0, len(d), len(d))
            if (d[i] > 0).sum() >= 4 and len(np.unique(N[i][d[i] > 0])) > 1 and len(np.unique(D[i][d[i] > 0])) > 1:
                boot.append({f"{k}_{fmt}": v for k, v in _one_format(N[i], D[i], d[i])[0].items()})
        samples[fmt] = pd.DataFrame(boot)
    if not used:
        raise AnalysisError(
            "no format has enough runs with positive quantization damage to fit: " + "; ".join(warnings)
        )
    ci = {}
    for s in samples.values():
        ci.update(percentile_ci(s))
    out = frame.assign(N=data.N, D=data.D, tokens_per_param=data.D / data.N)
    return FitResult(
        "ptq",
        params,
        None,
        np.zeros(0),
        out,
        warnings=warnings,
        extra={"runs_per_format": used, "n_points": len(frame)},
        ci=ci,
    )


def summary(fit: FitResult) -> list[str]:
    lines = []
    for fmt in FORMATS:
        if f"gamma_D_{fmt}" not in fit.params:
            continue
        c = lambda k: fit.ci.get(f"{k}_{fmt}") if fit.ci else None
        fmt_ci = lambda k: f" [{c(k)['lo']:.3f}, {c(k)['hi']:.3f}]" if c(k) else ""
        p = fit.params
        lines.append(
            f"  {fmt}: damage = {p[f'C_{fmt}']:.3g} · D^{p[f'gamma_D_{fmt}']:.3f}{fmt_ci('gamma_D')} / "
            f"N^{p[f'gamma_N_{fmt}']:.3f}{fmt_ci('gamma_N')}; as (D/N)^s: s = {p[f'slope_DN_{fmt}']:.3f}"
            f"{fmt_ci('slope_DN')} ({fit.extra['runs_per_format'][fmt]} runs)"
        )
    return lines


def plot_loss_vs_bits(table: pd.DataFrame, out_dir, formats=("png",)) -> list:
    """ptq.png: validation loss against weight bits (32 float, 16, 8, 4), one line per run size
    at its longest training, plus ptq.csv."""
    import matplotlib.pyplot as plt

    n_col = "params_total" if "params_total" in table.columns else "params"
    rows = []
    for n, runs in table.groupby(n_col):
        last = runs.sort_values("tokens").iloc[-1]
        for fmt, bits in BITS.items():
            col = "final_val_loss" if fmt == "float" else f"val_loss_{fmt}"
            if col in last and np.isfinite(last[col]):
                rows.append({"params": n, "tokens": last["tokens"], "bits": bits, "loss": float(last[col])})
    if not rows:
        raise AnalysisError("no run has quantized losses to plot")
    df = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5, 4))
    for n, g in df.groupby("params"):
        ax.plot(g.bits, g.loss, "o-", label=f"N={n:.3g}, D={g.tokens.iloc[0]:.3g}")
    ax.set(
        xscale="log",
        xlabel="weight bits (post-training)",
        ylabel="validation loss",
        title="loss vs weight precision",
    )
    ax.set_xticks([4, 8, 16, 32], ["4", "8", "16", "32"])
    ax.legend(fontsize=7)
    from ..plotting.figure_files import save_figure

    return save_figure(fig, df, out_dir, "ptq", formats)


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "ptq"
DESCRIPTION = "post-training quantization damage L_q - L = C D^gamma_D / N^gamma_N per format (Kumar et al. 2024)"
FIGURES = "q"  # loss vs weight bits
SUITE_BOOTSTRAP = False
COLUMNS = ("val_loss_int4",)


def fit(data, curves, **kw) -> FitResult:
    return fit_ptq(data, **kw)


def options(o) -> dict:
    return {"n_boot": o.bootstrap or 200, "seed": o.seed}


def figure(source, table, options, out, formats, fit=None) -> list:
    """Figure q, drawn from the table's rows (not from the fit)."""
    from ..table import filter_rows, load_table

    return plot_loss_vs_bits(filter_rows(load_table(source), where=table.where, status=table.status), out, formats)
