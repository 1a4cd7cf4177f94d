"""`lab report DIR`: a one-page Markdown report of a study — the table, every fit with its CIs,
the compute-optimal exponents side by side, the back-test, and figures (a)-(e).

Writes DIR/report.md (or --out), the figures and their CSVs under <report dir>/figures/, and
fits.json with every fit's JSON beside the report.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .result import _plain


def _g(v, spec=".4g"):
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def _ci(fit, name, spec=".3g"):
    ci = (fit.ci or {}).get(name)
    return f" [{ci['lo']:{spec}}, {ci['hi']:{spec}}]" if ci else ""


def write_report(source, args, out: Path | None = None) -> Path:
    from .cli import load_inputs
    from .plots import draw_figures
    from .suite import run_suite

    source = Path(source)
    out = out or ((source if source.is_dir() else source.parent) / "report.md")
    fig_dir = out.parent / "figures"
    data, curves, notes = load_inputs(source, args, need_budget=True)
    suite = run_suite(data, curves, args)
    figures = draw_figures(suite, data, fig_dir, "abcde", ("png", "svg"), args.target_flops)
    notes += suite["notes"]

    frame = data.frame
    L = [f"# Scaling-law report: `{source.name}`", ""]
    status = ""
    if "status" in getattr(args, "_raw_columns", []) or "status" in frame.columns:
        status = ", ".join(f"{k}: {v}" for k, v in frame["status"].value_counts().items())
    L += ["## Data", "",
          f"- {len(data)} runs used (filter: status={args.status}{', where ' + repr(args.where) if args.where else ''}"
          f"{', ' + status if status else ''})",
          "- columns: " + ", ".join(f"{k} = `{v}`" for k, v in data.columns.items()),
          f"- N {data.N.min():.3g} – {data.N.max():.3g}; D {data.D.min():.3g} – {data.D.max():.3g}; "
          f"C {data.C.min():.3g} – {data.C.max():.3g} FLOPs; loss {data.L.min():.4g} – {data.L.max():.4g}",
          f"- training curves: {'%d runs' % curves['run_id'].nunique() if curves is not None else 'none (envelope of final points)'}",
          ""]
    L += ["## Compute-optimal exponents", "", "N_opt ∝ C^a, D_opt ∝ C^b (C = %g N D)." % data.k, "",
          "| method | a | b | N_opt at target | D_opt at target |", "|---|---|---|---|---|"]
    for name in ("parametric", "isoflop", "envelope", "kaplan"):
        f = suite.get(name)
        if f is None:
            continue
        t = f.extra.get("target", {})
        L.append(f"| {name} | {_g(f.a, '.3f')}{_ci(f, 'a')} | {_g(f.b, '.3f')}{_ci(f, 'b')} | "
                 f"{_g(t.get('n_opt'), '.3g')}{_ci(f, 'n_opt')} | {_g(t.get('d_opt'), '.3g')}{_ci(f, 'd_opt')} |")
    if args.target_flops:
        L.append(f"\nTarget compute: {args.target_flops:.3g} FLOPs.")
    if args.bootstrap:
        L.append(f"Brackets: {args.level:.0%} bootstrap percentile intervals ({args.bootstrap} resamples).")
    L.append("")
    p = suite.get("parametric")
    if p is not None:
        q = p.params
        L += ["## Parametric fit (approach 3)", "",
              f"L(N, D) = {q['E']:.4f}{_ci(p, 'E', '.3f')} + {q['A']:.4g}{_ci(p, 'A')} / N^{q['alpha']:.4f}{_ci(p, 'alpha')}"
              f" + {q['B']:.4g}{_ci(p, 'B')} / D^{q['beta']:.4f}{_ci(p, 'beta')}", "",
              f"Huber objective {p.objective:.6e} ({p.extra['objective_convention']}), {p.extra['n_inits']} initialisations.", ""]
    bt = suite.get("backtest")
    if bt is not None:
        s = bt["summary"]
        L += [f"Back-test: fitted on C ≤ {bt['train_max_flops']:.3g}, predicting {s['n_test']} held-out runs: "
              f"rmse(log L) {s['rmse_log']:.3g}, mean |relative error| {s['mean_abs_rel_error']:.2%}, "
              f"max {s['max_abs_rel_error']:.2%}.", ""]
    iso = suite.get("isoflop")
    if iso is not None:
        L += ["## IsoFLOP optima (approach 2)", "", "| budget | N_opt | D_opt | loss | σ(log N_opt) | used |", "|---|---|---|---|---|---|"]
        for _, o in iso.extra["optima"].iterrows():
            L.append(f"| {o['budget']:.3g} | {_g(o['n_opt'], '.3g')} | {_g(o['d_opt'], '.3g')} | {_g(o['loss_opt'], '.4g')} | "
                     f"{_g(o['n_opt_std_log'], '.2f')} | {'yes' if o['used'] else 'no (edge)' if o['edge'] else 'no'} |")
        L.append("")
    k = suite.get("kaplan")
    if k is not None:
        q = k.params
        L += ["## Kaplan power laws", "",
              "; ".join(f"L({v}) = ({_g(q[f'{v}_c'], '.3g')}/{v})^{_g(q[f'alpha_{v}'], '.3f')}" for v in "NDC"), ""]
    L += ["## Figures", ""]
    captions = {"a_envelope": "(a) loss vs FLOPs with the lower envelope", "b_isoflop": "(b) IsoFLOP profiles",
                "c_optimal": "(c) N_opt(C), D_opt(C)", "d_isoloss": "(d) isoloss contours and efficient frontier",
                "e_residuals": "(e) residuals and back-test"}
    for f in figures:
        fp = Path(f)
        if fp.suffix == ".png":
            rel = fp.relative_to(out.parent)
            L.append(f"![{captions.get(fp.stem, fp.stem)}]({rel.as_posix()})  ")
            L.append(f"*{captions.get(fp.stem, fp.stem)}* — data: [{fp.stem}.csv]({rel.with_suffix('.csv').as_posix()})")
            L.append("")
    warn = [f"{m}: {w}" for m in ("parametric", "isoflop", "envelope", "kaplan") if suite.get(m) for w in suite[m].warnings]
    if warn or notes:
        L += ["## Warnings", ""] + [f"- {w}" for w in notes + warn] + [""]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(L))
    fits = {m: suite[m].to_json_dict() for m in ("parametric", "isoflop", "envelope", "kaplan") if suite.get(m)}
    for m in fits:
        fits[m].pop("envelope", None)
    (out.parent / "fits.json").write_text(json.dumps(_plain(fits), indent=1))
    return out
