"""Where to spend the next FLOPs: propose IsoFLOP cells (sizes x budgets within an allowance F)
that most shrink the uncertainty of the compute-optimal frontier.

The frontier is the IsoFLOP power law log N_opt = c + a log C, a weighted least-squares line
through the budgets' optima with weights 1/s_i^2 (s_i: the optimum's log-std, `fit_isoflop`).
Its variance is known in closed form, so the effect of a candidate is computed, not simulated:

    var(a) = 1 / S_xx,    var(log N_opt(C_t)) = 1 / S_w + (x_t - x_w)^2 / S_xx

with S_w = sum w_i, x_w the weighted mean of x_i = log C_i, S_xx = sum w_i (x_i - x_w)^2.
Candidates are new budgets one to four grid steps below or above the grid (a step is the median
log-ratio between budgets) with `sizes` sizes each, and more sizes at an existing budget (its s_i
shrinks as sqrt(n / (n + sizes))). A new budget's s is the median s of the used budgets at the
median number of sizes. A greedy search takes, while the allowance lasts, the candidate that
lowers the chosen variance most per FLOP (and, separately, most in absolute terms; the better of
the two designs is kept). The expected CI after is the current bootstrap CI
(`fit_isoflop` + `bootstrap_isoflop`) scaled by sqrt(var_after / var_now).

Each proposed budget's sizes are log-spaced around the fit's predicted N_opt(C), with the grid's
own spacing, so they bracket it. A cell costs its budget C in FLOPs.
"""

from __future__ import annotations

import numpy as np

from .errors import AnalysisError


def _variance(x, w, x_t=None) -> float:
    sw = w.sum()
    xw = (w * x).sum() / sw
    sxx = (w * (x - xw) ** 2).sum()
    if sxx <= 0:
        return np.inf
    return 1 / sxx if x_t is None else 1 / sw + (x_t - xw) ** 2 / sxx


def _state(fit):
    o = fit.extra["optima"]
    u = o[o["used"]]
    x = np.log(u["budget"].to_numpy(float))
    s = u["n_opt_std_log"].to_numpy(float)
    return x, s, u["n_points"].to_numpy(float)


def _candidates(x, s, n, sizes: int, grid, below: int = 1, above: int = 4) -> list[dict]:
    """`grid`: (lowest, highest log C, step) of the measured grid; new budgets stay within `below`
    steps under it (smaller budgets leave the regime the law is for) and `above` steps over it."""
    lo, hi, step = grid
    s_new = float(np.median(s) * np.sqrt(np.median(n) / sizes))
    new = [lo - j * step for j in range(1, below + 1)] + [hi + j * step for j in range(1, above + 1)]
    out = [{"kind": "new", "x": v, "s": s_new} for v in new if not np.any(np.abs(x - v) < 1e-9)]
    # more sizes (as replicates, or finer spacing) once per budget: beyond that the bracket, not the noise, limits
    out += [{"kind": "more", "x": xi, "i": i} for i, xi in enumerate(x) if n[i] < 2 * sizes]
    for c in out:
        c["cost"] = sizes * float(np.exp(c["x"]))
    return out


def _apply(x, s, n, c, sizes):
    if c["kind"] == "new":
        return np.append(x, c["x"]), np.append(s, c["s"]), np.append(n, sizes)
    s2, n2 = s.copy(), n.copy()
    s2[c["i"]] = s[c["i"]] * np.sqrt(n[c["i"]] / (n[c["i"]] + sizes))
    n2[c["i"]] += sizes
    return x, s2, n2


def _greedy(x, s, n, flops: float, sizes: int, x_t, per_flop: bool) -> tuple[list[dict], float]:
    var = _variance(x, 1 / s**2, x_t)
    chosen, left, grid = [], float(flops), _grid(x)
    while True:
        best = None
        for c in _candidates(x, s, n, sizes, grid):
            if c["cost"] > left:
                continue
            x2, s2, n2 = _apply(x, s, n, c, sizes)
            gain = var - _variance(x2, 1 / s2**2, x_t)
            gain = gain / c["cost"] if per_flop else gain
            if gain > 0 and (best is None or gain > best[0]):
                best = (gain, c, (x2, s2, n2))
        if best is None:
            return chosen, var
        _, c, (x, s, n) = best
        var = _variance(x, 1 / s**2, x_t)
        chosen.append(c)
        left -= c["cost"]


def greedy(x, s, n, flops: float, sizes: int = 5, x_t=None) -> tuple[list[dict], float, float]:
    """(chosen candidates, variance now, variance after) under the allowance `flops`: the better of
    two greedy searches, by variance removed per FLOP (many cheap cells) and by variance removed
    (one costly cell that per-FLOP greed would never leave room for)."""
    var0 = _variance(x, 1 / s**2, x_t)
    runs = [_greedy(x, s, n, flops, sizes, x_t, per_flop) for per_flop in (True, False)]
    chosen, var = min(runs, key=lambda r: r[1])
    return chosen, var0, var


def _grid(x) -> tuple[float, float, float]:
    step = float(np.median(np.diff(np.sort(x)))) if len(x) > 1 else np.log(3.0)
    return float(x.min()), float(x.max()), step


def cheapest(fit, sizes: int = 5) -> float:
    x, s, n = _state(fit)
    return min(c["cost"] for c in _candidates(x, s, n, sizes, _grid(x)))


def propose(
    study, flops: float, target_flops: float | None = None, sizes: int = 5, bootstrap: int = 200, seed: int = 0
) -> dict:
    """Cells to run next on `study` (an `analysis.load` result with IsoFLOP budgets) within `flops`.
    Returns {"objective", "flops_allowed", "flops_proposed", "cells": [{budget, n, d, flops}],
    "budgets": [...], "ci_now", "ci_after"}."""
    from .fitting import fit

    f = fit(study, "isoflop", bootstrap=bootstrap, seed=seed, target_flops=target_flops)
    x, s, n = _state(f)
    floor = cheapest(f, sizes)
    if not flops >= floor:
        raise AnalysisError(
            f"--flops {flops:.3g} is below the cheapest useful addition ({sizes} sizes at "
            f"{floor / sizes:.3g} FLOPs = {floor:.3g}); raise --flops"
        )
    x_t = None if target_flops is None else float(np.log(target_flops))
    chosen, var0, var1 = greedy(x, s, n, flops, sizes, x_t)
    name = "a" if x_t is None else "n_opt"
    ci = (f.ci or {}).get(name)
    scale = float(np.sqrt(var1 / var0))
    step = float(np.median(np.diff(np.sort(x)))) if len(x) > 1 else np.log(3.0)
    spacing = _size_spacing(f)
    offsets_base = (np.arange(sizes) - (sizes - 1) / 2) * spacing
    cells, budgets = [], []
    for c in chosen:
        C = float(np.exp(c["x"]))
        if c["kind"] == "more":  # replicates shifted half a spacing: the bracket gets finer, not just noisier
            offsets = offsets_base + spacing / 2
        else:
            offsets = offsets_base
        n_opt = f.params["n_coef"] * C ** f.params["a"]
        budgets.append(
            {"budget": C, "kind": "new budget" if c["kind"] == "new" else "more sizes", "n_opt_predicted": n_opt}
        )
        for o in offsets:
            N = float(n_opt * np.exp(o))
            cells.append(
                {"budget": C, "n": N, "d": C / (study.data.k * N), "flops": C, "kind": budgets[-1]["kind"]}
            )
    return {
        "objective": f"CI of {name}" + ("" if x_t is None else f" at C = {target_flops:.3g}"),
        "flops_allowed": float(flops),
        "flops_proposed": float(sum(c["flops"] for c in cells)),
        "cells": cells,
        "budgets": budgets,
        "grid_step_log": step,
        "variance_ratio": scale**2,
        "ci_now": ci,
        "ci_after": None
        if ci is None
        else _scaled(
            ci, f.params.get(name) if x_t is None else f.extra["target"]["n_opt"], scale, log=x_t is not None
        ),
    }


def _size_spacing(f) -> float:
    """The grid's own log-spacing of sizes within a budget (median), at least log 1.5."""
    frame = f.data
    gaps = [np.diff(np.unique(np.log(g["N"].to_numpy()))) for _, g in frame.groupby("budget")]
    gaps = np.concatenate([g for g in gaps if len(g)]) if gaps else np.array([])
    return float(max(np.median(gaps), np.log(1.5))) if len(gaps) else np.log(2.0)


def _scaled(ci: dict, center: float, scale: float, log: bool) -> dict:
    """The interval shrunk about `center` by `scale` (in log for N_opt)."""
    if log:
        lo, hi = center * (ci["lo"] / center) ** scale, center * (ci["hi"] / center) ** scale
    else:
        lo, hi = center - (center - ci["lo"]) * scale, center + (ci["hi"] - center) * scale
    return {"lo": float(lo), "hi": float(hi), "level": ci["level"]}


def design_text(p: dict) -> str:
    lines = [
        f"design: {len(p['cells'])} cells, {p['flops_proposed']:.3g} of {p['flops_allowed']:.3g} FLOPs; "
        f"objective: narrow the {p['objective']}"
    ]
    for b in p["budgets"]:
        ns = sorted(c["n"] for c in p["cells"] if c["budget"] == b["budget"] and c["kind"] == b["kind"])
        lines.append(
            f"  C={b['budget']:.3g} ({b['kind']}): N "
            + ", ".join(f"{v:.3g}" for v in ns)
            + f" around the predicted N_opt {b['n_opt_predicted']:.3g}; {len(ns) * b['budget']:.3g} FLOPs"
        )
    if p["ci_now"]:
        a, b = p["ci_now"], p["ci_after"]
        lines.append(
            f"  {p['objective']}: now [{a['lo']:.4g}, {a['hi']:.4g}], "
            f"expected after [{b['lo']:.4g}, {b['hi']:.4g}] "
            f"(variance x{p['variance_ratio']:.2f})"
        )
    return "\n".join(lines)
