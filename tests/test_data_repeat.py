"""Repeated data (`data.unique_tokens`): epochs of the first U tokens, reshuffled, resumable."""

import dataclasses

import numpy as np
import pytest

from lab.cli import main
from lab.config import ConfigError, DataConfig
from lab.data.batches import n_windows, repeat_fields, repeated_batch, train_batch
from lab.training.train import train
from tests.helpers.runs import TINY, killed_after_save, losses

T, B = 8, 4
STREAM = np.arange(1000, dtype=np.int32) % 251  # a toy stream: window w starts at token w * (T + 1)


def _starts(seed, steps, U):
    """Window index of every sequence of `steps` steps (row r of step s is sequence s * B + r)."""
    out = []
    for s in range(steps):
        x = repeated_batch(STREAM, unique_tokens=U, seed=seed, step=s, batch_size=B, seq_len=T)
        for row in x:
            starts = [
                w for w in range(n_windows(U, T)) if np.array_equal(STREAM[w * (T + 1) : (w + 1) * (T + 1)], row)
            ]
            assert len(starts) == 1
            out.append(starts[0])
    return out


def test_every_window_once_per_epoch_and_reshuffled():
    U = 90  # 10 windows of 9 tokens; 5 steps of 4 rows = 2 epochs
    seq = _starts(seed=3, steps=5, U=U)
    first, second = seq[:10], seq[10:20]
    assert sorted(first) == list(range(10)) and sorted(second) == list(range(10))
    assert first != second  # the order is redrawn each epoch
    assert max(seq) * (T + 1) + T + 1 <= U  # only the first U tokens are read
    assert _starts(seed=3, steps=5, U=U) == seq  # deterministic
    assert _starts(seed=4, steps=5, U=U)[:10] != first  # and seeded


def test_rows_of_a_batch_are_the_same_however_it_is_split():
    whole = repeated_batch(STREAM, unique_tokens=200, seed=1, step=7, batch_size=B, seq_len=T)
    parts = [
        repeated_batch(STREAM, unique_tokens=200, seed=1, step=7, batch_size=B, seq_len=T, rows=r)
        for r in (range(0, 2), [2, 3])
    ]
    assert np.array_equal(whole, np.concatenate(parts))
    assert np.array_equal(whole, train_batch(STREAM, seed=1, step=7, batch_size=B, seq_len=T, unique_tokens=200))


def test_repeat_fields():
    assert repeat_fields(2000, 6144, 10**6) == {"unique_tokens": 2000, "epochs": 3.072}
    assert repeat_fields(0, 500, 1000) == {"unique_tokens": 1000, "epochs": 0.5}


def test_unique_tokens_validation():
    with pytest.raises(ConfigError, match="data.unique_tokens"):
        DataConfig(unique_tokens=-1).validate()


def test_unique_tokens_beyond_the_corpus_is_one_line_exit_2(tmp_path, capsys):
    code = main(
        [
            "train",
            "--out",
            str(tmp_path / "r"),
            "--steps",
            "2",
            "--set",
            "data.unique_tokens=1e12",
            "--set",
            "model.d_model=32",
            "--set",
            "model.n_layers=1",
            "--set",
            "model.n_heads=4",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "data.unique_tokens=1,000,000,000,000 exceeds" in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_repeated_run_resumes_bitwise_and_records_epochs(tmp_path):
    cfg = dataclasses.replace(TINY, data=dataclasses.replace(TINY.data, unique_tokens=2000))
    ref = train(cfg, tmp_path / "ref", progress=False)
    assert ref["unique_tokens"] == 2000
    assert ref["epochs"] == pytest.approx(TINY.train.steps * TINY.train.batch_size * TINY.model.seq_len / 2000)
    assert ref["epochs"] > 3  # 24 steps x 8 rows = 192 sequences of 60 windows: the data really repeats

    out = tmp_path / "run"
    train(dataclasses.replace(cfg, checkpoint_every=8, keep_checkpoints=3), out, progress=False)
    killed_after_save(out, 16)
    result = train(
        dataclasses.replace(cfg, checkpoint_every=8, keep_checkpoints=3), out, resume=True, progress=False
    )
    assert result["status"] == "completed" and result["resumed_from_step"] == 16
    assert losses(out) == losses(tmp_path / "ref")  # bitwise: the same batches after the resume
    unrepeated = train(TINY, tmp_path / "fresh", progress=False)
    assert losses(tmp_path / "fresh") != losses(tmp_path / "ref")  # and they are not the unrepeated batches
    assert unrepeated["epochs"] < 1
