"""Studies: grid expansion, malformed study files, the runner (failures, skips, concurrency),
WSD branches against independent runs, and the Ray and SLURM (submitit local) launchers."""

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from lab.cli import main
from lab.config import ConfigError
from lab.costs import model_costs
from lab.study.load import load_study
from lab.study.results import COLUMNS, read_rows, write_rows
from lab.study.spec import branch_savings, expand

HEADER = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study, default_policy
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))
"""

TINY_ISOFLOP = (
    HEADER
    + """
def study():
    return Study(name="tiny", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[2e9], min_steps=5)
"""
)

FAILING = (
    HEADER
    + """
import dataclasses
def policy(cfg, cell):
    cfg = default_policy(cfg, cell)
    if cfg.model.d_model == 32:   # an absurd learning rate: diverges
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, lr=1e5, grad_clip=0.0))
    if cfg.model.d_model == 48:   # a dataset that does not exist: crashes
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, name="tfds:no_such_dataset_xyz"))
    return cfg
def study():
    return Study(name="failing", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}, {"d_model": 48}],
                 budgets=[2e9], min_steps=5, policy=policy)
"""
)

BRANCHES = (
    HEADER
    + """
def study():
    return Study(name="branches", base=BASE, sizes=[{"d_model": 16}], tokens=[4096, 8192, 16384], branches=True,
                 min_steps=5)
"""
)


def write(tmp_path, text, name="study.py") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


# ----------------------------------------------------------------------------- expansion


def test_isoflop_tokens_come_from_exact_flops(tmp_path):
    study = load_study(write(tmp_path, TINY_ISOFLOP))
    cells = expand(study, vocab_size=256)
    assert [c.cell_id for c in cells] == ["d16L2-C2e+09-s0", "d32L2-C2e+09-s0"]
    for c in cells:
        per_token = model_costs(c.config.model).flops_exact
        assert c.budget_flops == 2e9
        assert abs(c.flops - 2e9) <= per_token * c.config.tokens_per_step  # within one step of the budget
        assert c.config.model.n_heads == c.config.model.d_model // 16  # the shape policy


def test_window_keeps_sizes_nearest_the_guess(tmp_path):
    text = (
        HEADER
        + """
def study():
    return Study(name="w", base=BASE, sizes=[{"d_model": d} for d in (16, 32, 48, 64, 96)],
                 budgets=[1e10, 1e12], window=2, tokens_per_param_guess=20, min_steps=1)
"""
    )
    cells = expand(load_study(write(tmp_path, text)), vocab_size=256)
    by_budget = {}
    for c in cells:
        by_budget.setdefault(c.budget_flops, []).append(c.config.model.d_model)
    assert all(len(v) == 2 for v in by_budget.values())
    assert max(by_budget[1e12]) > max(by_budget[1e10])  # the window moves up with compute


def _counting_study(**fields):
    """A Study whose policy counts the cells it shapes (the default policy's result otherwise)."""
    from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from lab.study import Study, default_policy

    shaped = []

    def policy(cfg, cell):
        shaped.append(cell)
        return default_policy(cfg, cell)

    base = RunConfig(
        model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024), train=TrainConfig(batch_size=4)
    )
    return Study(name="big", base=base, policy=policy, **fields), shaped


@pytest.mark.parametrize("bad", ["short", "duplicate"])
def test_a_million_cell_grid_is_refused_at_its_first_bad_cell(bad):
    """10 sizes x 1000 token counts x 100 seeds = 10^6 cells, one of them bad: refused after shaping
    the cells of one (seed, size), not the whole grid (which took 59 s and 1.2 GB before)."""
    sizes = [{"d_model": 16 * (k + 1)} for k in range(10)]
    if bad == "duplicate":
        sizes[1] = sizes[0]
    tokens = [10**6 + 128 * i for i in range(1000)]
    if bad == "short":
        tokens[500] = 128  # one step of 128 tokens
    study, shaped = _counting_study(sizes=sizes, tokens=tokens, seeds=list(range(100)), min_steps=5)
    match = "fewer than min_steps=5" if bad == "short" else "two cells share the id 'd16L2-D1e\\+06-s0'"
    with pytest.raises(ConfigError, match=match):
        expand(study, vocab_size=256)
    assert len(shaped) <= 2 * len(tokens)  # the first size (and, for the duplicate, the second) only


def test_branches_share_warmup_and_save_flops(tmp_path):
    cells = expand(load_study(write(tmp_path, BRANCHES)), vocab_size=256)
    long, *branches = cells
    assert long.branch_of is None and [b.branch_of for b in branches] == [long.cell_id] * 2
    assert long.keep_steps == tuple(b.branch_step for b in branches) == (26, 51)  # 80% of 32 and 64 steps
    assert {c.config.train.warmup_steps for c in cells} == {long.config.train.warmup_steps}
    planned, independent = branch_savings(cells)
    steps = [32, 64, 128]
    assert planned / independent == pytest.approx((128 + 6 + 13) / sum(steps), rel=1e-9)


@pytest.mark.parametrize(
    "text, message",
    [
        ("def study(:\n  pass\n", r"syntax error at line 1"),
        ("x = 1\n", r"defines no study\(\) function"),
        (
            HEADER + "def study():\n    return Study(name='x', base=BASE)\n",
            r"missing 1 required positional argument: 'sizes'",
        ),
        (HEADER + "def study():\n    return 3\n", r"returned int, not a lab.study.Study"),
        (
            HEADER
            + "def study():\n    return Study(name='x', base=BASE, sizes=[{'d_model': 64}], budgets=[1e6])\n",
            r"gives 1 steps .* fewer than min_steps",
        ),
        (
            HEADER
            + "def study():\n    return Study(name='x', base=BASE, sizes=[{'d_modl': 64}], budgets=[1e10])\n",
            r"bad size \{'d_modl': 64\}",
        ),
        (
            HEADER + "def study():\n    return Study(name='x', base=BASE, sizes=[{'d_model': 16}])\n",
            r"exactly one of tokens",
        ),
        (
            HEADER + "def study():\n    raise RuntimeError('oops')\n",
            r"study\(\) raised RuntimeError: oops \(line \d+\)",
        ),
    ],
)
def test_malformed_study_files_fail_in_one_line(tmp_path, capsys, text, message):
    import re

    path = write(tmp_path, text)
    code = main(["study", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("lab study: error:"), err
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()  # nothing started


def test_dry_run_prints_the_grid(tmp_path, capsys):
    assert main(["study", str(write(tmp_path, BRANCHES)), "--dry-run", "--no-timing"]) == 0
    out = capsys.readouterr().out
    assert "d16L2-D4.1e+03-s0" in out and "branch of d16L2-D1.64e+04-s0 at step 26" in out
    assert "WSD branches save" in out


# ----------------------------------------------------------------------------- running


@pytest.mark.slow
def test_failures_are_recorded_and_do_not_stop_others(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["study", str(write(tmp_path, FAILING)), "--out", str(out), "--workers", "2", "--quiet"])
    assert code == 1  # not everything completed
    rows = {r["cell_id"]: r for r in read_rows(out / "results.csv")}
    assert {k: r["status"] for k, r in rows.items()} == {
        "d16L2-C2e+09-s0": "completed",
        "d32L2-C2e+09-s0": "diverged",
        "d48L2-C2e+09-s0": "failed",
    }
    assert float(rows["d16L2-C2e+09-s0"]["final_val_loss"]) < 5.0
    assert "no_such_dataset_xyz" in rows["d48L2-C2e+09-s0"]["error"]
    # a re-run retries only the crashed cell (and it fails the same way)
    capsys.readouterr()
    assert main(["study", str(write(tmp_path, FAILING)), "--out", str(out), "--quiet"]) == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["completed"] == 1


def _tiny_rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").set_index("cell_id").sort_index()


@pytest.fixture(scope="module")
def local_tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    path = write(root, TINY_ISOFLOP)
    assert main(["study", str(path), "--out", str(root / "out"), "--quiet"]) == 0
    return root / "out"


def test_local_rows_have_every_column_and_rerun_skips(local_tiny, capsys):
    rows = _tiny_rows(local_tiny)
    assert len(rows) == 2 and set(COLUMNS) - {"cell_id"} <= set(rows.columns)
    assert (rows["status"] == "completed").all() and (rows["budget_flops"] == 2e9).all()
    assert (rows["flops_exact"] / rows["tokens"]).round().tolist() == [
        model_costs_of(r) for _, r in rows.iterrows()
    ]
    before = (local_tiny / "results.csv").read_text()
    mtimes = {p: p.stat().st_mtime for p in (local_tiny / "runs").rglob("result.json")}
    assert main(["study", str(local_tiny.parent / "study.py"), "--out", str(local_tiny), "--quiet"]) == 0
    assert (local_tiny / "results.csv").read_text() == before
    assert {p: p.stat().st_mtime for p in (local_tiny / "runs").rglob("result.json")} == mtimes


def model_costs_of(row) -> float:
    from lab.config import ModelConfig

    m = ModelConfig(
        vocab_size=int(row["vocab_size"]),
        d_model=int(row["d_model"]),
        n_layers=int(row["n_layers"]),
        n_heads=int(row["n_heads"]),
        seq_len=int(row["seq_len"]),
    )
    return round(model_costs(m).flops_exact)


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["ray", "slurm"])
def test_other_launchers_give_the_same_rows(local_tiny, tmp_path, launcher):
    pytest.importorskip({"ray": "ray", "slurm": "submitit"}[launcher])
    out = tmp_path / "out"
    assert (
        main(["study", str(local_tiny.parent / "study.py"), "--out", str(out), "--launcher", launcher, "--quiet"])
        == 0
    )
    a, b = _tiny_rows(local_tiny), _tiny_rows(out)
    same = ["status", "params_total", "tokens", "flops_exact", "final_train_loss", "final_val_loss"]
    pd.testing.assert_frame_equal(a[same], b[same])


@pytest.mark.slow
def test_wsd_branches_match_independent_runs(tmp_path):
    from lab.training.train import train

    out = tmp_path / "out"
    path = write(tmp_path, BRANCHES)
    assert main(["study", str(path), "--out", str(out), "--quiet"]) == 0
    rows = _tiny_rows(out)
    assert rows["branch_of"].notna().sum() == 2
    for cell in expand(load_study(path), vocab_size=256):
        if not cell.branch_of:
            continue
        alone = train(cell.config, tmp_path / f"alone-{cell.cell_id}", progress=False)
        assert float(rows.loc[cell.cell_id, "final_val_loss"]) == pytest.approx(alone["final_val_loss"], abs=1e-5)
        # the branch's log holds the long run's steps before the branch point, then its own
        metrics = [json.loads(l) for l in (out / "runs" / cell.cell_id / "metrics.jsonl").read_text().splitlines()]
        assert metrics[0]["step"] < cell.branch_step < metrics[-1]["step"] == cell.config.total_steps


def test_the_table_is_replaced_whole_and_only_when_it_changes(tmp_path):
    path = tmp_path / "results.csv"
    rows = [{"cell_id": f"c{i}", "status": "completed", "final_val_loss": i / 4, "extra": "x"} for i in range(3)]
    assert write_rows(path, rows)
    back = read_rows(path)
    assert [(r["cell_id"], float(r["final_val_loss"]), r["extra"]) for r in back] == [
        ("c0", 0.0, "x"),
        ("c1", 0.25, "x"),
        ("c2", 0.5, "x"),
    ]
    assert list(back[0])[: len(COLUMNS)] == COLUMNS  # the contract's columns first, then the rest
    mtime = path.stat().st_mtime_ns
    assert not write_rows(path, rows) and path.stat().st_mtime_ns == mtime
    assert write_rows(path, rows[:1]) and [r["cell_id"] for r in read_rows(path)] == ["c0"]


def test_a_changed_study_does_not_reuse_stale_runs(local_tiny, tmp_path, capsys):
    changed = write(tmp_path, TINY_ISOFLOP.replace("lr=3e-3", "lr=1e-3"))
    assert main(["study", str(changed), "--out", str(local_tiny), "--quiet"]) == 2
    assert "was trained with another config" in capsys.readouterr().err
