"""Batched L-BFGS in JAX: many independent minimisations in lockstep, one batched
value-and-gradient per iteration.

Each lane runs L-BFGS (two-loop recursion, `history` pairs) with a *single-trial* step rule: it
tries x + t d once per iteration; if the Armijo condition holds the step is taken (and t resets to
1), otherwise the lane stays put and t shrinks by safeguarded quadratic interpolation. No lane ever
waits in an inner line-search loop for another, so an iteration costs exactly one call of the
batched objective however the lanes are doing. A vmapped line search that loops until every lane
is done makes all lanes wait for the slowest, which is what makes off-the-shelf L-BFGS slow here.

`vg(x, *data) -> (f, g)` must map a (lanes, params) array to per-lane values (lanes,) and
gradients (lanes, params). Runs stop after `iters` iterations or when every lane's gradient
max-norm is below `gtol` (or its step has collapsed).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _direction(g, S, Y, rho):
    """-H g by the two-loop recursion; history is oldest-first along axis 0, empty slots have
    rho = 0 and drop out. Written with fori_loop (not unrolled) to keep tracing short."""
    m = S.shape[0]

    def newest_first(j, carry):
        q, alphas = carry
        i = m - 1 - j
        a = rho[i] * jnp.sum(S[i] * q, -1)
        return q - a[:, None] * Y[i], alphas.at[i].set(a)

    q, alphas = jax.lax.fori_loop(0, m, newest_first, (g, jnp.zeros_like(rho)))
    sy = jnp.sum(S[-1] * Y[-1], -1)
    yy = jnp.sum(Y[-1] * Y[-1], -1)
    gamma = jnp.where(yy > 0, sy / jnp.where(yy > 0, yy, 1.0), 1.0)

    def oldest_first(i, r):
        b = rho[i] * jnp.sum(Y[i] * r, -1)
        return r + S[i] * (alphas[i] - b)[:, None]

    return -jax.lax.fori_loop(0, m, oldest_first, gamma[:, None] * q)


@functools.cache
def make_minimizer(vg, iters: int, history: int = 10, gtol: float = 0.0, c1: float = 1e-4):
    """A jitted `run(x0, *data) -> (x, f, g, n_iter)` minimising every lane of x0 from its start."""

    def run(x0, *data):
        lanes, npar = x0.shape
        dt = x0.dtype
        f0, g0 = vg(x0, *data)
        S = jnp.zeros((history, lanes, npar), dt)
        Y = jnp.zeros((history, lanes, npar), dt)
        rho = jnp.zeros((history, lanes), dt)
        ones = jnp.ones((lanes,), dt)
        start = (jnp.asarray(0), x0, f0, g0, S, Y, rho, ones, jnp.zeros((lanes,), bool))

        def active(st):
            _, _, f, g, *_, t, _ = st
            return (jnp.max(jnp.abs(g), -1) > gtol) & (t > 1e-12) & jnp.isfinite(f)

        def cond(st):
            return (st[0] < iters) & jnp.any(active(st))

        def body(st):
            it, x, f, g, S, Y, rho, t, has_hist = st
            gnorm = jnp.sqrt(jnp.sum(g * g, -1))
            d = _direction(g, S, Y, rho)
            gd = jnp.sum(g * d, -1)
            steepest = ~(gd < 0) | ~has_hist  # no curvature pairs yet, or not a descent direction
            d = jnp.where(steepest[:, None], -g / jnp.maximum(gnorm, 1e-30)[:, None], d)
            gd = jnp.sum(g * d, -1)
            xn = x + t[:, None] * d
            fn, gn = vg(xn, *data)
            finite = jnp.isfinite(fn) & jnp.all(jnp.isfinite(gn), -1)
            ok = finite & (fn <= f + c1 * t * gd)
            s, yv = xn - x, gn - g
            sy = jnp.sum(s * yv, -1)
            push = ok & (sy > 1e-10 * jnp.sqrt(jnp.sum(s * s, -1) * jnp.sum(yv * yv, -1)))
            S = jnp.where(push[None, :, None], jnp.concatenate([S[1:], s[None]]), S)
            Y = jnp.where(push[None, :, None], jnp.concatenate([Y[1:], yv[None]]), Y)
            new_rho = 1.0 / jnp.where(push, sy, 1.0)
            rho = jnp.where(push[None, :], jnp.concatenate([rho[1:], new_rho[None]]), rho)
            # rejected: minimiser of the quadratic through f, f'(0) = gd and fn, kept in [0.1t, 0.5t]
            curv = 2.0 * (fn - f - t * gd)
            t_q = jnp.where(finite & (curv > 0), -gd * t * t / jnp.where(curv > 0, curv, 1.0), 0.1 * t)
            t_new = jnp.where(ok, 1.0, jnp.clip(t_q, 0.1 * t, 0.5 * t))
            x = jnp.where(ok[:, None], xn, x)
            f = jnp.where(ok, fn, f)
            g = jnp.where(ok[:, None], gn, g)
            return (it + 1, x, f, g, S, Y, rho, t_new, has_hist | push)

        st = jax.lax.while_loop(cond, body, start)
        return st[1], st[2], st[3], st[0]

    return jax.jit(run)
