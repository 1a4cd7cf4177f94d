"""The report of a study whose runs differ in more than size (architectures, windows, ...): one law
per variant, compared — never one law pooled over them.

    from analysis.reports.report_by import write_group_report
    write_group_report("runs/arch_cpu", "variant")     # runs/arch_cpu/report.md, figures/, fits.json

Each variant's runs are fitted as a table of their own by every frontier method asked for
(`analysis.reports.by_group.fit_groups`); the report tabulates the exponents with their intervals, the
lowest loss each variant reached, the reason a part could not be fitted, and draws the frontiers
and exponents side by side (`plot_groups`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import AnalysisError
from ..options import FitOptions, TableOptions

GROUP_METHODS = ("isoflop", "parametric")


def write_group_report(
    source,
    by: str,
    out=None,
    table: TableOptions | None = None,
    options: FitOptions | None = None,
    methods=GROUP_METHODS,
) -> Path:
    """Fit `methods` per value of column `by`, draw the comparison and write the Markdown report."""
    from ..outputs import claim, report_path
    from ..result import plain
    from .by_group import fit_groups, plot_groups

    source, table, options = Path(source), table or TableOptions(), options or FitOptions(bootstrap=200)
    out = report_path(source, out)  # checked before fitting: never over a file the lab did not write
    fits, failed = {}, {}
    for m in methods:
        try:
            fits[m] = fit_groups(source, by, m, table, options)
        except AnalysisError as e:
            failed[m] = str(e)
    if not fits:
        raise AnalysisError(f"report by {by}: no method could be fitted: " + "; ".join(failed.values()))
    figures = []
    claim(out.parent, (out.name, "fits.json", "figures"))
    for m, groups in fits.items():
        figures += [
            (m, p)
            for p in plot_groups(groups, by, out.parent / "figures", ("png", "svg"), method=m)
            if p.suffix == ".png"
        ]
    lines = [
        f"# Scaling-law report: `{source.name}`, one law per `{by}`",
        "",
        f"The runs differ in `{by}` as well as in size, so each `{by}` is fitted as a table of its own; "
        "no law is pooled over them. Losses of different objectives (e.g. a masked-LM encoder's) are "
        "comparable in their exponents, not in their level.",
        "",
    ]
    for m, groups in fits.items():
        lines += _method_table(m, groups, by)
    lines += [f"- {m}: not fitted ({why})" for m, why in failed.items()]
    lines += ["## Figures", ""] + [
        f"![{m}: frontiers and exponents by {by}]({p.relative_to(out.parent)})  \n"
        f"*{m}: compute-optimal frontier and exponent a per {by}*"
        for m, p in figures
    ]
    out.write_text("\n".join(lines) + "\n")
    dump = {
        "by": by,
        **{
            m: {v: ({"error": f} if isinstance(f, str) else f.to_json_dict()) for v, f in g.items()}
            for m, g in fits.items()
        },
    }
    (out.parent / "fits.json").write_text(json.dumps(plain(dump), indent=1))
    return out


def _method_table(method: str, groups: dict, by: str) -> list[str]:
    L = [
        f"## {method}",
        "",
        f"| {by} | runs | a (N_opt ∝ C^a) | b (D_opt ∝ C^b) | lowest loss (at C) | note |",
        "|---|---|---|---|---|---|",
    ]
    for value, fit in groups.items():
        if isinstance(fit, str):
            L.append(f"| {value or '(none)'} | | | | | not fitted: {fit} |")
            continue
        best = int(np.argmin(fit.data["loss"])) if "loss" in fit.data else None
        low = (
            f"{fit.data['loss'].iloc[best]:.4g} ({fit.data['C'].iloc[best]:.3g})"
            if best is not None and "C" in fit.data
            else ""
        )
        L.append(
            f"| {value} | {fit.n_points} | {_with_ci(fit, 'a')} | {_with_ci(fit, 'b')} | {low} | "
            f"{'; '.join(fit.warnings[:2])} |"
        )
    return L + [""]


def _with_ci(fit, name: str) -> str:
    v = fit.params.get(name)
    if v is None:
        return ""
    ci = (fit.ci or {}).get(name)
    return f"{v:.3f}" + (f" [{ci['lo']:.3f}, {ci['hi']:.3f}]" if ci else "")
