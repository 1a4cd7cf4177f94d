"""Scaling laws and their compute-optimal allocations.

Every law takes N (parameters) and/or D (training tokens) as float arrays. Compute-optimal
allocations assume C = k N D with k stated by the caller (6 by default: forward + backward
matmul FLOPs per parameter per token; pass the exact FLOPs per token / N of a run family instead
when you have it).

- `PowerLaw`: Kaplan et al.'s one-variable forms L(X) = (X_c / X)^alpha for X = N, D or C.
- `KaplanND`: Kaplan et al.'s joint form L(N, D) = ((N_c/N)^(alpha_N/alpha_D) + D_c/D)^alpha_D.
- `Chinchilla`: Hoffmann et al.'s L(N, D) = E + A/N^alpha + B/D^beta.
- `DataConstrained`: Muennighoff et al.'s repetition-aware form, with unique tokens U.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

K_FLOPS_PER_PARAM_TOKEN = 6.0


@dataclass(frozen=True)
class PowerLaw:
    """L(X) = (X_c / X)^alpha."""

    x_c: float
    alpha: float
    var: str = "N"

    def __call__(self, x):
        return (self.x_c / np.asarray(x, float)) ** self.alpha


@dataclass(frozen=True)
class KaplanND:
    """L(N, D) = ((N_c/N)^(alpha_N/alpha_D) + D_c/D)^alpha_D (Kaplan et al. 2020, eq. 1.5)."""

    N_c: float
    alpha_N: float
    D_c: float
    alpha_D: float

    def __call__(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return ((self.N_c / N) ** (self.alpha_N / self.alpha_D) + self.D_c / D) ** self.alpha_D

    @property
    def a(self) -> float:
        """N_opt ∝ C^a under C = k N D (minimising this form at fixed C)."""
        return self.alpha_D / (self.alpha_N + self.alpha_D)

    @property
    def b(self) -> float:
        return 1.0 - self.a

    def optimal(self, C, k: float = K_FLOPS_PER_PARAM_TOKEN):
        """(N_opt, D_opt) at compute C: d/dN of (N_c/N)^p + D_c k N / C vanishes at
        N^(p+1) = p N_c^p C / (D_c k), with p = alpha_N / alpha_D."""
        C = np.asarray(C, float)
        p = self.alpha_N / self.alpha_D
        n = (p * self.N_c**p * C / (self.D_c * k)) ** (1.0 / (p + 1.0))
        return n, C / (k * n)


@dataclass(frozen=True)
class Chinchilla:
    """L(N, D) = E + A / N^alpha + B / D^beta (Hoffmann et al. 2022)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, N, D):
        N, D = np.asarray(N, float), np.asarray(D, float)
        return self.E + self.A / N**self.alpha + self.B / D**self.beta

    @classmethod
    def from_lse(cls, a, b, e, alpha, beta) -> Chinchilla:
        """From the log-sum-exp parametrisation log L = LSE(a - alpha log N, b - beta log D, e)."""
        return cls(
            E=float(np.exp(e)), A=float(np.exp(a)), B=float(np.exp(b)), alpha=float(alpha), beta=float(beta)
        )

    def to_lse(self) -> np.ndarray:
        return np.array([np.log(self.A), np.log(self.B), np.log(self.E), self.alpha, self.beta])

    @property
    def a(self) -> float:
        """N_opt ∝ C^a with a = beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt ∝ C^b with b = alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """N_opt = G (C/k)^a and D_opt = (C/k)^b / G, with G = (alpha A / (beta B))^(1/(alpha+beta))."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))

    def optimal(self, C, k: float = K_FLOPS_PER_PARAM_TOKEN):
        """(N_opt, D_opt) minimising L subject to k N D = C."""
        c = np.asarray(C, float) / k
        return self.G * c**self.a, c**self.b / self.G

    def optimal_loss(self, C, k: float = K_FLOPS_PER_PARAM_TOKEN):
        return self(*self.optimal(C, k))

    def params(self) -> dict:
        return asdict(self)

    def target(self, C: float, k: float) -> dict:
        """The compute-optimal N, D and loss at `C` FLOPs (a fit's `extra["target"]`)."""
        n_opt, d_opt = self.optimal(C, k)
        return {"flops": float(C), "n_opt": float(n_opt), "d_opt": float(d_opt), "loss": float(self(n_opt, d_opt))}

    def readouts(self, k: float) -> dict:
        """The parameters and the allocation read-outs a fit reports: E, A, B, alpha, beta, a, b, G and
        the FLOPs constant `k` of C = k N D (parametric and vpnls report the same keys, in this order)."""
        return {**self.params(), "a": self.a, "b": self.b, "G": self.G, "k": k}


@dataclass(frozen=True)
class DataConstrained:
    """Muennighoff et al. (2023): Chinchilla's law evaluated at effective data D' and parameters N'.

    With U unique tokens, R_D = D/U - 1 repetitions beyond the first epoch give
    D' = U + U R_D* (1 - exp(-R_D / R_D*)). Parameters beyond U_N = min(N, N_opt for U tokens)
    are discounted the same way with R_N*. Defaults R_D* = 15.4, R_N* = 5.3 are the paper's fit.
    """

    base: Chinchilla
    R_D_star: float = 15.4
    R_N_star: float = 5.3
    k: float = K_FLOPS_PER_PARAM_TOKEN

    def effective_data(self, D, U):
        D, U = np.asarray(D, float), np.asarray(U, float)
        R_D = np.maximum(D / U - 1.0, 0.0)
        return np.minimum(D, U) + U * self.R_D_star * -np.expm1(-R_D / self.R_D_star)  # expm1: exact for R* >> R

    def n_for_data(self, U):
        """The compute-optimal N of the base law for U training tokens (invert D_opt(C) = U)."""
        law = self.base
        c = (np.asarray(U, float) * law.G) ** (1.0 / law.b)
        return law.G * c**law.a

    def effective_params(self, N, U):
        N = np.asarray(N, float)
        U_N = np.minimum(N, self.n_for_data(U))
        R_N = N / U_N - 1.0
        return U_N + U_N * self.R_N_star * -np.expm1(-R_N / self.R_N_star)

    def __call__(self, N, D, U):
        return self.base(self.effective_params(N, U), self.effective_data(D, U))

    def optimal(self, C, U, k: float | None = None, grid: int = 2001):
        """(N_opt, D_opt) at compute C with U unique tokens, minimising over log N numerically."""
        k = self.k if k is None else k
        C, U = np.broadcast_arrays(np.asarray(C, float), np.asarray(U, float))
        n0, _ = self.base.optimal(C, k)
        logn = np.log(n0)[..., None] + np.linspace(-6.0, 6.0, grid)
        N = np.exp(logn)
        L = self(N, C[..., None] / (k * N), U[..., None])
        n_opt = np.take_along_axis(N, np.argmin(L, axis=-1)[..., None], -1)[..., 0]
        return n_opt, C / (k * n_opt)
