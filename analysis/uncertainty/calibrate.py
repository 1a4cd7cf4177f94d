"""Calibrating a method's interval by the audit's simulated copies (`analysis.uncertainty.audit`).

Each copy i gives the method's estimate a_i and its interval [lo_i, hi_i] of the known truth a. The
interval scaled by a factor k about its estimate, [a_i - k (a_i - lo_i), a_i + k (hi_i - a_i)] (its
asymmetry kept), holds a exactly when k >= r_i, the copy's *needed scale*:

    r_i = (a - a_i) / (hi_i - a_i)  when a > a_i,   (a_i - a) / (a_i - lo_i)  when a < a_i,   0 when equal

(infinite where the side that must reach a has no width, or the copy's interval is not finite). So
the copies' coverage at scale k is the share of r_i <= k, the raw interval's is the share of r_i <= 1,
and the calibration factor is a conformal quantile (`conformal_k`): k = the ceil((n+1) level)-th
smallest of the n copies' r_i, with which a new copy drawn the same way is covered with probability
at least `level` (split conformal prediction; exact for exchangeable copies, whatever their shape).
Below `min_copies(level)` copies (19 at 95%) no such rank exists and the interval is left raw.

Because r_i is a ratio of an error to a half-width that both grow with the noise, it barely depends
on the noise level or the law the copies are drawn from (a pivot): a k measured on copies drawn from
the table's own fitted law transfers to the real table.

**Few copies** (`scale_factor`): k is applied only where the copies *resolve* the raw interval's
departure from nominal — it covered x of n copies and a one-sided binomial test rejects a true
coverage of `level` at 5%: for narrowing (k < 1) P(X >= x | n, level) < 0.05, for widening (k > 1)
P(X <= x | n, level) < 0.05 — at 95%, narrowing needs 60/60 or 99/100 (never at 20 or 40 copies:
20/20 has p = 0.36), widening at most 16/20, 35/40, 53/60, 90/100. Otherwise k = 1: the raw interval stands,
as it did before calibration. Unresolved, the conformal rank alone is noise-driven at these counts
(Chinchilla's table, 38/40 covered — nominal — would be widened x1.53; measured in
benchmarks/README.md). So the study's 20 copies leave an over-wide interval as it is.

**Held-out coverage** (`crossfit`): the copies are split into K folds (5, or one copy per fold when
the other folds would hold fewer than `min_copies`), and each fold's copies are scored with the k
chosen — by the same rule — from the other folds only, so no copy is scored by a k it helped choose.
It checks the rule on the copies; whether a k transfers from the copies to a real table is measured
in benchmarks/README.md (independent tables drawn from a known law, each calibrated by its own audit).
"""

from __future__ import annotations

import math

import numpy as np

FOLDS = 5
RESOLVE_P = 0.05  # narrow only when a coverage of `level` is rejected at this one-sided level


def needed_scale(est, lo, hi, truth: float) -> np.ndarray:
    """Per copy, the least factor on its interval's half-widths about `est` that holds `truth`."""
    est, lo, hi = (np.asarray(x, float) for x in (est, lo, hi))
    err = truth - est
    half = np.where(err > 0, hi - est, est - lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(err == 0, 0.0, np.abs(err) / half)
    bad = ~(np.isfinite(lo) & np.isfinite(hi) & np.isfinite(r)) | ((err != 0) & (half <= 0))
    return np.where(bad, np.inf, r)


def min_copies(level: float = 0.95) -> int:
    """The fewest copies with a conformal rank: ceil((n+1) level) <= n (19 at 95%, 9 at 90%)."""
    return int(math.ceil(level / (1 - level) - 1e-9))


def conformal_k(r, level: float = 0.95) -> float | None:
    """The ceil((n+1) level)-th smallest needed scale; None with too few copies or an infinite one."""
    r = np.sort(np.asarray(r, float))
    q = int(math.ceil((len(r) + 1) * level - 1e-9))
    if q > len(r) or not np.isfinite(r[q - 1]):
        return None
    return float(r[q - 1])


def _binom(n: int, level: float, xs) -> float:
    return sum(math.comb(n, x) * level**x * (1 - level) ** (n - x) for x in xs)


def resolved_over(covered: int, n: int, level: float = 0.95) -> bool:
    """Do `covered` of `n` copies show a coverage above `level`? (one-sided binomial test, RESOLVE_P)."""
    return _binom(n, level, range(covered, n + 1)) < RESOLVE_P


def resolved_under(covered: int, n: int, level: float = 0.95) -> bool:
    """Do `covered` of `n` copies show a coverage below `level`? (one-sided binomial test, RESOLVE_P)."""
    return _binom(n, level, range(0, covered + 1)) < RESOLVE_P


def scale_factor(r, level: float = 0.95) -> float | None:
    """The factor applied to an interval from its copies' needed scales `r` (module docstring):
    the conformal k where the copies resolve the raw interval's departure from `level` (over-coverage
    for k < 1, under-coverage for k > 1), else 1 (the raw interval). None when the copies are too few
    (or a needed scale is infinite at the conformal rank)."""
    r = np.asarray(r, float)
    k = conformal_k(r, level)
    if k is None or k == 1:
        return k
    covered = int(np.sum(r <= 1))
    resolved = resolved_over(covered, len(r), level) if k < 1 else resolved_under(covered, len(r), level)
    return k if resolved else 1.0


def crossfit(r, level: float = 0.95, folds: int = FOLDS) -> float | None:
    """Held-out coverage of `scale_factor`: each fold scored by the factor from the other folds
    (a fold whose others give no factor keeps the raw interval, k = 1). None without copies."""
    r = np.asarray(r, float)
    n = len(r)
    if n == 0:
        return None
    if n - math.ceil(n / folds) < min_copies(level):
        folds = n  # leave one out
    fold = np.arange(n) % folds
    covered = 0
    for f in range(folds):
        k = scale_factor(r[fold != f], level)
        covered += int(np.sum(r[fold == f] <= (1.0 if k is None else k)))
    return covered / n


def calibration(est, lo, hi, truth: float, level: float = 0.95) -> dict:
    """The calibration of one method's interval of one quantity over the copies that fitted:
    {"k", "coverage_calibrated", "ci_width_calibrated"}, all None when the copies give no factor
    (too few copies, or too many infinite needed scales: the raw interval stands)."""
    ok = np.isfinite(np.asarray(est, float))
    est, lo, hi = (np.asarray(x, float)[ok] for x in (est, lo, hi))
    r = needed_scale(est, lo, hi, truth)
    k = scale_factor(r, level) if len(r) else None
    width = (hi - lo)[np.isfinite(hi - lo)]
    if k is None or not len(width):
        return {"k": None, "coverage_calibrated": None, "ci_width_calibrated": None}
    return {"k": k, "coverage_calibrated": crossfit(r, level), "ci_width_calibrated": float(np.mean(width) * k)}


def scaled(ci: dict, est: float, k: float) -> dict:
    """`ci` ({"lo", "hi", ...}) with its half-widths about `est` multiplied by `k`."""
    return {**ci, "lo": est - k * (est - ci["lo"]), "hi": est + k * (ci["hi"] - est), "calibration_k": k}


def calibrate_fit(fit, audited: dict) -> bool:
    """Give `fit` (a FitResult of an audited method, with a bootstrap interval) the audit's calibrated
    intervals of a and b: `fit.ci` scaled, the raw ones kept in `fit.extra["ci_raw"]` and the factor
    and copies in `fit.extra["ci_calibration"]`. False (fit unchanged) when the audit gave no factor."""
    s = (audited.get("methods") or {}).get(fit.method)
    if "ci_calibration" in fit.extra:  # calibrated already
        return True
    if s is None or not fit.ci or "a" not in fit.ci or s.get("calibration_k_a") is None:
        return False
    raw = {q: dict(fit.ci[q]) for q in ("a", "b") if q in fit.ci and s.get(f"calibration_k_{q}") is not None}
    for q in raw:
        fit.ci[q] = scaled(fit.ci[q], fit.params[q], s[f"calibration_k_{q}"])
    n = audited["copies"]
    fit.extra["ci_raw"] = raw
    fit.extra["ci_calibration"] = {
        "k_a": s["calibration_k_a"],
        "k_b": s.get("calibration_k_b"),
        "copies": n,
        "note": f"interval of {'/'.join(raw)} calibrated by {n} simulated copies of this table "
        f"({audited.get('bootstrap', '?')}-resample intervals): "
        + describe(s["calibration_k_a"], s["coverage_a"], s["coverage_calibrated_a"], n),
    }
    return True


def describe(k: float, raw: float, held_out: float, copies: int) -> str:
    """Plain words for a factor: what it did and what the copies measured."""
    if k == 1.0:
        return (
            f"kept as it is (k = 1: the raw interval covered {raw:.0%} of them, and {copies} copies cannot "
            f"show that its coverage differs from nominal)"
        )
    return f"half-widths x {k:.3g} (held-out coverage of the copies {held_out:.0%}, raw {raw:.0%})"
