"""Variable projection for L(N, D) = E + A N^-alpha + B D^-beta: the linear parameters exactly,
the two exponents by search. numpy only — no JAX start-up, no scipy import.

For fixed (alpha, beta) the model is linear in (E, A, B) >= 0, so the weighted least-squares
problem sum_i w_i (L_i - E - A x_i - B z_i)^2 (x = N^-alpha, z = D^-beta) is solved *exactly* by
non-negative least squares. With three unknowns NNLS is a finite enumeration: the optimum is the
unconstrained minimiser on one of the 7 supports (or 0), the feasible one of least objective —
computed here for every grid point at once (`nnls3`). The fitter:

1. profiles the objective over a 2-D grid of exponents (the projected problem: 2 variables
   instead of 5, no local minima in the linear ones);
2. zooms on the best grid cells (distinct local minima) until the exponents move < 1e-9;
3. optionally polishes the *Huber* objective of the Epoch procedure (log-space, delta 1e-3) from
   the best candidates with damped Newton steps (analytic gradient and Hessian), so the result is
   comparable with `fit_parametric`.

The least-squares weights are 1/L^2 (relative residuals, ~ log-space residuals), so the projected
objective is `sum ((L - L_fit) / L)^2`: the fitter's own "MSE optimum".
"""

from __future__ import annotations

import itertools

import numpy as np

SUPPORTS = [s for k in (1, 2, 3) for s in itertools.combinations(range(3), k)]
GRID = np.linspace(0.0, 2.5, 126)[1:]  # exponents 0.02 ... 2.5 (Epoch's starts span 0 ... 2)
ZOOM_LEVELS = 12
ZOOM_POINTS = 7


def design(lnN, lnD, alpha, beta):
    """Columns x = N^-alpha (alphas, n) and z = D^-beta (betas, n), each scaled to max 1 per row,
    and the scales (the linear coefficients of the unscaled columns are c / scale)."""
    x = np.exp(-np.outer(alpha, lnN))
    z = np.exp(-np.outer(beta, lnD))
    sx, sz = x.max(1, keepdims=True), z.max(1, keepdims=True)
    return x / sx, z / sz, sx[:, 0], sz[:, 0]


def grams(x, z, w, y):
    """Weighted Gram matrices G (na, nb, 3, 3) and right-hand sides r (na, nb, 3) of [1, x_a, z_b]
    for every pair (a, b); weights w (n,), targets y (n,)."""
    na, nb = len(x), len(z)
    xw, zw = x * w, z * w
    G = np.empty((na, nb, 3, 3))
    G[..., 0, 0] = w.sum()
    G[..., 0, 1] = G[..., 1, 0] = xw.sum(1)[:, None]
    G[..., 0, 2] = G[..., 2, 0] = zw.sum(1)[None, :]
    G[..., 1, 1] = (xw * x).sum(1)[:, None]
    G[..., 2, 2] = (zw * z).sum(1)[None, :]
    G[..., 1, 2] = G[..., 2, 1] = xw @ z.T
    r = np.empty((na, nb, 3))
    r[..., 0] = (w * y).sum()
    r[..., 1] = (xw @ y)[:, None]
    r[..., 2] = (zw @ y)[None, :]
    return G, r


def nnls3(G, r, yy):
    """Exact non-negative least squares with 3 unknowns, batched: coefficients c (..., 3) >= 0
    minimising c'Gc - 2c'r + yy, and that objective. Each support's unconstrained minimiser is
    solved for all problems at once; the best feasible one wins (the empty support gives yy)."""
    best_f = np.full(G.shape[:-2], float(yy))
    best_c = np.zeros(G.shape[:-1])
    ridge = 1e-13 * np.trace(G, axis1=-2, axis2=-1)[..., None, None]
    for s in SUPPORTS:
        idx = np.array(s)
        Gs = G[..., idx[:, None], idx[None, :]] + ridge * np.eye(len(s))
        cs = np.linalg.solve(Gs, r[..., idx][..., None])[..., 0]
        f = yy - np.sum(cs * r[..., idx], -1)  # at the minimiser c'Gc = c'r
        ok = np.all(cs >= 0, -1) & np.isfinite(f) & (f < best_f)
        best_f = np.where(ok, f, best_f)
        c = np.zeros(G.shape[:-1])
        c[..., idx] = cs
        best_c = np.where(ok[..., None], c, best_c)
    return best_c, best_f


def profile(lnN, lnD, L, alphas, betas):
    """The projected objective on the grid alphas x betas: (f (na, nb), E, A, B (na, nb) each)."""
    w = 1.0 / L**2
    x, z, sx, sz = design(lnN, lnD, alphas, betas)
    G, r = grams(x, z, w, L)
    c, f = nnls3(G, r, float(np.sum(w * L * L)))
    return np.maximum(f, 0.0), c[..., 0], c[..., 1] / sx[:, None], c[..., 2] / sz[None, :]


def local_minima(f, k):
    """Up to k grid indices that are local minima of f (8-neighbourhood), best first."""
    pad = np.pad(f, 1, constant_values=np.inf)
    neigh = np.min(
        [
            pad[1 + i : 1 + i + f.shape[0], 1 + j : 1 + j + f.shape[1]]
            for i in (-1, 0, 1)
            for j in (-1, 0, 1)
            if (i, j) != (0, 0)
        ],
        axis=0,
    )
    idx = np.argwhere(f <= neigh)
    idx = idx[np.argsort(f[idx[:, 0], idx[:, 1]])]
    return [tuple(i) for i in idx[:k]]


def refine(lnN, lnD, L, alpha, beta, step):
    """Zoom around (alpha, beta): a ZOOM_POINTS^2 grid of half-width `step`, re-centred on its best
    point, shrinking by 3 each level. Returns (f, E, A, B, alpha, beta)."""
    half = ZOOM_POINTS // 2
    for _ in range(ZOOM_LEVELS):
        a = np.clip(alpha + step * np.arange(-half, half + 1) / half, 1e-6, None)
        b = np.clip(beta + step * np.arange(-half, half + 1) / half, 1e-6, None)
        f, E, A, B = profile(lnN, lnD, L, a, b)
        i, j = np.unravel_index(np.argmin(f), f.shape)
        alpha, beta = a[i], b[j]
        if i in (0, 2 * half) or j in (0, 2 * half):
            continue  # moved to the edge: search again at the same width around the new centre
        step /= 3.0
        if step < 1e-10:
            break
    return float(f[i, j]), float(E[i, j]), float(A[i, j]), float(B[i, j]), float(alpha), float(beta)


def vp_search(N, D, L, candidates: int = 4, grid=GRID):
    """The exponent grid, then `candidates` local minima refined. Returns a list of
    (objective, E, A, B, alpha, beta), best first."""
    lnN, lnD = np.log(N), np.log(D)
    f, *_ = profile(lnN, lnD, L, grid, grid)
    step = float(grid[1] - grid[0])
    out = [refine(lnN, lnD, L, grid[i], grid[j], step) for i, j in local_minima(f, candidates)]
    return sorted(out)


def huber_terms(theta, lnN, lnD, lnL, delta, w=None):
    """The (weighted) Huber sum of log-loss residuals of log L = LSE(a - alpha lnN, b - beta lnD, e),
    its gradient (5,) and Hessian (5, 5), in numpy float64; theta = (a, b, e, alpha, beta)."""
    w = np.ones_like(lnN) if w is None else w
    a, b, e, al, be = theta
    t = np.stack([a - al * lnN, b - be * lnD, np.full_like(lnN, e)], 1)  # (n, 3)
    m = t.max(1, keepdims=True)
    p = np.exp(t - m)
    s = p.sum(1, keepdims=True)
    p /= s
    r = m[:, 0] + np.log(s[:, 0]) - lnL
    ar = np.abs(r)
    f = float(np.sum(w * np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))))
    psi = w * np.clip(r, -delta, delta)
    inner = w * (ar <= delta)
    J = np.zeros((len(lnN), 3, 5))  # d t_j / d theta
    J[:, 0, 0], J[:, 0, 3] = 1.0, -lnN
    J[:, 1, 1], J[:, 1, 4] = 1.0, -lnD
    J[:, 2, 2] = 1.0
    dr = np.einsum("nj,njk->nk", p, J)  # d r / d theta
    g = psi @ dr
    curv = np.einsum("nj,njk,njl->nkl", p, J, J) - np.einsum("nk,nl->nkl", dr, dr)  # d2 r / d theta2
    H = np.einsum("n,nk,nl->kl", inner, dr, dr) + np.einsum("n,nkl->kl", psi, curv)
    return f, g, H


def huber_polish(theta, N, D, L, delta=1e-3, iters=200, w=None):
    """Damped Newton (Levenberg-Marquardt) on the Huber sum from `theta`: a step is taken when it
    lowers the objective, the damping grows otherwise. Returns (theta, objective, Newton decrease)."""
    lnN, lnD, lnL = np.log(N), np.log(D), np.log(L)
    theta = np.asarray(theta, float)
    f, g, H = huber_terms(theta, lnN, lnD, lnL, delta, w)
    mu = 1e-6 * max(np.abs(np.diag(H)).max(), 1e-12)
    for _ in range(iters):
        try:
            step = np.linalg.solve(H + mu * np.eye(5), g)
        except np.linalg.LinAlgError:
            mu *= 10
            continue
        fn, gn, Hn = huber_terms(theta - step, lnN, lnD, lnL, delta, w)
        if np.isfinite(fn) and fn <= f:
            done = f - fn <= 1e-15 * max(f, 1e-30)
            theta, f, g, H, mu = theta - step, fn, gn, Hn, mu / 3
            if done:
                break
        else:
            mu *= 4
            if mu > 1e12:
                break
    try:
        decrease = 0.5 * float(g @ np.linalg.solve(H, g))
    except np.linalg.LinAlgError:
        decrease = float("inf")
    return theta, f, decrease
