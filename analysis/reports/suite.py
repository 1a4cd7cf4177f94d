"""Run several fitters on one table for figures and reports, collecting what could not be done
as notes instead of failing (a study may have no IsoFLOP budgets, or no training curves)."""

from __future__ import annotations

import numpy as np

from ..errors import AnalysisError
from ..methods import METHODS, get
from ..options import FitOptions
from ..solvers.progress import LARGE_ROWS, Progress


def holdout_for(data, share: float = 0.1, at_least: int = 3) -> int:
    """How many of the largest budgets to hold out so the test set has >= max(at_least, share * n) runs."""
    from ..table import bin_budgets

    budget = data.budget if data.budget is not None else bin_budgets(data.C)
    b, counts = np.unique(budget, return_counts=True)
    need = max(at_least, int(np.ceil(share * len(budget))))
    h = int(np.searchsorted(np.cumsum(counts[::-1]), need) + 1)
    return int(min(h, max(1, len(b) - 2)))


def run_suite(
    study, options: FitOptions | None = None, methods=METHODS, backtest: str | None = "parametric"
) -> dict:
    """Fit `study` (an `analysis.load` result) by each of `methods`, bootstrapping those whose
    registry entry says so (`options.bootstrap` resamples), and back-test the `backtest` method.

    Returns {method name: FitResult or None, "backtest", "curves", "notes"}; a fit that cannot be
    done is None with its reason in "notes"."""
    from ..fitting import fit_with_options
    from ..uncertainty.holdout import backtest as run_backtest

    options = options or FitOptions()
    data = study.data
    out = {"curves": study.curves, "notes": [], "backtest": None}
    progress = Progress("analysis", len(data) > LARGE_ROWS)

    def attempt(name, fn):
        try:
            out[name] = fn()
        except AnalysisError as e:
            out[name] = None
            msg = str(e)
            out["notes"].append(msg if msg.startswith(f"{name}") else f"{name}: {msg}")

    for name in METHODS:
        if name in methods and get(name).applies(data):
            boot = get(name).suite_bootstrap and options.bootstrap
            progress(
                f"{name} fit"
                + (f" and {options.bootstrap}-resample bootstrap" if boot else "")
                + f" of {len(data)} rows"
            )
            attempt(name, lambda: fit_with_options(study, name, options, bootstrap=get(name).suite_bootstrap))
    if backtest and out.get(backtest) is not None:
        progress(f"{backtest} back-test")
        attempt(
            "backtest",
            lambda: run_backtest(data, backtest, holdout=holdout_for(data), **get(backtest).options(options)),
        )
    progress("fits done; drawing figures")
    return out


# Preference among methods that pass every check: the parametric law uses every run and, when
# identified, recovers a simulated law's exponent where local IsoFLOP minima are biased by the
# grid's asymmetry; IsoFLOP measures each budget's optimum directly; Kaplan's and the
# envelope's exponents are indirect (frontier fits).
TRUST_ORDER = ("parametric", "isoflop", "kaplan", "envelope")


def fit_problems(f, data=None) -> list[str]:
    """Plain-words reasons why one fit's exponent is not identified: a CI crossing zero, a
    parameter at (or next to) its bound, an optimum reached from a single initialisation, an
    IsoFLOP grid that cannot support the method."""
    out, ci = [], f.ci or {}
    for name in ("a", "alpha", "beta", "alpha_N", "alpha_D"):
        c = ci.get(name)
        if c and c["lo"] <= 0 <= c["hi"]:
            out.append(
                f"{f.method}: the {c['level']:.0%} CI of {name} [{c['lo']:.3g}, {c['hi']:.3g}] includes 0, "
                f"so the data do not determine it"
            )
    p = f.params
    if f.method == "parametric":
        low = float(np.min(data.L)) if data is not None else None
        if low and p["E"] < 0.25 * low:
            out.append(
                f"parametric: the irreducible loss E = {p['E']:.3g} sits near its bound 0 (under a quarter of "
                f"the lowest loss, {low:.3g}): this grid does not pin E down, and a, alpha, beta trade off "
                "against it"
            )
        for name in ("alpha", "beta"):
            if not 0.02 < p[name] < 2.5:
                out.append(f"parametric: {name} = {p[name]:.3g} is at the edge of its plausible range")
        if f.extra.get("n_inits_at_best", 2) < 2:
            out.append("parametric: the best optimum was reached from a single initialisation")
    if f.method == "kaplan":
        for name in ("alpha_N", "alpha_D"):
            if name in p and np.isfinite(p[name]) and not 1.1e-4 < p[name] < 4.99:
                out.append(f"kaplan: {name} = {p[name]:.3g} is at its bound")
    if f.method == "isoflop":
        out += _isoflop_grid_problems(f)
    if f.method == "envelope":
        out += [f"envelope: {w}" for w in f.warnings if "always the smallest or largest" in w]
    return out


def _isoflop_grid_problems(f) -> list[str]:
    opt, out = f.extra["optima"], []
    few = opt[opt["n_points"] < 4]
    if len(few):
        out.append(
            f"isoflop: {len(few)} budget(s) have fewer than 4 sizes "
            f"({', '.join(f'{c:.3g}' for c in few['budget'])}): "
            "too few to locate a minimum"
        )
    edge = opt[opt["edge"]]
    if len(edge):
        out.append(
            f"isoflop: the loss minimum sits at the edge of the size grid at {len(edge)} budget(s) "
            f"({', '.join(f'{c:.3g}' for c in edge['budget'])}); those budgets were left out"
        )
    if f.extra["n_budgets_used"] < 3:
        out.append(
            f"isoflop: only {f.extra['n_budgets_used']} budget(s) with an interior minimum; a line through "
            "two points has no check on its own error"
        )
    return out


def _disagreements(fits: dict) -> list[str]:
    """Pairs of methods whose CIs on a do not overlap."""
    out, names = [], [m for m in TRUST_ORDER if fits.get(m) is not None and (fits[m].ci or {}).get("a")]
    for i, m in enumerate(names):
        for o in names[i + 1 :]:
            x, y = fits[m].ci["a"], fits[o].ci["a"]
            if x["hi"] < y["lo"] or y["hi"] < x["lo"]:
                out.append(
                    f"{m} and {o} disagree beyond their intervals: a = {fits[m].a:.3g} [{x['lo']:.3g}, "
                    f"{x['hi']:.3g}] vs {fits[o].a:.3g} [{y['lo']:.3g}, {y['hi']:.3g}]"
                )
    return out


def audit_suite(suite: dict, data, options: FitOptions) -> dict | None:
    """With `options.audit` copies asked for: the audit (`analysis.uncertainty.audit`) of the suite's fitted
    audited methods on `data`, the chosen method's fit given its bootstrap interval where the suite
    did not bootstrap it; None (with a note) when there is no audit or it cannot be run."""
    from ..uncertainty.audit import AUDIT_METHODS, audit
    from ..uncertainty.intervals import bootstrap

    if not options.audit:
        return None
    methods = [m for m in AUDIT_METHODS if suite.get(m) is not None]
    try:
        if not methods:
            raise AnalysisError(f"none of {', '.join(AUDIT_METHODS)} was fitted")
        result = audit(data, options.audit, methods, options.audit_bootstrap, options.level, options.seed, options)
    except AnalysisError as e:
        suite["notes"].append(f"audit: {str(e).removeprefix('--audit: ')}")
        return None
    chosen = result["choice"]["method"]
    if chosen and not (suite[chosen].ci or {}).get("a"):
        bootstrap(
            suite[chosen],
            data,
            n_boot=options.bootstrap or options.audit_bootstrap,
            seed=options.seed,
            target_flops=options.target_flops,
            level=options.level,
        )
    from ..uncertainty.calibrate import calibrate_fit

    for m in methods:  # each audited fit with an interval carries the interval its copies calibrated
        calibrate_fit(suite[m], result)
    return result


def _audited_verdict(suite: dict, audited: dict) -> tuple[str, str] | None:
    """(trusted, why) from the audit's choice, when it made one and that fit has an interval."""
    m = audited["choice"]["method"]
    if m is None or suite.get(m) is None or not (suite[m].ci or {}).get("a"):
        return None
    c = suite[m].ci["a"]
    cal = suite[m].extra.get("ci_calibration")
    raw = suite[m].extra["ci_raw"]["a"] if cal else None
    calibrated = (
        f" (calibrated by {cal['copies']} simulated copies: half-widths x {cal['k_a']:.3g}; "
        f"raw bootstrap interval [{raw['lo']:.3g}, {raw['hi']:.3g}])"
        if cal and cal["k_a"] != 1.0
        else f" (checked by {cal['copies']} simulated copies, kept raw: not resolved from nominal there)"
        if cal
        else ""
    )
    return (
        m,
        f"{m}: a = {suite[m].a:.3g} [{c['lo']:.3g}, {c['hi']:.3g}]{calibrated} — chosen by the audit: "
        f"{audited['choice']['why']}",
    )


def diagnose(suite: dict, data=None, audited: dict | None = None) -> dict:
    """The report's verdict: {"problems": [plain-words lines], "trusted": method or None, "why": text}.
    With an audit (`audit_suite`) that calibrated a method, the trusted estimate is the audit's
    choice; otherwise the first of TRUST_ORDER whose fit has an exponent, a bootstrap interval and
    no problem of its own."""
    fits = {
        m: suite.get(m)
        for m in TRUST_ORDER
        if suite.get(m) is not None and suite[m].a is not None and np.isfinite(suite[m].a)
    }
    own = {m: fit_problems(f, data) for m, f in fits.items()}
    problems = [p for m in fits for p in own[m]] + _disagreements(fits)
    for m in TRUST_ORDER:  # a method that was tried and could not be fitted says why
        if m in suite and suite[m] is None:
            problems += [
                f"{m} could not be fitted: {n.split(': ', 1)[1] if n.startswith(m + ':') else n}"
                for n in suite.get("notes", [])
                if n.startswith(m)
            ]
    trusted = next((m for m in fits if not own[m] and (fits[m].ci or {}).get("a")), None)
    if trusted is None:
        why = "no method passes every check; treat every exponent below as provisional"
    else:
        c = fits[trusted].ci["a"]
        why = (
            f"{trusted}: a = {fits[trusted].a:.3g} [{c['lo']:.3g}, {c['hi']:.3g}] — it passes every check "
            f"(identified, interval clear of zero{', interior minima' if trusted == 'isoflop' else ''})"
            + {
                "parametric": ", and it uses every run",
                "isoflop": ", and it measures each budget's optimum directly",
            }.get(trusted, "")
        )
    by_audit = _audited_verdict(suite, audited) if audited else None
    if by_audit:
        trusted, why = by_audit
    elif audited:
        why += f" (the audit trusted no method: {audited['choice']['why']})"
    if trusted == "isoflop" and fits["isoflop"].extra["n_budgets_used"] < 5:
        n = fits["isoflop"].extra["n_budgets_used"]
        why += (
            f"; with {n} budgets its interval rests on each budget's own uncertainty, checked against "
            f"their scatter with only {n - 2} degree(s) of freedom"
        )
    return {"problems": problems, "trusted": trusted, "why": why}
