"""The two-step task law of the model ladders (Bhagia et al. 2024, "Establishing Task Scaling Laws
via Compute-Efficient Model Ladders"; OLMo's ladder), for an ability scored on every run.

Step 1: the task loss (the cross-entropy of the task's answer tokens, e.g. `icl_loss`) follows
Chinchilla's L(N, D) = E + A/N^α + B/D^β — fitted by this package's parametric fitter.
Step 2: accuracy is a sigmoid of the task loss, falling from its ceiling to the chance floor as
the loss grows:

    acc(L) = b + a / (1 + exp(k (L − L0))),   a ∈ [0, 1 − b], k > 0,

with b the task's chance accuracy (given, not fitted: a floor fitted from a handful of zeros is
not identified). L0 is the loss at which half of the attainable accuracy is reached; composing
the two steps predicts accuracy at any (N, D), and along the compute-optimal frontier, the
compute at which the ability appears (acc = b + a/2). Step 2's intervals come from resampling
runs. When no run scores clearly above chance the sigmoid is not identified: the fit says so and
reports step 1 alone.

The direct law skips the loss: accuracy as a power law in compute, on a log scale (Krajewski et al.
2025 find the direct form often extrapolates better than the two-step one):

    −ln((acc − b) / (1 − b)) = A · C^(−γ),   i.e. acc(C) = b + (1 − b) exp(−A C^(−γ)),

fitted by least squares on accuracy (so runs at chance, whose log is −∞, still count). Both laws
are back-tested: refitted on every run below the largest compute (the largest budget, where the table
has budgets), each predicts the accuracy of the runs at the largest compute; `backtest` reports each
run's prediction and the mean absolute error in accuracy points.

Which task: a table whose runs trained on the in-context copy task (`copy_mix` > 0; lab.data.induction)
is fitted on its `copy_accuracy` and `copy_loss`, with chance from `copy_chance`; any other on the
associative-recall scores `icl_accuracy` and `icl_loss`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..laws import K_FLOPS_PER_PARAM_TOKEN
from ..result import FitResult, percentile_ci

ACC_COL, LOSS_COL = "icl_accuracy", "icl_loss"
COPY_ACC, COPY_LOSS, COPY_CHANCE = "copy_accuracy", "copy_loss", "copy_chance"
DEFAULT_CHANCE = 1 / 676  # lab.evals.icl's two-letter answers


def task_columns(frame: pd.DataFrame) -> tuple[str, str, float]:
    """(accuracy column, task-loss column, chance) of the task the table's runs trained on: the copy
    task where some run has copy_mix > 0 and the copy scores, else associative recall."""
    mix = pd.to_numeric(frame.get("copy_mix", pd.Series(dtype=float)), errors="coerce")
    if (mix > 0).any() and {COPY_ACC, COPY_LOSS} <= set(frame.columns):
        chance = pd.to_numeric(frame.get(COPY_CHANCE, pd.Series(dtype=float)), errors="coerce")[mix > 0]
        return COPY_ACC, COPY_LOSS, float(chance.median()) if chance.notna().any() else 0.0
    return ACC_COL, LOSS_COL, DEFAULT_CHANCE


def sigmoid_acc(L, a, k, L0, b):
    return b + a / (1.0 + np.exp(np.clip(k * (np.asarray(L, float) - L0), -60, 60)))


def _crossing(L: np.ndarray, acc: np.ndarray) -> float:
    """The task loss halfway between the runs on either side of half the accuracy range (a start for
    L0 where the runs leave a gap in loss, as a sharp ability's do)."""
    half = (acc.max() + acc.min()) / 2
    above, below = L[acc >= half], L[acc < half]
    if not len(above) or not len(below):
        return float(np.median(L))
    return float((above.max() + below.min()) / 2)


def fit_sigmoid(L: np.ndarray, acc: np.ndarray, chance: float, start: dict | None = None) -> tuple[dict, float]:
    """Least-squares (a, k, L0) for fixed floor b = chance, from several starts (and `start`, a previous
    fit, with fewer others); (params, SSE)."""
    from scipy.optimize import least_squares

    def resid(p):
        return sigmoid_acc(L, p[0], p[1], p[2], chance) - acc

    span = max(float(np.ptp(L)), 1e-3)
    a0 = max(acc.max() - chance, 1e-3)
    L0s = [*np.quantile(L, [0.2, 0.5, 0.8]), _crossing(L, acc)]
    starts = [[a0, k / span, L0] for L0 in L0s for k in ((4.0,) if start else (1.0, 4.0, 16.0))]
    if start:
        starts.insert(0, [min(start["a"], 1 - chance), start["k"], start["L0"]])
    lo, hi = [0.0, 1e-6, L.min() - 5 * span], [1 - chance, 1e4, L.max() + 5 * span]
    best = None
    for x0 in starts:
        sol = least_squares(resid, np.clip(x0, lo, hi), bounds=(lo, hi))
        if best is None or sol.cost < best.cost:
            best = sol
    a, k, L0 = best.x
    return {"a": float(a), "k": float(k), "L0": float(L0), "b": chance}, float(2 * best.cost)


def _task_rows(data, acc_col: str, loss_col: str):
    frame = data.frame
    missing = [c for c in (acc_col, loss_col) if c not in frame.columns]
    if missing:
        raise AnalysisError(
            f"the table has no {' / '.join(missing)} column: the task law needs per-run task scores "
            f"(lab runs record {ACC_COL} and {LOSS_COL})"
        )
    keep = np.isfinite(frame[acc_col].to_numpy(float)) & np.isfinite(frame[loss_col].to_numpy(float))
    if keep.sum() < 5:
        raise AnalysisError(
            f"the task law needs at least 5 runs with {acc_col} and {loss_col}; the table has {int(keep.sum())}"
        )
    return keep


def _task_data(data, acc_col: str, loss_col: str):
    """`data` restricted to the runs with both task scores, its loss column the task loss."""
    keep = _task_rows(data, acc_col, loss_col)
    frame = data.frame[keep]
    return dataclasses.replace(
        data,
        N=data.N[keep],
        D=data.D[keep],
        C=data.C[keep],
        L=frame[loss_col].to_numpy(float),
        frame=frame,
        budget=None if data.budget is None else data.budget[keep],
    )


def _step1_frame(task_data, acc, law) -> pd.DataFrame:
    """One row per run: N, D, C, its task loss and accuracy, and step 1's fitted task loss."""
    return pd.DataFrame(
        {
            "N": task_data.N,
            "D": task_data.D,
            "C": task_data.C,
            "task_loss": task_data.L,
            "accuracy": acc,
            "task_loss_fit": law(task_data.N, task_data.D),
        }
    )


def fit_task(
    data,
    acc_col: str | None = None,
    loss_col: str | None = None,
    chance: float | None = None,
    n_boot: int = 200,
    seed: int = 0,
    target_flops: float | None = None,
    backtest: bool = True,
    **parametric_kw,
) -> FitResult:
    """Both steps and the direct law on `data` (a FitData), and their back-tests; see the module
    docstring. Columns and chance default to the task the table trained on (`task_columns`)."""
    from .parametric import fit_parametric

    auto_acc, auto_loss, auto_chance = task_columns(data.frame)
    acc_col, loss_col = acc_col or auto_acc, loss_col or auto_loss
    chance = auto_chance if chance is None else chance
    task_data = _task_data(data, acc_col, loss_col)
    L_task = task_data.L
    acc = task_data.frame[acc_col].to_numpy(float)
    step1 = fit_parametric(task_data, **parametric_kw)
    warnings = [f"step 1: {w}" for w in step1.warnings]
    params = {f"task_{name}": step1.params[name] for name in ("E", "A", "B", "alpha", "beta")}
    out = _step1_frame(task_data, acc, step1.law)
    extra = {"columns": {"accuracy": acc_col, "task_loss": loss_col}, "chance": chance, "n_points": len(acc)}
    out.attrs["k"] = task_data.k
    ci = None
    if acc.max() < 2 * chance + 2 / len(acc):
        warnings.insert(
            0,
            f"no run scores clearly above chance ({chance:.4f}; best {acc.max():.3f}): the ability has not "
            "appeared in this grid, so step 2 (the sigmoid) is not identified and is not fitted",
        )
        resid = np.full(len(acc), np.nan)
        objective = None
    else:
        sig, objective = fit_sigmoid(L_task, acc, chance)
        params.update(sig)
        out["accuracy_fit"] = sigmoid_acc(out["task_loss_fit"], sig["a"], sig["k"], sig["L0"], chance)
        resid = acc - sigmoid_acc(L_task, sig["a"], sig["k"], sig["L0"], chance)
        samples = bootstrap_sigmoid(L_task, acc, chance, n_boot, seed, sig)
        ci = percentile_ci(samples)
        extra["emergence_flops"] = emergence_flops(step1.law, sig, task_data.k)
        warnings += _sigmoid_warnings(L_task, sig, ci)
    direct = fit_direct(task_data.C, acc, chance)
    params.update({f"direct_{k}": v for k, v in direct.items()})
    out["accuracy_direct"] = direct_acc(task_data.C, direct["A"], direct["gamma"], chance)
    if backtest and "L0" in params:
        extra["backtest"] = backtest_largest(task_data, acc, chance, parametric_kw)
        warnings += extra["backtest"].pop("warnings")
    out["residual"] = resid
    return FitResult("task", params, objective, resid, out, warnings=warnings, law=step1.law, extra=extra, ci=ci)


def direct_acc(C, A, gamma, b):
    """The direct law: b + (1 − b) exp(−A C^(−γ))."""
    return b + (1 - b) * np.exp(-A * np.asarray(C, float) ** -gamma)


def fit_direct(C: np.ndarray, acc: np.ndarray, chance: float) -> dict:
    """Least-squares (A, γ) of `direct_acc`, from several starts, in log A and with C scaled by its
    geometric mean (so the solver sees numbers near 1); {"A", "gamma", "sse"}."""
    from scipy.optimize import least_squares

    C0 = float(np.exp(np.mean(np.log(C))))
    x = np.asarray(C, float) / C0

    def resid(p):  # p = (ln A', γ) with A' = A C0^(−γ)
        return direct_acc(x, np.exp(p[0]), p[1], chance) - acc

    best = None
    for lnA in (-2.0, 0.0, 2.0):
        for g in (0.5, 2.0, 6.0):
            sol = least_squares(resid, [lnA, g], bounds=([-30.0, 1e-3], [30.0, 50.0]))
            if best is None or sol.cost < best.cost:
                best = sol
    lnA, g = best.x
    return {"A": float(np.exp(lnA) * C0**g), "gamma": float(g), "sse": float(2 * best.cost)}


def largest_compute(task_data) -> np.ndarray:
    """Boolean: the runs at the largest compute (the largest budget where the table has budgets,
    else within 1% of the largest C)."""
    if task_data.budget is not None and np.isfinite(task_data.budget).all():
        return task_data.budget >= task_data.budget.max() * (1 - 1e-9)
    return task_data.C >= 0.99 * task_data.C.max()


def backtest_largest(task_data, acc, chance: float, parametric_kw: dict) -> dict:
    """Both laws refitted without the largest compute, predicting its runs' accuracy."""
    from .parametric import fit_parametric

    held = largest_compute(task_data)
    train = ~held
    out = {"heldout_flops": float(np.median(task_data.C[held])), "n_train": int(train.sum()), "warnings": []}
    rows = {"N": task_data.N[held], "C": task_data.C[held], "accuracy": acc[held]}
    if train.sum() < 5 or np.ptp(task_data.L[train]) <= 0:
        out["warnings"].append(f"back-test: {int(train.sum())} runs below the largest compute, too few to refit")
        return out
    sub = dataclasses.replace(
        task_data,
        N=task_data.N[train],
        D=task_data.D[train],
        C=task_data.C[train],
        L=task_data.L[train],
        frame=task_data.frame[train],
        budget=None if task_data.budget is None else task_data.budget[train],
    )
    step1 = fit_parametric(sub, **parametric_kw)
    sig, _ = fit_sigmoid(task_data.L[train], acc[train], chance)
    two = sigmoid_acc(step1.law(task_data.N[held], task_data.D[held]), sig["a"], sig["k"], sig["L0"], chance)
    direct = fit_direct(task_data.C[train], acc[train], chance)
    dpred = direct_acc(task_data.C[held], direct["A"], direct["gamma"], chance)
    rows.update(two_step=two, direct=dpred)
    out["runs"] = pd.DataFrame(rows)
    out["two_step_mae"] = float(np.mean(np.abs(two - acc[held])))
    out["direct_mae"] = float(np.mean(np.abs(dpred - acc[held])))
    if acc[train].max() < 2 * chance + 2 / max(int(train.sum()), 1):
        out["warnings"].append("back-test: no run below the largest compute scores above chance")
    return out


def bootstrap_sigmoid(L, acc, chance, n_boot: int, seed: int, start: dict | None = None) -> pd.DataFrame:
    """Step-2 parameters refitted on runs resampled with replacement (from `start`, the full fit)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        i = rng.integers(0, len(L), len(L))
        if np.ptp(L[i]) <= 0:
            continue
        p, _ = fit_sigmoid(L[i], acc[i], chance, start)
        rows.append({"a": p["a"], "k": p["k"], "L0": p["L0"]})
    return pd.DataFrame(rows)


def frontier(law, k_flops: float, flops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N_opt, task loss) along the compute-optimal frontier of step 1's law, C = k N D."""
    n_grid = np.logspace(3, 13, 2001)
    N_opt, L_opt = [], []
    for C in np.atleast_1d(flops):
        losses = law(n_grid, C / (k_flops * n_grid))
        i = int(np.argmin(losses))
        N_opt.append(n_grid[i])
        L_opt.append(losses[i])
    return np.array(N_opt), np.array(L_opt)


def emergence_flops(law, sig: dict, k_flops: float) -> float | None:
    """The compute at which the frontier's task loss reaches L0 (half the attainable accuracy)."""
    flops = np.logspace(6, 30, 481)
    _, L_opt = frontier(law, k_flops, flops)
    below = np.nonzero(L_opt <= sig["L0"])[0]
    return float(flops[below[0]]) if len(below) else None


def _sigmoid_warnings(L, sig: dict, ci: dict) -> list[str]:
    out = []
    if not (L.min() <= sig["L0"] <= L.max()):
        out.append(
            f"step 2: the midpoint L0 = {sig['L0']:.3f} lies outside the task losses seen "
            f"({L.min():.3f}–{L.max():.3f}): the emergence point is an extrapolation"
        )
    if "L0" in ci and ci["L0"]["hi"] - ci["L0"]["lo"] > np.ptp(L):
        out.append(
            "step 2: the 95% interval of L0 is wider than the range of task losses: "
            "the sigmoid is weakly identified"
        )
    return out


def summary(fit: FitResult) -> list[str]:
    """Lines for `lab fit --method task`."""
    p, ci = fit.params, fit.ci or {}
    lines = [
        f"  step 1, task loss: E={p['task_E']:.3f} A={p['task_A']:.3g} alpha={p['task_alpha']:.3f} "
        f"B={p['task_B']:.3g} beta={p['task_beta']:.3f}"
    ]
    if "L0" in p:

        def with_ci(name):
            c = ci.get(name)
            return f"{p[name]:.3f}" + (f" [{c['lo']:.3f}, {c['hi']:.3f}]" if c else "")

        lines.append(
            f"  step 2, accuracy = {p['b']:.4f} + a/(1+exp(k(L-L0))): a={with_ci('a')} k={with_ci('k')} "
            f"L0={with_ci('L0')}"
        )
        emerge = fit.extra.get("emergence_flops")
        lines.append(
            f"  half the attainable accuracy on the compute-optimal frontier at C ≈ {emerge:.3g} FLOPs"
            if emerge
            else "  the frontier's task loss does not reach L0 within 1e30 FLOPs"
        )
    if "direct_A" in p:
        lines.append(
            f"  direct law, accuracy = b + (1-b) exp(-A C^-gamma): A={p['direct_A']:.3g} "
            f"gamma={p['direct_gamma']:.3f}"
        )
    bt = fit.extra.get("backtest") or {}
    if "two_step_mae" in bt:
        lines.append(
            f"  back-test at C ≈ {bt['heldout_flops']:.3g} FLOPs (fitted on {bt['n_train']} smaller runs): "
            f"mean |error| two-step {100 * bt['two_step_mae']:.1f} points, "
            f"direct {100 * bt['direct_mae']:.1f} points"
        )
    return lines


def plot_task(fit: FitResult, out_dir, formats=("png",)) -> list:
    """icl.png: accuracy against compute (runs per size, the two-step law per size and along the
    compute-optimal frontier, the direct law, the back-test's predictions, chance) and accuracy against
    task loss (runs and the sigmoid); icl.csv beside it."""
    import matplotlib.pyplot as plt

    d, p = fit.data, fit.params
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    right.scatter(d["task_loss"], d["accuracy"], s=14, label="runs")
    flops = np.logspace(np.log10(d["C"].min()) - 0.3, np.log10(d["C"].max()) + 0.7, 80)
    k_flops = fit.data.attrs.get("k", K_FLOPS_PER_PARAM_TOKEN)
    sizes = np.unique(d["N"])
    for i, N in enumerate(sizes if len(sizes) <= 8 else []):  # per size: runs and the two-step law
        at, color = d["N"] == N, f"C{i}"
        left.scatter(d["C"][at], d["accuracy"][at], s=16, color=color, label=f"N = {N:.3g}")
        if "L0" in p:
            left.plot(
                flops,
                sigmoid_acc(fit.law(N, flops / (k_flops * N)), p["a"], p["k"], p["L0"], p["b"]),
                color=color,
                lw=1,
                alpha=0.7,
            )
    if len(sizes) > 8:
        left.scatter(d["C"], d["accuracy"], s=14, label="runs")
    if "L0" in p:
        _, L_opt = frontier(fit.law, k_flops, flops)
        left.plot(
            flops, sigmoid_acc(L_opt, p["a"], p["k"], p["L0"], p["b"]), "k--", lw=1, label="two-step, frontier"
        )
        grid = np.linspace(d["task_loss"].min() - 0.5, d["task_loss"].max() + 0.5, 100)
        right.plot(grid, sigmoid_acc(grid, p["a"], p["k"], p["L0"], p["b"]), label="sigmoid fit")
    if "direct_A" in p:
        left.plot(
            flops,
            direct_acc(flops, p["direct_A"], p["direct_gamma"], fit.extra["chance"]),
            "k:",
            lw=1.5,
            label="direct law",
        )
    runs = (fit.extra.get("backtest") or {}).get("runs")
    if runs is not None and len(runs):
        left.scatter(runs["C"], runs["two_step"], marker="x", c="k", s=24, label="back-test: two-step")
        left.scatter(runs["C"], runs["direct"], marker="+", c="k", s=30, label="back-test: direct")
    for ax in (left, right):
        ax.axhline(fit.extra["chance"], ls=":", c="gray", label="chance")
        ax.legend(fontsize=7)
    left.set(
        xscale="log",
        xlabel="compute C (FLOPs)",
        ylabel=f"accuracy ({fit.extra['columns']['accuracy']})",
        title="ability vs compute (lines: the two-step law per size)",
    )
    right.set(xlabel="task loss (nats/token)", ylabel="accuracy", title="step 2: accuracy vs task loss")
    from ..plotting.figure_files import save_figure

    return save_figure(fig, d, out_dir, "icl", formats)


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "task"
DESCRIPTION = "two-step task law: task loss L(N, D), then accuracy as a sigmoid of it (OLMo's ladder)"
FIGURES = "i"  # in-context accuracy vs compute and vs task loss
SUITE_BOOTSTRAP = False
USES_JAX = True
COLUMNS = ("icl_accuracy", "icl_loss")


def fit(data, curves, **kw) -> FitResult:
    return fit_task(data, **kw)


def options(o) -> dict:
    return {"delta": o.delta, "seed": o.seed}


def figure(source, table, options, out, formats, fit=None) -> list:
    """Figure i, from the fit (fitted here unless given)."""
    from ..inputs import load

    if fit is None:  # the report passes the fit it already has
        fit = fit_task(load(source, table).data, seed=options.seed)
    return plot_task(fit, out, formats)
