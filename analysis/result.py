"""The one result type every fitter returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class FitResult:
    """A fit: named parameters, its objective, residuals, the data used, the method, warnings.

    `params` holds the fitted parameters by name (e.g. E, A, B, alpha, beta for `parametric`);
    `a` and `b` are the exponents of N_opt ∝ C^a and D_opt ∝ C^b wherever the method gives them.
    `data` is the table the fit used, one row per point, with the residual in column `residual`.
    `extra` holds method-specific detail (per-budget optima, the columns used, timings).
    `ci` maps a parameter name to {"lo", "hi", "median", "level"} after a bootstrap.
    """

    method: str
    params: dict
    objective: float | None
    residuals: np.ndarray
    data: pd.DataFrame
    warnings: list = field(default_factory=list)
    law: object | None = None
    extra: dict = field(default_factory=dict)
    ci: dict | None = None
    bootstrap_samples: pd.DataFrame | None = None

    @property
    def n_points(self) -> int:
        """Table rows the fit used (some methods' `data` holds derived rows instead)."""
        return int(self.extra.get("n_points", len(self.data)))

    @property
    def a(self):
        return self.params.get("a")

    @property
    def b(self):
        return self.params.get("b")

    def to_json_dict(self) -> dict:
        """A JSON-serialisable dict: parameters at top level, then objective, n_points, extras."""
        out = {"method": self.method}
        out.update({k: plain(v) for k, v in self.params.items()})
        out["objective"] = plain(self.objective)
        out["n_points"] = self.n_points
        for k, v in self.extra.items():
            if k == "n_points":
                continue
            out[k] = plain(v)
        if self.ci is not None:
            out["ci"] = plain(self.ci)
        out["warnings"] = list(self.warnings)
        return out


def plain(v):
    """numpy / pandas values to plain Python for json.dumps (NaN becomes None)."""
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, pd.DataFrame):
        return [plain(r) for r in v.to_dict(orient="records")]
    if isinstance(v, np.ndarray):
        return [plain(x) for x in v.tolist()]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return None if not np.isfinite(v) else v
    return v


def percentile_ci(samples: pd.DataFrame, level: float = 0.95) -> dict:
    """Percentile intervals per column of bootstrap samples (non-finite samples ignored)."""
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out = {}
    for col in samples.columns:
        v = samples[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        out[col] = {
            "lo": float(np.percentile(v, lo_q)),
            "hi": float(np.percentile(v, hi_q)),
            "median": float(np.median(v)),
            "level": level,
            "n": int(len(v)),
        }
    return out
