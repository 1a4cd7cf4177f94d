"""Command-line front end: `fit`, `plot` and `report` subcommands for the `lab` command.

The lab CLI wires them in with ``analysis.cli.add_parsers(subparsers)``; each subcommand sets
``func=handler`` with ``handler(args) -> int``. User-caused problems raise
`analysis.errors.AnalysisError` (one line), which the front end prints as
``lab <cmd>: error: <msg>`` before exiting with status 2. `python -m analysis` does the same.
Heavy modules are imported inside the handlers so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

METHODS = ("parametric", "isoflop", "envelope", "kaplan")


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return v


def _table_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("table")
    g.add_argument("--n-col", help="parameter-count column (default: params_total, params_non_embedding, params, ...)")
    g.add_argument("--d-col", help="training-tokens column (default: tokens, ...; else D = C/(k N))")
    g.add_argument("--c-col", help="compute column (default: flops_exact, flops, ...; else C = k N D)")
    g.add_argument("--loss-col", help="loss column (default: final_val_loss, loss, val_loss, ...)")
    g.add_argument("--budget-col", help="IsoFLOP budget column (default: budget_flops, flops_budget; else C binned)")
    g.add_argument("--where", help='pandas query selecting rows, e.g. "seed == 0 and params_total > 1e6"')
    g.add_argument("--status", default="completed",
                   help="keep rows with this status if the table has a status column ('any' keeps all; default completed)")
    g.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K highest-loss rows (Epoch's refit of Chinchilla dropped 5)")
    g.add_argument("--k", type=_positive_float, default=None,
                   help="FLOPs per parameter per token in C = k N D (default: median C/(N D) when the table "
                   "has both columns, else 6)")
    g.add_argument("--curve-loss", default=None, help="metrics.jsonl key for training curves (default train_loss, else val_loss)")
    g.add_argument("--smooth", type=int, default=None, metavar="K",
                   help="rolling mean over K logged points of each curve (default: 5%% of a run's points for train_loss)")


def _fit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fit")
    g.add_argument("--target-flops", type=_positive_float, help="report N_opt and D_opt at this compute")
    g.add_argument("--bootstrap", type=int, default=0, metavar="B", help="bootstrap resamples for percentile CIs")
    g.add_argument("--level", type=float, default=0.95, help="CI level (default 0.95)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--delta", type=_positive_float, default=1e-3, help="Huber delta for parametric (default 1e-3)")
    g.add_argument("--iso-method", choices=("akima", "quadratic"), default="akima",
                   help="per-budget minimum estimator for isoflop (default akima)")
    g.add_argument("--loss-noise", type=_positive_float, help="seed-to-seed loss std for isoflop uncertainties (default: estimated)")


def add_parsers(subparsers) -> None:
    """Add `fit`, `plot` and `report` to an argparse subparsers object."""
    p = subparsers.add_parser("fit", help="fit a scaling law to a results table",
                              description="Fit a scaling law to a results table (CSV or study directory).")
    p.add_argument("table", help="results CSV, or a study directory holding results.csv")
    p.add_argument("--method", choices=METHODS, default="parametric")
    _table_args(p)
    _fit_args(p)
    p.add_argument("--backtest", type=int, default=0, metavar="H", help="also back-test: hold out the H largest budgets")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_fit)

    p = subparsers.add_parser("plot", help="write figures (a)-(e) and their data CSVs",
                              description="Write the scaling-law figures (a)-(e) of a table, each with its data CSV.")
    p.add_argument("table", help="results CSV, or a study directory holding results.csv")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--figures", default="abcde", help="which figures, e.g. 'acd' (default abcde)")
    p.add_argument("--format", default="png,svg", help="image formats, comma separated (default png,svg)")
    _table_args(p)
    _fit_args(p)
    p.set_defaults(func=cmd_plot, bootstrap=200)

    p = subparsers.add_parser("report", help="write a one-page Markdown report of a study",
                              description="Fit, plot and summarise a study directory (DIR/results.csv, DIR/<run>/metrics.jsonl).")
    p.add_argument("dir", help="study directory (or a results CSV)")
    p.add_argument("--out", help="report path (default DIR/report.md)")
    _table_args(p)
    _fit_args(p)
    p.set_defaults(func=cmd_report, bootstrap=200)


def load_inputs(source, args, need_budget=False):
    """(FitData, curves or None, warnings) from a CSV or a study directory."""
    from .table import fit_data, load_table

    df = load_table(source)
    data = fit_data(df, n_col=args.n_col, d_col=args.d_col, c_col=args.c_col, loss_col=args.loss_col,
                    budget_col=args.budget_col, where=args.where,
                    status=None if args.status == "any" else args.status, k=args.k,
                    need_budget=need_budget, drop_highest=args.drop_highest_loss)
    curves, warnings = None, []
    if Path(source).is_dir() and any(Path(source).glob("**/metrics.jsonl")):
        from .curves import load_curves
        from .errors import AnalysisError

        try:
            curves, warnings = load_curves(source, data.frame, data.columns["N"], args.curve_loss,
                                           getattr(args, "smooth", None))
        except AnalysisError as e:
            warnings.append(str(e))
    return data, curves, warnings


def run_fit(args, method, data, curves):
    from .fitting import fit

    kw = {"target_flops": args.target_flops}
    if method == "parametric":
        kw["delta"] = args.delta
    if method == "isoflop":
        kw.update(estimator=args.iso_method, loss_noise=args.loss_noise, seed=args.seed)
    result = fit(data, method, curves=curves, **kw)
    if args.bootstrap:
        from .bootstrap import bootstrap

        bootstrap(result, data, curves=curves, n_boot=args.bootstrap, seed=args.seed,
                  target_flops=args.target_flops, level=args.level)
    return result


def cmd_fit(args) -> int:
    from .jaxcache import enable_persistent_cache

    if args.method == "parametric":
        enable_persistent_cache()
    data, curves, warnings = load_inputs(args.table, args, need_budget=args.method == "isoflop" or args.backtest > 0)
    result = run_fit(args, args.method, data, curves)
    result.warnings[:0] = warnings
    out = result.to_json_dict()
    if args.backtest:
        from .backtest import backtest

        kw = {"loss_noise": args.loss_noise, "estimator": args.iso_method} if args.method == "isoflop" else {}
        bt = backtest(data, args.method, holdout=args.backtest, **kw)
        out["backtest"] = {"holdout_budgets": bt["holdout_budgets"], "train_max_flops": bt["train_max_flops"],
                           **bt["summary"], "points": bt["points"]}
        from .result import _plain

        out["backtest"] = _plain(out["backtest"])
    if args.json:
        print(json.dumps(out, indent=None, allow_nan=False))
    else:
        print(summary_text(result))
        if args.backtest:
            s = out["backtest"]
            print(f"  back-test (hold out {len(s['holdout_budgets'])} largest budget(s)): "
                  f"rmse(log) {s['rmse_log']:.4g}, mean |rel err| {s['mean_abs_rel_error']:.3%}")
    return 0


def _fmt(v, spec=".4g"):
    return "nan" if v is None or v != v else format(v, spec)


def summary_text(r) -> str:
    """A few human-readable lines describing a fit."""
    p, cols = r.params, r.extra.get("columns", {})
    head = f"{r.method} fit of {r.n_points} points" + (f" ({', '.join(f'{k}={v}' for k, v in cols.items())})" if cols else "")
    lines = [head]
    if r.method == "parametric":
        lines.append(f"  L(N, D) = {p['E']:.4f} + {p['A']:.4g}/N^{p['alpha']:.4f} + {p['B']:.4g}/D^{p['beta']:.4f}")
        lines.append(f"  objective {r.objective:.7e} ({r.extra['objective_convention']}); {r.extra['n_inits']} inits, "
                     f"{r.extra['n_inits_at_best']} of the screened inits reached the best")
    elif r.method == "isoflop":
        opt = r.extra["optima"]
        lines.append(f"  {r.extra['n_budgets_used']} of {r.extra['n_budgets']} budgets used; estimator {r.extra['estimator']}, "
                     f"loss noise {r.extra['loss_noise']:.3g}")
        for _, o in opt.iterrows():
            lines.append(f"    C={o['budget']:.3g}: N_opt={_fmt(o['n_opt'])} (±{_fmt(o['n_opt_std_log'], '.2f')} in log), "
                         f"D_opt={_fmt(o['d_opt'])}, loss={_fmt(o['loss_opt'])}{'  [edge]' if o['edge'] else ''}")
    elif r.method == "kaplan":
        for v in "NDC":
            lines.append(f"  L({v}) = ({_fmt(p[f'{v}_c'])}/{v})^{_fmt(p[f'alpha_{v}'])}")
    lines.append(f"  N_opt ∝ C^{_fmt(p.get('a'))}, D_opt ∝ C^{_fmt(p.get('b'))}")
    if "target" in r.extra:
        t = r.extra["target"]
        lines.append(f"  at C={t['flops']:.3g}: N_opt={t['n_opt']:.4g}, D_opt={t['d_opt']:.4g}")
    for name, ci in (r.ci or {}).items():
        lines.append(f"  {name}: {ci['median']:.4g} [{ci['lo']:.4g}, {ci['hi']:.4g}] ({ci['level']:.0%} CI, {ci['n']} resamples)")
    for w in r.warnings:
        lines.append(f"  warning: {w}")
    return "\n".join(lines)


def cmd_plot(args) -> int:
    from .jaxcache import enable_persistent_cache
    from .plots import make_figures

    enable_persistent_cache()
    written, notes = make_figures(args.table, args, Path(args.out))
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def cmd_report(args) -> int:
    from .jaxcache import enable_persistent_cache
    from .report import write_report

    enable_persistent_cache()
    path = write_report(args.dir, args, Path(args.out) if args.out else None)
    print(path)
    return 0
