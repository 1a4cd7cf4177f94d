"""A straightforward scipy implementation of the parametric fit, for checking the batched JAX one
(`analysis.fits.parametric`): one `scipy.optimize.minimize(method="L-BFGS-B")` per initialisation,
numpy objective, best objective kept — the procedure of Epoch's refit written the obvious way.

    from analysis.solvers.reference import scipy_fit
    seconds, objective, theta = scipy_fit(N, D, L, init_grid()[::10], analytic=True)
"""

from __future__ import annotations

import time

import numpy as np


def huber_sum(p, lN, lD, lL, delta: float = 1e-3) -> float:
    """Huber(delta) of log L - LSE(a - alpha log N, b - beta log D, e), summed over points."""
    a, b, e, al, be = p
    r = np.logaddexp(np.logaddexp(a - al * lN, b - be * lD), e) - lL
    ar = np.abs(r)
    return float(np.sum(np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))))


def huber_sum_and_grad(p, lN, lD, lL, delta: float = 1e-3):
    """`huber_sum` and its exact gradient with respect to (a, b, e, alpha, beta)."""
    a, b, e, al, be = p
    t1, t2 = a - al * lN, b - be * lD
    m = np.maximum(np.maximum(t1, t2), e)
    w1, w2, w3 = np.exp(t1 - m), np.exp(t2 - m), np.exp(e - m)
    s = w1 + w2 + w3
    r = m + np.log(s) - lL
    ar = np.abs(r)
    h = np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))
    dh = np.clip(r, -delta, delta) / s
    g1, g2, g3 = dh * w1, dh * w2, dh * w3
    return h.sum(), np.array([g1.sum(), g2.sum(), g3.sum(), -(g1 * lN).sum(), -(g2 * lD).sum()])


def scipy_fit(N, D, L, inits, analytic: bool = True, delta: float = 1e-3):
    """One L-BFGS-B run per row of `inits` (finite-difference gradients unless `analytic`), best
    kept. Returns (seconds, objective, lse params (a, b, e, alpha, beta))."""
    from scipy.optimize import minimize

    args = (np.log(N), np.log(D), np.log(L), delta)
    best = None
    t0 = time.perf_counter()
    for p0 in inits:
        if analytic:
            r = minimize(huber_sum_and_grad, p0, args=args, jac=True, method="L-BFGS-B")
        else:
            r = minimize(huber_sum, p0, args=args, method="L-BFGS-B")
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    return time.perf_counter() - t0, huber_sum(best.x, *args), best.x
