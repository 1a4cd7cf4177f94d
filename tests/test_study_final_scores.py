"""A study's final scores (issue 25): `final_scores="off"` trains the same runs (the same losses)
and leaves the quantized, in-context and copy columns empty; `"defer"` computes them after the
grid from the final checkpoints, equal to those a cell computes inline."""

import csv
import json
import textwrap
from pathlib import Path

import pytest

from lab.cli import main
from lab.config import ConfigError
from lab.result import ICL, LOSSES, QUANT
from lab.study.load import load_study

STUDY = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))
def study():
    return Study(name="scores", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[2e9],
                 min_steps=5, final_scores=FINAL)
"""
SCORES = QUANT + ICL + ("copy_accuracy", "copy_loss", "copy_chance")


def _run(tmp_path: Path, final: str, out: Path) -> dict:
    path = tmp_path / f"study_{final}.py"
    path.write_text(textwrap.dedent(STUDY).replace("FINAL", repr(final)))
    assert main(["study", str(path), "--out", str(out), "--quiet", "--no-analysis"]) == 0
    with open(out / "results.csv") as f:
        return {r["cell_id"]: r for r in csv.DictReader(f)}


def test_scores_off_keep_the_losses_and_deferred_scores_equal_the_inline_ones(tmp_path):
    inline = _run(tmp_path, "on", tmp_path / "on")
    off = _run(tmp_path, "off", tmp_path / "off")
    assert sorted(off) == sorted(inline) and len(off) == 2
    for cell, row in off.items():
        assert row["status"] == "completed"
        assert all(row[k] == inline[cell][k] for k in LOSSES + ("tokens", "steps", "config_hash"))
        assert all(row[k] == "" for k in QUANT)  # the columns are there, empty
        assert float(row["final_eval_s"]) == 0.0 and float(inline[cell]["final_eval_s"]) > 0
        task = json.loads((tmp_path / "off" / "tasks" / f"{cell}.json").read_text())
        assert task["final_scores"] is False
        assert "final_scores" not in json.loads((tmp_path / "on" / "tasks" / f"{cell}.json").read_text())
    # the same directory re-run with the scores deferred: nothing is trained again, the scores are
    # computed from the final checkpoints, to the last digit of the inline ones
    result = tmp_path / "off" / "runs" / "d16L2-C2e+09-s0" / "result.json"
    trained = json.loads(result.read_text())["wall_s"]
    deferred = _run(tmp_path, "defer", tmp_path / "off")
    assert json.loads(result.read_text())["wall_s"] == trained
    for cell, row in deferred.items():
        scores = [k for k in SCORES if inline[cell].get(k)]
        assert len(scores) >= len(QUANT)
        assert {k: row[k] for k in scores} == {k: inline[cell][k] for k in scores}
        assert all(row[k] == inline[cell][k] for k in LOSSES)


def test_final_scores_must_be_on_off_or_defer(tmp_path):
    path = tmp_path / "study.py"
    path.write_text(textwrap.dedent(STUDY).replace("FINAL", "'later'"))
    with pytest.raises(ConfigError, match="final_scores must be one of on, off, defer"):
        load_study(path)
