"""The loss of new runs at given (N, D) and compute C, predicted by one fitted method, with a
prediction interval for each: what a pre-registered validation rung (`lab study --validate K`)
writes down before it trains.

- A method with a law of (N, D) (parametric, vpnls, kaplan): the law itself; its bootstrap samples
  give the law's uncertainty.
- A method that only places optima (isoflop, envelope): its loss-at-the-optimum law
  L*(C) = L*_0 (C / C_0)^-gamma, a weighted line in log-log through the budgets' minimum losses
  (isoflop: each weighted by its own uncertainty, `loss_opt_std_log`; envelope: the frontier's
  points, unweighted), redrawn from those uncertainties (Birge-scaled, as `bootstrap_isoflop`
  redraws N_opt). A size away from the method's N_opt(C) is placed by the *shape* of a law of
  (N, D) fitted on the same table (`shape`, e.g. parametric): its isoFLOP profile, centred on the
  method's N_opt and anchored at L*(C),
  log L(N, D) = log L*(C) + log L_shape(N r, D / r) - log L_shape(N*, D*), r = N* / N_opt,
  with (N*, D*) the shape law's own optimum at C and N_opt redrawn from the method's bootstrap
  (so the method's N_opt is predicted at L*(C) and every other size above it). Without a shape law
  every size is predicted at L*(C), the lowest loss the budget allows. A power law has no
  irreducible term: where the minima bend towards one, L*(C) extrapolates low (the Birge ratio
  widens its interval by their scatter about it).

Every draw is then multiplied by exp(sigma z), z ~ N(0, 1): sigma is the run-to-run noise, the
table's seed-to-seed scatter where it has replicates, else the residual scatter of the runs about
the method's fit (isoflop: about each budget's local profile, its `loss_noise`; envelope: the
frontier's scatter about L*(C)). With a form-error term (`form`, `analysis.uncertainty.form`: the
law's log error in nested back-tests on the same table, grown in proportion to the extrapolation
distance x = log(C / the table's largest budget), sigma_form = k x) every draw is also multiplied by
exp(sigma_form z'), one z' per draw (a form error moves every run at that budget together). The 95%
interval of the draws is the prediction interval of one new run; without the noise and the form
term it is the law's own confidence interval (`ci_lo`, `ci_hi`)."""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError

OPTIMUM_METHODS = ("isoflop", "envelope")  # methods that place optima but have no law of (N, D)


def _sampled_law(fit, rng, draws: int):
    """`draws` resampled copies of `fit`'s law as one law of (draws, 1) parameter arrays."""
    from dataclasses import fields

    s = fit.bootstrap_samples
    names = [f.name for f in fields(type(fit.law))] if fit.law is not None else []
    if s is None or not len(s) or not names or not set(names) <= set(s.columns):
        raise AnalysisError(f"a prediction interval needs {fit.method}'s law and its bootstrap samples; none here")
    pick = rng.integers(0, len(s), draws)
    return type(fit.law)(**{n: s[n].to_numpy(float)[pick, None] for n in names})


def _law_draws(fit, N, D, rng, draws: int):
    """(central prediction, draws x points) of a fit with a law of (N, D) and bootstrap samples."""
    with np.errstate(all="ignore"):
        L = _sampled_law(fit, rng, draws)(N[None], D[None])
    ok = np.all(np.isfinite(L) & (L > 0), axis=1)
    if ok.sum() < 2:
        raise AnalysisError(f"{fit.method}: no bootstrap sample gives a finite prediction")
    return np.asarray(fit.law(N, D), float), L[ok]


def optimum_points(fit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(C, minimum loss, std of its log) of the budgets a method's L*(C) is fitted through."""
    if fit.method == "isoflop":
        o = fit.extra["optima"]
        o = o[o["used"]]
        sd = o["loss_opt_std_log"].to_numpy(float) if "loss_opt_std_log" in o else np.full(len(o), 0.01)
        return o["budget"].to_numpy(float), o["loss_opt"].to_numpy(float), sd
    e = fit.extra["envelope"]
    e = e[e["used"] & e["loss"].notna()]
    return e["flops"].to_numpy(float), e["loss"].to_numpy(float), np.ones(len(e))


def optimum_law(fit, rng=None, draws: int = 0):
    """The loss-at-the-optimum law log L*(C) = c0 + c1 log C of `fit` (isoflop, envelope) as
    {"c0", "c1", "gamma" (= -c1), "birge", "n_points"}, and (with `draws`) that many redrawn
    (c0, c1) pairs as a (draws, 2) array."""
    from ..fits.isoflop import _wls_slopes, birge_ratio

    C, L, sd = optimum_points(fit)
    if len(C) < 2:
        raise AnalysisError(f"{fit.method}: fewer than 2 budgets with a minimum; no loss-at-the-optimum law")
    x, y, w = np.log(C), np.log(L), 1 / sd**2
    c0, c1 = (v[0] for v in _wls_slopes(x, y[None], w[None]))
    birge = birge_ratio(x, y, sd)
    if fit.method == "envelope":  # unweighted: the residual scatter is the only measure of the points' error
        r = y - c0 - c1 * x
        birge = float(np.sqrt(np.sum(r**2) / max(len(x) - 2, 1)))
    out = {"c0": float(c0), "c1": float(c1), "gamma": float(-c1), "birge": birge, "n_points": int(len(C))}
    if not draws:
        return out, None
    Y = y + birge * sd * rng.standard_normal((draws, len(x)))
    icpt, slope = _wls_slopes(x, Y, np.broadcast_to(w, Y.shape))
    return out, np.stack([icpt, slope], 1)


def _n_opt_draws(fit, flops: float, rng, draws: int) -> tuple[float, np.ndarray]:
    """The method's N_opt at `flops` (n_coef C^a) and redraws of it from its bootstrap samples."""
    n0 = fit.params["n_coef"] * flops ** fit.params["a"]
    s = fit.bootstrap_samples
    if s is None or not len(s) or not {"n_coef", "a"} <= set(s.columns):
        return float(n0), np.full(draws, n0)
    pick = rng.integers(0, len(s), draws)
    return float(n0), s["n_coef"].to_numpy(float)[pick] * flops ** s["a"].to_numpy(float)[pick]


def _shape_offset(law, N, D, n_opt, flops: float, k: float):
    """log L(N r, D / r) - log L(N*, C / (k N*)): `law`'s isoFLOP profile (same compute N D) centred on
    another method's optimum `n_opt` (r = N* / n_opt, N* the law's own optimum at `flops`), so the
    offset is 0 there and grows with the law's curvature either side."""
    n_star, d_star = law.optimal(flops, k)
    r = n_star / n_opt
    return np.log(law(N * r, D / r)) - np.log(law(n_star, d_star))


def _optimum_draws(fit, shape, N, D, flops: float, k: float, rng, draws: int):
    """(central, draws x points, how) for an optimum-placing method: L*(C) and the shape law's offset."""
    law, pairs = optimum_law(fit, rng, draws)
    lc = np.log(flops)
    star0 = law["c0"] + law["c1"] * lc
    star = pairs[:, 0] + pairs[:, 1] * lc
    through = "budget minima" if fit.method == "isoflop" else "points of the loss-vs-FLOPs frontier"
    scale = "Birge ratio" if fit.method == "isoflop" else "residual std in log"
    how = (
        f"{fit.method}'s loss-at-the-optimum law L*(C) ∝ C^-{law['gamma']:.4g} through {law['n_points']} "
        f"{through} ({scale} {law['birge']:.3g})"
    )
    if shape is None:
        return (
            np.full(len(N), np.exp(star0)),
            np.exp(star)[:, None] * np.ones(len(N)),
            how
            + ("; no law of (N, D) to place other sizes: every size at L*(C), the lowest loss the budget allows"),
        )
    n0, n_draw = _n_opt_draws(fit, flops, rng, draws)
    sampled = _sampled_law(shape, rng, draws)
    with np.errstate(all="ignore"):
        off = _shape_offset(sampled, N[None], D[None], n_draw[:, None], flops, k)
        off0 = _shape_offset(shape.law, N, D, n0, flops, k)
    ok = np.all(np.isfinite(off), axis=1) & np.isfinite(star)
    if ok.sum() < 2:
        raise AnalysisError(f"{fit.method}: no redraw gives a finite prediction")
    star, off = star[ok], off[ok]
    how += (
        f", at {fit.method}'s N_opt = {n0:.3g}; other sizes by the {shape.method} law's isoFLOP profile "
        f"centred there (log L(N r, D / r) - log L*_{shape.method}(C), r = its N_opt / {fit.method}'s)"
    )
    return np.exp(star0 + off0), np.exp(star[:, None] + off), how


def run_noise(fit, data, flops: float | None = None) -> dict:
    """The run-to-run noise of one new run's log loss: {"sigma", "source"} — the table's seed-to-seed
    scatter where it has replicates (read at `flops` off its trend with compute where that trend is
    measured, `noise_trend.trend_at`), else the residual scatter of the runs about `fit`."""
    from ..synthetic import LAW_PARAMS, seed_scatter
    from .noise_trend import trend_at

    seed, dof = seed_scatter(data)
    trend = trend_at(data, float(flops)) if seed is not None and flops else None
    if trend is not None:
        where = "the target compute" if trend["read_at"] == float(flops) else f"{trend['read_at']:.3g} FLOPs"
        return {
            "sigma": trend["sigma"],
            "source": f"seed-to-seed scatter's trend with compute (slope {trend['slope']:.3g} ± "
            f"{trend['slope_se']:.2g} in log variance per log C, read at {where}; {trend['dof']} degrees of "
            f"freedom; pooled {seed:.3g})",
            "by_budget": trend["by_budget"],
        }
    if seed is not None:
        return {"sigma": float(seed), "source": f"seed-to-seed scatter ({dof} degrees of freedom)"}
    if fit.method == "isoflop":
        sigma = float(fit.extra["loss_noise"] / np.median(data.L))
        return {"sigma": sigma, "source": "residual scatter about each budget's profile (isoflop loss_noise)"}
    if fit.method == "envelope":  # its residuals are of log N_opt: the frontier's own scatter about L*(C)
        sigma = optimum_law(fit)[0]["birge"]
        return {"sigma": sigma, "source": "residual scatter of the loss-vs-FLOPs frontier about L*(C)"}
    r = np.asarray(fit.residuals, float)
    sigma = float(np.sqrt(np.sum(r**2) / max(len(r) - LAW_PARAMS, 1)))
    return {"sigma": sigma, "source": f"residual scatter about the {fit.method} law"}


def predict_runs(
    fit,
    N,
    D,
    flops: float,
    data,
    shape=None,
    level: float = 0.95,
    seed: int = 0,
    draws: int = 4000,
    form: dict | None = None,
) -> dict:
    """Predicted loss of one new run at each (N, D) (all at compute `flops`) by `fit`, with its
    `level` prediction interval (module doc). `shape`: a bootstrapped law of (N, D) that places the
    sizes of an optimum-placing method. `form`: a form-error term (`form.form_term` on `data`).
    Returns {"predicted", "pi_lo", "pi_hi", "ci_lo", "ci_hi"} (lists), "noise" ({"sigma", "source"},
    "by_budget" where the seed scatter's trend is used, and, with `form`, "form_sigma", "form_k",
    "form_distance", "form_span", "form_scale", "form_rule", "form_source"), "how" and "level"."""
    rng = np.random.default_rng(seed)
    N, D = np.atleast_1d(np.asarray(N, float)), np.atleast_1d(np.asarray(D, float))
    if fit.method in OPTIMUM_METHODS:
        central, L, how = _optimum_draws(fit, shape, N, D, float(flops), data.k, rng, draws)
    else:
        central, L = _law_draws(fit, N, D, rng, draws)
        how = f"the {fit.method} law L(N, D) with its bootstrap samples"
    noise = run_noise(fit, data, float(flops))
    sims = L * np.exp(noise["sigma"] * rng.standard_normal(L.shape))
    if form is not None:
        noise.update(_form_noise(form, flops, data))
        sims = sims * np.exp(noise["form_sigma"] * rng.standard_normal((len(sims), 1)))
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    pct = lambda a, p: [float(v) for v in np.percentile(a, p, axis=0)]
    return {
        "predicted": [float(v) for v in central],
        "pi_lo": pct(sims, q[0]),
        "pi_hi": pct(sims, q[1]),
        "ci_lo": pct(L, q[0]),
        "ci_hi": pct(L, q[1]),
        "noise": noise,
        "how": how,
        "level": level,
    }


def _form_noise(form: dict, flops: float, data) -> dict:
    """noise's form-error fields for a prediction at `flops` from a table `data` (form.form_term)."""
    from .form import budget_span, budgets_of, form_sigma

    x, span = float(np.log(flops / np.max(budgets_of(data)))), budget_span(data)
    scale = form.get("scale", "absolute")
    rule = "sigma_form = k * log(C / largest budget of the table)"
    if scale == "span":
        rule += " / log(largest / smallest budget)"
    return {
        "form_sigma": float(form_sigma(form, x, span)),
        "form_k": float(form.get("k", 0.0)),
        "form_distance": x,
        "form_span": span,
        "form_scale": scale,
        "form_rule": rule,
        "form_source": form.get("source", ""),
    }


def fit_sha256(fit) -> str:
    """A hash of what a prediction rests on: the method, its parameters and their intervals (and, for
    an optimum-placing method, its loss-at-the-optimum law), rounded to 6 significant digits so that a
    refit of the same table on the same machine hashes alike."""
    import hashlib
    import json

    from ..result import plain

    def rounded(v):
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rounded(x) for x in v]
        return float(f"{v:.6g}") if isinstance(v, float) else v

    ci = {k: v for k, v in (fit.ci or {}).items() if k in fit.params}  # not N_opt at a target compute
    what = {"method": fit.method, "params": fit.params, "ci": ci}
    if fit.method in OPTIMUM_METHODS:
        law, _ = optimum_law(fit)
        what["optimum_law"] = {"c0": law["c0"], "c1": law["c1"]}
    text = json.dumps(rounded(plain(what)), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
