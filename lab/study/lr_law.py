"""The tuned frontier: every cell's peak learning rate from a fitted law η_opt(N, D) (`Study.lr_law`).

`Study(lr_law="lr_law.json", ...)` names the law: the JSON object that `lab fit DIR --method lr --json`
prints, saved as a file, or a study directory with a learning-rate axis (fitted on the spot). A
relative path is taken from the study file's folder. Each cell then trains at

    lr = c · N^a_N · D^b_D           (N = the law's N column, params_total by default; D = tokens)

before any `lrs` / `lr_multipliers` axis (multipliers then scale the tuned rate: the LR neighbours
that measure each row's `tuning_gap`, lab.study.results). The law has no batch term: the batch stays
the study's. The file's fields read here:

    method "lr"; c, a_N, b_D; corpus {dataset, tokenizer, vocab_size}; n_range, d_range [lo, hi]
    (the interior optima it was fitted on; d_range null when D did not vary, so b_D = 0).

Refused, one line, before anything is trained: a missing or damaged file, another method's fit, a law
fitted on another corpus, tokenizer or vocabulary (or one that does not say which). Cells outside the
fitted N (or D) range train at an extrapolated rate: `range_warning` names the range, in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lab.config import ConfigError, RunConfig
from lab.costs import model_costs

N_COLUMNS = ("params_total", "params_non_embedding")  # the N columns a law may be fitted on


@dataclass(frozen=True)
class LrLaw:
    """η_opt(N, D) = c · N^a_N · D^b_D, with where it was fitted and on what data."""

    source: str
    c: float
    a_N: float
    b_D: float
    n_range: tuple[float, float]
    d_range: tuple[float, float] | None  # None: D did not vary in the fit (b_D = 0)
    dataset: str
    tokenizer: str
    vocab_size: int
    n_column: str = "params_total"

    def rate(self, n: float, d: float) -> float:
        return self.c * n**self.a_N * (d**self.b_D if self.b_D else 1.0)

    def n_of(self, cfg: RunConfig) -> float:
        return float(getattr(model_costs(cfg.model), self.n_column))

    def rate_for(self, cfg: RunConfig) -> float:
        return self.rate(self.n_of(cfg), cfg.total_tokens)

    def outside(self, n: float, d: float) -> bool:
        lo, hi = self.n_range
        if not lo <= n <= hi:
            return True
        return self.d_range is not None and not self.d_range[0] <= d <= self.d_range[1]


def _number(obj: dict, key: str, label: str) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{label}: damaged LR law: {key} must be a finite number, got {v!r}")
    return float(v)


def _range(obj: dict, key: str, label: str, *, optional: bool) -> tuple[float, float] | None:
    v = obj.get(key)
    if v is None and optional:
        return None
    ok = isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and x > 0 for x in v)
    if not ok or v[0] > v[1]:
        raise ConfigError(f"{label}: damaged LR law: {key} must be [lo, hi] with 0 < lo <= hi, got {v!r}")
    return float(v[0]), float(v[1])


def law_from_json(obj, source: str) -> LrLaw:
    """An LrLaw from the object `lab fit DIR --method lr --json` prints; ConfigError when it is not one."""
    label = f"lr_law {source}"
    if not isinstance(obj, dict) or obj.get("method") != "lr":
        got = obj.get("method") if isinstance(obj, dict) else type(obj).__name__
        raise ConfigError(
            f"{label}: not an LR law (`lab fit DIR --method lr --json` writes one), got method {got!r}"
        )
    corpus = obj.get("corpus")
    if not isinstance(corpus, dict) or not all(corpus.get(k) for k in ("dataset", "tokenizer", "vocab_size")):
        raise ConfigError(
            f"{label}: the law does not say which corpus and tokenizer it was fitted on (no corpus "
            "{dataset, tokenizer, vocab_size}); refit it with `lab fit DIR --method lr --json`"
        )
    n_column = obj.get("n_column", "params_total")
    if n_column not in N_COLUMNS:
        raise ConfigError(
            f"{label}: the law was fitted on N = {n_column!r}; a study can use {', '.join(N_COLUMNS)}"
        )
    law = LrLaw(
        source=source,
        c=_number(obj, "c", label),
        a_N=_number(obj, "a_N", label),
        b_D=_number(obj, "b_D", label),
        n_range=_range(obj, "n_range", label, optional=False),
        d_range=_range(obj, "d_range", label, optional=True),
        dataset=str(corpus["dataset"]),
        tokenizer=str(corpus["tokenizer"]),
        vocab_size=int(corpus["vocab_size"]),
        n_column=n_column,
    )
    if law.c <= 0:
        raise ConfigError(f"{label}: damaged LR law: c must be > 0, got {law.c!r}")
    return law


def read_lr_law(path: str | Path) -> LrLaw:
    """The law in a JSON file, or fitted from a study directory's results table."""
    path = Path(path)
    if path.is_dir():
        return law_from_json(_fit_directory(path), str(path))
    if not path.is_file():
        raise ConfigError(f"lr_law {path}: no such file or study directory")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"lr_law {path}: damaged LR law (not JSON: {e})") from None
    return law_from_json(obj, str(path))


def _fit_directory(path: Path) -> dict:
    import analysis
    from analysis.errors import AnalysisError

    if not (path / "results.csv").is_file():
        raise ConfigError(f"lr_law {path}: a directory without results.csv is not a study with an LR axis")
    try:
        return analysis.fit(analysis.load(str(path), need_budget=False), "lr", n_boot=20).to_json_dict()
    except AnalysisError as e:
        raise ConfigError(f"lr_law {path}: {e}") from None


def check_corpus(law: LrLaw, cfg: RunConfig, study: str) -> None:
    """ConfigError unless the study trains on the corpus, tokenizer and vocabulary the law was fitted on."""
    mine = (cfg.data.name, cfg.data.tokenizer, cfg.model.vocab_size)
    theirs = (law.dataset, law.tokenizer, law.vocab_size)
    if mine != theirs:
        raise ConfigError(
            f"study {study!r}: lr_law {law.source} was fitted on corpus {theirs[0]!r}, tokenizer {theirs[1]!r}, "
            f"vocabulary {theirs[2]}; this study trains on {mine[0]!r}, {mine[1]!r}, {mine[2]}: its rates do not "
            "transfer (fit the LR law on this corpus)"
        )


def range_warning(law: LrLaw, points: list[tuple[float, float]], study: str) -> str | None:
    """One line naming the law's fitted range when some (N, D) points lie outside it; None when none do."""
    out = [(n, d) for n, d in points if law.outside(n, d)]
    if not out:
        return None
    ns = [n for n, _ in out]
    fitted = f"N {law.n_range[0]:.3g}–{law.n_range[1]:.3g}"
    if law.d_range is not None:
        fitted += f", D {law.d_range[0]:.3g}–{law.d_range[1]:.3g}"
    return (
        f"lab study: warning: study {study!r}: lr_law {law.source} was fitted on {fitted}; {len(out)} of "
        f"{len(points)} cells (N {min(ns):.3g}–{max(ns):.3g}) train at an extrapolated rate"
    )
