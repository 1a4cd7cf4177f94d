"""`lab bench`: the JSON carries the hardware header and every figure, and the figures agree with
their formulas (FLOP/s = costs × tokens/s, MFU = achieved / peak). No timing thresholds."""

import contextlib
import io
import json

import pytest

from lab.bench.report import drift_note
from lab.bench.step import CONVENTIONS, nominal_peak, step_row
from lab.cli import main
from lab.config import ConfigError
from lab.costs import model_costs

# One compile only (float32, 1 layer): the bf16/f32 ratio is checked on rows built without timing.
SMALL = [
    "--model",
    "tiny",
    "--set",
    "model.d_model=32",
    "--set",
    "model.n_layers=1",
    "--set",
    "model.seq_len=32",
    "--set",
    "train.batch_size=4",
    "--set",
    "train.microbatches=2",
    "--dtype",
    "float32",
    "--steps",
    "2",
    "--warmup",
    "1",
    "--matmul-n",
    "128",
    "--matmul-repeats",
    "2",
    "--quiet",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """--json prints the object on stdout, --out writes the same object to a file; a second run
    without --json prints the table instead."""
    path = tmp_path_factory.mktemp("bench") / "sub" / "bench.json"
    stdout, table = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["bench", *SMALL, "--json", "--out", str(path)]) == 0
    printed = json.loads(stdout.getvalue())  # one JSON object and nothing else on stdout
    assert stdout.getvalue().count("\n") == 1 and isinstance(printed, dict)
    assert json.loads(path.read_text()) == printed
    with contextlib.redirect_stdout(table):
        assert main(["bench", *SMALL]) == 0
    assert not table.getvalue().lstrip().startswith("{")
    return {**printed, "_table": table.getvalue()}


def test_old_json_path_form_is_a_one_line_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--json", "bench.json", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err and "unrecognized arguments: bench.json" in err


def test_json_has_header_and_fields(bench):
    h = bench["header"]
    for key in ("date", "platform", "device_kind", "device_count", "cpu_model", "jax", "jaxlib", "flax"):
        assert h[key] not in (None, ""), key
    assert h["device_count"] >= 1
    assert [m["dtype"] for m in bench["matmul"]] == ["float32"]
    assert [(r["model"], r["dtype"]) for r in bench["steps"]] == [("tiny", "float32")]
    assert "tiny" in bench["_table"] and "MFU" in bench["_table"]  # the table went to stdout
    for r in bench["steps"]:
        assert (r["d_model"], r["n_layers"], r["seq_len"], r["batch_size"], r["vocab_size"]) == (32, 1, 32, 4, 256)
        assert r["timed_steps"] == 2 and r["warmup_steps"] == 1
        assert set(r["flops_per_s"]) == set(CONVENTIONS)
        assert r["compile_cache"] is False and r["compile_s"] > 0
        assert r["temp_bytes"] == r["xla_memory_per_device"]["temp_size_in_bytes"] > 0
        assert r["argument_bytes"] == r["xla_memory_per_device"]["argument_size_in_bytes"] > 0
        assert r["microbatches"] == 2 and r["remat"] in ("none", "full", "save_matmuls")
        assert r["attn_impl"] == "auto" and r["attn_impl_resolved"] == "chunked"  # on a CPU
    assert "K = train.microbatches" in bench["_table"]
    assert set(bench["formulas"]) >= {"matmul_peak", "mfu_measured", "flops_exact", "attention_flop_share"}


def test_figures_follow_their_formulas(bench):
    peaks = {m["dtype"]: m for m in bench["matmul"]}
    for m in peaks.values():
        assert m["flops_per_s"] == pytest.approx(2 * m["n"] ** 3 / m["best_s"])
        # read before the first model and after each one; the peak is the best reading
        assert len(m["readings_flops_per_s"]) == 1 + len(bench["steps"])
        assert m["flops_per_s"] == pytest.approx(max(m["readings_flops_per_s"]))
    for r in bench["steps"]:
        costs = r["costs"]
        assert r["tokens_per_step"] == r["batch_size"] * r["seq_len"]
        assert r["tokens_per_s"] == pytest.approx(r["tokens_per_step"] / r["step_s"])
        assert r["step_ms"] == pytest.approx(1e3 * r["step_s"])
        for k in CONVENTIONS:
            assert r["flops_per_s"][k] == pytest.approx(costs[k] * r["tokens_per_s"])
        assert r["peak_measured_flops_per_s"] == peaks[r["dtype"]]["flops_per_s"]
        assert r["mfu_measured"] == pytest.approx(r["flops_per_s"]["flops_exact"] / r["peak_measured_flops_per_s"])
        assert r["attention_flop_share"] == pytest.approx(costs["flops_attention"] / costs["flops_exact"])
        assert 0 < r["attention_flop_share"] < 1
        if bench["nominal_peak"] is None:
            assert r["mfu_nominal"] is None
    assert bench["dtype_comparison"] == []  # one dtype: nothing to compare


def test_costs_match_lab_costs(bench):
    import dataclasses

    from lab.presets import preset_config

    cfg, _ = preset_config("tiny")
    model = dataclasses.replace(cfg.model, d_model=32, n_layers=1, seq_len=32, vocab_size=256)
    assert bench["steps"][0]["costs"] == model_costs(model).as_dict()


def test_nominal_peak_and_mfu_against_it():
    assert nominal_peak("NVIDIA H100 80GB HBM3")["flops_per_s"] == 989e12
    assert nominal_peak("NVIDIA H100 PCIe")["flops_per_s"] == 756e12
    assert nominal_peak("NVIDIA H200")["flops_per_s"] == 989e12
    assert nominal_peak("cpu") is None
    from lab.bench.step import bench_config

    cfg = bench_config("tiny", [], "bfloat16", "", 3)
    peaks = {"bfloat16": {"flops_per_s": 1e11}}
    row = step_row(
        "tiny",
        cfg,
        {"step_s": 0.5, "compile_s": 1.0, "warmup_steps": 1, "timed_steps": 2},
        peaks,
        {"flops_per_s": 1e12},
    )
    exact = model_costs(cfg.model).flops_exact * cfg.tokens_per_step / 0.5
    assert row["flops_per_s"]["flops_exact"] == pytest.approx(exact)
    assert row["mfu_measured"] == pytest.approx(exact / 1e11)
    assert row["mfu_nominal"] == pytest.approx(exact / 1e12)


def test_dtype_comparison_and_mfu_per_dtype():
    from lab.bench.step import bench_config, dtype_ratios

    peaks = {"float32": {"flops_per_s": 2e11}, "bfloat16": {"flops_per_s": 1e11}}
    timing = {"compile_s": 1.0, "warmup_steps": 1, "timed_steps": 2}
    rows = [
        step_row("tiny", bench_config("tiny", [], d, "", 3), {**timing, "step_s": s}, peaks, None)
        for d, s in (("float32", 0.2), ("bfloat16", 0.1))
    ]
    (cmp,) = dtype_ratios(rows)
    assert cmp["bf16_over_f32"] == pytest.approx(2.0)
    # each row's MFU divides by the peak measured in its own dtype
    assert rows[0]["mfu_measured"] == pytest.approx(rows[0]["flops_per_s"]["flops_exact"] / 2e11)
    assert rows[1]["mfu_measured"] == pytest.approx(rows[1]["flops_per_s"]["flops_exact"] / 1e11)
    assert rows[0]["mfu_nominal"] is None


@pytest.mark.parametrize(
    "args",
    [
        ["--model", "nope"],
        ["--set", "model.bogus=1"],
        ["--set", "model.d_model=x"],
        ["--set", "model.dtype=bfloat16"],
        ["--dtype", "float16"],
        ["--mesh", "data=3"],
        ["--out", "."],
    ],
)
def test_user_errors_are_one_line_exit_2(args, capsys):
    assert main(["bench", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lab bench: error:") and "\n" not in err


@pytest.mark.slow
def test_fit_batch_takes_the_fewest_microbatches_that_fit(monkeypatch):
    """--fit-batch: with the device's free bytes just below what the whole batch needs at once
    (XLA's analysis of the compiled step), the batch is split; the config timed says how."""
    import jax

    from lab import memory, sharding
    from lab.bench import step as bench_module
    from lab.bench.step import bench_config, compile_fitted
    from lab.training.step import compile_step

    cfg = bench_config(
        "tiny",
        ["model.d_model=32", "model.n_layers=1", "model.seq_len=32", "train.batch_size=8"],
        "float32",
        "",
        3,
    )
    mesh = sharding.make_mesh("")
    with jax.set_mesh(mesh):
        whole = memory.xla_needed(compile_step(cfg, mesh).memory)
        monkeypatch.setattr(memory, "available_bytes", lambda device=None: (whole, "test"))
        assert (
            bench_module.microbatch_candidates(cfg, dict(mesh.shape))[0] == 1
        )  # the estimate fits 2x: start at 1
        fitted, step = compile_fitted(cfg, mesh, fit=True)
        assert fitted.train.microbatches > 1 and fitted.train.batch_size == 8
        assert memory.xla_needed(step.memory) <= bench_module.FIT_MARGIN * whole
        monkeypatch.setattr(memory, "available_bytes", lambda device=None: (1000, "test"))
        with pytest.raises(ConfigError, match="no number of micro-batches fits"):
            compile_fitted(cfg, mesh, fit=True)


def test_drift_note_only_when_the_peak_moved():
    steady = {"dtype": "float32", "readings_flops_per_s": [130e9, 118e9, 136e9]}
    drifting = {"dtype": "float32", "readings_flops_per_s": [147e9, 116e9, 75e9]}
    assert drift_note(steady) is None and drift_note({"dtype": "float32"}) is None
    assert "×1.96" in drift_note(drifting) and "float32" in drift_note(drifting)
