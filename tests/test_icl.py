"""The in-context recall evaluation: prompts, windows, scoring, and a real model through it."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lab.config import ModelConfig
from lab.evals.icl import RecallTask, build_windows, evaluate_icl, prompt_texts, score_logits
from lab.model.transformer import Transformer


def byte_encode(text):
    return list(text.encode())


class ByteCorpus:
    tokenizer = "byte"


def test_prompts_are_seeded_and_answer_is_the_queried_value():
    task = RecallTask(prompts=20)
    a, b = prompt_texts(task, 5), prompt_texts(task, 5)
    assert a == b
    for ctx, ans in a:
        query = ctx.rsplit("d['", 1)[1][:2]
        assert f"'{query}':'{ans}'" in ctx
        assert ctx.count(":") == 5
    assert prompt_texts(RecallTask(prompts=20, seed=1), 5) != a


def test_windows_end_with_the_answer_and_pairs_shrink_to_fit():
    task = RecallTask()
    windows, answer_len, pairs = build_windows(task, byte_encode, 128)
    assert windows.shape == (64, 129) and answer_len == 2 and pairs == 8
    for (ctx, ans), row in zip(prompt_texts(task, pairs), windows):
        text = bytes(row.astype(np.uint8)).decode()
        assert text.endswith(ctx + ans) and set(text[: -len(ctx + ans)]) <= {"\n"}
    assert build_windows(task, byte_encode, 64)[2] == 4
    assert build_windows(task, byte_encode, 32)[2] == 1
    assert build_windows(task, byte_encode, 8) is None


def test_score_logits_counts_exact_answers_and_their_cross_entropy():
    targets = jnp.array([[3, 4], [5, 6], [7, 8]])
    logits = 10.0 * jax.nn.one_hot(targets, 16)
    logits = logits.at[2, 1].set(10.0 * jax.nn.one_hot(2, 16))  # prompt 2: second token wrong
    correct, nll = score_logits(logits, targets)
    assert correct.tolist() == [True, True, False]
    right = math.log(1 + 15 * math.exp(-10))
    assert nll[0] == pytest.approx(right, rel=1e-3)
    assert nll[2] == pytest.approx((right + 10 + right) / 2, rel=1e-4)


@pytest.mark.parametrize("arch", ["decoder", "encoder", "encdec"])
def test_untrained_model_scores_at_chance(arch):
    cfg = ModelConfig(arch=arch, d_model=32, n_layers=1, n_heads=4, seq_len=64, vocab_size=257)
    model = Transformer(cfg, rngs=nnx.Rngs(params=0))
    graphdef, params = nnx.split(model, nnx.Param)
    out = evaluate_icl(graphdef, params, cfg, ByteCorpus(), RecallTask(prompts=32))
    assert out["icl_pairs"] == 4 and out["icl_accuracy"] <= 1 / 16
    assert out["icl_loss"] == pytest.approx(math.log(257), rel=0.05)  # init_std 0.02: near-uniform


def test_symbol_corpora_record_no_score():
    class Symbols:
        tokenizer = "symbols"

    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=4, seq_len=64, vocab_size=8)
    graphdef, params = nnx.split(Transformer(cfg, rngs=nnx.Rngs(params=0)), nnx.Param)
    assert evaluate_icl(graphdef, params, cfg, Symbols()) == {}
