"""Text for each method's fit: the lines of `lab fit`'s summary and the Markdown section of the
report. `analysis.methods` registers them per method; nothing here dispatches on a method name."""

from __future__ import annotations

import numpy as np


def fmt(v, spec=".4g"):
    """`v` formatted, or "nan" for None / NaN (plain text)."""
    return "nan" if v is None or v != v else format(v, spec)


def md(v, spec=".4g"):
    """`v` formatted, or an en dash for None / non-finite (Markdown tables)."""
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def ci_text(fit, name, spec=".3g"):
    """" [lo, hi]" of parameter `name`'s bootstrap interval, or "" without one."""
    ci = (fit.ci or {}).get(name)
    return f" [{ci['lo']:{spec}}, {ci['hi']:{spec}}]" if ci else ""


def parametric_summary(r) -> list[str]:
    p = r.params
    return [f"  L(N, D) = {p['E']:.4f} + {p['A']:.4g}/N^{p['alpha']:.4f} + {p['B']:.4g}/D^{p['beta']:.4f}",
            f"  objective {r.objective:.7e} ({r.extra['objective_convention']}); {r.extra['n_inits']} inits, "
            f"{r.extra['n_inits_at_best']} of the screened inits reached the best"]


def isoflop_summary(r) -> list[str]:
    lines = [f"  {r.extra['n_budgets_used']} of {r.extra['n_budgets']} budgets used; estimator {r.extra['estimator']}, "
             f"loss noise {r.extra['loss_noise']:.3g}"]
    for _, o in r.extra["optima"].iterrows():
        if not np.isfinite(o["n_opt"]):  # a skipped budget has no optimum to print
            lines.append(f"    C={o['budget']:.3g}: no optimum ({o['n_points']} distinct N; needs 3)")
            continue
        lines.append(f"    C={o['budget']:.3g}: N_opt={fmt(o['n_opt'])} (±{fmt(o['n_opt_std_log'], '.2f')} in log), "
                     f"D_opt={fmt(o['d_opt'])}, loss={fmt(o['loss_opt'])}{'  [edge]' if o['edge'] else ''}")
    return lines


def kaplan_summary(r) -> list[str]:
    p = r.params
    return [f"  L({v}) = ({fmt(p[f'{v}_c'])}/{v})^{fmt(p[f'alpha_{v}'])}" for v in "NDC"]


def no_lines(r) -> list[str]:
    return []


def parametric_section(p) -> list[str]:
    q = p.params
    return ["## Parametric fit (approach 3)", "",
            f"L(N, D) = {q['E']:.4f}{ci_text(p, 'E', '.3f')} + {q['A']:.4g}{ci_text(p, 'A')} / N^{q['alpha']:.4f}"
            f"{ci_text(p, 'alpha')} + {q['B']:.4g}{ci_text(p, 'B')} / D^{q['beta']:.4f}{ci_text(p, 'beta')}", "",
            f"Huber objective {p.objective:.6e} ({p.extra['objective_convention']}), {p.extra['n_inits']} initialisations.", ""]


def isoflop_section(iso) -> list[str]:
    L = ["## IsoFLOP optima (approach 2)", "", "| budget | N_opt | D_opt | loss | σ(log N_opt) | used |", "|---|---|---|---|---|---|"]
    for _, o in iso.extra["optima"].iterrows():
        L.append(f"| {o['budget']:.3g} | {md(o['n_opt'], '.3g')} | {md(o['d_opt'], '.3g')} | {md(o['loss_opt'], '.4g')} | "
                 f"{md(o['n_opt_std_log'], '.2f')} | {'yes' if o['used'] else 'no (edge)' if o['edge'] else 'no'} |")
    return L + [""]


def kaplan_section(k) -> list[str]:
    q = k.params
    return ["## Kaplan power laws", "",
            "; ".join(f"L({v}) = ({md(q[f'{v}_c'], '.3g')}/{v})^{md(q[f'alpha_{v}'], '.3f')}" for v in "NDC"), ""]
