"""The objective of the parametric fit and its batched minimisers: the Huber sum of log-loss
residuals of L = LSE(a - alpha log N, b - beta log D, e), its value and gradient for many parameter
lanes at once, padded float64 arrays of a table, L-BFGS over all lanes (in chunks of bounded
memory), the float64 Hessian, and chord-Newton steps. `analysis.fits.parametric` searches and
bootstraps with them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .lbfgs import make_minimizer

PARAM_NAMES = ("a", "b", "e", "alpha", "beta")  # log-sum-exp parametrisation, in this order
PAD_STEP = 8192
SCREEN_ELEMENTS = 1 << 25  # lanes x rows screened in one batch (128 MiB per float32 array); more run in chunks


@functools.cache
def huber_lse_vg(delta: float, stable: bool):
    """Per-lane Huber-sum objective and its gradient, written out so that all reductions are
    matrix products: XLA on CPU then evaluates the elementwise work once instead of once per
    reduction (7x faster than autodiff of the same expression here).

    P: (lanes, 5) params; X: (2, n) log N, log D; y: (n,) log L, or (lanes, n): one table per lane
    (a residual bootstrap's copies); W: (1 or lanes, n) weights.
    `stable` subtracts the running max inside the log-sum-exp (float64 polish); the float32
    screen skips it (one exp fewer per point) and relies on the optimiser rejecting overflowing steps.
    """

    def vg(P, X, y, W):
        y = y if y.ndim == 2 else y[None, :]  # decided when traced: the 1-d program is unchanged
        a, b, e, al, be = (P[:, i : i + 1] for i in range(5))
        lnN, lnD = X[0][None, :], X[1][None, :]
        t1, t2 = a - al * lnN, b - be * lnD
        if stable:
            m = jnp.maximum(jnp.maximum(t1, t2), e)
            e1, e2, e3 = jnp.exp(t1 - m), jnp.exp(t2 - m), jnp.exp(e - m)
            s = e1 + e2 + e3
            r = m + jnp.log(s) - y
        else:
            e1, e2, e3 = jnp.exp(t1), jnp.exp(t2), jnp.exp(e)
            s = e1 + e2 + e3
            r = jnp.log(s) - y
        ar = jnp.abs(r)
        h = jnp.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
        dh = jnp.clip(r, -delta, delta) * W / s
        ones = jnp.ones_like(X[0])
        f = (h * W) @ ones
        g1 = (dh * e1) @ jnp.stack([ones, -X[0]], 1)
        g2 = (dh * e2) @ jnp.stack([ones, -X[1]], 1)
        g3 = (dh * e3) @ ones
        return f, jnp.stack([g1[:, 0], g2[:, 0], g3, g1[:, 1], g2[:, 1]], 1)

    return vg


def padded_size(n: int) -> int:
    """Pad the point count to a power of two (>= 256) so that tables up to 256 rows, the usual
    size of a study, share one compiled program (and one persistent-cache entry); past
    PAD_STEP rows, to a multiple of PAD_STEP (a power of two would waste up to half the work)."""
    if n > PAD_STEP:
        return -(-int(n) // PAD_STEP) * PAD_STEP
    return max(256, 1 << (int(n) - 1).bit_length())


def padded_arrays(N, D, L, weights=None):
    """(X (2, n_pad), y (n_pad,), w (n_pad,)) in float64 numpy; padding rows have weight 0."""
    n = len(L)
    n_pad = padded_size(n)
    X = np.empty((2, n_pad))
    y = np.empty(n_pad)
    w = np.zeros(n_pad)
    X[0, :n], X[1, :n], y[:n] = np.log(N), np.log(D), np.log(L)
    X[:, n:] = X[:, :n].mean(1, keepdims=True)  # harmless values: same scale as the data
    y[n:] = y[:n].mean()
    w[:n] = 1.0 if weights is None else weights
    return X, y, w


@functools.cache
def _staged_screen(delta: float, iters: int, keep: int, more_iters: int):
    """One jitted program: all lanes for `iters` iterations, then the `keep` best for `more_iters`."""
    vg = huber_lse_vg(delta, False)
    first = make_minimizer(vg, iters)
    second = make_minimizer(vg, more_iters)

    def run(P0, X, y, W):
        P, f, _, _ = first(P0, X, y, W)
        score = jnp.where(jnp.isfinite(f), -f, -jnp.inf)
        _, top = jax.lax.top_k(score, keep)
        P2, f2, g2, n = second(P[top], X, y, W)
        return P2, f2, g2, n

    return jax.jit(run)


def minimize_lanes(P0, X, y, W, delta, iters, stable, gtol=0.0, x64=False, keep=0, more_iters=0):
    """Minimise every row of P0 (or screen them, keeping the `keep` best); numpy (P, f, g, n_iter)."""
    if keep and keep < len(P0):
        run = _staged_screen(float(delta), int(iters), int(keep), int(more_iters))
    else:
        run = make_minimizer(huber_lse_vg(float(delta), bool(stable)), int(iters + more_iters), gtol=float(gtol))
    dtype = np.float64 if x64 else np.float32
    with jax.enable_x64(x64):  # cast in numpy: a device-side cast is one more (cached) program to load
        out = run(*(jnp.asarray(np.asarray(a, dtype)) for a in (P0, X, y, W)))
        P, f, g, n_iter = (np.asarray(o) for o in out)
    return P.astype(np.float64), f.astype(np.float64), g.astype(np.float64), int(n_iter)


def in_chunks(P, chunk: int, run):
    """`run` over rows of P, `chunk` at a time (the last chunk padded with copies of P[0], so one
    compiled shape serves all); returns the concatenated (P, f)."""
    outs_P, outs_f = [], []
    for lo in range(0, len(P), chunk):
        part = P[lo : lo + chunk]
        c = len(part)
        if c < chunk:
            part = np.concatenate([part, np.repeat(P[:1], chunk - c, axis=0)])
        Pc, fc = run(part)
        outs_P.append(Pc[:c])
        outs_f.append(fc[:c])
    return np.concatenate(outs_P), np.concatenate(outs_f)


def screen_lanes(P0, X, y, W, delta, iters, keep, more_iters, max_elements=None):
    """The float32 screen: every lane for `iters` iterations, then the `keep` best for
    `more_iters`. When lanes x rows exceeds `max_elements`, lanes run in chunks of bounded memory
    (the same per-lane iterations as one batch); otherwise one compiled program does both stages."""
    max_elements = SCREEN_ELEMENTS if max_elements is None else max_elements
    if len(P0) * X.shape[1] <= max_elements:
        return minimize_lanes(P0, X, y, W, delta, iters, stable=False, keep=keep, more_iters=more_iters)[:2]
    chunk = max(1, max_elements // X.shape[1])
    P1, f1 = in_chunks(P0, chunk, lambda P: minimize_lanes(P, X, y, W, delta, iters, stable=False)[:2])
    top = np.argsort(np.where(np.isfinite(f1), f1, np.inf), kind="stable")[:keep]
    return in_chunks(P1[top], chunk, lambda P: minimize_lanes(P, X, y, W, delta, more_iters, stable=False)[:2])


def huber_objective(params_lse, N, D, L, delta=1e-3, weights=None) -> float:
    """The Huber sum in float64 numpy (for checking; the fitter uses the JAX version)."""
    a, b, e, al, be = params_lse
    pred = np.logaddexp(np.logaddexp(a - al * np.log(N), b - be * np.log(D)), e)
    r = np.log(L) - pred
    h = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
    return float(np.sum(h if weights is None else weights * h))


@functools.cache
def jitted_vg(delta: float):
    return jax.jit(huber_lse_vg(delta, True))


@functools.cache
def _jitted_hessian(delta: float):
    vg = huber_lse_vg(delta, True)

    def hess(theta, X, y, w):
        H = jax.jacfwd(lambda p: vg(p[None], X, y, w[None])[1][0])(theta)
        return (H + H.T) / 2

    return jax.jit(hess)


def hessian(theta, X, y, w, delta) -> np.ndarray:
    """The float64 Hessian (5, 5) of the weighted Huber sum at `theta` (forward-mode over the
    gradient), one jitted program (op by op it was ~40 small programs to compile or load)."""
    with jax.enable_x64(True):
        args = (jnp.asarray(np.asarray(a, np.float64)) for a in (theta, X, y, w))
        return np.asarray(_jitted_hessian(float(delta))(*args))


def chord_newton(P, X, y, W, H, delta, iters: int = 30):
    """Newton steps with one fixed Hessian H (the full table's at its optimum) for every lane:
    a resample's objective differs from the full one by O(1/sqrt(n)), so the steps contract fast.
    Returns (P, f, g) after the steps stop moving or `iters` pass."""
    vg = jitted_vg(float(delta))
    with jax.enable_x64(True):
        Xj, yj, Wj = jnp.asarray(X), jnp.asarray(y), jnp.asarray(W)
        for _ in range(iters):
            f, g = (np.asarray(v) for v in vg(jnp.asarray(P), Xj, yj, Wj))
            step = np.linalg.solve(H, g.T).T
            if not np.all(np.isfinite(step)):
                break
            P = P - step
            if np.max(np.abs(step)) < 1e-13 * (1 + np.max(np.abs(P))):
                break
        f, g = (np.array(v) for v in vg(jnp.asarray(P), Xj, yj, Wj))
    return np.array(P), f, g
