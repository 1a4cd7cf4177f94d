"""Writing a figure with its data: out/name.<format> for each format and out/name.csv beside it,
over no file the lab did not write (`analysis.outputs`).

A leaf module (matplotlib and pandas only), so fitters that draw their own figure do not import
`analysis.plotting.plots` and, through it, the whole suite.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.ticker import NullFormatter


def save_figure(fig, df: pd.DataFrame, out, name: str, formats=("png", "svg")) -> list[Path]:
    """Write `fig` as out/name.<format> for each format and its data `df` as out/name.csv; close it."""
    from ..outputs import claim

    out = claim(out, [f"{name}.{fmt}" for fmt in formats] + [f"{name}.csv"])  # never over a user's file
    for ax in fig.axes:  # log axes spanning less than a decade label their minor ticks, crowding them
        if ax.get_xscale() == "log":
            ax.xaxis.set_minor_formatter(NullFormatter())
    paths = []
    for fmt in formats:
        p = out / f"{name}.{fmt}"
        fig.savefig(p, bbox_inches="tight", dpi=150 if fmt == "png" else None)
        paths.append(p)
    plt.close(fig)
    p = out / f"{name}.csv"
    df.to_csv(p, index=False)
    return paths + [p]
