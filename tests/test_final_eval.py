"""Every completed run records its quantized losses, weight bytes and in-context score, and
`lab eval` recomputes them from the run's checkpoint."""

import json

import pytest

from lab.cli import main
from lab.result import ICL, QUANT


@pytest.fixture(scope="module")
def result(reference_run):
    return json.loads((reference_run / "result.json").read_text())


def test_result_records_quantized_losses_bytes_and_icl(result):
    assert all(k in result for k in QUANT + ICL)
    f32 = result["final_val_loss"]
    assert abs(result["val_loss_int8"] / f32 - 1) < 0.01
    assert abs(result["val_loss_int4"] / f32 - 1) < 0.10
    assert abs(result["val_loss_bf16"] / f32 - 1) < 0.01
    b = {fmt: result[f"weight_bytes_{fmt}"] for fmt in ("f32", "bf16", "int8", "int4")}
    assert b["bf16"] * 2 == b["f32"]
    assert b["f32"] / 4 < b["int8"] < b["f32"] / 3  # codes + per-channel scales + float norms
    assert b["int8"] / 2 < b["int4"] < b["int8"]
    assert result["icl_pairs"] == 1 and 0.0 <= result["icl_accuracy"] <= 1.0  # TINY: seq_len 32 fits one pair


def test_lab_eval_recomputes_the_recorded_numbers(reference_run, result, capsys):
    assert main(["eval", str(reference_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["val_loss"] == pytest.approx(result["final_val_loss"], rel=1e-5)
    for key in QUANT + ICL:
        assert out[key] == pytest.approx(result[key], rel=1e-5), key
    assert out["damage_int4"] == pytest.approx(result["val_loss_int4"] / result["final_val_loss"] - 1, rel=1e-4)
    assert main(["eval", str(reference_run), "--quant", "int4"]) == 0
    text = capsys.readouterr().out
    assert "int4" in text and "int8" not in text and "× float32" in text


def test_lab_eval_of_a_directory_without_a_run_is_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err


def test_quantized_weights_stay_packed_in_memory():
    """XLA's memory analysis of an evaluation: quantized arguments shrink to the byte ratio and the
    layers' float weights are not materialised all at once (each layer dequantizes inside the scan)."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from lab.config import ModelConfig, RunConfig
    from lab.model.quant import dequantize_unstacked, quantize
    from lab.model.transformer import Transformer
    from lab.training.step import make_eval

    cfg = RunConfig(model=ModelConfig(d_model=128, n_layers=4, n_heads=4, seq_len=16, vocab_size=256))
    graphdef, state = nnx.split(Transformer(cfg.model, rngs=nnx.Rngs(params=0)), nnx.Param)
    params = nnx.to_pure_dict(state)
    val = jnp.zeros((1, 1, 17), jnp.int32)
    evaluate = make_eval(graphdef, cfg)
    f32 = jax.jit(evaluate).lower(params, val).compile().memory_analysis()
    for bits, ratio in ((8, 0.27), (4, 0.145)):
        q = jax.jit(lambda p, v: evaluate(dequantize_unstacked(p), v)).lower(quantize(params, bits), val).compile()
        mem = q.memory_analysis()
        assert mem.argument_size_in_bytes < ratio * f32.argument_size_in_bytes
        layer_weights = 4 * 12 * 128 * 128  # one layer's float32 matmul weights
        assert mem.temp_size_in_bytes < f32.temp_size_in_bytes + 2 * layer_weights
