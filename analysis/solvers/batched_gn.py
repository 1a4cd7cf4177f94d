"""Many small Chinchilla fits at once: damped Gauss-Newton on log-loss residuals, batched over copies.

The designer (`analysis.design`) asks, for each candidate set of cells, how widely the refitted
exponent a = beta/(alpha+beta) would scatter over simulated tables. That is hundreds of refits of
L = E + A/N^alpha + B/D^beta per candidate, so they are solved together: `theta` (S, 5) in the
log-sum-exp parameters (a, b, e, alpha, beta) of `analysis.solvers.varpro.huber_terms`, residuals
r = log L_fit - log L (S, n), and a Levenberg-Marquardt step per copy from (J'J + mu diag) d = J'r,
all copies advancing in one `np.linalg.solve`. Each copy keeps its own damping mu; a step is kept
only where it lowers that copy's sum of squares.

It minimises the least-squares objective in log space (the Huber fit with delta -> infinity), started
from the law the copies were drawn from: the local optimum a global search (`vp_search`) would
reach on a table near that law. It is the simulation's stand-in for `vpnls`; the benchmark and the
tests refit the designed tables with `vpnls` itself.
"""

from __future__ import annotations

import numpy as np


def _terms(theta, lnN, lnD, lnL, w):
    """Residuals r (S, n), Jacobian dr/dtheta (S, n, 5) and the weighted sum of squares (S,)."""
    a, b, e, al, be = (theta[:, i : i + 1] for i in range(5))
    t = np.stack([a - al * lnN, b - be * lnD, np.broadcast_to(e, lnL.shape)], -1)  # (S, n, 3)
    m = t.max(-1, keepdims=True)
    p = np.exp(t - m)
    s = p.sum(-1, keepdims=True)
    p /= s
    r = m[..., 0] + np.log(s[..., 0]) - lnL
    J = np.empty(r.shape + (5,))
    J[..., 0], J[..., 1], J[..., 2] = p[..., 0], p[..., 1], p[..., 2]
    J[..., 3], J[..., 4] = -p[..., 0] * lnN, -p[..., 1] * lnD
    return r, J, np.sum(w * r * r, -1)


def fit_many(theta0, lnN, lnD, lnL, w=None, iters: int = 30):
    """Least-squares fits of log L (S, n) on log N, log D (n,) or (S, n), each copy from theta0 (5,)
    or (S, 5), row weights w (n,) or (S, n) (0 drops a row). Returns theta (S, 5)."""
    lnL = np.asarray(lnL, float)
    S = lnL.shape[0]
    w = np.ones_like(lnL) if w is None else np.broadcast_to(np.asarray(w, float), lnL.shape)
    theta = np.broadcast_to(np.asarray(theta0, float), (S, 5)).copy()
    r, J, f = _terms(theta, lnN, lnD, lnL, w)
    mu = np.full(S, 1e-3)
    eye = np.eye(5)
    for _ in range(iters):
        Jw = J * w[..., None]
        H = np.einsum("snk,snl->skl", Jw, J)
        g = np.einsum("snk,sn->sk", Jw, r)
        diag = np.einsum("skk->sk", H)[:, :, None] * eye + 1e-12 * eye
        try:
            step = np.linalg.solve(H + mu[:, None, None] * diag, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            mu *= 10
            continue
        cand = theta - step
        r2, J2, f2 = _terms(cand, lnN, lnD, lnL, w)
        ok = np.isfinite(f2) & (f2 <= f)
        theta = np.where(ok[:, None], cand, theta)
        r = np.where(ok[:, None], r2, r)
        J = np.where(ok[:, None, None], J2, J)
        f = np.where(ok, f2, f)
        mu = np.where(ok, mu / 3, mu * 4)
    return theta


def exponent_a(theta) -> np.ndarray:
    """a = beta / (alpha + beta) of each fit."""
    return theta[:, 4] / (theta[:, 3] + theta[:, 4])


def log_n_opt(theta, C: float, k: float) -> np.ndarray:
    """log N_opt at compute C (C = k N D) of each fit: N_opt = G (C/k)^a with
    G = (alpha A / (beta B))^(1/(alpha+beta))."""
    a_, b_, _, al, be = theta.T
    logG = (np.log(al / be) + a_ - b_) / (al + be)
    return logG + exponent_a(theta) * np.log(C / k)
