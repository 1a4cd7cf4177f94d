"""Encoder-decoder: what each stack sees, a complete sharding policy, and `lab train` end to end."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lab import sharding
from lab.cli import main
from lab.config import ModelConfig
from lab.costs import model_costs
from lab.model.transformer import Transformer
from tests.helpers.runs import TINY, set_args

CFG = ModelConfig(
    arch="encdec",
    vocab_size=32,
    d_model=32,
    n_layers=2,
    n_dec_layers=1,
    n_heads=4,
    n_kv_heads=2,
    seq_len=16,
    pos_encoding="learned",
)


def test_decoder_is_causal_and_reads_the_whole_source():
    graphdef, params = nnx.split(Transformer(CFG, rngs=nnx.Rngs(0)))
    model = jax.jit(lambda t, s: nnx.merge(graphdef, params)(t, s))
    encode = jax.jit(lambda s: nnx.merge(graphdef, params).encode(s))
    source = jax.random.randint(jax.random.key(0), (2, 8), 0, 32)
    target = jax.random.randint(jax.random.key(1), (2, 8), 0, 32)
    base = model(target, source)
    assert base.shape == (2, 8, 32) and base.dtype == jnp.float32
    bump = lambda x, i: x.at[:, i].set((x[:, i] + 5) % 32)
    later = np.asarray(model(bump(target, 5), source) - base)
    assert np.abs(later[:, :5]).max() == 0 and np.abs(later[:, 5:]).max() > 1e-4  # causal decoder
    for i in (0, 7):  # every source token reaches the first target position (cross-attention sees all)
        assert float(jnp.abs(model(target, bump(source, i))[:, 0] - base[:, 0]).max()) > 1e-4
    enc_delta = encode(bump(source, 7)) - encode(source)
    assert float(jnp.abs(enc_delta[:, 0]).max()) > 1e-4  # the encoder is bidirectional


def test_every_parameter_has_a_sharding_rule():
    _, state = nnx.split(Transformer(CFG, rngs=nnx.Rngs(0)), nnx.Param)
    flat = {"/".join(map(str, p)): v for p, v in nnx.to_flat_state(state)}
    for path, var in flat.items():
        assert len(var.get_metadata()["logical_axes"]) == var[...].ndim, path
    sharding.param_shardings(state, sharding.make_mesh(""))  # raises if any axis lacks a rule
    assert "blocks/cross_attn/wk" in flat and "enc_blocks/attn/wq" in flat and "enc_norm/scale" in flat
    # each stack is one scanned block over stacked parameters: a leading `layers` axis
    assert (
        flat["enc_blocks/attn/wq"][...].shape == (2, 32, 4, 8) and flat["blocks/cross_attn/wk"][...].shape[0] == 1
    )
    assert flat["enc_blocks/mlp_norm/scale"].get_metadata()["logical_axes"] == ("layers", "norm")
    assert not any(k.startswith("enc_blocks") and "cross" in k for k in flat)


@pytest.mark.slow
def test_lab_train_encdec(tmp_path, capsys):
    """`lab train --set model.arch=encdec` through the unchanged loop: the loss falls, and the result's
    totals are the cost model's per-token figures × batch × seq_len tokens."""
    cfg = dataclasses.replace(
        TINY,
        model=dataclasses.replace(TINY.model, arch="encdec", n_layers=1, n_dec_layers=1),
        train=dataclasses.replace(TINY.train, steps=40, eval_every=40, log_every=5),
    )
    out = tmp_path / "encdec"
    assert main(["train", "--out", str(out), "--steps", "40", "--quiet", *set_args(cfg)]) == 0
    result = json.loads((out / "result.json").read_text())
    costs = model_costs(dataclasses.replace(cfg.model, vocab_size=256))
    assert result["status"] == "completed" and result["arch"] == "encdec"
    assert result["params_total"] == costs.params_total
    assert result["flops_exact"] == costs.flops_exact * 40 * 8 * 32
    train_losses = [
        json.loads(x)["train_loss"] for x in (out / "metrics.jsonl").read_text().splitlines() if "train_loss" in x
    ]
    assert abs(train_losses[0] - np.log(256)) < 0.5  # starts near uniform over bytes
    assert result["final_val_loss"] < np.log(256) - 1.5, result["final_val_loss"]
