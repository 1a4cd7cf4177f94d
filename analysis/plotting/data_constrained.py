"""The data-constrained fit's figure: loss vs epochs for each (N, U) family of repeated runs
(filled), runs of the same size on fresh data at the same token counts (hollow), the fitted
law through them, the same law with all-fresh data (what unlimited unique data would give), and
the "worth repeating up to ~N epochs" read-out as a vertical line. A CSV of the drawn curves is
written next to the image."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

MAX_FAMILIES = 8  # (N, U) families drawn, those with the most runs (of at least 3)


def curves(fit, n_points: int = 200) -> pd.DataFrame:
    """Fitted loss vs epochs for every (N, U) of the fit's table, repeated and all-fresh."""
    law, rows = fit.law, []
    top = max(2.0, float(fit.data["epochs"].max()) * 1.5)
    for (N, U), pts in fit.data.groupby(["N", "unique_tokens"]):
        epochs = np.geomspace(min(1.0, float(pts["epochs"].min())), top, n_points)
        D = U * epochs
        rows.append(
            pd.DataFrame(
                {
                    "N": N,
                    "U": U,
                    "epochs": epochs,
                    "D": D,
                    "loss_fit": law(np.full_like(D, N), D, np.minimum(U, D)),
                    "loss_fresh": law.base(np.full_like(D, N), D),
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def loss_vs_epochs(fit, path, formats=("png",)) -> list[str]:
    """Draw the figure to `path` (its suffix replaced by each format) and its CSV; returns the paths."""
    from ..outputs import claim

    path = Path(path)
    claim(path.parent, [path.with_suffix(f".{fmt}").name for fmt in (*formats, "csv")])
    drawn = curves(fit)
    w = fit.extra["worth_repeating"]
    fig, ax = plt.subplots(figsize=(9, 5))
    groups = [g for g in fit.data.groupby(["N", "unique_tokens"]) if len(g[1]) >= 3 and g[1]["epochs"].max() > 1]
    groups = sorted(groups, key=lambda g: -len(g[1]))[:MAX_FAMILIES]  # the best-sampled repeated families
    data = fit.data
    colors = plt.cm.viridis(np.linspace(0.05, 0.85, max(len(groups), 1)))
    for color, ((N, U), pts) in zip(colors, groups):
        label = f"N={N:.3g}, U={U:.3g}"
        ax.scatter(pts["epochs"], pts["loss"], color=color, s=22, zorder=3, label=label)
        fresh = data[(data["N"] == N) & (data["unique_tokens"] > U) & (data["epochs"] <= 1)]
        if len(fresh):  # runs of the same size on fresh data, placed at the epochs their D would be at U
            ax.scatter(fresh["D"] / U, fresh["loss"], facecolors="none", edgecolors=color, s=30, zorder=3)
        c = drawn[(drawn["N"] == N) & (drawn["U"] == U)]
        ax.plot(c["epochs"], c["loss_fit"], color=color, lw=1.5)
        ax.plot(c["epochs"], c["loss_fresh"], color=color, lw=1, ls=":")
    ax.axvline(w["half_value_epochs"], color="0.3", ls="--", lw=1)
    ax.text(
        w["half_value_epochs"],
        ax.get_ylim()[1],
        f" worth repeating up to ~{w['half_value_epochs']:.0f} epochs",
        va="top",
        ha="left",
        fontsize=8,
        color="0.3",
    )
    ax.axvline(w["near_fresh_epochs"], color="0.6", ls="-.", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("epochs (training tokens / unique tokens)")
    ax.set_ylabel("loss")
    p = fit.params
    ax.set_title(
        f"Data-constrained fit: R_D* = {p['R_D_star']:.3g}, R_N* = {p['R_N_star']:.3g} "
        f"(solid: fit; dotted: all-fresh data)",
        fontsize=9,
    )
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    written = []
    for fmt in formats:
        out = path.with_suffix(f".{fmt}")
        fig.savefig(out, dpi=130)
        written.append(str(out))
    plt.close(fig)
    csv = path.with_suffix(".csv")
    drawn.to_csv(csv, index=False)
    return written + [str(csv)]
