"""Seeds per budget (Study.seeds_by_budget): replicates only at the budgets named, the window kept,
bad values refused in one line, and the replicates' scatter as the rung's run-to-run noise."""

import dataclasses
import textwrap

import numpy as np
import pandas as pd
import pytest

from analysis.synthetic import seed_scatter
from analysis.table import FitData
from lab.config import ConfigError
from lab.study.load import load_study
from lab.study.replicates import all_seeds, seeds_at
from lab.study.spec import expand

STUDY = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))

def study():
    return Study(name="r", base=BASE, sizes=[{"d_model": d} for d in (16, 32, 48, 64)], budgets=[1e10, 2e10, 4e10],
                 window=3, min_steps=1, seeds=[0], seeds_by_budget={1e10: [0, 1, 2], 2e10: [0, 1]})
"""


@pytest.fixture
def study(tmp_path):
    p = tmp_path / "study.py"
    p.write_text(textwrap.dedent(STUDY))
    return load_study(p)


def test_replicates_only_at_the_budgets_named_with_the_same_window(study):
    cells = expand(study, vocab_size=256)
    by_budget = {}
    for c in cells:
        by_budget.setdefault(c.budget_flops, {}).setdefault(c.config.train.seed, []).append(c.config.model.d_model)
    assert (
        sorted(by_budget[1e10]) == [0, 1, 2] and sorted(by_budget[2e10]) == [0, 1] and list(by_budget[4e10]) == [0]
    )
    for seeds in by_budget.values():
        sizes = {tuple(v) for v in seeds.values()}
        assert len(sizes) == 1 and len(next(iter(sizes))) == 3  # every seed runs the budget's same 3-size window
    assert len(cells) == 3 * 3 + 3 * 2 + 3
    assert len({c.cell_id for c in cells}) == len(cells)
    assert (
        all_seeds(study) == [0, 1, 2]
        and seeds_at(study, 4e10) == [0]
        and seeds_at(study, 1e10 * (1 + 1e-9)) == [0, 1, 2]
    )


def test_without_seeds_by_budget_the_grid_is_unchanged(study):
    plain = dataclasses.replace(study, seeds_by_budget={}, seeds=[0, 1])
    cells = expand(plain, vocab_size=256)
    assert len(cells) == 2 * 3 * 3
    assert [c.cell_id for c in cells[:3]] == ["d16L2-C1e+10-s0", "d32L2-C1e+10-s0", "d48L2-C1e+10-s0"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({3e10: [0, 1]}, "seeds_by_budget names 3e+10, not a budget of it (1e+10, 2e+10, 4e+10)"),
        ({1e10: []}, "seeds_by_budget[1e+10] must be a non-empty list of whole seeds >= 0"),
        ({1e10: [0, -1]}, "seeds_by_budget[1e+10] must be a non-empty list of whole seeds >= 0"),
        ({1e10: [0.5]}, "seeds_by_budget[1e+10] must be a non-empty list of whole seeds >= 0"),
        ([(1e10, [0])], "seeds_by_budget must map budgets to lists of seeds"),
    ],
)
def test_bad_seeds_by_budget_is_one_clear_error(study, given, message):
    with pytest.raises(ConfigError) as e:
        expand(dataclasses.replace(study, seeds_by_budget=given), vocab_size=256)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_seeds_by_budget_needs_budgets(study):
    nxd = dataclasses.replace(study, budgets=(), tokens=[4096, 8192], window=0)
    with pytest.raises(ConfigError, match="seeds_by_budget needs an IsoFLOP grid"):
        expand(nxd, vocab_size=256)


def test_replicates_at_one_budget_give_the_seed_scatter():
    rng = np.random.default_rng(0)
    n = np.array([1e4, 2e4, 4e4] * 3 + [1e4, 2e4, 4e4])  # budget 1 twice (seeds 0, 1), budgets 2-3 once
    c = np.repeat([1e12, 2e12, 4e12], 3)
    c = np.concatenate([c, [1e12] * 3])
    d = c / (6 * n)
    sigma = 0.02
    loss = 2.0 * np.exp(sigma * rng.standard_normal(len(n)))
    scatter, dof = seed_scatter(FitData(N=n, D=d, C=c, L=loss, columns={}, frame=pd.DataFrame({"N": n})))
    assert dof == 3
    pairs = np.log(loss[9:]) - np.log(loss[:3])
    assert scatter == pytest.approx(np.sqrt(np.sum(pairs**2 / 2) / 3))


def test_a_one_budget_study_derived_from_it_drops_the_replicates(study):
    """The adaptive rounds' cells (and the validation rung's, the same replace) are at one new budget:
    the grid's seeds_by_budget names budgets that study does not have, so it is left out."""
    from lab.study.adaptive import cells_for

    cells = cells_for(study, {"cells": [{"budget": 8e10, "n": 2e4}]}, vocab_size=256)
    assert len(cells) == 1 and cells[0].budget_flops == 8e10 and cells[0].config.train.seed == 0


def test_seeds_by_budget_takes_seeds_as_seeds_does(study):
    cells = expand(dataclasses.replace(study, seeds_by_budget={np.float64(1e10): [0, np.int64(1), 2.0]}), 256)
    assert sorted({c.config.train.seed for c in cells if c.budget_flops == 1e10}) == [0, 1, 2]


def test_seeds_flag_runs_another_draw_of_the_study(tmp_path, capsys):
    """`lab study FILE --seeds 3,4`: the budgets that run `seeds` run 3 and 4; those seeds_by_budget names
    keep theirs."""
    from lab.cli import main

    p = tmp_path / "study.py"
    p.write_text(textwrap.dedent(STUDY))
    assert main(["study", str(p), "--seeds", "3,4", "--dry-run", "--no-timing"]) == 0
    ids = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "-C" in line.split()[0]]
    seeds_of = {}
    for i in ids:
        budget, seed = i.split("-C")[1].rsplit("-s", 1)
        seeds_of.setdefault(float(budget), set()).add(int(seed))
    assert seeds_of == {1e10: {0, 1, 2}, 2e10: {0, 1}, 4e10: {3, 4}}


@pytest.mark.parametrize("bad", ["1,1", "-1", "a", "3,,4", ""])
def test_bad_seeds_flag_is_one_line_and_exit_2(tmp_path, capsys, bad):
    from lab.cli import main

    p = tmp_path / "study.py"
    p.write_text(textwrap.dedent(STUDY))
    with pytest.raises(SystemExit) as e:
        main(["study", str(p), "--seeds", bad, "--dry-run"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("lab study: error: argument --seeds:")
