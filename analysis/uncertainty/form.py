"""The law's form error when it extrapolates, measured on the table itself before any new run.

A prediction interval built from the fit's bootstrap and the run-to-run noise says how uncertain the
law's *parameters* are and how much one run scatters; it says nothing about whether the law's *form*
still holds beyond the grid. This module measures that by nested back-tests on the table: hold out
the h largest budgets (h = 1, 2, ...), fit the rest, predict every held-out run, and record per run

- its log error e = log predicted - log measured,
- its extrapolation distance x = log(budget / largest training budget) (natural log),
- v, the variance in log of the back-test's own prediction interval (the law's bootstrap plus the
  run noise of the training rows: what the interval already holds), read off its 95% bounds;
- its training part's span s = log(largest / smallest training budget).

The rule: the form error grows in proportion to the distance, sigma_form(x) = k x, with k the
least-squares fit through the origin of the excess squared error over the excess the interval
already holds, (e^2 - v) = k^2 x^2, clipped at 0:

    k^2 = max(0, sum x^2 (e^2 - v) / sum x^4).

So k is 0 when the back-tests are as exact as the interval says, and e^2 counts a consistent sign
(a bias) as spread: the term is bias-free, symmetric about the prediction. `bias_per_log`
(sum x e / sum x^2) and the sign counts are recorded beside it, so a consistent sign is visible.
A new run at distance x then gets exp(sigma_form(x) z), z ~ N(0, 1), on top of the bootstrap and
the noise (`analysis.uncertainty.predict.predict_runs`, `intervals.run_intervals`).

Two alternatives stay runnable for measurement, both rejected by it (benchmarks/README.md, "the form
term's estimate"): `scale` "span" counts x in units of the training part's span s (a short back-test
fit then weighs less), and `min_train` 3 skips back-tests that fit 2 budgets; either one lowered the
coverage on laws with a bend the form lacks (mis-specified simulations 214/240 -> 182 and 169)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import AnalysisError

HOLDOUTS = (1, 2)  # the nested back-tests: hold out the largest budget, then the two largest
SCALES = ("span", "absolute")  # the distance in units of the training budgets' log span, or in log
SCALE = "absolute"  # "span" measured and rejected (module doc)
MIN_TRAIN = 2  # the fewest training budgets a nested back-test may fit
N_BOOT = 100  # bootstrap resamples per back-test (each back-test's own interval, v)
Z95 = 1.959963984540054


def budgets_of(data) -> np.ndarray:
    """The table's budget labels (its budget column, else compute binned into 0.1-dex slices)."""
    from ..table import bin_budgets

    return np.asarray(data.budget if data.budget is not None else bin_budgets(data.C), float)


def backtest_errors(
    data,
    method: str = "parametric",
    holdouts=HOLDOUTS,
    n_boot: int = N_BOOT,
    seed: int = 0,
    pi_draws: str | None = None,
    min_train: int = MIN_TRAIN,
    **fit_kwargs,
) -> tuple[pd.DataFrame, list[str]]:
    """Every held-out run of the nested back-tests as rows (holdout, budget, N, D, loss, predicted,
    log_error, distance, span, v), and a note per back-test that could not run."""
    from .holdout import backtest

    rows, notes = [], []
    n_budgets = len(np.unique(budgets_of(data)))
    for h in holdouts:
        if n_budgets - h < min_train:
            notes.append(f"hold out {h}: would fit {n_budgets - h} budget(s), fewer than {min_train}")
            continue
        try:
            bt = backtest(
                data, method, holdout=h, pi_bootstrap=n_boot, pi_seed=seed, pi_draws=pi_draws, **fit_kwargs
            )
        except AnalysisError as e:
            notes.append(f"hold out {h}: {e}")
            continue
        p = bt["points"]
        if "pi_lo" not in p:
            notes.append(f"hold out {h}: no prediction interval ({method} has no law of (N, D))")
            continue
        half = (np.log(p["pi_hi"].to_numpy(float)) - np.log(p["pi_lo"].to_numpy(float))) / (2 * Z95)
        rows.append(
            pd.DataFrame(
                {
                    "holdout": h,
                    "budget": p["budget"].to_numpy(float),
                    "N": p["N"].to_numpy(float),
                    "D": p["D"].to_numpy(float),
                    "loss": p["loss"].to_numpy(float),
                    "predicted": p["predicted"].to_numpy(float),
                    "log_error": p["log_error"].to_numpy(float),
                    "distance": np.log(p["budget"].to_numpy(float) / bt["train_max_flops"]),
                    "span": budget_span(bt["train_data"]),
                    "v": half**2,
                }
            )
        )
    return (pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()), notes


def budget_span(data) -> float:
    """log(largest / smallest budget) of a table: the span its law was fitted over."""
    b = budgets_of(data)
    return float(np.log(np.max(b) / np.min(b)))


def scaled(distance, span: float | None, scale: str) -> np.ndarray:
    """The rule's x: the log distance as is ("absolute"), or in units of the span ("span")."""
    d = np.asarray(distance, float)
    if scale not in SCALES:
        raise AnalysisError(f"form scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if scale == "absolute":
        return d
    if span is None:
        raise AnalysisError("a span-scaled form term needs the log span of the budgets its law was fitted on")
    return d / np.asarray(span, float)


def form_rule(pts: pd.DataFrame, scale: str = SCALE) -> dict:
    """k (form error per unit of x, `scaled` distance), the bias slope and the sign counts of
    back-test rows."""
    span = pts["span"].to_numpy(float) if "span" in pts else None
    x = scaled(pts["distance"].to_numpy(float), span, scale)
    e, v = (pts[c].to_numpy(float) for c in ("log_error", "v"))
    ok = x > 0
    x, e, v = x[ok], e[ok], v[ok]
    if not len(x):
        return {
            "k": 0.0,
            "scale": scale,
            "k_raw2": 0.0,
            "bias_per_log": 0.0,
            "n_points": 0,
            "n_over": 0,
            "n_under": 0,
        }
    k2 = float(np.sum(x**2 * (e**2 - v)) / np.sum(x**4))
    b = float(np.sum(x * e) / np.sum(x**2))
    k2c = float(np.sum(x**2 * ((e - b * x) ** 2 - v)) / np.sum(x**4))
    return {
        "k": float(np.sqrt(max(k2, 0.0))),
        "scale": scale,
        "k_raw2": k2,  # before clipping: negative when the back-tests are tighter than their intervals
        "bias_per_log": b,
        "k_corrected": float(np.sqrt(max(k2c, 0.0))),  # the spread left once b x is taken off (not used)
        "rms_log_error": float(np.sqrt(np.mean(e**2))),
        "mean_v": float(np.mean(v)),
        "n_points": int(len(x)),
        "n_over": int(np.sum(e > 0)),  # predicted above measured: the runs did better than the law
        "n_under": int(np.sum(e < 0)),
    }


def form_term(
    data,
    method: str = "parametric",
    holdouts=HOLDOUTS,
    n_boot: int = N_BOOT,
    seed: int = 0,
    pi_draws: str | None = None,
    scale: str = SCALE,
    min_train: int = MIN_TRAIN,
    **fit_kwargs,
) -> dict:
    """The form-error term of `method`'s law on `data` (module doc): {"k", "scale", "bias_per_log",
    counts, "holdouts" (those that ran), "source" (one line), "backtests" (per held-out run: holdout,
    budget, N, distance, span, log_error, v)}. k = 0 with a source saying why when no back-test can run."""
    pts, notes = backtest_errors(data, method, holdouts, n_boot, seed, pi_draws, min_train, **fit_kwargs)
    if pts.empty:
        why = "; ".join(notes) or "no back-test"
        return {
            "k": 0.0,
            "scale": scale,
            "method": method,
            "holdouts": [],
            "source": f"not measured ({why})",
            "backtests": [],
        }
    rule = form_rule(pts, scale)
    ran = sorted(int(h) for h in pts["holdout"].unique())
    x = pts["distance"]
    unit = "unit log distance" if scale == "absolute" else "training span (x = log distance / log span)"
    source = (
        f"{method} back-tests holding out the {'/'.join(map(str, ran))} largest budget(s) of this table: "
        f"{rule['n_points']} held-out runs at log distance {x.min():.3g}-{x.max():.3g}, "
        f"rms log error {rule['rms_log_error']:.3g} against {np.sqrt(rule['mean_v']):.3g} held by their "
        f"intervals; sigma_form(x) = k x, k^2 = max(0, sum x^2 (e^2 - v) / sum x^4) = {rule['k']:.3g}^2 "
        f"per {unit}"
    )
    keep = ["holdout", "budget", "N", "distance", "span", "log_error", "v"]
    return {
        **rule,
        "method": method,
        "holdouts": ran,
        "notes": notes,
        "source": source,
        "backtests": pts[keep].to_dict("records"),
    }


def form_sigma(term: dict | None, distance, span: float | None = None) -> np.ndarray:
    """sigma_form at log distance(s) `distance` beyond the largest budget of a table whose budgets
    span `span` in log (needed by a "span" term; 0 inside the grid)."""
    k = 0.0 if not term else float(term.get("k", 0.0))  # a term without "scale": absolute (before the span rule)
    d = np.maximum(np.asarray(distance, float), 0.0)
    if not k:
        return k * d
    return k * scaled(d, span, term.get("scale", "absolute"))


def backtest_form(
    data,
    method: str = "parametric",
    holdout: int = 1,
    pi_bootstrap: int = 100,
    level: float = 0.95,
    pi_seed: int = 0,
    pi_draws: str | None = None,
    scale: str = SCALE,
    min_train: int = MIN_TRAIN,
    **fit_kwargs,
) -> dict:
    """`holdout.backtest` with prediction intervals (before), and the same intervals widened by the
    law's form error measured on the training budgets alone, by their own nested back-tests (after;
    k = 0 where the training part has too few budgets): the points gain distance, form_sigma,
    pi_lo_form, pi_hi_form, inside_pi_form; the summary pi_form_k, pi_form_bias_per_log,
    pi_form_source, pi_form_coverage, pi_form_inside (of n_test), pi_form_mean_rel_halfwidth; and
    the bias-corrected alternative's pi_formc_inside, pi_formc_mean_rel_halfwidth, formc_rmse_log."""
    from .holdout import backtest
    from .intervals import run_intervals

    bt = backtest(data, method, holdout, pi_bootstrap, level, pi_seed, pi_draws, **fit_kwargs)
    pts, f, train = bt["points"], bt["fit"], bt["train_data"]
    if "pi_lo" not in pts:
        return bt
    term = form_term(
        train,
        method,
        n_boot=pi_bootstrap,
        seed=pi_seed,
        pi_draws=pi_draws,
        scale=scale,
        min_train=min_train,
        **fit_kwargs,
    )
    distance = np.log(pts["budget"].to_numpy(float) / float(np.max(train.budget)))
    sig = form_sigma(term, distance, budget_span(train))
    pi = run_intervals(f, pts["N"].to_numpy(), pts["D"].to_numpy(), train, level, pi_seed, form_sigma=sig)
    pts["distance"], pts["form_sigma"] = distance, sig
    pts["pi_lo_form"], pts["pi_hi_form"] = pi["pi_lo"], pi["pi_hi"]
    pts["inside_pi_form"] = (pts["pi_lo_form"] <= pts["loss"]) & (pts["loss"] <= pts["pi_hi_form"])
    half = (pts["pi_hi_form"] - pts["pi_lo_form"]) / (2 * pts["predicted"])
    bt["summary"].update(_bias_corrected(pts, f, train, term, distance, budget_span(train), level, pi_seed))
    bt["summary"].update(
        {
            "pi_form_k": term["k"],
            "pi_form_scale": term["scale"],
            "pi_form_bias_per_log": term.get("bias_per_log"),
            "pi_form_source": term["source"],
            "pi_form_coverage": float(pts["inside_pi_form"].mean()),
            "pi_form_inside": int(pts["inside_pi_form"].sum()),
            "pi_form_mean_rel_halfwidth": float(half.mean()),
        }
    )
    return bt


def _bias_corrected(pts, f, train, term: dict, distance, span: float, level: float, seed: int) -> dict:
    """The alternative measured beside the spread (not used by the rung): the bias b x taken off the
    prediction, k_corrected x as the spread; its coverage, half-width and rms log error."""
    from .intervals import run_intervals

    scale = term.get("scale", "absolute")
    sig = form_sigma({"k": term.get("k_corrected", 0.0), "scale": scale}, distance, span)
    pi = run_intervals(f, pts["N"].to_numpy(), pts["D"].to_numpy(), train, level, seed, form_sigma=sig)
    shift = np.exp(-float(term.get("bias_per_log", 0.0)) * scaled(np.maximum(distance, 0.0), span, scale))
    lo, hi, pc = pi["pi_lo"] * shift, pi["pi_hi"] * shift, pts["predicted"].to_numpy() * shift
    loss = pts["loss"].to_numpy()
    return {
        "pi_formc_inside": int(np.sum((lo <= loss) & (loss <= hi))),
        "pi_formc_mean_rel_halfwidth": float(np.mean((hi - lo) / (2 * pc))),
        "formc_rmse_log": float(np.sqrt(np.mean((np.log(pc) - np.log(loss)) ** 2))),
    }


def rung_form_term(
    fit, shape, data, options, n_boot: int = N_BOOT, pi_draws: str | None = None, scale: str = SCALE
) -> dict:
    """The form term a validation rung adds to its intervals: the nested back-tests of the law that
    predicts — `fit`'s own when it is a law of (N, D), else the `shape` law's that places its sizes
    (an optimum-placing method's L*(C) has no per-run back-test; the shape law's errors stand in).
    `options`: the study's FitOptions (each method's fit settings, the seed)."""
    from ..methods import fit_options

    for f in (fit, shape):
        if f is None or f.law is None:
            continue
        own = fit_options(f.method, options)
        term = form_term(data, f.method, n_boot=n_boot, seed=options.seed, pi_draws=pi_draws, scale=scale, **own)
        if term["holdouts"]:
            if f is shape:
                term["source"] = f"the {f.method} shape law's, standing in for {fit.method}'s: " + term["source"]
            return term
    why = "not measured (no law of (N, D) to back-test)"
    return {"k": 0.0, "scale": scale, "holdouts": [], "source": why, "backtests": []}
