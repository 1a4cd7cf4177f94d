"""Packed studies (`lab study --pack K`, lab.study.packs) and the learning-rate axis of a study:
bad --pack values, the packs --dry-run shows, packed rows equal unpacked rows, kill -9 and re-run."""

import json
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from lab.cli import main
from lab.config import ConfigError
from lab.study.load import load_study
from lab.study.packs import plan_packs
from lab.study.spec import expand
from tests.helpers.runs import REPO, env

HEADER = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024), checkpoint_every=10,
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=10, warmup_steps=3))
"""

# 2 sizes x 2 seeds x 2 learning rates, 40 steps each: two packs of 4
GRID = (
    HEADER
    + """
def study():
    return Study(name="packed", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], tokens=[5120], seeds=[0, 1],
                 lr_multipliers=[0.5, 2.0], min_steps=5, laws=[])
"""
)

# 2 sizes x 4 seeds, 40 steps each: two packs of 4. At lr 1e-3: at 3e-3 these d16/d32 runs spike, and
# a spike amplifies the packed kernels' roundoff (1.6e-6 relative at step 5) to 5e-3 by step 40 —
# chaos in the training run, not a difference in what packing computes
SEEDS = (
    HEADER.replace("batch_size=4", "batch_size=8").replace("lr=3e-3", "lr=1e-3")
    + """
def study():
    return Study(name="packed", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], tokens=[10240],
                 seeds=[0, 1, 2, 3], min_steps=5, laws=[])
"""
)


def write(tmp_path, text):
    path = tmp_path / "study.py"
    path.write_text(text)
    return path


def test_pack_below_one_is_one_line(tmp_path, capsys):
    assert main(["study", str(write(tmp_path, GRID)), "--dry-run", "--no-timing", "--pack", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pack must be a whole number >= 1" in err[0]


def test_lr_axis_crosses_every_cell_and_packs_group_same_programs(tmp_path, capsys):
    cells = expand(load_study(write(tmp_path, GRID)), vocab_size=256)
    assert len(cells) == 8 and len({c.cell_id for c in cells}) == 8
    assert sorted({round(c.config.train.lr, 6) for c in cells}) == [0.0015, 0.006]
    assert all(c.cell_id.endswith(f"-lr{c.config.train.lr:.3g}") for c in cells)
    packs = plan_packs(cells, 4)
    assert [len(m) for _, m in packs] == [4, 4]
    assert all(len({c.config.model.d_model for c in m}) == 1 for _, m in packs)
    assert [len(m) for _, m in plan_packs(cells, 3)] == [3, 1, 3, 1]  # a lone remainder still runs
    assert main(["study", str(tmp_path / "study.py"), "--dry-run", "--no-timing", "--pack", "4"]) == 0
    out = capsys.readouterr().out
    assert "--pack 4: 2 tasks for 8 cells (2 packs, 0 cells alone)" in out


def test_both_lr_lists_is_an_error(tmp_path):
    text = GRID.replace("lr_multipliers=[0.5, 2.0]", "lr_multipliers=[0.5], lrs=[1e-3]")
    with pytest.raises(ConfigError, match="not both"):
        expand(load_study(write(tmp_path, text)), vocab_size=256)


def _rows(out) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv").set_index("cell_id").sort_index()


def _run(root, k: int):
    assert (
        main(
            [
                "study",
                str(root / "study.py"),
                "--out",
                str(root / f"k{k}"),
                "--quiet",
                "--pack",
                str(k),
                "--no-analysis",
            ]
        )
        == 0
    )


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    write(root, SEEDS)
    _run(root, 4)
    return root


@pytest.fixture(scope="module")
def packed_and_alone(packed):
    _run(packed, 1)
    return packed


@pytest.mark.slow
def test_packed_rows_equal_unpacked_rows(packed_and_alone):
    packed, alone = _rows(packed_and_alone / "k4"), _rows(packed_and_alone / "k1")
    assert list(packed.columns) == list(alone.columns) and list(packed.index) == list(alone.index)
    assert (packed["status"] == "completed").all()
    rel = ((packed["final_val_loss"] - alone["final_val_loss"]).abs() / alone["final_val_loss"]).max()
    assert rel < 1e-4
    assert packed["pack_id"].nunique() == 2 and alone["pack_id"].isna().all()
    assert (packed["seed"] == alone["seed"]).all()


@pytest.mark.slow
def test_kill_9_during_a_packed_study_then_rerun_gives_the_same_rows(packed, tmp_path):
    path, out = packed / "study.py", tmp_path / "out"
    cmd = [
        sys.executable,
        "-m",
        "lab",
        "study",
        str(path),
        "--out",
        str(out),
        "--quiet",
        "--pack",
        "4",
        "--no-analysis",
    ]
    driver = subprocess.Popen(cmd, env=env(1), cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not any(p.name.isdigit() for p in out.glob("runs/*/checkpoints/*")):
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()[-3000:]
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    assert driver.wait(timeout=60) == -signal.SIGKILL
    time.sleep(1)
    assert main(["study", str(path), "--out", str(out), "--quiet", "--pack", "4", "--no-analysis"]) == 0
    got, ref = _rows(out), _rows(packed / "k4")
    assert (got["resumed_from_step"] > 0).any()
    pd.testing.assert_series_equal(got["final_val_loss"], ref["final_val_loss"])
    assert (got["pack_id"] == ref["pack_id"]).all()
    json.loads((out / "study.json").read_text())
