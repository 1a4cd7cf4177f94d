"""Where to spend the next FLOPs: cells (sizes x budgets within an allowance F) chosen by the
interval of a expected *after the refit*, estimated by simulation.

The estimator designed for is `vpnls` (Approach 3: L = E + A/N^alpha + B/D^beta by variable
projection, a = beta/(alpha+beta)) — the one the audit (`analysis.uncertainty.audit`) trusts on
IsoFLOP tables, and the one whose interval the benchmark measures. How wide its interval will be
depends on which cells are run, and not in a way a linearised formula for another estimator sees
(the IsoFLOP frontier's closed-form variance preferred the naive extension), so each candidate is
scored the way the audit scores a method:

1. the table's own vpnls law is the truth, and its noise (`analysis.synthetic.noise_of`) the noise;
2. S tables are simulated with the current cells plus the candidate's, the loss of each drawn from
   the law times exp(sigma * N(0, 1));
3. each is refitted (`analysis.solvers.batched_gn`: the least-squares law in log space, all S x K
   refits of a step solved at once) and the candidate's score is the spread (std) of the refitted a.

The noise draws are common to every candidate (the current rows' draws are fixed once; a step's new
cells share one draw), so candidates are compared on the same simulated luck, not on noise. The
candidates are cells at the table's budgets, midway between them, and at half grid steps up to
`ABOVE` steps over the highest (none below the lowest), with sizes within a factor `SPAN` of the law's N_opt
there (`sizes` of them per budget, log-spaced). A greedy search spends the allowance in about
`STEPS` batches: each batch is one candidate's (budget, size) run as many times as a 1/STEPS share
of F pays for (or once, when one run costs more), spread over neighbouring sizes (a factor
`SPREAD`), and the batch that removes most variance of a per FLOP is taken (a second search that
takes the most variance per batch is also run; the better design is kept). With `target_flops`
the objective is the std of log N_opt at that compute instead.

The final design is simulated once more, row for row and with fresh draws (`FINAL_SIMULATIONS`), for
the expected spread before and after; the expected interval after is the current vpnls bootstrap
interval scaled by their ratio. `benchmarks/bench_design.py` checks the claim by refitting real
simulated tables with `vpnls` and its bootstrap.
"""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError
from .solvers.batched_gn import exponent_a, fit_many, log_n_opt

ESTIMATOR = "vpnls"
SPAN = 16.0  # candidate sizes within this factor of the predicted N_opt, either side
STEPS = 10  # the allowance is spent in about this many batches
SPREAD = 1.5  # a batch's runs spread over sizes within this factor (its centre's neighbourhood)
SIMULATIONS = 48  # simulated tables per candidate during the search
SEARCH_ITERS = 10  # Gauss-Newton steps per search refit (from the truth: converged to ~1e-4 in a)
FINAL_SIMULATIONS = 400  # for the reported expected spread before and after
BELOW, ABOVE = (
    0,
    4,
)  # candidate budgets: grid steps below the lowest (none: the law is measured there) and above the highest


def _law_log(law, lnN, lnD):
    return np.log(law(np.exp(lnN), np.exp(lnD)))


class Simulator:
    """The truth (the table's vpnls law), its noise, the target of the spread, and the common
    random numbers. A design state is (lnN, lnD, w, Z): rows, their weights (a batch of m runs at
    one point is one row of weight m: its mean loss, noise sigma / sqrt(m)) and their standard
    normal draws Z (S, n)."""

    def __init__(self, law, sigma: float, k: float, target_flops=None, simulations=SIMULATIONS, seed=0):
        self.law, self.sigma, self.k, self.target = law, float(sigma), k, target_flops
        self.theta = np.asarray(law.to_lse(), float)
        self.S = int(simulations)
        self.rng = np.random.default_rng(seed)

    def state(self, N, D, w=None):
        n = len(N)
        w = np.ones(n) if w is None else np.asarray(w, float)
        return np.log(N), np.log(D), w, self.rng.standard_normal((self.S, n))

    def spread(self, values) -> np.ndarray:
        """Std over the last axis, ignoring failed (non-finite) refits."""
        v = np.where(np.isfinite(values), values, np.nan)
        return np.nanstd(v, axis=-1)

    def estimate(self, theta) -> np.ndarray:
        """a, or log N_opt at the target compute, of each refit theta (..., 5)."""
        flat = theta.reshape(-1, 5)
        v = exponent_a(flat) if self.target is None else log_n_opt(flat, self.target, self.k)
        return v.reshape(theta.shape[:-1])

    def score(self, state, cand) -> tuple[np.ndarray, np.ndarray]:
        """Spread of the refitted estimate for `state` plus each candidate row (K, 3: lnN, lnD,
        weight), all candidates sharing one new draw z (S,): ((K,), z)."""
        lnN0, lnD0, w0, Z0 = state
        K, S = len(cand), self.S
        z = self.rng.standard_normal(S)
        lnN = np.concatenate([np.tile(lnN0, (K, 1)), cand[:, :1]], 1)  # (K, n)
        lnD = np.concatenate([np.tile(lnD0, (K, 1)), cand[:, 1:2]], 1)
        w = np.concatenate([np.tile(w0, (K, 1)), cand[:, 2:3]], 1)
        Z = np.concatenate(
            [np.broadcast_to(Z0, (K, S, len(w0))), np.broadcast_to(z[None, :, None], (K, S, 1))], -1
        )
        lnL = _law_log(self.law, lnN, lnD)[:, None, :] + self.sigma * Z / np.sqrt(w[:, None, :])
        n = lnN.shape[1]
        rep = lambda x: np.repeat(x, S, axis=0)
        theta = fit_many(self.theta, rep(lnN), rep(lnD), lnL.reshape(K * S, n), rep(w), iters=SEARCH_ITERS)
        return self.spread(self.estimate(theta.reshape(K, S, 5))), z

    def simulate_state(self, state) -> float:
        """The spread for `state` itself, with its own draws."""
        lnN, lnD, w, Z = state
        lnL = _law_log(self.law, lnN, lnD) + self.sigma * Z / np.sqrt(w)
        return float(self.spread(self.estimate(fit_many(self.theta, lnN, lnD, lnL, w))))

    def simulate(self, N, D, simulations: int, seed: int) -> float:
        """The spread over `simulations` fresh tables with exactly these rows (one run each)."""
        rng = np.random.default_rng(seed)
        lnN, lnD = np.log(N), np.log(D)
        lnL = _law_log(self.law, lnN, lnD) + self.sigma * rng.standard_normal((simulations, len(N)))
        return float(self.spread(self.estimate(fit_many(self.theta, lnN, lnD, lnL))))


def _levels(log_budgets) -> np.ndarray:
    """Candidate log budgets: the table's own budgets, the geometric midpoints between neighbours,
    and half grid steps up to ABOVE steps over the highest (a step: the median log-ratio between
    the table's budgets, log 3 with one budget); none below the lowest (the law is measured there,
    not below it)."""
    x = np.unique(np.round(np.asarray(log_budgets, float), 9))
    step = float(np.median(np.diff(x))) if len(x) > 1 else np.log(3.0)
    above = x[-1] + step / 2 * np.arange(1, 2 * ABOVE + 1)
    return np.concatenate([x, (x[:-1] + x[1:]) / 2, above])


def candidates(law, log_budgets, k: float, sizes: int, span: float = SPAN) -> tuple[np.ndarray, np.ndarray]:
    """(C, N) of every candidate cell: each level of `_levels`, `sizes` sizes log-spaced over a
    factor `span` either side of the law's N_opt there."""
    C = np.array([float(f"{c:.6g}") for c in np.exp(_levels(log_budgets))])  # the table's budgets exactly
    n_opt = law.optimal(C, k)[0]
    offsets = np.geomspace(1 / span, span, sizes)
    return np.repeat(C, sizes), (n_opt[:, None] * offsets[None, :]).ravel()


def cheapest(fit, sizes: int = 5) -> float:
    """FLOPs of the cheapest candidate (one run at the lowest candidate budget) for a fit's table
    (any method's `FitResult`: its rows' budgets, or C where it has none); `sizes` is unused."""
    frame = fit.data
    C = frame["budget"] if "budget" in frame else frame["C"]
    return float(f"{np.exp(_levels(np.log(C.to_numpy(float))).min()):.6g}")  # as `candidates` snaps it


def _batches(C, left: float, flops: float) -> np.ndarray:
    """Runs per candidate in this step: a 1/STEPS share of the allowance (at least one run, at most
    what is left); 0 where one run costs more than is left."""
    share = min(flops / STEPS, left)
    m = np.maximum(np.floor(share / C * (1 + 1e-9)), 1.0)
    return np.where(m * C <= left * (1 + 1e-9), m, 0.0)


def greedy(sim: Simulator, state, C, N, flops: float, per_flop: bool) -> tuple[list[tuple[int, int]], float]:
    """Spend `flops` in batches (see the module docstring): [(candidate index, runs)], final spread."""
    lnN, lnD = np.log(N), np.log(C / (sim.k * N))
    v = sim.simulate_state(state)
    chosen, left = [], float(flops)
    for _ in range(4 * STEPS):
        m = _batches(C, left, flops)
        ok = np.flatnonzero(m > 0)
        if not len(ok):
            break
        s, z = sim.score(state, np.stack([lnN[ok], lnD[ok], m[ok]], 1))
        gain = v**2 - s**2
        if per_flop:
            gain = gain / (m[ok] * C[ok])
        j = int(np.nanargmax(np.where(np.isfinite(gain), gain, -np.inf)))
        if not gain[j] > 0:
            break
        i = int(ok[j])
        state = tuple(np.append(a, b) for a, b in zip(state[:3], (lnN[i], lnD[i], m[i]))) + (
            np.concatenate([state[3], z[:, None]], 1),
        )
        chosen.append((i, int(m[i])))
        left -= m[i] * C[i]
        v = float(s[j])
    return chosen, v


def _runs(C, N, chosen, k: float) -> list[dict]:
    """The proposed runs: each batch's m runs spread over sizes within a factor SPREAD of its centre."""
    out = []
    for i, m in chosen:
        spread = np.geomspace(1 / np.sqrt(SPREAD), np.sqrt(SPREAD), m) if m > 1 else np.ones(1)
        for f in spread:
            n = float(N[i] * f)
            out.append({"budget": float(C[i]), "n": n, "d": float(C[i] / (k * n)), "flops": float(C[i])})
    return out


def _search(sim, data, C, N, flops: float):
    """The better (lower final spread) of the per-FLOP and the per-batch greedy searches."""
    runs = []
    for per_flop in (True, False):
        state = sim.state(data.N, data.D)
        runs.append(greedy(sim, state, C, N, flops, per_flop))
    return min(runs, key=lambda r: r[1])[0]


def _start(study, bootstrap: int, seed: int, target_flops):
    """(data, the vpnls fit with its bootstrap interval, the law to simulate, its noise sigma)."""
    from .fitting import fit
    from .synthetic import LAW_PARAMS, noise_of
    from .table import require_spread
    from .uncertainty.audit import truth_of

    data = getattr(study, "data", study)
    if len(data) <= LAW_PARAMS:
        raise AnalysisError(
            f"design: the table has {len(data)} rows; simulating it needs more than the law's "
            f"{LAW_PARAMS} parameters"
        )
    require_spread(data, "design")
    f = fit(data, ESTIMATOR, bootstrap=bootstrap, seed=seed, target_flops=target_flops)
    law, residuals = truth_of(data)
    return data, f, law, noise_of(data, residuals)["sigma"]


def propose(
    study,
    flops: float,
    target_flops: float | None = None,
    sizes: int = 5,
    bootstrap: int = 200,
    seed: int = 0,
    simulations: int = SIMULATIONS,
) -> dict:
    """Runs to add to `study` (an `analysis.load` result, or its FitData) within `flops` that most
    narrow vpnls's interval of a (or of N_opt at `target_flops`), by simulated refits (module
    docstring). Returns {"objective", "estimator", "flops_allowed", "flops_proposed", "cells":
    [{budget, n, d, flops, kind}], "budgets", "ci_now", "ci_after", "expected_std_now",
    "expected_std_after", "variance_ratio", "noise_sigma", "simulations"}."""
    data, f, law, sigma = _start(study, bootstrap, seed, target_flops)
    log_budgets = np.log(data.budget if data.budget is not None else data.C)
    C, N = candidates(law, log_budgets, data.k, sizes)
    if not flops >= C.min():
        raise AnalysisError(
            f"--flops {flops:.3g} is below the cheapest useful addition (one run at the lowest budget, "
            f"{C.min():.3g} FLOPs); raise --flops"
        )
    sim = Simulator(law, sigma, data.k, target_flops, simulations, seed)
    cells = _runs(C, N, _search(sim, data, C, N, flops), data.k)
    known = np.unique(np.round(log_budgets, 6))
    for c in cells:
        c["kind"] = "existing budget" if np.any(np.abs(known - np.log(c["budget"])) < 1e-6) else "new budget"
    allN = np.concatenate([data.N, [c["n"] for c in cells]])
    allD = np.concatenate([data.D, [c["d"] for c in cells]])
    now = sim.simulate(data.N, data.D, FINAL_SIMULATIONS, seed + 1)
    after = sim.simulate(allN, allD, FINAL_SIMULATIONS, seed + 1)
    return _proposal(f, law, cells, flops, target_flops, now, after, sigma, simulations)


def _proposal(f, law, cells, flops, target_flops, now, after, sigma, simulations) -> dict:
    name = "a" if target_flops is None else "n_opt"
    ci = (f.ci or {}).get(name)
    center = f.params.get("a") if target_flops is None else f.extra["target"]["n_opt"]
    budgets = []
    for C in sorted({c["budget"] for c in cells}):
        mine = [c for c in cells if c["budget"] == C]
        budgets.append(
            {
                "budget": C,
                "kind": mine[0]["kind"],
                "runs": len(mine),
                "n_opt_predicted": float(law.optimal(C, f.params["k"])[0]),
            }
        )
    return {
        "objective": f"CI of {name}" + ("" if target_flops is None else f" at C = {target_flops:.3g}"),
        "estimator": ESTIMATOR,
        "flops_allowed": float(flops),
        "flops_proposed": float(sum(c["flops"] for c in cells)),
        "cells": cells,
        "budgets": budgets,
        "expected_std_now": now,
        "expected_std_after": after,
        "variance_ratio": (after / now) ** 2,
        "noise_sigma": sigma,
        "simulations": {"search": simulations, "final": FINAL_SIMULATIONS},
        "ci_now": ci,
        "ci_after": None if ci is None else _scaled(ci, center, after / now, log=target_flops is not None),
    }


def _scaled(ci: dict, center: float, scale: float, log: bool) -> dict:
    """The interval shrunk about `center` by `scale` (in log for N_opt)."""
    if log:
        lo, hi = center * (ci["lo"] / center) ** scale, center * (ci["hi"] / center) ** scale
    else:
        lo, hi = center - (center - ci["lo"]) * scale, center + (ci["hi"] - center) * scale
    return {"lo": float(lo), "hi": float(hi), "level": ci["level"]}


def design_text(p: dict) -> str:
    lines = [
        f"design: {len(p['cells'])} runs, {p['flops_proposed']:.3g} of {p['flops_allowed']:.3g} FLOPs; "
        f"objective: narrow the {p['objective']} of {p['estimator']}, scored by simulated refits"
    ]
    for b in p["budgets"]:
        ns = sorted(c["n"] for c in p["cells"] if c["budget"] == b["budget"])
        lines.append(
            f"  C={b['budget']:.3g} ({b['kind']}): {len(ns)} runs, N {ns[0]:.3g} .. {ns[-1]:.3g} "
            f"(predicted N_opt {b['n_opt_predicted']:.3g}); {len(ns) * b['budget']:.3g} FLOPs"
        )
    sd0, sd1 = p["expected_std_now"], p["expected_std_after"]
    lines.append(
        f"  simulated spread of the refitted estimate: std {sd0:.4g} now, {sd1:.4g} after "
        f"(x{sd1 / sd0:.2f}; noise {p['noise_sigma']:.3g} in log loss, {p['simulations']['final']} tables)"
    )
    if p["ci_now"]:
        a, b = p["ci_now"], p["ci_after"]
        lines.append(
            f"  {p['objective']} ({p['estimator']} bootstrap): now [{a['lo']:.4g}, {a['hi']:.4g}], "
            f"expected after [{b['lo']:.4g}, {b['hi']:.4g}]"
        )
    return "\n".join(lines)
