"""The in-context copy task (lab.data.induction) and its evaluation (lab.evals.induction): lines at the
configured difficulty, a hashed fraction of rows that is a pure function of (seed, step, row), prompts
that training never holds, scores that are right on known logits, and an untrained model at chance."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from lab.config import ConfigError, DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.data import train_batch
from lab.data.induction import SYMBOLS, CopyTask, copy_window, task_of
from lab.evals.induction import LADDER, copy_scores, greedy_span, levels, prompt_windows, score_tokens
from lab.model.transformer import Transformer

STREAM = (np.arange(50_000) % 251).astype(np.uint16)
T = 128
HARD = CopyTask(length=6, alphabet=10, gap=3, distractors=2)


def batch(step, mix, rows=None, recall=0.0, task=HARD):
    return train_batch(
        STREAM,
        seed=3,
        step=step,
        batch_size=32,
        seq_len=T,
        rows=rows,
        copy_mix=mix,
        copy_task=task,
        recall_mix=recall,
    )


def line_re(task: CopyTask) -> re.Pattern:
    s = f"[{SYMBOLS[: task.alphabet]}]{{{task.length}}}"
    return re.compile(rf"({s})(\|{s}){{{task.distractors}}}\|\.{{0,{task.gap}}}:\1")


def is_copy(row) -> bool:
    return bool(re.search(rb"\|\.{0,3}:[a-j]", bytes(row.astype(np.uint8))))


def test_lines_are_the_configured_difficulty():
    text = bytes(copy_window(99, 3000, HARD)).decode("ascii")
    whole = text.split("\n")[:-1]  # the last line is cut by the window
    assert len(whole) >= 50 and all(line_re(HARD).fullmatch(x) for x in whole)
    assert {len(x) + 1 for x in whole} == set(range(HARD.line_len - HARD.gap, HARD.line_len + 1))
    used = set("".join(x.split("|")[0] for x in whole))
    assert used <= set(SYMBOLS[:10]) and len(used) == 10
    assert HARD.chance == pytest.approx(10.0**-6)
    with pytest.raises(ValueError):
        CopyTask(alphabet=1)


def test_fraction_untouched_rows_and_recall_mix_together():
    flags = []
    for step in range(40):
        mixed, plain = batch(step, 0.25), batch(step, 0.0)
        rec = np.array([is_copy(r) for r in mixed])
        np.testing.assert_array_equal(mixed[~rec], plain[~rec])
        assert not any(is_copy(r) for r in plain)
        flags.append(rec)
    assert np.concatenate(flags).mean() == pytest.approx(0.25, abs=0.04)  # 1,280 rows: 4 sd = 0.048
    both = batch(1, 0.3, recall=0.3)
    assert any(is_copy(r) for r in both) and any(bytes(r[:3].astype(np.uint8)) == b"d={" for r in both)


def test_pure_function_of_seed_step_and_row():
    """Resuming needs nothing but the step: any row of any step is rebuilt alone, the same."""
    full = batch(5, 0.5)
    np.testing.assert_array_equal(full, batch(5, 0.5))
    np.testing.assert_array_equal(full[8:20], batch(5, 0.5, rows=slice(8, 20)))
    np.testing.assert_array_equal(full[[3, 30]], batch(5, 0.5, rows=[3, 30]))
    assert not np.array_equal(full, batch(6, 0.5))
    easy, plain = batch(5, 0.5, task=CopyTask()), batch(5, 0.0)
    changed = lambda b: (b != plain).any(1).tolist()
    assert changed(easy) == changed(full) and any(changed(full))  # the difficulty changes lines, not rows


def test_prompts_are_fixed_end_with_the_copy_and_are_not_training_lines():
    w = prompt_windows(HARD, T, prompts=16)
    assert w.shape == (16, T + 1) and w.dtype == np.int32
    np.testing.assert_array_equal(w, prompt_windows(HARD, T, prompts=16))
    texts = [bytes(r.astype(np.uint8)).decode() for r in w]
    for t in texts:
        last = t.rsplit("\n", 1)[1]
        assert line_re(HARD).fullmatch(last)
    train_text = "".join(bytes(copy_window(h, 2048, HARD)).decode() for h in range(200))
    assert not any(t.rsplit("\n", 1)[1] in train_text for t in texts)
    assert prompt_windows(CopyTask(length=40, distractors=2), T) is None  # a line longer than the window
    assert [n for n, _ in levels(CopyTask(distractors=1), T)] == [
        "",
        "_len2",
        "_len4",
        "_len8",
        "_len16",
        "_len32",
    ]
    assert [n for n, _ in levels(CopyTask(distractors=2), T)] == ["", *(f"_len{n}" for n in LADDER[:-1])]


def test_score_tokens_on_known_logits():
    targets = jnp.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    mask = jnp.array([[False, True, True, True], [False, False, True, True]])
    logits = 10.0 * jax.nn.one_hot(targets, 16)
    logits = logits.at[0, 0].set(0.0).at[1, 2].set(10.0 * jax.nn.one_hot(0, 16))  # row 0: unmasked miss
    exact, letters, nll = score_tokens(logits, targets, mask)
    assert exact.tolist() == [True, False]
    assert letters.tolist() == pytest.approx([1.0, 0.5])
    right = math.log(1 + 15 * math.exp(-10))
    assert float(nll[0]) == pytest.approx(right, rel=1e-3)
    assert float(nll[1]) == pytest.approx((10 + right + right) / 2, rel=1e-4)


def _model(d=32, seed=0):
    cfg = ModelConfig(d_model=d, n_layers=1, n_heads=4, seq_len=T, vocab_size=256)
    return cfg, nnx.split(Transformer(cfg, rngs=nnx.Rngs(seed)))


class ByteCorpus:
    tokenizer = "byte"


def test_untrained_model_is_at_chance():
    mcfg, (graphdef, params) = _model()
    cfg = RunConfig(model=mcfg, data=DataConfig(copy_len=8, copy_alphabet=26), train=TrainConfig(steps=1))
    out = copy_scores(graphdef, params, cfg, ByteCorpus())
    assert out["copy_chance"] == pytest.approx(26.0**-8)
    assert out["copy_accuracy"] == 0.0 and out["copy_accuracy_greedy"] == 0.0
    assert out["copy_char_accuracy"] <= 0.05  # a random 256-way argmax: chance 1/26 at best
    assert out["copy_loss"] == pytest.approx(math.log(256), abs=0.1)  # a near-uniform guess over bytes
    assert {f"copy_accuracy_len{n}" for n in LADDER} <= out.keys()
    assert copy_scores(graphdef, params, cfg, type("C", (), {"tokenizer": "bpe"})()) == {}


def test_greedy_span_decodes_and_matches_teacher_forcing_on_a_copying_model():
    """A 'model' that predicts the byte 10 positions back copies an 8-letter string after its colon:
    greedy decoding rewrites the span exactly, and starting from a wrong span does not matter."""
    task = CopyTask(length=8, alphabet=26)
    w = jnp.asarray(prompt_windows(task, T, prompts=8))

    def copier(x):  # `S|:S`: each letter of the copy is the byte 10 back
        return 10.0 * jax.nn.one_hot(jnp.roll(x, 9, axis=1), 256)

    spoiled = w.at[:, -8:].set(ord("."))
    np.testing.assert_array_equal(greedy_span(copier, spoiled, 8), w[:, -8:])
    exact, letters, _ = score_tokens(copier(w[:, :-1]), w[:, 1:], jnp.arange(T)[None] >= T - 8)
    assert bool(exact.all()) and float(letters.min()) == 1.0


def test_config_refuses_a_copy_mix_it_cannot_build():
    assert task_of(DataConfig(copy_len=5, copy_gap=2)) == CopyTask(5, 26, 2, 0)
    for bad in (
        dict(copy_mix=1.0),
        dict(copy_mix=0.1, tokenizer="bpe"),
        dict(copy_mix=0.1, name="synthetic"),
        dict(copy_alphabet=63),
        dict(copy_len=0),
    ):
        with pytest.raises(ConfigError):
            DataConfig(**bad).validate()


@pytest.mark.slow  # two tiny runs: ~30 s on 2 idle cores
def test_copy_run_records_its_scores_and_resumes_bitwise(tmp_path, reference_run):
    import dataclasses
    import json

    from lab.training.train import train
    from tests.helpers.runs import TINY, killed_after_save, losses

    data = dataclasses.replace(TINY.data, copy_mix=0.5, copy_len=6, copy_gap=2)
    cfg = dataclasses.replace(TINY, data=data, checkpoint_every=8, keep_checkpoints=3)
    out = tmp_path / "run"
    first = train(cfg, out, progress=False)
    assert first["copy_mix"] == 0.5 and first["copy_len"] == 6 and first["copy_chance"] == pytest.approx(26.0**-6)
    assert {"copy_accuracy", "copy_accuracy_greedy", "copy_loss", "copy_accuracy_len4"} <= first.keys()
    assert "copy_accuracy_len32" not in first  # a 32-letter line does not fit a 32-byte window
    assert json.loads((reference_run / "result.json").read_text())["copy_mix"] == 0.0  # recorded on every run
    uninterrupted = losses(out)
    assert uninterrupted != losses(reference_run)  # the copy rows were trained on
    killed_after_save(out, 16)
    result = train(cfg, out, resume=True, progress=False)
    assert result["resumed_from_step"] == 16 and losses(out) == uninterrupted
