"""Objectives: masked-LM corruption statistics, and an encoder trained end to end."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lab.model.objectives import cross_entropy, mlm_corrupt
from lab.training.train import train
from tests.helpers.runs import TINY


def test_mlm_corruption_follows_bert():
    tokens = jnp.full((64, 256), 7, jnp.int32)
    inputs, weights = mlm_corrupt(tokens, jax.random.key(0), 0.15, mask_id=256, n_real=256)
    chosen = np.asarray(weights) > 0
    assert chosen.mean() == pytest.approx(0.15, abs=0.01)
    x = np.asarray(inputs)
    assert (x[~chosen] == 7).all()  # unchosen positions untouched
    masked, kept = (x[chosen] == 256).mean(), (x[chosen] == 7).mean()
    assert masked == pytest.approx(0.8, abs=0.03)
    assert kept == pytest.approx(0.1 + 0.1 / 256, abs=0.03)  # 10% unchanged, plus random hits of 7
    again, _ = mlm_corrupt(tokens, jax.random.key(0), 0.15, mask_id=256, n_real=256)
    np.testing.assert_array_equal(x, np.asarray(again))  # a pure function of the key


def test_weighted_cross_entropy_counts_only_weighted_positions():
    logits = jnp.log(jnp.array([[[0.5, 0.5], [0.9, 0.1]]]))
    targets = jnp.array([[0, 0]])
    _, all_pos = cross_entropy(logits, targets)
    _, first = cross_entropy(logits, targets, jnp.array([[1.0, 0.0]]))
    assert float(first) == pytest.approx(np.log(2))
    assert float(all_pos) == pytest.approx((np.log(2) - np.log(0.9)) / 2)


@pytest.mark.slow
def test_encoder_learns_masked_tokens(tmp_path):
    cfg = dataclasses.replace(
        TINY,
        model=dataclasses.replace(TINY.model, arch="encoder"),
        train=dataclasses.replace(TINY.train, steps=60, eval_every=20),
    )
    result = train(cfg, tmp_path / "enc", progress=False)
    assert result["status"] == "completed" and result["vocab_size"] == 257  # bytes + [MASK]
    assert result["final_val_loss"] < np.log(256) - 1.0
