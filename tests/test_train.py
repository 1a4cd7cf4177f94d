"""`lab train` end to end: the tiny preset on the stdlib corpus, the synthetic source's known
entropy, divergence, and every error path of the command line."""

import json
import math

import pytest

from lab.cli import main
from lab.result import FIELDS as CONTRACT


@pytest.mark.slow
def test_tiny_preset_trains_on_the_stdlib(tmp_path, capsys):
    """The README's second command: the tiny preset, default data, default length."""
    out = tmp_path / "R"
    assert main(["train", "--model", "tiny", "--data", "python_stdlib", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert all(k in result for k in CONTRACT), [k for k in CONTRACT if k not in result]
    assert result["status"] == "completed" and result["dataset"] == "python_stdlib"
    assert result["final_val_loss"] < math.log(256) - 2.5  # from 5.55 nats to well under 3
    assert result["val_bits_per_byte"] == pytest.approx(result["final_val_loss"] / math.log(2))
    assert result["flops_exact"] == pytest.approx(
        json.loads((out / "config.json").read_text())["costs"]["flops_exact"] * result["tokens"]
    )
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [l["val_loss"] for l in lines if "val_loss" in l]
    assert len(evals) == 5 and evals[-1] < evals[0]
    assert json.loads(capsys.readouterr().out)["status"] == "completed"


def synthetic_run(tmp_path, steps, seq_len=128):
    out = tmp_path / "syn"
    assert (
        main(
            [
                "train",
                "--data",
                "synthetic",
                "--steps",
                str(steps),
                "--out",
                str(out),
                "--quiet",
                "--set",
                "train.eval_every=" + str(steps // 6),
                "--set",
                f"model.seq_len={seq_len}",
            ]
        )
        == 0
    )
    result = json.loads((out / "result.json").read_text())
    evals = [
        json.loads(l)["val_loss"] for l in (out / "metrics.jsonl").read_text().splitlines() if "val_loss" in l
    ]
    return result, evals


@pytest.mark.slow
def test_synthetic_loss_approaches_entropy_from_above(tmp_path):
    result, evals = synthetic_run(tmp_path, 400, seq_len=64)
    entropy = result["entropy_nats_per_token"]
    assert entropy == pytest.approx(1.10895, abs=1e-4)  # markov1's exact rate (nats/token)
    assert all(v > entropy for v in evals)  # never below the irreducible loss
    assert evals[-1] < evals[0] and evals[-1] - entropy < 0.1  # most of the way down (unigram entropy: 3.76)


@pytest.mark.slow
def test_synthetic_long_run_gets_within_a_hundredth(tmp_path):
    result, evals = synthetic_run(tmp_path, 3000)
    assert 0 < evals[-1] - result["entropy_nats_per_token"] < 0.02


def test_divergence_is_recorded(tmp_path, capsys):
    out = tmp_path / "div"
    code = main(
        [
            "train",
            "--out",
            str(out),
            "--steps",
            "30",
            "--quiet",
            "--set",
            "train.lr=1e5",
            "--set",
            "train.grad_clip=0",
            "--set",
            "model.d_model=32",
        ]
    )
    assert code == 1
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "diverged" and "non-finite" in result["error"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--model", "huge"], "unknown model preset 'huge'"),
        (["--set", "model.d_modl=3"], "unknown config key 'model.d_modl'"),
        (["--set", "model.d_model=abc"], "model.d_model: expected int, got 'abc'"),
        (["--set", "train.lr"], "--set expects key=value"),
        (["--tokens", "-5"], "argument --tokens: expected a positive whole number"),
        (["--tokens", "0"], "argument --tokens: expected a positive whole number"),
        (["--steps", "1.5"], "argument --steps: expected a positive whole number"),
        (["--data", "wikipedia"], "unknown dataset 'wikipedia'"),
        (["--set", "model.n_heads=3"], "not divisible by model.n_heads=3"),
        (["--mesh", "data=3"], "needs 3 devices"),
        (["--resume", "--overwrite"], "not allowed with argument"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "R"
    with pytest.raises(SystemExit) if message.startswith(("argument", "not allowed")) else _no_raise() as exc:
        code = main(["train", "--out", str(out), *argv])
    code = exc.value.code if exc and hasattr(exc, "value") else code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and message in err, err
    assert not out.exists()


class _no_raise:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_occupied_run_dir_is_refused_and_untouched(tmp_path, capsys):
    out = tmp_path / "R"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["train", "--out", str(out), "--steps", "5"]) == 2
    assert "holds files the lab did not write (notes.txt)" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"


def test_resume_uses_the_saved_config(tmp_path, capsys):
    out = tmp_path / "R"
    assert main(["train", "--out", str(out), "--steps", "10", "--set", "model.d_model=32", "--quiet"]) == 0
    assert main(["train", "--out", str(out), "--resume", "--set", "model.d_model=64"]) == 2
    assert "model.d_model is 32 there, 64 here" in capsys.readouterr().err
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0  # already complete: returns at once


def test_prefetch_hands_batches_in_order_and_raises_what_building_raised():
    import threading

    from lab.training.loop import Prefetch

    built = []

    def make(step):
        built.append((step, threading.current_thread().name))
        if step == 5:
            raise OSError("disk gone")
        return step * 10

    with Prefetch(make, 2, 8, depth=2) as batches:
        assert [batches.get(s) for s in (2, 3, 4)] == [20, 30, 40]
        with pytest.raises(OSError, match="disk gone"):
            batches.get(5)
    assert [s for s, _ in built] == [2, 3, 4, 5]  # stops at the error, builds nothing further
    assert {name for _, name in built} == {"lab-batch-prefetch"}  # built off the training thread
    with Prefetch(lambda s: s, 0, 1000, depth=2) as early:  # closed early: the thread ends
        assert early.get(0) == 0
    assert not early._thread.is_alive()
