"""A study — the grid as code — and its expansion into cells (one run or cooldown branch each).

Two kinds of grid:

* **N × D** (`tokens=[...]`): every size trained for every token count. With `branches=True`
  and the WSD schedule, each (size, seed) gets one long run, and every shorter token count is a
  cooldown branch started from the long run's stable-phase checkpoint at that count's decay
  start: K data sizes cost one long run plus K short decays.
* **IsoFLOP** (`budgets=[...]`): for each FLOP budget C and each size, tokens
  D = C / flops_exact-per-token of that size (lab.costs). `window=k` keeps, per budget, the k sizes
  nearest (in log N) to the guess N* = sqrt(C / (6·r)) for a tokens-per-parameter guess r.

Architecture variants share a study: a `sizes` entry may carry any model field besides its size
(`{"d_model": 32, "arch": "encdec"}`), and `variants=[{"arch": "decoder"}, {"attn_window": 32}]`
crosses every size with every variant. A cell's *variant* is its model fields other than the
size fields (SIZE_FIELDS), written `arch=encdec,attn_window=32` ("" for none); it is part of the
cell id and a results column, windows are chosen per variant, and `lab fit DIR --by variant`
(or `--by arch`) fits one law per variant.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

from lab.config import ConfigError, RunConfig
from lab.costs import model_costs
from lab.overrides import apply_overrides
from lab.schedules import warmup_policy, wsd_decay_start
from lab.study.policy import CellInfo, default_policy
from lab.study.replicates import all_seeds, check_seeds_by_budget, keep_seeded

FINAL_SCORES = ("on", "off", "defer")  # Study.final_scores


@dataclass(frozen=True)
class Study:
    name: str
    base: RunConfig
    sizes: Sequence[dict]  # ModelConfig fields per size, e.g. {"d_model": 32}; the policy fills the rest
    tokens: Sequence[int] = ()  # N×D grid
    budgets: Sequence[float] = ()  # IsoFLOP grid, in flops_exact
    window: int = 0  # IsoFLOP: sizes per budget around the guessed optimum (0 = all)
    tokens_per_param_guess: float = 20.0
    seeds: Sequence[int] = (0,)
    # IsoFLOP: the seeds of the budgets named here (the rest run `seeds`), e.g. {3e11: [0, 1]}: replicates
    # where the noise is largest (lab.study.replicates)
    seeds_by_budget: Mapping[float, Sequence[int]] = dataclass_field(default_factory=dict)
    overrides: Sequence[str] = ()  # `--set`-style strings applied to every cell
    policy: Callable[[RunConfig, CellInfo], RunConfig] = default_policy
    branches: bool = False  # N×D + WSD: one long run and cooldown branches per (size, seed)
    min_steps: int = 20  # a cell with fewer steps is an error in the study, not a data point
    # the analysis `lab study` runs after the grid (lab.study.analyze)
    laws: Sequence[str] = ()  # fit methods (analysis.methods); () = isoflop grids: all, N×D grids: all but isoflop
    target_flops: float | None = None  # compute the report predicts at (None: 10x the grid's largest)
    bootstrap: int = 200  # resamples for the report's intervals
    audit: int = 20  # simulated copies auditing the methods, whose choice the verdict trusts (0: no audit)
    validate: float = 0  # > 1: after the fit, train the predicted optimum at this many times the largest budget
    workers: int = 1  # local launcher: runs at a time unless --workers says otherwise
    # local launcher with workers > 1: each worker on one CPU (its slot's, round robin;
    # lab.study.worker.pin_to_cpu) — XLA's thread pool then has one thread and the two workers of a 2-core
    # machine stop contending: ~10% faster steps there, and losses that no longer depend on the machine's
    # core count (they differ from unpinned ones: 1e-6 to 1.3%, growing with steps); a no-op where it cannot pin
    pin_workers: bool = False
    variants: Sequence[
        dict
    ] = ()  # model fields crossed with every size, e.g. [{"arch": "decoder"}, {"arch": "encdec"}]
    # learning-rate axis, crossed with every cell (ids end in -lrVALUE): peak learning rates, or
    # multipliers of the rate the policy gives each cell; `lab fit DIR --method lr` fits η_opt(N, D)
    lrs: Sequence[float] = ()
    lr_multipliers: Sequence[float] = ()
    # the quantized losses, in-context and copy scores of each run (lab.evals.final): "on" (in every
    # cell), "off" (their columns left empty) or "defer" (after the grid, from each run's final
    # checkpoint, in one process: lab.study.deferred); the losses are the same in all three
    final_scores: str = "on"
    pack: int = 0  # cells per packed task (lab.study.packs); 0 = 8 on accelerators, 1 on CPU; --pack wins
    # the tuned frontier (lab.study.lr_law): every cell's peak lr from a fitted η_opt(N, D), the JSON of
    # `lab fit DIR --method lr --json` saved as a file, or such a study directory; relative to the study file
    lr_law: str = ""


@dataclass(frozen=True)
class Cell:
    cell_id: str
    config: RunConfig
    budget_flops: float | None = None
    branch_of: str | None = None  # the long run this cooldown branches from
    branch_step: int = 0  # the long run's step the branch starts from
    keep_steps: tuple[int, ...] = ()  # long runs: steps whose checkpoints branches start from
    variant: str = ""  # the model fields besides size, "field=value,..." ("" for none)
    lr_group: str = ""  # on an LR axis: the cell id without its -lrVALUE (its LR neighbours share it)

    @property
    def flops(self) -> float:
        return model_costs(self.config.model).flops_exact * self.config.total_tokens


SIZE_FIELDS = ("d_model", "n_layers", "n_heads", "d_ff")  # what makes a size; every other model field is a variant


def variant_of(size: dict) -> str:
    """The variant label of a size dict: its non-size fields, sorted, "field=value,..."."""
    return ",".join(f"{k}={size[k]}" for k in sorted(size) if k not in SIZE_FIELDS)


def _size_label(model, variant: str = "") -> str:
    label = f"d{model.d_model}L{model.n_layers}"
    return f"{label}-{variant.replace('=', '.').replace(',', '-')}" if variant else label


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text)


def _with_tokens(cfg: RunConfig, tokens: int) -> RunConfig:
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, tokens=int(tokens), steps=0))


def expand(study: Study, vocab_size: int, extra_overrides: Sequence[str] = ()) -> list[Cell]:
    """All cells of a study, checked: every config valid and long enough, ids unique. Each
    (seed, size)'s cells are checked as they are made, so a grid of a million cells with a bad one
    is refused as soon as that one is reached, not after the whole grid is built (a windowed
    IsoFLOP grid checks lengths after the window, which drops the sizes too short for a budget)."""
    check_values(study)
    if bool(study.tokens) == bool(study.budgets):
        raise ConfigError(
            f"study {study.name!r}: give exactly one of tokens=[...] (N×D grid) or budgets=[...] (IsoFLOP)"
        )
    if not study.sizes:
        raise ConfigError(f"study {study.name!r}: no sizes")
    if study.branches and not study.tokens:
        raise ConfigError(f"study {study.name!r}: branches=True needs an N×D grid (tokens=[...])")
    base = apply_overrides(study.base, [*study.overrides, *extra_overrides])
    windowed = bool(study.budgets and study.window)
    cells, ids = [], set()
    for seed in all_seeds(study):
        seeded = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
        for size in _sizes(study):
            if study.tokens:
                new = _grid_cells(study, seeded, size, seed, vocab_size)
            else:
                new = _isoflop_cells(study, seeded, size, seed, vocab_size)
            _check_cells(study, new, ids, length=not windowed)
            cells += new
    if windowed:
        cells = _window(study, cells)
        _check_cells(study, cells, set(), length=True)
    cells = keep_seeded(study, cells)
    if study.lr_law:
        cells = _tuned(study, cells)
    if study.lrs or study.lr_multipliers:
        cells = _cross_lrs(study, cells)
        _check_cells(study, cells, set(), length=False)
    return cells


def _check_cells(study: Study, cells: list[Cell], ids: set, *, length: bool) -> None:
    """Each cell long enough (when `length`) and its id new to `ids` (which it joins)."""
    for c in cells:
        if length:
            what = f"budget {c.budget_flops:.3g} FLOPs for {c.cell_id}" if c.budget_flops else c.cell_id
            _check_length(study, c.config, what)
        if c.cell_id in ids:
            raise ConfigError(f"study {study.name!r}: two cells share the id {c.cell_id!r} (duplicate sizes?)")
        ids.add(c.cell_id)


def _sizes(study: Study) -> list[dict]:
    """Every size crossed with every variant (a variant's fields win over the size's)."""
    for entry in (*study.sizes, *study.variants):
        if not isinstance(entry, dict):
            raise ConfigError(
                f"study {study.name!r}: each size and variant must be a dict of model fields, got {entry!r}"
            )
    for v in study.variants:
        if SIZE_FIELDS[0] in v or SIZE_FIELDS[1] in v:
            raise ConfigError(f"study {study.name!r}: variant {v!r} sets a size field; put sizes in sizes=[...]")
    return [{**size, **variant} for size in study.sizes for variant in (study.variants or [{}])]


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _numbers(study: Study, field: str, *, whole: bool, positive: bool) -> None:
    """Every value of the list `field` is a finite number > 0 (or >= 0), whole if asked."""
    values = getattr(study, field)
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise ConfigError(f"study {study.name!r}: {field} must be a list, got {values!r}")
    for v in values:
        ok = _is_number(v) and math.isfinite(v) and (v > 0 if positive else v >= 0) and (not whole or v == int(v))
        if not ok:
            kind = "whole numbers" if whole else "numbers"
            raise ConfigError(
                f"study {study.name!r}: {field} must be finite {kind} {'> 0' if positive else '>= 0'}, got {v!r}"
            )


def check_values(study: Study) -> None:
    """The study's own values: a name, lists of finite positive budgets and token counts,
    non-negative whole seeds, and sensible window, guess and min_steps."""
    if not isinstance(study.name, str) or not study.name.strip():
        raise ConfigError(f"a study needs a non-empty name, got {study.name!r}")
    if not isinstance(study.base, RunConfig):
        raise ConfigError(
            f"study {study.name!r}: base must be a lab.config.RunConfig, got {type(study.base).__name__}"
        )
    if not isinstance(study.sizes, Sequence) or isinstance(study.sizes, (str, bytes, dict)):
        raise ConfigError(f"study {study.name!r}: sizes must be a list of dicts of model fields")
    _numbers(study, "tokens", whole=True, positive=True)
    _numbers(study, "budgets", whole=False, positive=True)
    _numbers(study, "seeds", whole=True, positive=False)
    _numbers(study, "lrs", whole=False, positive=True)
    _numbers(study, "lr_multipliers", whole=False, positive=True)
    if study.lrs and study.lr_multipliers:
        raise ConfigError(f"study {study.name!r}: give lrs=[...] or lr_multipliers=[...], not both")
    if not study.seeds:
        raise ConfigError(f"study {study.name!r}: seeds must hold at least one seed")
    check_seeds_by_budget(study)
    g = study.tokens_per_param_guess
    if not (_is_number(g) and math.isfinite(g) and g > 0):
        raise ConfigError(f"study {study.name!r}: tokens_per_param_guess must be a finite number > 0, got {g!r}")
    for field, least in (("window", 0), ("min_steps", 1), ("workers", 1), ("pack", 0)):
        v = getattr(study, field)
        if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= least):
            raise ConfigError(f"study {study.name!r}: {field} must be a whole number >= {least}, got {v!r}")
    _analysis_values(study)
    if study.final_scores not in FINAL_SCORES:
        raise ConfigError(
            f"study {study.name!r}: final_scores must be one of {', '.join(FINAL_SCORES)}, "
            f"got {study.final_scores!r}"
        )
    if not isinstance(study.pin_workers, bool):
        raise ConfigError(f"study {study.name!r}: pin_workers must be True or False, got {study.pin_workers!r}")
    if not isinstance(study.lr_law, (str, Path)):
        raise ConfigError(
            f"study {study.name!r}: lr_law must be a path (a file or study directory), got {study.lr_law!r}"
        )
    if not callable(study.policy):
        raise ConfigError(f"study {study.name!r}: policy must be a function (cfg, cell) -> RunConfig")


def _analysis_values(study: Study) -> None:
    from analysis.methods import METHODS

    laws = study.laws
    if isinstance(laws, str) or not isinstance(laws, Sequence) or any(m not in METHODS for m in laws):
        raise ConfigError(
            f"study {study.name!r}: laws must be a list of fit methods from {', '.join(METHODS)}, got {laws!r}"
        )
    t = study.target_flops
    if t is not None and not (_is_number(t) and math.isfinite(t) and t > 0):
        raise ConfigError(f"study {study.name!r}: target_flops must be a finite number > 0 or None, got {t!r}")
    for field in ("bootstrap", "audit"):
        v = getattr(study, field)
        if not (isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0):
            raise ConfigError(f"study {study.name!r}: {field} must be a whole number >= 0, got {v!r}")
    v = study.validate
    if not (_is_number(v) and math.isfinite(v) and (v == 0 or v > 1)):
        raise ConfigError(f"study {study.name!r}: validate must be 0 (off) or a factor > 1, got {v!r}")


def _configure(
    study: Study, cfg: RunConfig, size: dict, tokens: int, budget: float | None, vocab_size: int
) -> RunConfig:
    try:
        cfg = study.policy(cfg, CellInfo(size=size, tokens=tokens, budget_flops=budget))
        cfg = dataclasses.replace(cfg, model=cfg.model.with_corpus_vocab(vocab_size))
        return cfg.validate() if cfg.train.tokens or cfg.train.steps else cfg
    except TypeError as e:
        raise ConfigError(f"study {study.name!r}: bad size {size!r}: {e}") from None


def _check_length(study: Study, cfg: RunConfig, what: str) -> None:
    if cfg.total_steps < study.min_steps:
        raise ConfigError(
            f"study {study.name!r}: {what} gives {cfg.total_steps} steps of {cfg.tokens_per_step} tokens, "
            f"fewer than min_steps={study.min_steps}; raise the budget or drop the size"
        )


def _grid_cells(study: Study, cfg: RunConfig, size: dict, seed: int, vocab_size: int) -> list[Cell]:
    tokens = sorted(int(t) for t in study.tokens)
    cfgs = [_with_tokens(_configure(study, _with_tokens(cfg, t), size, t, None, vocab_size), t) for t in tokens]
    variant = variant_of(size)
    label = _size_label(cfgs[0].model, variant)
    ids = [_safe(f"{label}-D{c.total_tokens:.3g}-s{seed}") for c in cfgs]
    if not study.branches:
        return [Cell(i, c, variant=variant) for i, c in zip(ids, cfgs)]
    if cfgs[0].train.schedule != "wsd":
        raise ConfigError(f"study {study.name!r}: branches=True needs train.schedule=wsd")
    # One warmup for the whole family (fixed by the shortest run), so schedules coincide.
    warm = cfgs[0].train.warmup_steps
    if warm < 0:
        warm = warmup_policy(model_costs(cfgs[0].model).params_total, cfgs[0].tokens_per_step, cfgs[0].total_steps)
    log_every = max(1, cfgs[0].total_steps // 50)
    cfgs = [
        dataclasses.replace(c, train=dataclasses.replace(c.train, warmup_steps=warm, log_every=log_every))
        for c in cfgs
    ]
    starts = [wsd_decay_start(c.total_steps, c.train.decay_frac) for c in cfgs[:-1]]
    long = Cell(ids[-1], cfgs[-1], keep_steps=tuple(starts), variant=variant)
    branches = [
        Cell(i, c, branch_of=long.cell_id, branch_step=s, variant=variant)
        for i, c, s in zip(ids[:-1], cfgs[:-1], starts)
    ]
    return [long, *branches]


def _isoflop_cells(study: Study, cfg: RunConfig, size: dict, seed: int, vocab_size: int) -> list[Cell]:
    cells = []
    for budget in sorted(float(b) for b in study.budgets):
        shaped = _configure(study, cfg, size, 0, budget, vocab_size)
        per_token = model_costs(shaped.model).flops_exact
        tokens = max(1, round(budget / per_token))
        c = _with_tokens(shaped, tokens).validate()
        variant = variant_of(size)
        cells.append(
            Cell(
                _safe(f"{_size_label(c.model, variant)}-C{budget:.3g}-s{seed}"),
                c,
                budget_flops=budget,
                variant=variant,
            )
        )
    return cells


def _window(study: Study, cells: list[Cell]) -> list[Cell]:
    """Per budget, seed and variant, the `window` sizes nearest the guessed optimum in log N."""
    groups: dict[tuple, list[Cell]] = {}
    for c in cells:
        groups.setdefault((c.budget_flops, c.config.train.seed, c.variant), []).append(c)
    kept = []
    for key in sorted(groups):
        group = groups[key]
        guess = math.sqrt(key[0] / (6.0 * study.tokens_per_param_guess))
        group.sort(key=lambda c: abs(math.log(model_costs(c.config.model).params_total / guess)))
        kept += sorted(group[: study.window], key=lambda c: model_costs(c.config.model).params_total)
    return kept


def _cross_lrs(study: Study, cells: list[Cell]) -> list[Cell]:
    """Every cell at every learning rate of the study's LR axis (none: the cells as they are)."""
    values, scale = (study.lrs, False) if study.lrs else (study.lr_multipliers, True)
    if not values:
        return cells
    out = []
    for cell in cells:
        for v in values:
            lr = cell.config.train.lr * float(v) if scale else float(v)
            tag = _safe(f"-lr{lr:.3g}")
            cfg = dataclasses.replace(cell.config, train=dataclasses.replace(cell.config.train, lr=lr))
            out.append(
                dataclasses.replace(
                    cell,
                    cell_id=cell.cell_id + tag,
                    config=cfg,
                    branch_of=cell.branch_of + tag if cell.branch_of else None,
                    lr_group=cell.cell_id,
                )
            )
    return out


def _tuned(study: Study, cells: list[Cell]) -> list[Cell]:
    """Every cell at the rate of the study's LR law (a cooldown branch at its long run's rate, which
    it shares); one warning line on stderr when cells lie outside the range the law was fitted on."""
    from lab.study.lr_law import check_corpus, range_warning, read_lr_law

    law = read_lr_law(study.lr_law)
    check_corpus(law, cells[0].config, study.name)
    rates = {c.cell_id: law.rate_for(c.config) for c in cells if not c.branch_of}
    points = [(law.n_of(c.config), c.config.total_tokens) for c in cells if not c.branch_of]
    line = range_warning(law, points, study.name)
    if line:
        print(line, file=sys.stderr)
    return [
        dataclasses.replace(
            c,
            config=dataclasses.replace(
                c.config, train=dataclasses.replace(c.config.train, lr=rates[c.branch_of or c.cell_id])
            ),
        )
        for c in cells
    ]


def branch_savings(cells: list[Cell]) -> tuple[float, float]:
    """(FLOPs of the study as planned, FLOPs had every cell been trained from scratch)."""
    independent = sum(c.flops for c in cells)
    planned = sum(c.flops * (1 - c.branch_step / c.config.total_steps) if c.branch_of else c.flops for c in cells)
    return planned, independent
