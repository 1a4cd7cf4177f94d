"""data.recall_mix: a hashed fraction of training rows are associative-recall lines; the rest are
untouched, batches stay a pure function of (seed, step, row), and the evaluation prompts never
appear in training."""

import dataclasses
import json
import re

import numpy as np
import pytest

from lab.config import ConfigError, DataConfig
from lab.data import train_batch
from lab.data.recall import recall_line, recall_window
from lab.evals.icl import RecallTask, prompt_texts
from lab.training.packed.train import train_pack
from lab.training.train import train
from tests.helpers.runs import TINY, killed_after_save, losses

STREAM = (np.arange(50_000) % 251).astype(np.uint16)  # stand-in stream: no row of it starts with "d={"
T = 128
PROMPT = re.compile(r"d=\{'[a-z]{2}':'[a-z]{2}'(,'[a-z]{2}':'[a-z]{2}')*\};d\['[a-z]{2}'\]=='[a-z]{2}")


def batch(step, mix, rows=None, unique=0):
    return train_batch(
        STREAM, seed=7, step=step, batch_size=32, seq_len=T, rows=rows, recall_mix=mix, unique_tokens=unique
    )


def is_recall(row) -> bool:
    return bytes(row[:3].astype(np.uint8)) == b"d={"


def test_fraction_and_untouched_rows():
    flags = []
    for step in range(40):
        mixed, plain = batch(step, 0.3), batch(step, 0.0)
        rec = np.array([is_recall(r) for r in mixed])
        np.testing.assert_array_equal(mixed[~rec], plain[~rec])  # only chosen rows change
        assert not any(is_recall(r) for r in plain)
        flags.append(rec)
    frac = np.concatenate(flags).mean()
    assert frac == pytest.approx(0.3, abs=0.04)  # 1,280 rows: 4 sd of a binomial is 0.051


def test_pure_function_of_step_and_row():
    full = batch(5, 0.5)
    np.testing.assert_array_equal(full, batch(5, 0.5))
    np.testing.assert_array_equal(full[8:20], batch(5, 0.5, rows=slice(8, 20)))
    np.testing.assert_array_equal(full[[3, 30]], batch(5, 0.5, rows=[3, 30]))
    assert not np.array_equal(full, batch(6, 0.5))
    rep = batch(5, 0.5, unique=10 * (T + 1))  # repeated data mixes the same way
    assert sum(is_recall(r) for r in rep) == sum(is_recall(r) for r in full)


def test_recall_text_is_the_evaluation_format():
    text = bytes(recall_window(123, 2000)).decode("ascii")
    lines = text.split("\n")[:-1]  # the last line is cut by the window
    assert len(lines) >= 5
    for line in lines:
        head, *reads = line.split(";")
        d = eval(head[2:])
        assert 1 <= len(d) <= 8 and len(reads) == len(d)  # every key is read back once
        for read in reads:
            key, value = read[3:5], read[-3:-1]
            assert read == f"d['{key}']=='{value}'" and d[key] == value
        assert PROMPT.fullmatch(f"{head};{reads[0][:-1]}")  # a line's first query is an evaluation prompt
    for n in (1, 4, 8):
        ctx, answer = recall_line(np.random.default_rng(n), n)
        assert PROMPT.fullmatch(ctx + answer)


def test_evaluation_prompts_are_not_training_lines():
    train_text = "".join(bytes(recall_window(h, 2048)).decode("ascii") for h in range(300))
    for ctx, ans in prompt_texts(RecallTask(), 8):
        assert ctx + ans not in train_text
        assert ctx[3:23] not in train_text  # not even their first two pairs


@pytest.mark.parametrize(
    "fields",
    [
        dict(recall_mix=1.0),
        dict(recall_mix=-0.1),
        dict(recall_mix=0.2, tokenizer="bpe"),
        dict(recall_mix=0.2, name="synthetic"),
    ],
)
def test_bad_mix_is_refused(fields):
    with pytest.raises(ConfigError, match="recall_mix"):
        DataConfig(**fields).validate()


def test_mixed_run_records_its_mix_and_resumes_bitwise(tmp_path, reference_run):
    cfg = dataclasses.replace(
        TINY, data=dataclasses.replace(TINY.data, recall_mix=0.5), checkpoint_every=8, keep_checkpoints=3
    )
    out = tmp_path / "run"
    first = train(cfg, out, progress=False)
    assert (
        first["recall_mix"] == 0.5 and json.loads((reference_run / "result.json").read_text())["recall_mix"] == 0.0
    )
    uninterrupted = losses(out)
    assert uninterrupted != losses(reference_run)  # the mixed rows were trained on (plain TINY differs)
    killed_after_save(out, 16)
    result = train(cfg, out, resume=True, progress=False)
    assert result["resumed_from_step"] == 16 and losses(out) == uninterrupted


@pytest.mark.slow  # ~1 min on 2 idle cores
def test_packed_members_train_on_the_mix_as_alone(tmp_path):
    mixed = dataclasses.replace(TINY, data=dataclasses.replace(TINY.data, recall_mix=0.5))
    members = [mixed, dataclasses.replace(mixed, train=dataclasses.replace(mixed.train, seed=1))]  # own rows each
    train_pack(members, [tmp_path / "p0", tmp_path / "p1"], pack_id="p-mix")
    for i, cfg in enumerate(members):
        train(cfg, tmp_path / f"alone{i}", progress=False)
        packed, alone = losses(tmp_path / f"p{i}"), losses(tmp_path / f"alone{i}")
        assert packed.keys() == alone.keys()
        assert max(abs(packed[k] - alone[k]) / abs(alone[k]) for k in alone) < 1e-4, i
