"""Muennighoff et al. (2023), "Scaling Data-Constrained Language Models": fit R_D* and R_N*.

With U unique tokens trained for D tokens (R_D = D/U - 1 repetitions) and N parameters, the law
is Chinchilla's evaluated at effective data and parameters (`analysis.laws.DataConstrained`):

    D' = U + U R_D* (1 - exp(-R_D / R_D*)),   N' = U_N + U_N R_N* (1 - exp(-R_N / R_N*)),
    U_N = min(N, N_opt(U)),  R_N = N / U_N - 1,   log L = LSE(a - alpha log N', b - beta log D', e).

We minimise the same objective as the Epoch-procedure parametric fit (Huber, delta 1e-3, on log
loss residuals, summed) with the same batched L-BFGS (`analysis.solvers.lbfgs`), from a grid of starts:

- `base` given (a `Chinchilla`, e.g. `MUENNIGHOFF_C4_BASE`): only R_D*, R_N* are fitted, the base
  law held fixed — the paper's procedure (its notebook fits them with the C4 Chinchilla law fixed);
- `base=None`: the base law is first fitted to the single-epoch rows (`fit_parametric`), then
  R_D*, R_N* with it fixed, then all seven parameters together from there.

The unique-token count comes from a `unique_tokens` column, else U = D / epochs (an `epochs`
column). `bootstrap_data_constrained` refits resampled rows from the optimum, all at once.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pandas as pd

from ..errors import AnalysisError
from ..laws import K_FLOPS_PER_PARAM_TOKEN, Chinchilla, DataConstrained
from ..result import FitResult, percentile_ci
from ..table import FitData, find_column, numeric_column, require_points, subset

UNIQUE_COLS = ("unique_tokens", "U", "unique")
EPOCHS_COLS = ("epochs", "n_epochs")
THETA_NAMES = ("a", "b", "e", "alpha", "beta", "log_R_D_star", "log_R_N_star")
# the C4 base law the paper held fixed (datablations utils/parametric_fit.ipynb: a Chinchilla fit to
# C4 IsoFLOP points with alpha tied to beta), in the LSE parametrisation (a, b, e, alpha, beta)
MUENNIGHOFF_C4_BASE = Chinchilla.from_lse(6.255414, 7.3049974, 0.6254804, 0.3526596, 0.3526596)
R_GRID = np.exp(np.linspace(np.log(0.3), np.log(3000.0), 12))  # starts for R_D* and R_N*
HALF_VALUE = np.log(2.0)  # a repeated token is worth half a fresh one after R_D* ln 2 repetitions


def unique_tokens(data: FitData, unique_col: str | None = None, epochs_col: str | None = None):
    """(U per row, the column it came from): a unique-tokens column, else D / epochs."""
    df = data.frame
    ucol = find_column(df, unique_col, UNIQUE_COLS, "unique tokens", required=unique_col is not None)
    if ucol is not None:
        return numeric_column(df, ucol, "unique tokens"), ucol
    ecol = find_column(df, epochs_col, EPOCHS_COLS, "epochs", required=epochs_col is not None)
    if ecol is None:
        raise AnalysisError(
            "the data-constrained fit needs a unique-tokens column (unique_tokens) or an "
            f"epochs column (epochs, U = D/epochs); the table has: {', '.join(map(str, df.columns))}"
        )
    return data.D / numeric_column(df, ecol, "epochs"), f"{data.columns['D']}/{ecol}"


def _huber(r, delta):
    import jax.numpy as jnp

    ar = jnp.abs(r)
    return jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))


def _log_pred(theta, X, k):
    """log L of the law for one parameter vector theta (7,); X: (3, n) log N, log D, log U."""
    import jax.numpy as jnp

    a, b, e, al, be, lrd, lrn = (theta[i] for i in range(7))
    lnN, lnD, lnU = X
    rd_star, rn_star = jnp.exp(lrd), jnp.exp(lrn)
    r_d = jnp.maximum(jnp.exp(lnD - lnU) - 1.0, 0.0)
    ln_d_eff = lnU + jnp.log1p(-rd_star * jnp.expm1(-r_d / rd_star))
    log_g = (jnp.log(al) + a - jnp.log(be) - b) / (al + be)
    ln_n_opt = log_g + (be / al) * (lnU + log_g)  # N_opt of the base law for U tokens (k cancels)
    ln_un = jnp.minimum(lnN, ln_n_opt)
    r_n = jnp.maximum(jnp.exp(lnN - ln_un) - 1.0, 0.0)
    ln_n_eff = ln_un + jnp.log1p(-rn_star * jnp.expm1(-r_n / rn_star))
    return jnp.logaddexp(jnp.logaddexp(a - al * ln_n_eff, b - be * ln_d_eff), e)


@functools.cache
def _vg(delta: float, free: tuple):
    """Batched (lanes, 7) value and gradient of the weighted Huber sum; fixed parameters get zero gradient."""
    import jax
    import jax.numpy as jnp

    mask = jnp.asarray(free, float)

    def one(theta, X, y, w):
        return jnp.sum(w * _huber(_log_pred(theta, X, K_FLOPS_PER_PARAM_TOKEN) - y, delta))

    vg1 = jax.value_and_grad(one)

    def vg(P, X, y, W):
        f, g = jax.vmap(vg1, in_axes=(0, None, None, 0))(P, X, y, jnp.broadcast_to(W, (P.shape[0], y.shape[0])))
        return jnp.where(jnp.isfinite(f), f, jnp.inf), g * mask

    return vg


def minimize(P0, X, y, W, delta, free, iters=400):
    """Float64 L-BFGS of every row of P0; numpy (P, f)."""
    import jax
    import jax.numpy as jnp

    from ..solvers.lbfgs import make_minimizer

    run = make_minimizer(_vg(float(delta), tuple(bool(f) for f in free)), int(iters), gtol=1e-11)
    with jax.enable_x64(True):
        P, f, _, _ = run(*(jnp.asarray(a, jnp.float64) for a in (P0, X, y, W)))
        return np.asarray(P, np.float64), np.asarray(f, np.float64)


def _starts(base_lse):
    """Lanes: the base law with every (R_D*, R_N*) of the grid."""
    rd, rn = np.meshgrid(np.log(R_GRID), np.log(R_GRID), indexing="ij")
    P = np.tile(np.asarray(base_lse, float), (rd.size, 1))
    return np.column_stack([P, rd.ravel(), rn.ravel()])


def _base_from_single_epoch(data: FitData, single, delta):
    from .parametric import fit_parametric

    if single.sum() < 5:
        raise AnalysisError(
            f"the data-constrained fit without a fixed base law needs at least 5 single-epoch rows "
            f"(D = U) to fit it; the table has {int(single.sum())}"
        )
    return fit_parametric(subset(data, single), delta=delta).law, int(single.sum())


def fit_data_constrained(
    data: FitData,
    base: Chinchilla | None = None,
    delta: float = 1e-3,
    unique_col: str | None = None,
    epochs_col: str | None = None,
    target_flops: float | None = None,
) -> FitResult:
    """Fit R_D* and R_N* (and the base law when `base` is None; see module docstring)."""
    t0 = time.perf_counter()
    U_table, ucol = unique_tokens(data, unique_col, epochs_col)
    require_points(len(data), 2 if base is not None else 7, "data-constrained fit")
    U = np.minimum(U_table, data.D)  # a run shorter than its unique data sees D unique tokens
    fixed = base is not None
    n_single = None
    if base is None:
        base, n_single = _base_from_single_epoch(data, U_table >= data.D * (1 - 1e-9), delta)
    X = np.stack([np.log(data.N), np.log(data.D), np.log(U)])
    y, w = np.log(data.L), np.ones(len(data))
    P, f = minimize(_starts(base.to_lse()), X, y, w, delta, free=(0,) * 5 + (1, 1))
    theta = P[int(np.nanargmin(f))]
    if not fixed:  # all seven together from the two-stage optimum
        P, f = minimize(theta[None], X, y, w, delta, free=(1,) * 7)
        theta = P[0]
    return _result(data, theta, float(np.nanmin(f)), U, U_table, ucol, fixed, n_single, delta, t0, target_flops)


def _law(theta, k) -> DataConstrained:
    return DataConstrained(
        Chinchilla.from_lse(*theta[:5]), R_D_star=float(np.exp(theta[5])), R_N_star=float(np.exp(theta[6])), k=k
    )


def worth_repeating(R_D_star: float, within: float = 0.05) -> dict:
    """Read-outs of R_D*: the epoch count after which a repeated token is worth less than half a
    fresh one (1 + R_D* ln 2), and the largest epoch count whose effective data D' stays within
    `within` of all-fresh data D (D'/D >= 1 - within)."""
    epochs = np.linspace(1.0, 1.0 + 50 * R_D_star, 200001)
    r = epochs - 1.0
    ratio = (1.0 + R_D_star * -np.expm1(-r / R_D_star)) / epochs
    return {
        "half_value_epochs": float(1.0 + R_D_star * HALF_VALUE),
        "near_fresh_epochs": float(epochs[ratio >= 1 - within][-1]),
        "near_fresh_within": within,
    }


def _result(data, theta, objective, U, U_table, ucol, fixed, n_single, delta, t0, target_flops):
    law = _law(theta, data.k)
    pred = np.log(law(data.N, data.D, U))
    resid = np.log(data.L) - pred
    base = law.base
    params = {
        "R_D_star": law.R_D_star,
        "R_N_star": law.R_N_star,
        "E": base.E,
        "A": base.A,
        "B": base.B,
        "alpha": base.alpha,
        "beta": base.beta,
        "a": base.a,
        "b": base.b,
        "k": data.k,
    }
    frame = _fit_frame(data, U, U_table, pred, resid)
    warnings = _identifiability_warnings(data, law, fixed)
    extra = _fit_extra(data, theta, law, U_table, ucol, fixed, n_single, delta, t0, target_flops)
    return FitResult(
        method="data-constrained",
        params=params,
        objective=objective,
        residuals=resid,
        data=frame,
        warnings=warnings,
        law=law,
        extra=extra,
    )


def _fit_frame(data, U, U_table, pred, resid) -> pd.DataFrame:
    """One row per run: its inputs, epochs, the loss and the law's fitted loss."""
    return pd.DataFrame(
        {
            "N": data.N,
            "D": data.D,
            "U": U,
            "unique_tokens": U_table,
            "epochs": data.D / U_table,
            "C": data.C,
            "loss": data.L,
            "loss_fit": np.exp(pred),
            "residual": resid,
        }
    )


def _identifiability_warnings(data, law, fixed) -> list[str]:
    """Warnings for parameters the data cannot pin down: R_D*, R_N* far out, or a floor E near 0."""
    base = law.base
    warnings = []
    for name, v in (("R_D*", law.R_D_star), ("R_N*", law.R_N_star)):
        if not 1e-2 < v < 1e4:
            warnings.append(
                f"{name} = {v:.3g} is at the edge of what the data can identify (the loss hardly depends on it)"
            )
    if not fixed and base.E < 0.25 * float(np.min(data.L)):
        warnings.append(
            f"the fitted base law's E = {base.E:.3g} is near its bound 0 (under a quarter of the lowest loss): "
            "the floor is not identified, and its interval says nothing"
        )
    return warnings


def _fit_extra(data, theta, law, U_table, ucol, fixed, n_single, delta, t0, target_flops) -> dict:
    """The fit's conventions, read-outs (worth_repeating, optional target allocation) and timing."""
    extra = {
        "objective_convention": f"sum of Huber(delta={delta:g}) over log-loss residuals",
        "delta": delta,
        "base_law": "held fixed (given)" if fixed else f"fitted: single-epoch rows ({n_single}), then jointly",
        "lse_params": dict(zip(THETA_NAMES, map(float, theta))),
        "free": "R_D*, R_N*" if fixed else "all 7",
        "unique_tokens": ucol,
        "max_epochs": float(np.max(data.D / U_table)),
        "worth_repeating": worth_repeating(law.R_D_star),
        "columns": dict(data.columns, U=ucol),
        "fit_seconds": time.perf_counter() - t0,
    }
    if target_flops:
        n_opt, d_opt = law.base.optimal(target_flops, data.k)
        extra["target"] = {"flops": float(target_flops), "n_opt": float(n_opt), "d_opt": float(d_opt)}
    return extra


def bootstrap_data_constrained(
    data: FitData, fit: FitResult, n_boot: int = 200, seed: int = 0, n_perturb: int = 3, level: float = 0.95
):
    """Resample rows with replacement `n_boot` times; every resample refits from the optimum and
    `n_perturb` perturbations of R_D*, R_N* (log scale +-1), all lanes in one batch.
    Returns (samples DataFrame, ci dict)."""
    rng = np.random.default_rng(seed)
    n = len(data)
    U = fit.data["U"].to_numpy()
    theta = np.array([fit.extra["lse_params"][p] for p in THETA_NAMES])
    free = (0,) * 5 + (1, 1) if fit.extra["free"] != "all 7" else (1,) * 7
    X = np.stack([np.log(data.N), np.log(data.D), np.log(U)])
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)
    starts = np.tile(theta, (n_boot, n_perturb + 1, 1))
    starts[:, 1:, 5:] += rng.uniform(-1.0, 1.0, (n_boot, n_perturb, 2))
    W = np.repeat(counts, n_perturb + 1, axis=0)
    P, f = minimize(starts.reshape(-1, 7), X, np.log(data.L), W, fit.extra["delta"], free)
    f = np.where(np.isfinite(f), f, np.inf).reshape(n_boot, n_perturb + 1)
    P = P.reshape(n_boot, n_perturb + 1, 7)[np.arange(n_boot), np.argmin(f, 1)]
    ok = np.isfinite(f.min(1))
    cols = {"R_D_star": np.exp(P[:, 5]), "R_N_star": np.exp(P[:, 6])}
    if free[0]:  # the base law was fitted too
        cols.update(alpha=P[:, 3], beta=P[:, 4], E=np.exp(P[:, 2]))
    samples = pd.DataFrame(cols)[ok].reset_index(drop=True)
    return samples, percentile_ci(samples, level)


def parse_base_law(text: str | None) -> Chinchilla | None:
    """`--base-law`: None (fit it), "muennighoff-c4", or "E,A,B,alpha,beta"."""
    if text is None:
        return None
    if text.strip().lower() == "muennighoff-c4":
        return MUENNIGHOFF_C4_BASE
    try:
        E, A, B, alpha, beta = (float(v) for v in text.split(","))
    except ValueError:
        raise AnalysisError(
            f"--base-law {text!r}: give 'muennighoff-c4' or five numbers E,A,B,alpha,beta"
        ) from None
    if min(E, A, B, alpha, beta) <= 0:
        raise AnalysisError(f"--base-law {text!r}: E, A, B, alpha and beta must all be positive")
    return Chinchilla(E=E, A=A, B=B, alpha=alpha, beta=beta)


def summary(fit: FitResult) -> list[str]:
    """`lab fit`'s lines: R_D*, R_N* with their intervals, the base law, and the repetition read-out."""
    from ..reports.text import ci_text

    p, x = fit.params, fit.extra
    w = x["worth_repeating"]
    return [
        f"  R_D* = {p['R_D_star']:.4g}{ci_text(fit, 'R_D_star')}, "
        f"R_N* = {p['R_N_star']:.4g}{ci_text(fit, 'R_N_star')} "
        f"(free: {x['free']}; U from {x['unique_tokens']}; "
        f"up to {x['max_epochs']:.3g} epochs in the table)",
        f"  base law ({x['base_law']}): L(N, D) = {p['E']:.4f} + {p['A']:.4g}/N^{p['alpha']:.4f} "
        f"+ {p['B']:.4g}/D^{p['beta']:.4f}",
        f"  objective {fit.objective:.7e} ({x['objective_convention']})",
        f"  worth repeating up to ~{w['half_value_epochs']:.1f} epochs "
        "(each repeated token still worth half a fresh one); "
        f"within {w['near_fresh_within']:.0%} of fresh data up to {w['near_fresh_epochs']:.1f} epochs",
    ]


# The registry's hooks and metadata (analysis.methods finds them by name)

NAME = "data-constrained"
DESCRIPTION = "Muennighoff et al.'s law for repeated data: R_D*, R_N* (needs epochs or unique_tokens)"
FIGURES = "r"  # loss vs epochs with the fit (analysis.plotting.data_constrained)
SUITE_BOOTSTRAP = False
USES_JAX = True
COLUMNS = ("epochs",)
VARIES = True


def fit(data, curves, **kw) -> FitResult:
    return fit_data_constrained(data, base=parse_base_law(kw.pop("base_law", None)), **kw)


def resample(fit, data, curves, n_boot, seed, target_flops) -> pd.DataFrame:
    return bootstrap_data_constrained(data, fit, n_boot=n_boot, seed=seed)[0]


def options(o) -> dict:
    return {"delta": o.delta, "base_law": o.base_law}


def figure(source, table, options, out, formats, fit=None) -> list[str]:
    """Figure r: loss vs epochs per (N, U) family with the fitted law (fitted here unless given)."""
    from pathlib import Path

    from ..inputs import load
    from ..plotting.data_constrained import loss_vs_epochs

    if fit is None:  # the report passes the fit it already has
        base = parse_base_law(options.base_law)
        fit = fit_data_constrained(load(source, table).data, base=base, delta=options.delta)
    return loss_vs_epochs(fit, Path(out) / "data_constrained.png", formats)
