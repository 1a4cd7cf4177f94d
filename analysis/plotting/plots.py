"""Figures (a)-(e) in the conventions of the scaling-law papers; each writes its data as CSV.

(a) loss vs FLOPs per run with the lower envelope, coloured by N (Chinchilla Fig. 2 left);
(b) IsoFLOP profiles with fitted curves and minima with CI bars (Chinchilla Fig. 3 left);
(c) N_opt(C) and D_opt(C), log-log, fit line, CI band, exponent, projection to a target;
(d) isoloss contours of the fitted L(N, D) over (C, N) with the efficient frontier and the data
    coloured by loss (Chinchilla Fig. 4 left);
(e) residuals of the parametric fit, and the extrapolation back-test.

Every `plot_*` function writes `<out>/<name>.<fmt>` for each format and `<out>/<name>.csv` with
exactly the plotted values (a `series` column says which element each row belongs to).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm
from matplotlib.ticker import FixedLocator, FuncFormatter

from ..laws import K_FLOPS_PER_PARAM_TOKEN
from .figure_files import save_figure

plt.rcParams.update(
    {
        "figure.dpi": 110,
        "font.size": 9,
        "axes.grid": True,
        "grid.alpha": 0.25,
        "axes.spines.top": False,
        "axes.spines.right": False,
    }
)


_save = save_figure  # the module's own name for it


def _plain_log_y(ax, lo=None, hi=None):
    """Log-scaled loss axis with plain-number ticks (2.2, 2.5, 3, ...) as the papers draw it."""
    if lo is None:
        lo, hi = ax.get_ylim()
    ticks = []
    for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1):
        ticks += [m * 10.0**k for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8)]
    ticks = [t for t in ticks if lo <= t <= hi]
    while len(ticks) > 9:
        ticks = ticks[::2]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.3g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _lognorm(v):
    v = np.asarray(v, float)
    return LogNorm(vmin=np.nanmin(v), vmax=max(np.nanmax(v), np.nanmin(v) * 1.0001))


def plot_envelope(curves: pd.DataFrame, env_fit, out: Path, formats=("png", "svg")):
    """(a) Loss against FLOPs for every run, coloured by N, with the lower envelope (when the
    envelope could be fitted; `env_fit` None draws the runs alone)."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    norm = _lognorm(curves["N"])
    cmap = plt.get_cmap("viridis")
    rows = []
    single = bool(curves.groupby("run_id").size().max() <= 1)
    if single:
        ax.scatter(curves["flops"], curves["loss"], c=curves["N"], cmap=cmap, norm=norm, s=14, lw=0)
    else:
        for _rid, c in curves.groupby("run_id", sort=False):
            ax.plot(c["flops"], c["loss"], color=cmap(norm(c["N"].iloc[0])), lw=0.9, alpha=0.85)
    rows.append(curves.assign(series="run")[["series", "run_id", "N", "flops", "loss"]])
    if env_fit is not None:
        env = env_fit.extra["envelope"].dropna(subset=["loss"])
        ax.plot(env["flops"], env["loss"], color="k", lw=1.6, ls="--", label="envelope")
        rows.append(
            pd.DataFrame(
                {
                    "series": "envelope",
                    "run_id": env["run_id"],
                    "N": env["n_opt"],
                    "flops": env["flops"],
                    "loss": env["loss"],
                }
            )
        )
        ax.legend(frameon=False, loc="upper right")
    ax.set(xscale="log", yscale="log", xlabel="FLOPs", ylabel="loss")
    _plain_log_y(ax)
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=ax, label="parameters N")
    ax.set_title(
        "(a) loss vs compute and its lower envelope"
        if env_fit is not None
        else "(a) loss vs compute (no envelope: see the report's notes)"
    )
    return _save(fig, pd.concat(rows, ignore_index=True), out, "a_envelope", formats)


def plot_isoflop(iso_fit, out: Path, formats=("png", "svg"), z: float = 1.96):
    """(b) Loss against N for each budget, the fitted profile, and its minimum with a CI bar."""
    from ..fits.isoflop import merge_close, profile_curve

    data, opt = iso_fit.data, iso_fit.extra["optima"]
    norm = _lognorm(opt["budget"])
    cmap = plt.get_cmap("plasma_r")
    fig, ax = plt.subplots(figsize=(5.6, 3.9))
    rows = []
    for _, o in opt.iterrows():
        c = o["budget"]
        sub = data[data["budget"] == c]
        xm, lm = merge_close(np.log(sub["N"].to_numpy()), sub["loss"].to_numpy())
        g = pd.DataFrame({"N": np.exp(xm), "loss": lm})
        col = cmap(norm(c))
        ax.scatter(g["N"], g["loss"], color=col, s=12, zorder=3)
        rows.append(pd.DataFrame({"series": "point", "budget": c, "N": g["N"], "loss": g["loss"]}))
        if len(g) >= 3:
            xi, li = profile_curve(
                np.log(g["N"].to_numpy()),
                g["loss"].to_numpy(),
                iso_fit.extra["estimator"],
                iso_fit.extra.get("window", 2),
            )
            ax.plot(np.exp(xi), li, color=col, lw=1.1)
            rows.append(pd.DataFrame({"series": "curve", "budget": c, "N": np.exp(xi), "loss": li}))
        if np.isfinite(o["n_opt"]):
            sd = o["n_opt_std_log"] if np.isfinite(o["n_opt_std_log"]) else 0.0
            lo, hi = o["n_opt"] * np.exp(-z * sd), o["n_opt"] * np.exp(z * sd)
            ax.errorbar(
                [o["n_opt"]],
                [o["loss_opt"]],
                xerr=[[o["n_opt"] - lo], [hi - o["n_opt"]]],
                fmt="D" if o["used"] else "x",
                color="k",
                ms=4,
                capsize=2,
                lw=0.9,
                zorder=4,
            )
            rows.append(
                pd.DataFrame(
                    {
                        "series": "minimum",
                        "budget": [c],
                        "N": [o["n_opt"]],
                        "loss": [o["loss_opt"]],
                        "N_lo": [lo],
                        "N_hi": [hi],
                        "used": [bool(o["used"])],
                    }
                )
            )
    lo, hi = np.nanpercentile(data["loss"], [0, 98])
    ax.set(xscale="log", xlabel="parameters N", ylabel="loss", ylim=(lo - 0.03 * (hi - lo), hi + 0.05 * (hi - lo)))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="FLOP budget")
    ax.set_title(f"(b) IsoFLOP profiles ({iso_fit.extra['estimator']}; minima with {z:.3g}σ bars)")
    return _save(fig, pd.concat(rows, ignore_index=True), out, "b_isoflop", formats)


def plot_optimal(
    fit,
    out: Path,
    target_flops: float | None = None,
    law=None,
    k: float = K_FLOPS_PER_PARAM_TOKEN,
    formats=("png", "svg"),
    z: float = 1.96,
):
    """(c) N_opt(C) and D_opt(C): per-budget optima (isoflop) or envelope points, the fitted power
    law with its bootstrap band, the exponent, and a projection to `target_flops`."""
    from ..methods import get

    C, pts = get(fit.method).allocation_points(fit)
    hi_c = max(C.max(), target_flops or 0)
    grid = np.geomspace(C.min() / 1.5, hi_c * 1.5, 100)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    rows = []
    for ax, key, exp_name, label in ((axes[0], "n", "a", "N_opt"), (axes[1], "d", "b", "D_opt")):
        y, sd = pts[key]
        coef, expo = fit.params[f"{key}_coef"], fit.params[exp_name]
        rows.append(_optimal_points(ax, C, y, sd, label, z))
        rows.append(_optimal_power_law(ax, grid, coef, expo, key, exp_name, label, fit.bootstrap_samples))
        if law is not None:
            lv = law.optimal(grid, k)[0 if key == "n" else 1]
            ax.plot(
                grid,
                lv,
                color="0.4",
                lw=1.0,
                ls=":",
                label=f"parametric fit (C^{law.a if key == 'n' else law.b:.3f})",
            )
            rows.append(pd.DataFrame({"series": f"{label} parametric", "C": grid, "value": lv}))
        if target_flops:
            tv = coef * target_flops**expo
            ax.scatter(
                [target_flops], [tv], marker="*", s=120, color="C1", zorder=5, label=f"projection: {tv:.3g}"
            )
            rows.append(pd.DataFrame({"series": f"{label} target", "C": [target_flops], "value": [tv]}))
        ax.set(xscale="log", yscale="log", xlabel="FLOPs C", ylabel=label)
        ax.annotate(f"{exp_name} = {expo:.3f}", xy=(0.05, 0.9), xycoords="axes fraction", fontsize=10)
        ax.legend(frameon=False, fontsize=7, loc="lower right")
    fig.suptitle(f"(c) compute-optimal allocation ({fit.method})", fontsize=10)
    return _save(fig, pd.concat(rows, ignore_index=True), out, "c_optimal", formats)


def _optimal_points(ax, C, y, sd, label: str, z: float) -> pd.DataFrame:
    """The measured optima of one panel: per-budget points with z·σ bars (isoflop), or the bare envelope
    points when they carry no σ."""
    if sd is not None:
        ax.errorbar(
            C,
            y,
            yerr=[y - y * np.exp(-z * sd), y * np.exp(z * sd) - y],
            fmt="o",
            ms=4,
            color="C0",
            capsize=2,
            lw=0.9,
            label=f"per-budget {label}",
        )
    else:
        ax.scatter(C, y, s=8, color="C0", label=f"envelope {label}")
    return pd.DataFrame(
        {
            "series": f"{label} data",
            "C": C,
            "value": y,
            "lo": y * np.exp(-z * sd) if sd is not None else np.nan,
            "hi": y * np.exp(z * sd) if sd is not None else np.nan,
        }
    )


def _optimal_power_law(ax, grid, coef, expo, key: str, exp_name: str, label: str, samples) -> pd.DataFrame:
    """The fitted power law coef·C^expo of one panel and, with more than 10 bootstrap samples, its 95% band."""
    line = coef * grid**expo
    ax.plot(grid, line, color="C3", lw=1.3, label=f"fit: {label} ∝ C^{expo:.3f}")
    band_lo = band_hi = np.full_like(grid, np.nan)
    if samples is not None and f"{key}_coef" in samples and len(samples) > 10:
        s = samples[[f"{key}_coef", exp_name]].dropna().to_numpy()
        curves = s[:, :1] * grid[None, :] ** s[:, 1:2]
        band_lo, band_hi = np.percentile(curves, [2.5, 97.5], axis=0)
        ax.fill_between(grid, band_lo, band_hi, color="C3", alpha=0.18, lw=0, label="95% bootstrap band")
    return pd.DataFrame({"series": f"{label} fit", "C": grid, "value": line, "lo": band_lo, "hi": band_hi})


def plot_isoloss(
    law,
    N,
    D,
    L,
    out: Path,
    k: float = K_FLOPS_PER_PARAM_TOKEN,
    target_flops: float | None = None,
    formats=("png", "svg"),
):
    """(d) Isoloss contours of L(N, C/(kN)) over (C, N), the efficient frontier, the data by loss."""
    C = k * N * D
    c_hi = max(C.max(), target_flops or 0) * 3
    cg = np.geomspace(C.min() / 3, c_hi, 160)
    ng = np.geomspace(N.min() / 3, N.max() * 10, 140)
    CC, NN = np.meshgrid(cg, ng)
    LL = law(NN, CC / (k * NN))
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    levels = np.quantile(L, np.linspace(0.02, 0.98, 9))
    levels = np.unique(np.round(np.concatenate([levels, [law.optimal_loss(c_hi / 3, k)]]), 3))
    cs = ax.contour(CC, NN, LL, levels=levels, cmap="Greys_r", linewidths=0.8)
    ax.clabel(cs, fontsize=6, fmt="%.2f")
    fn = law.optimal(cg, k)[0]
    ax.plot(cg, fn, color="C0", lw=1.6, label=f"efficient frontier N ∝ C^{law.a:.3f}")
    sc = ax.scatter(C, N, c=L, cmap="viridis_r", s=10, lw=0, zorder=3)
    fig.colorbar(sc, ax=ax, label="loss")
    rows = [
        pd.DataFrame({"series": "contour_grid", "C": CC.ravel(), "N": NN.ravel(), "loss": LL.ravel()}),
        pd.DataFrame({"series": "frontier", "C": cg, "N": fn, "loss": law.optimal_loss(cg, k)}),
        pd.DataFrame({"series": "data", "C": C, "N": N, "loss": L}),
    ]
    if target_flops:
        tn = law.optimal(target_flops, k)[0]
        ax.scatter([target_flops], [tn], marker="*", s=120, color="C1", zorder=5, label=f"target: N={tn:.3g}")
        rows.append(
            pd.DataFrame(
                {"series": "target", "C": [target_flops], "N": [tn], "loss": [law.optimal_loss(target_flops, k)]}
            )
        )
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="FLOPs C",
        ylabel="parameters N",
        xlim=(cg[0], cg[-1]),
        ylim=(ng[0], ng[-1]),
    )
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    ax.set_title("(d) isoloss contours of the fitted L(N, D)")
    return _save(fig, pd.concat(rows, ignore_index=True), out, "d_isoloss", formats)


def plot_residuals(fit, bt: dict | None, out: Path, formats=("png", "svg")):
    """(e) Left: residuals log L - log L_fit against C, coloured by N. Right: back-test."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.7), layout="constrained")
    rows = [_residuals_panel(fig, axes[0], fit)]
    ax = axes[1]
    if bt is not None:
        rows += _backtest_panel(ax, bt)
    else:
        ax.text(0.5, 0.5, "no back-test (too few budgets)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    return _save(fig, pd.concat(rows, ignore_index=True), out, "e_residuals", formats)


def _residuals_panel(fig, ax, fit) -> pd.DataFrame:
    """The fit's residuals log L - log L_fit against C, coloured by N, with their colour bar."""
    d = fit.data
    norm = _lognorm(d["N"])
    ax.scatter(d["C"], d["residual"], c=d["N"], norm=norm, cmap="viridis", s=10, lw=0)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="FLOPs C", ylabel="log L − log L_fit", title=f"(e) residuals ({fit.method})")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label="parameters N")
    return pd.DataFrame(
        {
            "series": "residual",
            "N": d["N"],
            "C": d["C"],
            "loss": d["loss"],
            "predicted": d["loss_fit"],
            "residual": d["residual"],
        }
    )


def _backtest_panel(ax, bt: dict) -> list[pd.DataFrame]:
    """Predicted against observed loss of the back-test: the held-out budgets, the fitted (train) points
    when given, the diagonal and the error summary."""
    rows = []
    pts = bt["points"]
    actual, pred = pts.iloc[:, -3].to_numpy(), pts.iloc[:, -2].to_numpy()
    tr = bt.get("train_points")
    if tr is not None:
        ax.scatter(tr["loss"], tr["predicted"], color="0.6", s=8, lw=0, label="fitted (train)")
        rows.append(_backtest_rows("backtest_train", tr["C"], tr["loss"], tr["predicted"]))
    allv = np.concatenate([actual, pred] + ([tr["loss"], tr["predicted"]] if tr is not None else []))
    lo, hi = allv.min(), allv.max()
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
    ax.scatter(actual, pred, color="C3", s=16, label=f"held out: C ≥ {min(bt['holdout_budgets']):.3g}")
    s = bt["summary"]
    ax.set(
        xlabel=f"observed {pts.columns[-3]}",
        ylabel="predicted",
        title=f"back-test: trained on C ≤ {bt['train_max_flops']:.3g}",
    )
    ax.annotate(
        f"rmse(log) {s['rmse_log']:.3g}\nmean |rel err| {s['mean_abs_rel_error']:.2%}",
        xy=(0.05, 0.8),
        xycoords="axes fraction",
        fontsize=8,
    )
    ax.legend(frameon=False, fontsize=7, loc="lower right")
    rows.append(_backtest_rows("backtest", pts["C"], actual, pred))
    return rows


def _backtest_rows(series: str, C, loss, predicted) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "series": series,
            "C": C,
            "loss": loss,
            "predicted": predicted,
            "residual": np.log(loss) - np.log(predicted),
        }
    )


def check_choices(wanted: str, formats) -> None:
    """Refuse unknown figure letters or image formats before any fitting is done."""
    from ..errors import AnalysisError

    bad = sorted(set(wanted) - set("abcde"))
    if bad or not wanted:
        raise AnalysisError(f"--figures takes letters from abcde, got {wanted!r}")
    supported = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    unknown = [f for f in formats if f not in supported]
    if unknown or not formats:
        raise AnalysisError(
            f"unknown image format(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(sorted(supported))}"
        )


def _runs_for_figure_a(suite: dict, data) -> pd.DataFrame:
    """The training curves, else the envelope fit's points, else each row as a one-point curve."""
    if suite.get("curves") is not None:
        return suite["curves"]
    if suite.get("envelope") is not None:
        return suite["envelope"].data
    from ..curves import final_points_as_curves

    return final_points_as_curves(data.N, data.C, data.L, data.D)


def draw_figures(
    suite: dict, data, out: Path, wanted: str = "abcde", formats=("png", "svg"), target_flops: float | None = None
) -> list[str]:
    """Draw the figures in `wanted` from a `suite.run_suite`-shaped dict (method name -> fit,
    "curves", "backtest")."""
    written = []
    if "a" in wanted:
        written += plot_envelope(_runs_for_figure_a(suite, data), suite.get("envelope"), out, formats)
    if "b" in wanted and suite.get("isoflop") is not None:
        written += plot_isoflop(suite["isoflop"], out, formats)
    param = suite.get("parametric")
    if "c" in wanted:
        from ..methods import with_hook

        basis = next((suite[m] for m in with_hook("allocation_points") if suite.get(m) is not None), None)
        if basis is not None:
            written += plot_optimal(
                basis, out, target_flops, law=param.law if param else None, k=data.k, formats=formats
            )
    if "d" in wanted and param is not None:
        written += plot_isoloss(param.law, data.N, data.D, data.L, out, data.k, target_flops, formats)
    if "e" in wanted and param is not None:
        written += plot_residuals(param, suite.get("backtest"), out, formats)
    return [str(p) for p in written]


def figures(
    study,
    fits,
    out,
    wanted: str = "abcde",
    formats=("png", "svg"),
    target_flops: float | None = None,
    backtest: dict | None = None,
) -> list[str]:
    """Draw figures (a)-(e) of `study` (an `analysis.load` result) from `fits` (FitResults, any
    methods; each figure is drawn when the fits it needs are there) into directory `out`.
    `backtest` (an `analysis.backtest` result) fills the right panel of (e). Returns the paths."""
    check_choices(wanted, tuple(formats))
    suite = {f.method: f for f in fits}
    suite.update(curves=study.curves, backtest=backtest)
    return draw_figures(suite, study.data, Path(out), wanted, tuple(formats), target_flops)


def make_figures(source, out, table=None, options=None, wanted: str = "abcde", formats=("png", "svg")):
    """Load `source` (CSV or study directory) with `table` (TableOptions), fit what the figures in
    `wanted` need with `options` (FitOptions), and draw them into `out`. Returns (paths, notes)."""
    from ..inputs import load
    from ..methods import for_figures
    from ..options import FitOptions
    from ..reports.suite import run_suite

    options = options or FitOptions()
    check_choices(wanted, tuple(formats))
    study = load(source, table, need_budget=True)
    suite = run_suite(study, options, for_figures(wanted), backtest="parametric" if "e" in wanted else None)
    written = draw_figures(
        suite, study.data, Path(out), "".join(sorted(set(wanted))), tuple(formats), options.target_flops
    )
    return written, study.warnings + suite["notes"]
