"""The closed loop around a study: the analysis after the grid (skipped when too small), the
progress line (FLOPs, ETA), the validation rung's checks and summary, adaptive cells, and the
offline trackers (TensorBoard event files and wandb offline runs read back)."""

import json
import struct
import textwrap
from pathlib import Path

import pytest

from lab.cli import main
from lab.study.load import load_study
from lab.study.progress import StudyProgress, eta_text
from lab.study.spec import expand

HEADER = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))
"""

TWO_CELLS = (
    HEADER
    + """
def study():
    return Study(name="two", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[2e9], min_steps=5)
"""
)

# the tracker tests: two short runs (~40 and ~20 steps), enough logged lines to read back
TWO_SHORT = (
    HEADER
    + """
def study():
    return Study(name="two", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[4e8], min_steps=5)
"""
)

ONE_SHORT = (
    HEADER
    + """
def study():
    return Study(name="one", base=BASE, sizes=[{"d_model": 16}], budgets=[4e8], min_steps=5)
"""
)

THREE_BUDGETS = (
    HEADER
    + """
def study():
    return Study(name="three", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[2e9, 6e9, 1.8e10],
                 min_steps=5)
"""
)


def write(tmp_path, text) -> Path:
    p = tmp_path / "study.py"
    p.write_text(textwrap.dedent(text))
    return p


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and err.startswith("lab study: error:"), err
    return err


def test_eta_is_from_the_flop_rate():
    assert eta_text(0, 10, 5) == "ETA ?"
    assert eta_text(1e12, 4e12, 60) == "ETA 3m00s"  # 3e12 left at 1e12 per minute


class _FakeRun:
    def __init__(self, step):
        self.step = step

    def last_logged_step(self):
        return self.step


def test_progress_counts_finished_cells_and_running_flops():
    steps = {"a": 0, "b": 50}
    bars = StudyProgress({"a": 1e12, "b": 2e12, "c": 1e12}, {"c"}, lambda c: _FakeRun(steps[c]), enabled=False)
    bars.start({"a": 100, "b": 100})
    bars.poll()
    assert bars.line().startswith("FLOPs 2e+12/4e+12 (50%)")  # c done, half of b
    bars.done("b", "completed")
    assert "FLOPs 3e+12/4e+12 (75%)" in bars.line() and "completed 1" in bars.line()
    bars.close()


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--validate", "100"],
            r"100x the largest budget is beyond what the grid supports \(its compute spans 9x",
        ),
        (["--validate", "0.5"], r"the factor must be > 1"),
        (["--adaptive"], r"--adaptive needs --flops F"),
        (["--flops", "1e12"], r"--flops is the allowance of --adaptive"),
    ],
)
def test_bad_loop_flags_fail_in_one_line_before_training(tmp_path, capsys, extra, message):
    import re

    err = one_line_error(
        capsys, ["study", str(write(tmp_path, THREE_BUDGETS)), "--out", str(tmp_path / "o"), *extra]
    )
    assert re.search(message, err), err
    assert not (tmp_path / "o").exists()


def test_missing_tracker_package_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboardX" else real(name, *a)
    )
    err = one_line_error(
        capsys,
        ["study", str(write(tmp_path, TWO_CELLS)), "--out", str(tmp_path / "o"), "--tracker", "tensorboard"],
    )
    assert "needs the optional package tensorboardX" in err and 'pip install -e ".[tracker]"' in err


def _events(path: Path) -> list:
    """Every Event of a TensorBoard event file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        out.append(Event.FromString(data[i + 12 : i + 12 + n]))
        i += 12 + n + 4
    return out


TWO_SEEDS = (
    HEADER
    + """
def study():
    return Study(name="seeds", base=BASE, sizes=[{"d_model": 16}], tokens=[2560], seeds=[0, 1], min_steps=5)
"""
)


def _check_live_tensorboard(out: Path, row, study: str) -> None:
    """The cell's worker logged live into its run directory's tensorboard/ folder, grouped by
    `study`: train_loss at every logged step equal to metrics.jsonl, written before the run's
    result.json, the study's name, the config; the task file carried the tracker; no replay."""
    from lab.study.tasks import PackSpec, read_task

    run = out / "runs" / row["cell_id"]
    assert row["tracker_run"] == f"runs/{row['cell_id']}/tensorboard"
    events = [e for f in (run / "tensorboard").glob("events.out.tfevents.*") for e in _events(f)]
    scalars = {
        (v.tag, e.step): (v.simple_value, e.wall_time)
        for e in events
        for v in e.summary.value
        if v.HasField("simple_value")
    }
    metrics = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [m for m in metrics if "train_loss" in m]
    assert len(logged) >= 2
    assert sorted(step for tag, step in scalars if tag == "train_loss") == [m["step"] for m in logged]
    for m in logged:
        value, wall_time = scalars[("train_loss", m["step"])]
        assert value == pytest.approx(m["train_loss"], rel=1e-6)
        assert wall_time < (run / "result.json").stat().st_mtime  # logged while it trained
    texts = {  # tensorboardX names a text TAG/text_summary
        v.tag.split("/")[0]: v.tensor.string_val[0].decode()
        for e in events
        for v in e.summary.value
        if v.HasField("tensor")
    }
    assert texts["study"] == study and '"d_model"' in texts["config"] and '"completed"' in texts["result"]
    pack = row.get("pack_id")
    task = read_task(out / "tasks" / f"{pack if isinstance(pack, str) else row['cell_id']}.json")
    specs = task.members if isinstance(task, PackSpec) else (task,)
    assert [(m.tracker, m.group) for m in specs] == [("tensorboard", study)] * len(specs)
    assert not (out / "tracker").exists()  # nothing replayed after the fact


def test_study_cells_log_live_to_tensorboard_in_their_run_directories(tmp_path, capsys):
    pytest.importorskip("tensorboardX", reason="the optional tracker extra (tensorboardX) is not installed")
    out = tmp_path / "o"
    argv = ["study", str(write(tmp_path, ONE_SHORT)), "--out", str(out), "--quiet", "--tracker", "tensorboard"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["analysis"].startswith("skipped: 1 completed run(s)")  # too few runs for a law
    import pandas as pd

    (row,) = [r for _, r in pd.read_csv(out / "results.csv").iterrows()]
    _check_live_tensorboard(out, row, "one")


def test_packed_study_members_log_live_to_tensorboard(tmp_path, capsys):
    """`--pack 2`: one worker trains both seeds as one vmapped step; each member logs its own curve."""
    pytest.importorskip("tensorboardX", reason="the optional tracker extra (tensorboardX) is not installed")
    out = tmp_path / "o"
    argv = ["study", str(write(tmp_path, TWO_SEEDS)), "--out", str(out), "--quiet", "--pack", "2"]
    assert main([*argv, "--tracker", "tensorboard", "--no-analysis"]) == 0
    capsys.readouterr()
    import pandas as pd

    rows = [r for _, r in pd.read_csv(out / "results.csv").iterrows()]
    assert len(rows) == 2 and rows[0]["pack_id"] == rows[1]["pack_id"]
    for row in rows:
        _check_live_tensorboard(out, row, "seeds")
    first = [
        next(
            m for m in map(json.loads, (out / "runs" / r["cell_id"] / "metrics.jsonl").open()) if "train_loss" in m
        )
        for r in rows
    ]
    assert first[0]["train_loss"] != first[1]["train_loss"]  # two seeds: two curves, not one copied


def test_a_run_that_ended_without_a_live_log_is_replayed(tmp_path):
    """The driver replays only a finished cell with no live log (its worker found it finished); a
    cell that logged live is linked where it logged."""
    pytest.importorskip("tensorboardX", reason="the optional tracker extra (tensorboardX) is not installed")
    from lab.study.results import ResultsTable

    study = load_study(write(tmp_path, TWO_SEEDS))
    cells = expand(study, vocab_size=256)
    table = ResultsTable(study, cells, tmp_path / "o", tracker="tensorboard")
    for cell in cells:
        run = table.run_dir(cell.cell_id).path
        run.mkdir(parents=True)
        (run / "metrics.jsonl").write_text(json.dumps({"step": 5, "train_loss": 2.5}) + "\n")
    (table.run_dir(cells[1].cell_id).path / "tensorboard").mkdir()
    (table.run_dir(cells[1].cell_id).path / "tensorboard" / "events.out.tfevents.1.h").write_bytes(b"")
    for cell in cells:
        table.record(cell, {"status": "completed"})
    assert table.rows[cells[0].cell_id]["tracker_run"] == f"tracker/{cells[0].cell_id}"
    replayed = [e for f in (tmp_path / "o" / "tracker" / cells[0].cell_id).glob("events.*") for e in _events(f)]
    assert [
        (v.tag, e.step, v.simple_value) for e in replayed for v in e.summary.value if v.HasField("simple_value")
    ] == [("train_loss", 5, 2.5)]
    assert table.rows[cells[1].cell_id]["tracker_run"] == f"runs/{cells[1].cell_id}/tensorboard"
    assert not (tmp_path / "o" / "tracker" / cells[1].cell_id).exists()


def _wandb_records(path: Path) -> list:
    """Every Record of a wandb offline run file (run-ID.wandb): a 7-byte ':W&B' header, then
    LevelDB-log framing in 32 KiB blocks (crc 4, length 2, type 1: full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, out, buf, i = path.read_bytes(), [], b"", 7
    assert data[:4] == b":W&B", data[:7]
    while i + 7 <= len(data):
        left = 32768 - i % 32768
        _, n, kind = struct.unpack("<IHB", data[i : i + 7])
        if left < 7 or (n == 0 and kind == 0):  # block padding
            i += left
            continue
        chunk, i = data[i + 7 : i + 7 + n], i + 7 + n
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            out.append(record)
    return out


def test_study_logs_each_run_to_wandb_offline(tmp_path, capsys, monkeypatch):
    """`--tracker wandb` with WANDB_MODE=offline (a one-cell study): the cell's worker logs live into one
    offline run directory under its run directory (DIR/runs/CELL/wandb), named by the cell and grouped
    by the study, holding every logged train_loss at its step and the run's config; no network."""
    pytest.importorskip("wandb", reason="the optional wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "o"
    assert (
        main(["study", str(write(tmp_path, ONE_SHORT)), "--out", str(out), "--quiet", "--tracker", "wandb"]) == 0
    )
    capsys.readouterr()
    import pandas as pd

    rows = pd.read_csv(out / "results.csv")
    assert len(rows) == 1
    for _, r in rows.iterrows():
        run_dir = out / r["tracker_run"]
        assert run_dir.name.startswith("offline-run-"), r["tracker_run"]
        assert run_dir.is_relative_to(out / "runs" / r["cell_id"] / "wandb"), r["tracker_run"]
        assert not (out / "tracker").exists()  # logged live, nothing replayed
        (wandb_file,) = run_dir.glob("run-*.wandb")
        records = _wandb_records(wandb_file)
        (run,) = [x.run for x in records if x.WhichOneof("record_type") == "run"]
        assert run.display_name == r["cell_id"] and run.run_group == "one" and run.project == "one"
        config = {c.key: json.loads(c.value_json) for c in run.config.update}
        assert config["model"]["d_model"] == r["d_model"]
        history = [
            {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in x.history.item}
            for x in records
            if x.WhichOneof("record_type") == "history"
        ]
        logged = {h["_step"]: h["train_loss"] for h in history if "train_loss" in h}
        metrics = [json.loads(x) for x in (out / "runs" / r["cell_id"] / "metrics.jsonl").read_text().splitlines()]
        expected = {m["step"]: m["train_loss"] for m in metrics if "train_loss" in m}
        assert len(expected) >= 2 and logged.keys() == expected.keys()
        for step, loss in expected.items():
            assert logged[step] == pytest.approx(loss, rel=1e-6)


def test_adaptive_cells_round_budgets_and_skip_known(tmp_path):
    from lab.study.adaptive import cells_for
    from lab.study.analyze import size_for_params

    study = load_study(write(tmp_path, THREE_BUDGETS))
    cells = expand(study, 256)
    proposal = {
        "cells": [
            {"budget": 6.000000001e9, "n": 3.3e4},
            {"budget": 5.4e10, "n": 3.3e4},
            {"budget": 5.4e10, "n": 3.4e4},
        ]
    }
    new = cells_for(study, proposal, 256, known={c.cell_id for c in cells})
    assert [c.cell_id for c in new] == ["d32L2-C5.4e+10-s0"]  # 6e9 exists; two N map to one width
    assert new[0].budget_flops == 5.4e10
    assert size_for_params(study, study.base, 1e4, 2e9, 256) == {"d_model": 16}


def test_validation_sizes_are_three_distinct_widths_around_n_opt(tmp_path):
    """N_opt / 2 and N_opt can round to one width at small sizes (d16 has 10k parameters, d32 33k,
    d48 68k, d64 115k at seq_len 32): the rung still trains a size on each side."""
    from lab.study.analyze import bracketing_sizes

    study = load_study(write(tmp_path, THREE_BUDGETS))
    widths = lambda n: [s["d_model"] for s in bracketing_sizes(study, study.base, n, 1e10, 256)]
    assert widths(4.5e4) == [16, 32, 64]  # N/2 and N both nearest d32: the narrower neighbour is d16
    assert widths(1e4) == [16, 32]  # nothing is narrower than d16: one side only


NINE_CELLS = (
    HEADER
    + """
def study():
    return Study(name="nine", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}, {"d_model": 48}],
                 budgets=[1e9, 3e9, 9e9], min_steps=5, bootstrap=20, laws=["parametric", "isoflop"])
"""
)


@pytest.mark.slow
def test_study_fits_reports_and_validates_in_one_command(tmp_path, capsys):
    """The whole loop on a 9-cell grid: fits, report, figures with CSVs, fits.json, and a validation
    rung at 2x the largest budget whose predicted and measured losses are both reported; a re-run
    trains nothing new and refreshes the analysis."""
    out = tmp_path / "o"
    code = main(["study", str(write(tmp_path, NINE_CELLS)), "--out", str(out), "--quiet", "--validate", "2"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["analysis"] == "written", summary
    assert (out / "report.md").exists() and (out / "fits.json").exists()
    figures = list((out / "figures").glob("*.png"))  # which ones depends on the fits this tiny grid allows
    assert figures and all(f.with_suffix(".csv").exists() for f in figures)
    v = json.loads((out / "validation.json").read_text())
    assert v["flops"] == pytest.approx(1.8e10) and 1 <= len(v["runs"]) <= 3
    done = [r for r in v["runs"] if r["measured"] is not None]
    assert done and all(abs(r["rel_error"] - (r["predicted"] / r["measured"] - 1)) < 1e-12 for r in done)
    assert (
        v["status"] == "measured" and v["method"] == (v["trusted"] or "parametric") and len(v["fit_sha256"]) == 64
    )
    assert all(
        r["pi_lo"] < r["predicted"] < r["pi_hi"] and r["inside_pi"] == (r["pi_lo"] <= r["measured"] <= r["pi_hi"])
        for r in done
    )
    text = (out / "report.md").read_text()
    assert text.startswith("# Scaling-law report") and "## Verdict" in text and "## Validation rung" in text
    import pandas as pd

    assert len(pd.read_csv(out / "results.csv")) == 9  # validation runs stay out of the grid's table
    mtime = (out / "runs" / "d16L2-C1e+09-s0" / "result.json").stat().st_mtime
    assert main(["study", str(write(tmp_path, NINE_CELLS)), "--out", str(out), "--quiet", "--no-analysis"]) == 0
    assert (out / "runs" / "d16L2-C1e+09-s0" / "result.json").stat().st_mtime == mtime


@pytest.mark.slow  # three short trainings: 92 s on the 2 shared cores (load ~13)
def test_adaptive_round_adds_designed_cells_within_the_allowance(tmp_path, capsys, monkeypatch):
    """`lab study --adaptive --flops F`: design -> train -> refit. The design reads a simulated IsoFLOP
    table (`analysis.load` patched; a tiny CPU grid seldom has an interior minimum at every budget, which
    the isoflop fit needs), so the loop itself is what is tested: the proposed cells are mapped to the
    study's widths, trained into the same directory, added to results.csv beside the grid's rows, their
    FLOPs stay within F, the refit reads the study directory again, and the loop stops on its own."""
    import pandas as pd

    import analysis

    simulated = analysis.simulate_isoflop(budgets=(5e8, 1e9, 2e9), n_per_budget=5, noise=0.002, seed=0)
    reads, real_load = [], analysis.load
    monkeypatch.setattr(analysis, "load", lambda src, **kw: reads.append(src) or real_load(simulated))
    F = 2e9
    out = tmp_path / "o"
    argv = ["study", str(write(tmp_path, TWO_SHORT)), "--out", str(out), "--quiet", "--no-analysis"]
    code = main([*argv, "--adaptive", "--flops", str(F)])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    summary = json.loads(captured.out.strip().splitlines()[-1])
    rows = pd.read_csv(out / "results.csv")
    grid = {c.cell_id for c in expand(load_study(write(tmp_path, TWO_SHORT)), 256)}
    new = rows[~rows.cell_id.isin(grid)]
    assert len(grid) == 2 and set(rows.cell_id) >= grid
    assert len(new) >= 1 and summary["cells"] == len(rows) == 2 + len(new), (summary, captured.err[-3000:])
    assert (new.status == "completed").all() and new.final_val_loss.notna().all()
    assert new.budget_flops.sum() <= F, new[["cell_id", "budget_flops"]]
    for cell_id in new.cell_id:
        assert (out / "runs" / cell_id / "result.json").exists()
    assert len(reads) >= 2 and all(Path(r) == out for r in reads)  # designed, then refitted on the study dir
    assert "adaptive design stops" in captured.err  # the loop ended on its own, within the allowance
