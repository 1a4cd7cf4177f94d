"""`lab sample` and `lab eval` at a chosen checkpoint step, read-only: they say on stderr which
step they used, a missing step is one line naming the steps there are, and a damaged newest
checkpoint is named and left where it is (the run directory does not change)."""

import dataclasses
import json
import shutil

import pytest

from lab.cli import main
from lab.training.train import train
from tests.helpers.runs import TINY, losses

CFG = dataclasses.replace(TINY, checkpoint_every=8, keep_checkpoints=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("steps") / "run"
    train(CFG, out, progress=False)
    assert sorted(int(p.name) for p in (out / "checkpoints").iterdir() if p.name.isdigit()) == [8, 16, 24]
    return out


def tree(root):
    """Every path under `root` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_eval_at_a_step_equals_that_steps_logged_val_loss(run, capsys):
    before = tree(run)
    assert main(["eval", str(run), "--step", "16", "--json"]) == 0
    out, err = capsys.readouterr()
    res = json.loads(out)
    assert res["step"] == 16 and err == f"lab eval: {run} at step 16\n"
    assert res["val_loss"] == pytest.approx(losses(run)[("val", 16)], rel=1e-5)
    assert main(["eval", str(run), "--json"]) == 0  # default: the newest
    out, err = capsys.readouterr()
    assert json.loads(out)["step"] == 24 and "at step 24" in err
    assert json.loads(out)["val_loss"] == pytest.approx(losses(run)[("val", 24)], rel=1e-5)
    assert tree(run) == before


def test_a_missing_step_is_one_line_naming_the_steps(run, capsys):
    for command in (["eval", str(run), "--step", "5"], ["sample", str(run), "--step", "5"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "no checkpoint at step 5" in err and "8, 16, 24" in err, err


def test_sample_top_p_several_samples_at_a_step(run, capsys):
    args = ["sample", str(run), "--step", "16", "--tokens", "8", "--prompt", "def f"]
    assert main([*args, "--top-p", "0.9", "--num-samples", "3", "--temperature", "1"]) == 0
    out, err = capsys.readouterr()
    assert err == f"lab sample: {run} at step 16\n"
    samples = out.split("=== sample ")[1:]
    assert len(samples) == 3 and all(s.split("\n", 1)[1].startswith("def f") for s in samples)
    assert len({s.split("\n", 1)[1] for s in samples}) > 1  # independent draws
    assert main([*args, "--num-samples", "2"]) == 0  # greedy: the same text twice
    a, b = (s.split("\n", 1)[1] for s in capsys.readouterr().out.split("=== sample ")[1:])
    assert a == b
    assert main([*args, "--top-p", "0"]) == 2
    assert "top-p" in capsys.readouterr().err


def test_a_damaged_newest_checkpoint_is_named_and_left_in_place(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    for f in (copy / "checkpoints" / "24" / "state").rglob("*"):
        if f.is_file() and f.stat().st_size > 0 and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # truncate the array data
    before = tree(copy)
    assert main(["eval", str(copy), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["step"] == 16
    assert err.count("\n") == 1 and "at step 16" in err and "damaged, left in place: 24" in err, err
    assert main(["eval", str(copy), "--step", "24"]) == 2  # asked for: refused, not replaced
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 24 is damaged" in err, err
    assert tree(copy) == before
    assert not (copy / "checkpoints_corrupted").exists()


def test_a_real_process_says_only_which_step(run):
    """As a command (absl and orbax log to stderr there): stdout one JSON object, stderr one line."""
    import subprocess

    from tests.helpers.runs import env, lab_cmd

    proc = subprocess.run(
        lab_cmd("eval", run, "--step", "16", "--json", "--quant", "int8"),
        env=env(1),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["step"] == 16
    assert proc.stderr == f"lab eval: {run} at step 16\n"
