"""`lab report DIR`: a one-page Markdown report of a study — the table, every fit with its CIs,
the compute-optimal exponents side by side, the back-test, and figures (a)-(e).

Writes DIR/report.md (or `out`), the figures and their CSVs under <report dir>/figures/, and
fits.json with every fit's JSON beside the report.
"""

from __future__ import annotations

import json
from pathlib import Path

from .describe import ci_text, md
from .methods import METHODS, get
from .options import FitOptions, TableOptions
from .result import plain

DEFAULT_OPTIONS = FitOptions(bootstrap=200)  # `lab plot` and `lab report` bootstrap by default
CAPTIONS = {"a_envelope": "(a) loss vs FLOPs with the lower envelope", "b_isoflop": "(b) IsoFLOP profiles",
            "c_optimal": "(c) N_opt(C), D_opt(C)", "d_isoloss": "(d) isoloss contours and efficient frontier",
            "e_residuals": "(e) residuals and back-test"}


def write_report(source, out: Path | str | None = None, table: TableOptions | None = None,
                 options: FitOptions | None = None) -> Path:
    """Fit every method on `source` (study directory or CSV), draw the figures, and write the
    Markdown report to `out` (default <dir>/report.md). Returns the report's path."""
    from .inputs import load
    from .plots import draw_figures
    from .suite import run_suite

    source, table, options = Path(source), table or TableOptions(), options or DEFAULT_OPTIONS
    out = Path(out) if out else ((source if source.is_dir() else source.parent) / "report.md")
    study = load(source, table, need_budget=True)
    suite = run_suite(study, options)
    figures = draw_figures(suite, study.data, out.parent / "figures", "abcde", ("png", "svg"), options.target_flops)
    notes = study.warnings + suite["notes"]
    lines = [f"# Scaling-law report: `{source.name}`", ""]
    lines += _data_section(study, table) + _exponents_section(suite, study.data.k, options)
    lines += _method_sections(suite) + _figures_section(figures, out.parent) + _warnings_section(suite, notes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))
    fits = {m: suite[m].to_json_dict() for m in METHODS if suite.get(m)}
    for m in fits:
        fits[m].pop("envelope", None)
    (out.parent / "fits.json").write_text(json.dumps(plain(fits), indent=1))
    return out


def _data_section(study, table: TableOptions) -> list[str]:
    data, curves, frame = study.data, study.curves, study.data.frame
    status = ""
    if "status" in frame.columns:
        status = ", ".join(f"{k}: {v}" for k, v in frame["status"].value_counts().items())
    shown = "any" if table.status is None else table.status
    return ["## Data", "",
            f"- {len(data)} runs used (filter: status={shown}{', where ' + repr(table.where) if table.where else ''}"
            f"{', ' + status if status else ''})",
            "- columns: " + ", ".join(f"{k} = `{v}`" for k, v in data.columns.items()),
            f"- N {data.N.min():.3g} – {data.N.max():.3g}; D {data.D.min():.3g} – {data.D.max():.3g}; "
            f"C {data.C.min():.3g} – {data.C.max():.3g} FLOPs; loss {data.L.min():.4g} – {data.L.max():.4g}",
            f"- training curves: {'%d runs' % curves['run_id'].nunique() if curves is not None else 'none (envelope of final points)'}",
            ""]


def _exponents_section(suite, k: float, options: FitOptions) -> list[str]:
    L = ["## Compute-optimal exponents", "", "N_opt ∝ C^a, D_opt ∝ C^b (C = %g N D)." % k, "",
         "| method | a | b | N_opt at target | D_opt at target |", "|---|---|---|---|---|"]
    for name in METHODS:
        f = suite.get(name)
        if f is None:
            continue
        t = f.extra.get("target", {})
        L.append(f"| {name} | {md(f.a, '.3f')}{ci_text(f, 'a')} | {md(f.b, '.3f')}{ci_text(f, 'b')} | "
                 f"{md(t.get('n_opt'), '.3g')}{ci_text(f, 'n_opt')} | {md(t.get('d_opt'), '.3g')}{ci_text(f, 'd_opt')} |")
    if options.target_flops:
        L.append(f"\nTarget compute: {options.target_flops:.3g} FLOPs.")
    if options.bootstrap:
        L.append(f"Brackets: {options.level:.0%} bootstrap percentile intervals ({options.bootstrap} resamples).")
    return L + [""]


def _method_sections(suite) -> list[str]:
    """Each fitted method's own section; the back-test paragraph follows the method it tested."""
    L, bt = [], suite.get("backtest")
    for name in METHODS:
        f, section = suite.get(name), get(name).section
        if f is not None and section is not None:
            L += section(f)
        if bt is not None and bt["method"] == name:
            s = bt["summary"]
            L += [f"Back-test: fitted on C ≤ {bt['train_max_flops']:.3g}, predicting {s['n_test']} held-out runs: "
                  f"rmse(log L) {s['rmse_log']:.3g}, mean |relative error| {s['mean_abs_rel_error']:.2%}, "
                  f"max {s['max_abs_rel_error']:.2%}.", ""]
    return L


def _figures_section(figures, base: Path) -> list[str]:
    L = ["## Figures", ""]
    for f in figures:
        fp = Path(f)
        if fp.suffix == ".png":
            rel = fp.relative_to(base)
            caption = CAPTIONS.get(fp.stem, fp.stem)
            L += [f"![{caption}]({rel.as_posix()})  ",
                  f"*{caption}* — data: [{fp.stem}.csv]({rel.with_suffix('.csv').as_posix()})", ""]
    return L


def _warnings_section(suite, notes) -> list[str]:
    warn = [f"{m}: {w}" for m in METHODS if suite.get(m) for w in suite[m].warnings]
    return ["## Warnings", ""] + [f"- {w}" for w in notes + warn] + [""] if (warn or notes) else []
