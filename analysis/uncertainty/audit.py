"""How far to believe each method's exponent on *this* table: an audit by simulation.

The table's own design (its sizes, tokens, budgets and seeds, row for row) is simulated N times
from a known law — the table's own vpnls fit of L = E + A/N^alpha + B/D^beta, so the truth is near
what the table says — with log-normal noise as large as the table's (`analysis.synthetic.noise_of`:
the law's residual std, or the seed-to-seed scatter where that is larger). Every applicable method
then fits every copy with its own bootstrap interval, exactly as `lab fit --bootstrap B` would, and
is scored against the known truth a = beta/(alpha+beta), b = alpha/(alpha+beta):

    bias = mean(a_hat) - a,   rmse = sqrt(mean((a_hat - a)^2)),   coverage = share of copies whose
    level-interval [lo, hi] holds a   (the same for b)

The copies also calibrate each method's interval (`analysis.uncertainty.calibrate`): a factor k on
its half-widths about the estimate — a conformal rank of the factors each copy needed to cover the
truth, applied only where the copies resolve the raw interval's departure from nominal (else k = 1;
the study's 20 copies never narrow, 100 copies narrow a raw 99/100 or 100/100) — with its coverage
measured on held-out copies (K folds, each scored by the k chosen from the others):

    calibration_k (a and b), coverage_calibrated = held-out share of copies covered by k x the interval,
    ci_width_calibrated = k x mean width   (all None below 19 copies at 95%: the raw interval stands)

and the fitted table's own interval of that method is scaled by the same k (`calibrate_fit`: `ci`
calibrated, `ci_raw` the bootstrap's, `ci_calibration` the factor and copies).

`choose` then names the estimate to trust: the lowest RMSE of a among the methods whose coverage
of a — the calibrated interval's held-out coverage where there is one, else the raw interval's —
is close to nominal (`band`: 0.90-0.98 for a 95% interval, widened to ±2 binomial standard
errors when the copies are too few to measure coverage that finely) or above it, and that fitted
nearly every copy. Used by `lab fit --audit N`, `lab fit --method auto` and `lab report --audit N`.

    import analysis
    from analysis.audit import audit, choose
    result = audit(analysis.load("results.csv").data, copies=100)
    result["methods"]["isoflop"]["bias_a"], choose(result)
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import AnalysisError
from ..laws import Chinchilla
from ..methods import fit_options, get
from ..options import FitOptions
from ..synthetic import noise_of, require_simulable, simulate_like

AUDIT_METHODS = ("vpnls", "parametric", "isoflop")  # the methods that estimate a and are cheap to refit
COVERAGE_BAND = (0.90, 0.98)  # "close to nominal" for a 95% interval, widened by `band` for few copies
MAX_FAILED = 0.10  # a method that fails on more of the copies than this is not chosen


def truth_of(data) -> tuple[Chinchilla, np.ndarray]:
    """The law the copies are drawn from (the table's vpnls fit) and the log residuals of the table
    about its least-squares (variable-projection) optimum."""
    from ..fits.vpnls import fit_vpnls

    fit = fit_vpnls(data)
    law = fit.law
    if not (law.A > 0 and law.B > 0 and law.alpha > 1e-6 and law.beta > 1e-6):
        raise AnalysisError(
            f"--audit: the table's law has no identified N or D term (A={law.A:.3g}, B={law.B:.3g}, "
            f"alpha={law.alpha:.3g}, beta={law.beta:.3g}); there is no allocation exponent to simulate"
        )
    least_squares = Chinchilla(**fit.extra["vp_params"])  # its residuals measure the noise without Huber's tails
    return law, np.log(data.L / least_squares(data.N, data.D))


def applicable(data, methods=None) -> tuple[str, ...]:
    """The audited methods among `methods` (default all of AUDIT_METHODS) that fit `data` itself."""
    from ..fitting import fit

    out = []
    for m in methods or AUDIT_METHODS:
        if m not in AUDIT_METHODS:
            raise AnalysisError(f"--audit: cannot audit {m!r}; audited methods are {', '.join(AUDIT_METHODS)}")
        if get(m).needs_budget and data.budget is None:
            continue
        try:
            fit(data, m, **_own_options(m, FitOptions()))
        except AnalysisError:
            continue
        out.append(m)
    return tuple(out)


def _own_options(method: str, options: FitOptions) -> dict:
    return fit_options(method, options)


def estimate(copy, method, bootstrap, level, seed, options) -> tuple | None:
    """(a, b, lo_a, hi_a, lo_b, hi_b) of one method on one copy; None when it cannot fit it."""
    from ..fitting import fit

    try:
        r = fit(copy, method, bootstrap=bootstrap, seed=seed, level=level, **_own_options(method, options))
    except AnalysisError:
        return None
    ci = r.ci or {}
    nan = {"lo": np.nan, "hi": np.nan}
    ca, cb = ci.get("a", nan), ci.get("b", nan)
    return (r.a, r.b, ca["lo"], ca["hi"], cb["lo"], cb["hi"])


def score(rows: list, truth_a: float, truth_b: float, seconds: float, level: float = 0.95) -> dict:
    """Bias, RMSE and coverage of a and b from one method's per-copy rows (None: a failed fit), and
    the interval's calibration by the copies (`analysis.uncertainty.calibrate.calibration`)."""
    from .calibrate import calibration

    ok = np.array([r for r in rows if r is not None], float).reshape(-1, 6)
    out = {"n": int(len(ok)), "failed": int(len(rows) - len(ok)), "seconds": seconds}
    for j, (name, truth) in enumerate((("a", truth_a), ("b", truth_b))):
        est, lo, hi = ok[:, j], ok[:, 2 + 2 * j], ok[:, 3 + 2 * j]
        fin = np.isfinite(est)
        err = est[fin] - truth
        has_ci = fin & np.isfinite(lo) & np.isfinite(hi)
        out[f"mean_{name}"] = float(np.mean(est[fin])) if fin.any() else None
        out[f"bias_{name}"] = float(np.mean(err)) if len(err) else None
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(err**2))) if len(err) else None
        out[f"coverage_{name}"] = (
            float(np.mean((lo[has_ci] <= truth) & (truth <= hi[has_ci]))) if has_ci.any() else None
        )
        out[f"ci_width_{name}"] = float(np.mean(hi[has_ci] - lo[has_ci])) if has_ci.any() else None
        cal = calibration(est, lo, hi, truth, level)
        out[f"calibration_k_{name}"] = cal["k"]
        out[f"coverage_calibrated_{name}"] = cal["coverage_calibrated"]
        out[f"ci_width_calibrated_{name}"] = cal["ci_width_calibrated"]
    out.update(bias=out["bias_a"], rmse=out["rmse_a"], coverage=out["coverage_a"])
    out.update(coverage_calibrated=out["coverage_calibrated_a"], calibration_k=out["calibration_k_a"])
    return out


def run_copies(copies, truth: tuple[float, float], methods, bootstrap=100, level=0.95, seed=0, options=None):
    """Fit every copy (an iterable of FitData) by every method with a `bootstrap`-resample interval
    at `level`, and score them against `truth` = (a, b): {method: score}."""
    options = options or FitOptions()
    rows = {m: [] for m in methods}
    seconds = dict.fromkeys(methods, 0.0)
    for i, copy in enumerate(copies):
        for m in methods:
            t0 = time.perf_counter()
            rows[m].append(estimate(copy, m, bootstrap, level, seed + i, options))
            seconds[m] += time.perf_counter() - t0
    return {m: score(rows[m], *truth, seconds[m], level) for m in methods}


def audit(
    data, copies: int = 100, methods=None, bootstrap: int = 100, level: float = 0.95, seed: int = 0, options=None
) -> dict:
    """Simulate `data`'s design `copies` times from its own fitted law and score every applicable
    method (see the module docstring). Returns {"methods": {method: score}, "truth", "noise",
    "copies", "bootstrap", "level", "seconds", "coverage_band", "choice": {"method", "why"}}."""
    if copies < 1:
        raise AnalysisError(f"--audit needs at least 1 simulated copy, got {copies}")
    if bootstrap < 2:
        raise AnalysisError(f"--audit needs a bootstrap of at least 2 resamples per copy, got {bootstrap}")
    t0 = time.perf_counter()
    require_simulable(data)
    law, residuals = truth_of(data)
    noise = noise_of(data, residuals)
    methods = applicable(data, methods)
    if not methods:
        raise AnalysisError(
            "--audit: none of the audited methods (" + ", ".join(AUDIT_METHODS) + ") fits this table"
        )
    rng = np.random.default_rng(seed)
    sims = (simulate_like(data, law, noise["sigma"], rng) for _ in range(copies))
    scores = run_copies(sims, (law.a, law.b), methods, bootstrap, level, seed, options)
    out = {
        "methods": scores,
        "truth": {"a": law.a, "b": law.b, **law.__dict__},
        "noise": noise,
        "copies": int(copies),
        "bootstrap": int(bootstrap),
        "level": level,
        "seconds": time.perf_counter() - t0,
    }
    out["coverage_band"] = band(copies, level)
    out["choice"] = dict(zip(("method", "why"), choose(out)))
    return out


def band(copies: int, level: float = 0.95) -> tuple[float, float]:
    """The coverage accepted as close to nominal: COVERAGE_BAND, widened to two binomial standard
    errors of a calibrated interval's measured coverage where the copies are too few to resolve it
    (at 40 copies 40/40 = 100% is within 2 SE of 95%: [0.881, 1]; at 400 copies the band is
    COVERAGE_BAND itself)."""
    two_se = 2 * np.sqrt(level * (1 - level) / max(copies, 1))
    lo, hi = COVERAGE_BAND
    return float(min(lo, level - two_se)), float(min(1.0, max(hi, level + two_se)))


def _coverage(s: dict) -> tuple[float | None, bool]:
    """A method's coverage of a as `choose` reads it: the held-out calibrated coverage when the audit
    calibrated its interval (`analysis.uncertainty.calibrate`), else the raw one; and which."""
    if s.get("coverage_calibrated_a") is not None:
        return s["coverage_calibrated_a"], True
    return s["coverage_a"], False


def choose(result: dict) -> tuple[str | None, str]:
    """The method to trust and why: the lowest RMSE of a among the methods whose interval is honest —
    it covers the truth at close to its nominal rate (`band`) or more often (conservative: wider than
    it needs, never narrower); a method whose interval covers less is not trusted whatever its RMSE.
    The coverage read is the calibrated interval's, measured on held-out copies, where the audit
    calibrated it, else the raw interval's. None (and why) when no method qualifies."""
    lo, hi = band(result["copies"], result["level"])
    scores = {m: s for m, s in result["methods"].items() if s["rmse_a"] is not None}
    copies = result["copies"]
    honest = {
        m: s
        for m, s in scores.items()
        if _coverage(s)[0] is not None and lo <= _coverage(s)[0] and s["failed"] <= MAX_FAILED * copies
    }
    if not honest:
        seen = ", ".join(f"{m} {_pct(_coverage(s)[0])}" for m, s in scores.items())
        return None, (
            f"no method's {result['level']:.0%} interval covered the simulated truth at least {lo:.1%} of the "
            f"time over {copies} copies ({seen})"
        )
    order = list(result["methods"])  # ties (vpnls and parametric share an objective) go to the first
    best = min(honest, key=lambda m: (round(honest[m]["rmse_a"], 6), order.index(m)))
    s = honest[best]
    cov, calibrated = _coverage(s)
    others = [f"{m} {scores[m]['rmse_a']:.3g}" for m in scores if m != best]
    wide = " — conservative: wider than it needs" if cov > hi else ""
    which = (
        f"its calibrated interval's coverage {_pct(cov)} on held-out copies, half-widths x "
        f"{s['calibration_k_a']:.3g}; raw {_pct(s['coverage_a'])}"
        if calibrated and s["calibration_k_a"] != 1.0
        else f"its coverage {_pct(cov)}" + (", kept raw: not resolved from nominal" if calibrated else "")
    )
    return best, (
        f"lowest RMSE of a ({s['rmse_a']:.3g}; bias {s['bias_a']:+.3g}) among the methods whose "
        f"{result['level']:.0%} interval covered the simulated truth at least {lo:.1%} of the time "
        f"({which} over {copies} copies, nominal band {lo:.1%}-{hi:.1%}{wide})"
        + (f"; others' RMSE: {', '.join(others)}" if others else "")
    )


def fallback(result: dict) -> str | None:
    """When no method is calibrated: the one whose coverage of a is nearest nominal (ties: lower RMSE)."""
    scores = {m: _coverage(s)[0] for m, s in result["methods"].items() if _coverage(s)[0] is not None}
    if not scores:
        return None
    rmse = {m: result["methods"][m]["rmse_a"] for m in scores}
    return min(scores, key=lambda m: (abs(scores[m] - result["level"]), rmse[m]))


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def audit_lines(result: dict) -> list[str]:
    """Terminal lines: the truth and noise, then one line per method, then the choice."""
    t, n = result["truth"], result["noise"]
    seed = f", seed scatter {n['seed']:.3g}" if n["seed"] is not None else ""
    lines = [
        f"  audit: {result['copies']} copies of this table's design drawn from its vpnls law (a = {t['a']:.4f}, "
        f"b = {t['b']:.4f}), noise {n['sigma']:.3g} in log loss (law residual {n['residual']:.3g}{seed}); "
        f"{result['bootstrap']}-resample intervals; {result['seconds']:.1f} s"
    ]
    for m, s in result["methods"].items():
        if s["rmse_a"] is None:
            lines.append(f"    {m:<10} no copy fitted ({s['failed']} failed)")
            continue
        lines.append(
            f"    {m:<10} a: bias {s['bias_a']:+.4f}, rmse {s['rmse_a']:.4f}, coverage {_pct(s['coverage_a'])}, "
            f"mean width {_fmt(s['ci_width_a'])}{_calibrated(s)}; b: bias {s['bias_b']:+.4f}, "
            f"rmse {s['rmse_b']:.4f}, coverage {_pct(s['coverage_b'])}"
            + (f"; {s['failed']} copies failed" if s["failed"] else "")
        )
    c = result["choice"]
    lines.append(f"  trusted by the audit: {c['method'] or 'none'} — {c['why']}")
    return lines


def _calibrated(s: dict) -> str:
    """', calibrated: x k -> coverage (held-out), width' for a method line; a note when not calibrated."""
    if s.get("calibration_k_a") is None:
        return ", not calibrated (too few copies with a finite interval)" if "calibration_k_a" in s else ""
    if s["calibration_k_a"] == 1.0:
        return ", kept raw (k = 1: the copies do not resolve a departure from nominal)"
    return (
        f", calibrated x{s['calibration_k_a']:.3g}: coverage {_pct(s['coverage_calibrated_a'])} held out, "
        f"width {_fmt(s['ci_width_calibrated_a'])}"
    )


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3g}"


def audit_json(result: dict) -> tuple[dict, dict]:
    """(`audit`: {method: score}, `audit_info`: everything else) for `--json`."""
    from ..result import plain

    info = {k: v for k, v in result.items() if k != "methods"}
    return plain(result["methods"]), plain(info)
