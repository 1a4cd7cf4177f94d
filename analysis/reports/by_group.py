"""One law per variant: split a results table by a column (`variant`, `arch`, `attn_window`, ...),
fit each part with the same method and options, and compare the fits — their compute-optimal
frontiers side by side and their exponents with intervals (`lab fit --by COL`, `lab plot --by COL`).

Each part is fitted as a table of its own (a study directory's training curves are not split, so
the envelope method sees final points only). A part that cannot be fitted (too few rows, one
budget) is reported with its reason; the others still are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AnalysisError
from ..options import FitOptions, TableOptions


def split(source, by: str, table: TableOptions | None = None, need_budget: bool = False) -> dict:
    """{value: an `analysis.load` Study of the rows with that value of column `by`}."""
    from ..inputs import load
    from ..table import load_table

    df = load_table(source)
    if by not in df.columns:
        raise AnalysisError(
            f"--by {by}: the table has no column {by!r} (columns: {', '.join(map(str, df.columns))})"
        )
    values = df[by].fillna("").astype(str)
    if values.nunique() < 2:
        raise AnalysisError(f"--by {by}: every row has the same value ({values.iloc[0]!r}); nothing to compare")
    return {
        v: (lambda part: lambda: load(part, table, need_budget=need_budget))(df[values == v])
        for v in sorted(values.unique())
    }


def fit_groups(
    source, by: str, method: str, table: TableOptions | None = None, options: FitOptions | None = None
) -> dict:
    """{value: FitResult, or the one-line reason it could not be fitted}."""
    from ..fitting import fit_with_options
    from ..methods import get
    from ..table import load_table

    out = {}
    df = load_table(source)
    mixed = _mixed_variants(df, by)
    for value, loader in split(df, by, table, need_budget=get(method).needs_budget).items():
        try:
            study = loader()
            out[value] = fit_with_options(study, method, options or FitOptions())
            out[value].warnings[:0] = study.warnings  # the table's (a duplicated column, skipped lines)
        except AnalysisError as e:
            out[value] = str(e)
        if value in mixed:
            note = f"{by}={value} pools {len(mixed[value])} variants ({', '.join(mixed[value])}): use --by variant"
            if isinstance(out[value], str):
                out[value] += f"; {note}"
            else:
                out[value].warnings.append(note)
    if all(isinstance(f, str) for f in out.values()):
        raise AnalysisError(
            f"--by {by}: no part could be fitted: " + "; ".join(f"{v}: {r}" for v, r in out.items())
        )
    return out


def _mixed_variants(df, by: str) -> dict:
    """{value of `by`: the distinct `variant`s it pools} for the values that pool more than one."""
    if by == "variant" or "variant" not in df.columns or by not in df.columns:
        return {}
    groups = df.assign(_v=df["variant"].fillna("").astype(str)).groupby(df[by].fillna("").astype(str))["_v"]
    return {k: sorted(v.unique()) for k, v in groups if v.nunique() > 1}


def frontier(fit, flops: np.ndarray) -> np.ndarray | None:
    """N_opt along `flops` for fits that give a frontier (isoflop, parametric); None otherwise."""
    if "n_coef" in fit.params:
        return fit.params["n_coef"] * flops ** fit.params["a"]
    if fit.law is not None and hasattr(fit.law, "optimal") and "k" in fit.params:
        return np.asarray(fit.law.optimal(flops, fit.params["k"])[0], float)
    return None


def exponent_rows(fits: dict) -> list[dict]:
    """One row per fitted part: the exponent a with its CI where bootstrapped."""
    rows = []
    for value, fit in fits.items():
        if isinstance(fit, str) or fit.a is None:
            continue
        ci = (fit.ci or {}).get("a", {})
        rows.append(
            {"group": value, "a": fit.a, "a_lo": ci.get("lo"), "a_hi": ci.get("hi"), "n_points": fit.n_points}
        )
    return rows


def plot_groups(fits: dict, by: str, out_dir, formats=("png",), method: str | None = None) -> list[Path]:
    """Frontiers side by side (left) and exponents with CIs (right), with the data as CSV; `method`
    (when several are drawn) names the files and titles."""
    import matplotlib.pyplot as plt
    import pandas as pd

    out_dir = Path(out_dir)
    good = {v: f for v, f in fits.items() if not isinstance(f, str)}
    c_all = np.concatenate(
        [np.asarray(f.data["C"] if "C" in f.data else [], float) for f in good.values()] or [[]]
    )
    c_all = c_all[np.isfinite(c_all) & (c_all > 0)]
    flops = (
        np.logspace(np.log10(c_all.min()) - 0.5, np.log10(c_all.max()) + 1, 60)
        if len(c_all)
        else np.logspace(10, 14, 60)
    )
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    curves = []
    for value, fit in good.items():
        n_opt = frontier(fit, flops)
        if n_opt is not None:
            left.plot(flops, n_opt, label=f"{by}={value}: a={fit.a:.3f}")
            curves += [{"group": value, "flops": c, "n_opt": n} for c, n in zip(flops, n_opt)]
    left.set(
        xscale="log",
        yscale="log",
        xlabel="compute C (FLOPs)",
        ylabel="compute-optimal N",
        title=f"{method + ' ' if method else ''}frontier by {by}",
    )
    left.legend(fontsize=7)
    rows = exponent_rows(fits)
    for i, r in enumerate(rows):
        err = None if r["a_lo"] is None else [[r["a"] - r["a_lo"]], [r["a_hi"] - r["a"]]]
        right.errorbar([i], [r["a"]], yerr=err, fmt="o", capsize=4)
    right.set_xticks(range(len(rows)), [r["group"] for r in rows], rotation=20, fontsize=7)
    right.set(ylabel="exponent a of N_opt ∝ C^a", title="exponents (95% CI where bootstrapped)")
    from ..plotting.figure_files import save_figure

    stem = f"by_{by}" + (f"_{method}" if method else "")
    written = save_figure(fig, pd.DataFrame(rows), out_dir, f"{stem}_exponents", formats)
    from ..outputs import claim

    claim(out_dir, [f"{stem}_frontiers.csv"])
    pd.DataFrame(curves).to_csv(out_dir / f"{stem}_frontiers.csv", index=False)
    return written + [out_dir / f"{stem}_frontiers.csv"]
