"""Load a results table, filter it, and pick validated N / D / C / loss columns.

Any CSV works: the lab's `results.csv` (column contract in the README), the published tables in
`../shared/data/`, or your own. Column defaults are tried in order (case-insensitive); every column
actually used is named in the fit result so a reader knows what was fitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import AnalysisError
from .laws import K_FLOPS_PER_PARAM_TOKEN

# Candidate column names, most specific first. Lab results tables come first, then the
# published tables (Epoch's Chinchilla extraction, Porian et al., datablations).
N_COLS = ("params_total", "params_non_embedding", "params", "Model Size", "num_params", "n_params", "N")
D_COLS = ("tokens", "Training Tokens", "token_num", "n_tokens", "D")
C_COLS = (
    "flops_exact",
    "flops",
    "flops_6n_total",
    "Training FLOP",
    "compute",
    "C",
    "budget_flops",
    "flops_budget",
    "budget",
)
# an IsoFLOP budget column: the lab's and Porian et al.'s names, then the names published exports use
BUDGET_COLS = ("budget_flops", "flops_budget", "budget", "compute_budget", "isoflop_budget")
LOSS_COLS = ("final_val_loss", "loss", "val_loss", "openLM_loss", "final_train_loss")


def load_table(source) -> pd.DataFrame:
    """A DataFrame from a CSV path, a study directory holding `results.csv`, or a DataFrame.
    A problem worth a warning (a column name given twice: pandas keeps the first and renames the
    others NAME.1, ...) is noted in `df.attrs["notes"]`, which `fit_data` carries into its notes."""
    if isinstance(source, pd.DataFrame):
        return source.copy()
    path = Path(source)
    if path.is_dir():
        path = path / "results.csv"
    if not path.exists():
        raise AnalysisError(f"no such table: {path}")
    try:
        df = pd.read_csv(path)
    except Exception as e:  # pandas raises several types for malformed files
        raise AnalysisError(f"cannot read {path} as CSV: {str(e).splitlines()[0]}") from None
    if df.empty:
        raise AnalysisError(f"{path} has no rows")
    df.attrs["notes"] = _duplicate_columns(path)
    return df


def _duplicate_columns(path: Path) -> list[str]:
    """A one-line note per column name the CSV's header gives more than once."""
    import csv
    from collections import Counter

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    return [
        f"{path}: column {name!r} appears {n} times; the first is used (the others are read as "
        + ", ".join(f"{name}.{i}" for i in range(1, n))
        + ")"
        for name, n in Counter(header).items()
        if n > 1
    ]


def find_column(
    df: pd.DataFrame, name: str | None, candidates: tuple[str, ...], what: str, required: bool = True
) -> str | None:
    """The column to use for `what`: `name` if given (must exist), else the first candidate present."""
    lower = {c.lower(): c for c in df.columns}
    if name is not None:
        if name in df.columns:
            return name
        if name.lower() in lower:
            return lower[name.lower()]
        raise AnalysisError(
            f"column {name!r} ({what}) not in table; columns are: {', '.join(map(str, df.columns))}"
        )
    for c in candidates:
        if c.lower() in lower:
            return lower[c.lower()]
    if required:
        raise AnalysisError(
            f"no {what} column found (tried {', '.join(candidates)}); name one with the {what} option"
        )
    return None


def filter_rows(df: pd.DataFrame, where: str | None = None, status: str | None = "completed") -> pd.DataFrame:
    """Rows with `status == status` (if the table has a status column; None keeps all), then `where`.

    `where` is a pandas query expression, e.g. ``"params_total > 1e6 and seed == 0"``; use
    backticks around column names with spaces: ``"`Model Size` < 1e10"``.
    """
    if status is not None and "status" in df.columns:
        df = df[df["status"].astype(str) == status]
        if df.empty:
            raise AnalysisError(f"no rows with status == {status!r} (use --status any to keep all rows)")
    if where:
        try:
            kept = df.query(where, engine="python")
        except Exception as e:
            raise AnalysisError(
                f"bad --where expression {where!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            ) from None
        if not isinstance(kept, pd.DataFrame):
            raise AnalysisError(f"bad --where expression {where!r}: it does not select rows")
        if kept.empty:
            raise AnalysisError(f"--where {where!r} selects no rows (of {len(df)})")
        df = kept
    return df


def numeric_column(df: pd.DataFrame, col: str, what: str, positive: bool = True) -> np.ndarray:
    """Column `col` as float64, failing with one line on non-numeric, missing or non-positive values."""
    raw = df[col]
    vals = pd.to_numeric(raw, errors="coerce")
    bad = vals.isna() & raw.notna()
    if bad.any():
        i = bad.to_numpy().nonzero()[0][0]
        raise AnalysisError(
            f"column {col!r} ({what}) has a non-numeric value {raw.iloc[i]!r} in row {df.index[i]}"
        )
    if vals.isna().any():
        i = vals.isna().to_numpy().nonzero()[0][0]
        raise AnalysisError(
            f"column {col!r} ({what}) has {int(vals.isna().sum())} missing values (first in row {df.index[i]}); "
            "drop them with --where"
        )
    out = vals.to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(out)):
        i = (~np.isfinite(out)).nonzero()[0][0]
        raise AnalysisError(f"column {col!r} ({what}) has a non-finite value {out[i]} in row {df.index[i]}")
    if positive and np.any(out <= 0):
        i = (out <= 0).nonzero()[0][0]
        raise AnalysisError(f"column {col!r} ({what}) has a non-positive value {out[i]:g} in row {df.index[i]}")
    return out


@dataclass
class FitData:
    """Validated arrays for a fit, and where they came from."""

    N: np.ndarray
    D: np.ndarray
    C: np.ndarray
    L: np.ndarray
    columns: dict  # role -> column name, or a note like "C/(6N)"
    frame: pd.DataFrame  # the filtered rows, in the same order as the arrays
    budget: np.ndarray | None = None
    k: float = K_FLOPS_PER_PARAM_TOKEN
    notes: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.L)


def fit_data(
    df: pd.DataFrame,
    n_col=None,
    d_col=None,
    c_col=None,
    loss_col=None,
    budget_col=None,
    where=None,
    status="completed",
    k: float | None = None,
    need_budget=False,
    drop_highest: int = 0,
) -> FitData:
    """Filter `df` and resolve its N, D, C, loss (and budget) columns into a `FitData`.

    D defaults to a tokens column; without one it is derived as C / (k N) (Epoch's choice for the
    Chinchilla data). C defaults to an exact-FLOPs column; without one it is k N D.
    k (FLOPs per parameter per token in C = k N D, used for compute-optimal allocations) is given,
    or, when the table has both C and D, the median of C / (N D) over its rows — the run family's
    own exact cost — else 6.
    `drop_highest` drops the rows holding the `drop_highest` highest losses (Epoch dropped 5).
    """
    df, notes = filter_rows(df, where=where, status=status), list(df.attrs.get("notes", []))  # load_table's
    ncol = find_column(df, n_col, N_COLS, "N (--n-col)")
    lcol = find_column(df, loss_col, LOSS_COLS, "loss (--loss-col)")
    df = _drop_highest_losses(df, lcol, drop_highest)
    dcol = find_column(df, d_col, D_COLS, "D (--d-col)", required=False)
    ccol = find_column(df, c_col, C_COLS, "C (--c-col)", required=False)
    if dcol is None and ccol is None:
        raise AnalysisError("need a D column (--d-col) or a C column (--c-col) to derive D = C/(6N)")
    N = numeric_column(df, ncol, "N")
    L = numeric_column(df, lcol, "loss")
    cols = {"N": ncol, "loss": lcol}
    D, C, k = _tokens_and_flops(df, N, dcol, ccol, k, cols)
    budget, budget_notes = _budgets(df, budget_col, need_budget, C, cols)
    notes += budget_notes
    return FitData(N=N, D=D, C=C, L=L, columns=cols, frame=df, budget=budget, k=k, notes=notes)


def _drop_highest_losses(df: pd.DataFrame, lcol: str, drop_highest: int) -> pd.DataFrame:
    """`df` without the rows holding the `drop_highest` highest losses (--drop-highest-loss)."""
    if drop_highest < 0:
        raise AnalysisError(f"--drop-highest-loss must be 0 or more, got {drop_highest}")
    if drop_highest:
        L = numeric_column(df, lcol, "loss")
        if drop_highest >= len(L):
            raise AnalysisError(f"--drop-highest-loss {drop_highest} would drop all {len(L)} rows")
        df = df[L < np.sort(L)[-drop_highest]]
    return df


def _tokens_and_flops(df: pd.DataFrame, N, dcol, ccol, k: float | None, cols: dict) -> tuple:
    """(D, C, k): the D and C columns, the one missing derived through C = k N D, and k given or taken
    as the median C / (N D); records each in `cols`."""
    if dcol is not None:
        D = numeric_column(df, dcol, "D")
        cols["D"] = dcol
    if ccol is not None:
        C = numeric_column(df, ccol, "C")
        cols["C"] = ccol
    if k is None:
        k = float(np.median(C / (N * D))) if (ccol is not None and dcol is not None) else K_FLOPS_PER_PARAM_TOKEN
        if ccol is not None and dcol is not None:
            cols["k"] = f"median {ccol}/(N*{dcol}) = {k:.4g}"
    if dcol is None:
        D = C / (k * N)
        cols["D"] = f"{ccol}/({k:g}*N)"
    if ccol is None:
        C = k * N * D
        cols["C"] = f"{k:g}*N*D"
    return D, C, k


def _budgets(df: pd.DataFrame, budget_col, need_budget: bool, C, cols: dict) -> tuple:
    """(budget, notes): each row's FLOP budget, binned, from the budget column or (when `need_budget`)
    from C, with a note when values were grouped; (None, []) when there is none. Records it in `cols`."""
    budget, notes = None, []
    bcol = find_column(df, budget_col, BUDGET_COLS, "budget (--budget-col)", required=False)
    if budget_col is None and bcol is not None and df[bcol].isna().all():
        bcol = None  # an N x D study's table: the budget column is there, empty
    if bcol is not None or need_budget:
        raw = numeric_column(df, bcol, "budget") if bcol is not None else C
        budget, tol = bin_budgets(raw, with_tolerance=True)
        name = bcol if bcol is not None else cols["C"]
        merged = len(np.unique(raw)) - len(np.unique(budget))
        cols["budget"] = name if not merged else f"{name} (binned)"
        if bcol is None or merged:
            notes.append(f"budgets: {name} grouped into {len(np.unique(budget))} budgets ({_tolerance_text(tol)})")
    return budget, notes


def fitted_rows(data: FitData, law) -> tuple[np.ndarray, pd.DataFrame]:
    """(log-loss residuals, one row per run with its loss, the law's loss and the residual)."""
    pred = np.log(law(data.N, data.D))
    resid = np.log(data.L) - pred
    frame = pd.DataFrame(
        {"N": data.N, "D": data.D, "C": data.C, "loss": data.L, "loss_fit": np.exp(pred), "residual": resid}
    )
    return resid, frame


def measured_rows(data: FitData) -> np.ndarray:
    """Rows that are runs, not points predicted from runs' curves (`--curve-points`)."""
    if "source" not in data.frame.columns:
        return np.ones(len(data), bool)
    return (data.frame["source"].fillna("run") != "curve-law").to_numpy()


def resample_counts(rng, data: FitData, size: int) -> np.ndarray:
    """Bootstrap weights (size, n): rows drawn with replacement — or, where the table holds
    loss-curve-law points, runs drawn with replacement, each carrying its points (they are not
    independent of their run)."""
    n = len(data)
    measured = measured_rows(data)
    if measured.all():
        return rng.multinomial(n, np.full(n, 1.0 / n), size=size).astype(float)
    frame = data.frame
    runs = np.flatnonzero(measured)
    owner = np.arange(n)
    labels = frame.index.to_numpy()
    position = {lab: i for i, lab in enumerate(labels)}
    points = np.flatnonzero(~measured)
    owner[points] = [position[r] for r in frame["curve_row"].to_numpy()[points]]
    draws = np.zeros((size, n))
    draws[:, runs] = rng.multinomial(len(runs), np.full(len(runs), 1.0 / len(runs)), size=size)
    return draws[:, owner]


def budget_tolerance(C: np.ndarray) -> float | None:
    """The log10 distance within which compute values are one budget, learned from the data: the
    gaps between consecutive distinct log10 C values fall into jitter (within a budget) and steps
    (between budgets); the tolerance is the geometric middle of the widest jump between the two
    (sorted gaps at least 4x apart). Without such a jump: 0 when values repeat (each distinct value
    is a budget, e.g. an exact budget column), None when every run has its own value (no learnable
    structure; the caller falls back to fixed 0.1-dex bins)."""
    u = np.unique(np.round(np.log10(C), 9))
    if len(u) < 2:
        return 0.0
    gaps = np.sort(np.diff(u))
    ratios = gaps[1:] / gaps[:-1]
    if len(ratios) and ratios.max() >= 4 and gaps[np.argmax(ratios) + 1] >= 0.02:
        j = int(np.argmax(ratios))
        return float(np.sqrt(gaps[j] * gaps[j + 1]))
    return 0.0 if len(C) >= 2 * len(u) else None


def _tolerance_text(tol: float | None) -> str:
    if tol is None:
        return "no gap structure in the values: fixed 0.1-dex bins"
    return (
        "each distinct value a budget"
        if tol == 0
        else f"values within {tol:.3g} dex merged, learned from the gaps"
    )


def bin_budgets(C: np.ndarray, width_dex: float | None = None, with_tolerance: bool = False):
    """Group compute values into IsoFLOP budgets. Sorted log10 C values within the tolerance
    (`budget_tolerance`, learned from the data, unless `width_dex` is given) of the previous one
    join its group; each point is labelled with its group's geometric-mean C (a group of equal
    values keeps that value exactly). Returns the labels, and the tolerance if `with_tolerance`."""
    C = np.asarray(C, dtype=float)
    tol = width_dex if width_dex is not None else budget_tolerance(C) if len(C) else 0.0
    labels = _fixed_bins(C, 0.1) if tol is None else _chain_bins(C, tol)
    return (labels, tol) if with_tolerance else labels


def _chain_bins(C: np.ndarray, tol: float) -> np.ndarray:
    order = np.argsort(C)
    lc = np.log10(C[order])
    group = np.concatenate([[0], np.cumsum(np.diff(lc) > tol + 1e-9)]) if len(lc) else np.zeros(0, int)
    return _label(C, order, group)


def _fixed_bins(C: np.ndarray, width_dex: float) -> np.ndarray:
    """Walking up the sorted log10 C, a new group starts more than `width_dex` above its first value."""
    order = np.argsort(C)
    lc = np.log10(C[order])
    group = np.empty(len(lc), dtype=int)
    g, start = 0, lc[0] if len(lc) else 0.0
    for i, v in enumerate(lc):
        if v > start + width_dex:
            g, start = g + 1, v
        group[i] = g
    return _label(C, order, group)


def _label(C, order, group) -> np.ndarray:
    labels = np.empty_like(C, dtype=float)
    for j in np.unique(group):
        idx = order[group == j]
        labels[idx] = C[idx[0]] if np.all(C[idx] == C[idx[0]]) else 10 ** np.mean(np.log10(C[idx]))
    return labels


def require_points(n: int, n_params: int, what: str) -> None:
    if n < n_params:
        raise AnalysisError(f"{what} needs at least {n_params} points for {n_params} parameters, got {n}")


def require_spread(data: FitData, what: str) -> None:
    """Refuse tables that cannot identify separate N and D terms: a single N, a single D, or
    log N and log D on one line (every run at one compute budget)."""
    for name, v in (("N", data.N), ("D", data.D)):
        if len(np.unique(v)) < 2:
            raise AnalysisError(
                f"{what}: all rows have the same {name} ({v[0]:.4g}); cannot fit an {name} exponent"
            )
    X = np.stack([np.log(data.N), np.log(data.D)], 1)
    X = X - X.mean(0)
    s = np.linalg.svd(X, compute_uv=False)
    if s[-1] <= 1e-9 * s[0]:
        raise AnalysisError(
            f"{what}: log N and log D lie on one line (a single compute budget C = "
            f"{np.median(data.C):.3g}?); cannot separate the N and D exponents"
        )


def subset(data: FitData, mask: np.ndarray) -> FitData:
    """The rows of `data` where `mask` is true."""
    mask = np.asarray(mask, bool)
    return FitData(
        N=data.N[mask],
        D=data.D[mask],
        C=data.C[mask],
        L=data.L[mask],
        columns=dict(data.columns),
        frame=data.frame[mask],
        budget=None if data.budget is None else data.budget[mask],
        k=data.k,
        notes=list(data.notes),
    )
