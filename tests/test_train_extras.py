"""`lab train`'s researcher conveniences: MFU in every metrics line, a profile of chosen steps,
a config file, and starting from another run's weights."""

import json

import pytest

from lab.cli import main
from lab.costs import nominal_peak
from tests.helpers.runs import TINY, losses, set_args


def lines_of(run):
    return [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines()]


def tiny_cli(out, *extra) -> list[str]:
    return ["train", "--out", str(out), "--quiet", "--steps", str(TINY.train.steps), *set_args(TINY), *extra]


def test_peak_flops_gives_mfu_in_every_train_line_and_the_result(tmp_path, capsys, reference_run):
    out = tmp_path / "R"
    assert main(tiny_cli(out, "--set", "train.peak_flops=1e11")) == 0
    per_token = json.loads((out / "config.json").read_text())["costs"]["flops_exact"]
    train_lines = [l for l in lines_of(out) if "train_loss" in l]
    assert len(train_lines) == TINY.train.steps // TINY.train.log_every
    for line in train_lines:
        assert line["flops_per_s"] == pytest.approx(per_token * line["tokens_per_s"], rel=1e-9)
        assert line["mfu"] == pytest.approx(line["flops_per_s"] / 1e11, rel=1e-9)
    result = json.loads((out / "result.json").read_text())
    assert result["peak_flops"] == 1e11 and result["peak_flops_source"] == "train.peak_flops"
    assert result["mfu"] == pytest.approx(result["flops_per_s"] / 1e11, rel=1e-9) and 0 < result["mfu"] < 1
    # the peak decides no computation: the config hash is that of the run without it
    plain = reference_run  # TINY without a peak
    assert json.loads((plain / "result.json").read_text())["config_hash"] == result["config_hash"]
    # a CPU has no nominal peak: flops_per_s, no mfu
    assert all("flops_per_s" in l and "mfu" not in l for l in lines_of(plain) if "train_loss" in l)
    assert json.loads((plain / "result.json").read_text())["mfu"] is None
    capsys.readouterr()


def test_nominal_peaks_by_device_and_dtype():
    h100 = nominal_peak("NVIDIA H100 80GB HBM3", "bfloat16")
    assert h100["flops_per_s"] == 989e12 and "H100 SXM datasheet" in h100["source"]
    assert nominal_peak("NVIDIA H100 80GB HBM3", "float32")["flops_per_s"] == 494.5e12  # TF32 dense
    assert nominal_peak("NVIDIA H100 PCIe", "bfloat16")["flops_per_s"] == 756e12
    assert nominal_peak("NVIDIA A100-SXM4-80GB", "float32")["flops_per_s"] == 156e12
    assert nominal_peak("cpu", "float32") is None


def test_profile_steps_leave_a_trace_of_those_steps(tmp_path, capsys):
    out = tmp_path / "P"
    assert main(tiny_cli(out, "--profile-steps", "3:5")) == 0
    err = capsys.readouterr().err
    assert f"profile of steps 3:5 in {out / 'profile'}" in err
    traces = list((out / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    assert json.loads((out / "result.json").read_text())["status"] == "completed"
    assert main(tiny_cli(tmp_path / "Q", "--profile-steps", f"3:{TINY.train.steps + 1}")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--profile-steps" in err and not (tmp_path / "Q").exists()


CONFIG_FILE = """
import dataclasses
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig

def config():
    return RunConfig(
        model=ModelConfig(d_model=32, n_layers=2, n_heads=8, seq_len=32),
        data=DataConfig(name="python_stdlib", val_tokens=2048),
        train=TrainConfig(batch_size=8, steps=24, lr=3e-3, eval_every=8, log_every=4, warmup_steps=4),
    )
"""


def test_a_config_file_equals_the_same_run_given_by_flags(tmp_path, reference_run, capsys):
    """tests.helpers.runs.TINY written as a config file, with --set on top (a no-op here: the
    value it already has) equals TINY given by flags (reference_run, trained the same way)."""
    path = tmp_path / "tiny_run.py"
    path.write_text(CONFIG_FILE)
    out = tmp_path / "C"
    assert main(["train", "--out", str(out), "--quiet", "--config", str(path), "--set", "train.lr=3e-3"]) == 0
    flags = tmp_path / "F"
    assert main(tiny_cli(flags)) == 0
    capsys.readouterr()
    hashes = {json.loads((r / "result.json").read_text())["config_hash"] for r in (out, flags, reference_run)}
    assert len(hashes) == 1
    assert losses(out) == losses(flags) == losses(reference_run)
    # flags apply on top of the file
    assert main(["train", "--out", str(tmp_path / "D"), "--config", str(path), "--set", "train.lr=-1"]) == 2
    assert "train.lr" in capsys.readouterr().err
    path.write_text("def config():\n    return 3\n")
    assert main(["train", "--out", str(tmp_path / "E"), "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config() returned int, not a lab.config.RunConfig" in err


def first_step_loss_of(params, cfg, step: int) -> float:
    """The loss of `params` on the training batch of `step` of `cfg`."""
    import jax
    import jax.numpy as jnp

    from lab.data import load_corpus, train_batch
    from lab.training.state import abstract_model
    from lab.training.step import make_eval

    t = cfg.train
    batch = train_batch(
        load_corpus(cfg.data).train, seed=t.seed, step=step, batch_size=t.batch_size, seq_len=cfg.model.seq_len
    )
    evaluate = jax.jit(make_eval(abstract_model(cfg)[0], cfg))
    return float(evaluate(params, jnp.asarray(batch)[None]))


def test_init_from_continues_a_finished_runs_weights(tmp_path, reference_run, capsys):
    """The new run's first step (log_every 1: its line at step 1 is step 0's loss) sees the source's
    final weights on the new run's batch of step 0 (its own data order, from step 0)."""
    from lab.evals.generate import load_run

    out = tmp_path / "I"
    args = tiny_cli(out, "--init-from", str(reference_run), "--set", "train.log_every=1")
    args[args.index("--steps") + 1] = "4"
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"parameters from {reference_run} at step 24" in err
    cfg, _, params = load_run(reference_run)
    first = next(l for l in lines_of(out) if "train_loss" in l)
    assert first["step"] == 1
    assert first["train_loss"] == pytest.approx(first_step_loss_of(params, cfg, 0), abs=1e-5)
    # the same run from scratch starts far higher
    assert next(l for l in lines_of(reference_run) if "train_loss" in l)["train_loss"] > first["train_loss"] + 0.5
    result = json.loads((out / "result.json").read_text())
    assert result["init_from"] == str(reference_run) and result["init_step"] == 24


def test_init_from_a_different_shape_or_step_is_one_line(tmp_path, reference_run, capsys):
    wider = tiny_cli(tmp_path / "W", "--init-from", str(reference_run), "--set", "model.d_model=64")
    assert main(wider) == 2
    err = capsys.readouterr().err
    assert (
        err.count("\n") == 1
        and "do not fit this model" in err
        and "blocks.attn.wk: [2, 32, 8, 4] float32 there, [2, 64, 8, 8] float32 here" in err
    ), err
    assert main(tiny_cli(tmp_path / "S", "--init-from", str(reference_run), "--init-step", "7")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint at step 7" in err and "24" in err, err


def test_init_optimizer_also_takes_the_adam_moments(tmp_path, reference_run, capsys):
    """Same first loss (same weights); the first update differs (the source's moments and count,
    not fresh ones), so the second loss does too."""
    runs = {}
    for name, extra in (("fresh", []), ("moments", ["--init-optimizer"])):
        args = tiny_cli(tmp_path / name, "--init-from", str(reference_run), "--set", "train.log_every=1", *extra)
        args[args.index("--steps") + 1] = "2"
        assert main(args) == 0
        runs[name] = [l["train_loss"] for l in lines_of(tmp_path / name) if "train_loss" in l]
    assert "parameters and optimizer state from" in capsys.readouterr().err
    assert runs["fresh"][0] == runs["moments"][0]
    assert abs(runs["fresh"][1] - runs["moments"][1]) > 1e-4
