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
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..laws import K_FLOPS_PER_PARAM_TOKEN
from ..result import FitResult, percentile_ci

ACC_COL, LOSS_COL = "icl_accuracy", "icl_loss"
DEFAULT_CHANCE = 1 / 676  # lab.evals.icl's two-letter answers


def sigmoid_acc(L, a, k, L0, b):
    return b + a / (1.0 + np.exp(np.clip(k * (np.asarray(L, float) - L0), -60, 60)))


def fit_sigmoid(L: np.ndarray, acc: np.ndarray, chance: float) -> tuple[dict, float]:
    """Least-squares (a, k, L0) for fixed floor b = chance, from several starts; (params, SSE)."""
    from scipy.optimize import least_squares

    def resid(p):
        return sigmoid_acc(L, p[0], p[1], p[2], chance) - acc

    best = None
    span = max(float(np.ptp(L)), 1e-3)
    for L0 in np.quantile(L, [0.2, 0.5, 0.8]):
        for k in (1.0 / span, 4.0 / span, 16.0 / span):
            x0 = [max(acc.max() - chance, 1e-3), k, L0]
            sol = least_squares(
                resid, x0, bounds=([0.0, 1e-6, L.min() - 5 * span], [1 - chance, 1e4, L.max() + 5 * span])
            )
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
    acc_col: str = ACC_COL,
    loss_col: str = LOSS_COL,
    chance: float = DEFAULT_CHANCE,
    n_boot: int = 200,
    seed: int = 0,
    target_flops: float | None = None,
    **parametric_kw,
) -> FitResult:
    """Both steps on `data` (a FitData); see the module docstring."""
    from .parametric import fit_parametric

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
        samples = bootstrap_sigmoid(L_task, acc, chance, n_boot, seed)
        ci = percentile_ci(samples)
        extra["emergence_flops"] = emergence_flops(step1.law, sig, task_data.k)
        warnings += _sigmoid_warnings(L_task, sig, ci)
    out["residual"] = resid
    return FitResult("task", params, objective, resid, out, warnings=warnings, law=step1.law, extra=extra, ci=ci)


def bootstrap_sigmoid(L, acc, chance, n_boot: int, seed: int) -> pd.DataFrame:
    """Step-2 parameters refitted on runs resampled with replacement."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_boot):
        i = rng.integers(0, len(L), len(L))
        if np.ptp(L[i]) <= 0:
            continue
        p, _ = fit_sigmoid(L[i], acc[i], chance)
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
    return lines


def plot_task(fit: FitResult, out_dir, formats=("png",)) -> list:
    """icl.png: accuracy against compute (runs, and the two-step law along the compute-optimal
    frontier) and accuracy against task loss (runs and the sigmoid); icl.csv beside it."""
    import matplotlib.pyplot as plt

    d, p = fit.data, fit.params
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.scatter(d["C"], d["accuracy"], s=14, label="runs")
    right.scatter(d["task_loss"], d["accuracy"], s=14, label="runs")
    if "L0" in p:
        flops = np.logspace(np.log10(d["C"].min()) - 0.5, np.log10(d["C"].max()) + 2, 80)
        _, L_opt = frontier(fit.law, fit.data.attrs.get("k", K_FLOPS_PER_PARAM_TOKEN), flops)
        left.plot(flops, sigmoid_acc(L_opt, p["a"], p["k"], p["L0"], p["b"]), label="two-step law, frontier")
        grid = np.linspace(d["task_loss"].min() - 0.5, d["task_loss"].max() + 0.5, 100)
        right.plot(grid, sigmoid_acc(grid, p["a"], p["k"], p["L0"], p["b"]), label="sigmoid fit")
    for ax in (left, right):
        ax.axhline(fit.extra["chance"], ls=":", c="gray", label="chance")
        ax.legend(fontsize=7)
    left.set(
        xscale="log", xlabel="compute C (FLOPs)", ylabel="in-context recall accuracy", title="ability vs compute"
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
