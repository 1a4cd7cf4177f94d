"""Batches are a pure function of (seed, step, row); the validation set is fixed."""

import numpy as np
import pytest

from lab.config import ConfigError
from lab.data import train_batch, val_batches

TOKENS = (np.arange(100_003) % 251).astype(np.uint16)  # position i holds i % 251: offsets are readable


def _batch(**kw):
    args = dict(seed=7, step=3, batch_size=8, seq_len=16) | kw
    return train_batch(TOKENS, **args)


def test_batch_is_a_pure_function_of_seed_and_step():
    a, b = _batch(), _batch()
    assert a.dtype == np.int32 and a.shape == (8, 17)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, _batch(step=4))
    assert not np.array_equal(a, _batch(seed=8))
    # every row is a contiguous window of the stream (consecutive ids mod 251)
    np.testing.assert_array_equal(np.diff(a, axis=1) % 251, np.ones((8, 16)))


def test_rows_split_across_hosts_give_the_same_global_batch():
    full = _batch(batch_size=12)
    host0 = _batch(batch_size=12, rows=range(0, 5))
    host1 = _batch(batch_size=12, rows=slice(5, 12))
    np.testing.assert_array_equal(np.concatenate([host0, host1]), full)
    np.testing.assert_array_equal(_batch(batch_size=12, rows=[11, 2]), full[[11, 2]])
    with pytest.raises(ValueError):
        _batch(rows=range(7, 9))


def test_row_does_not_depend_on_batch_size():
    # row r of step s is determined by (seed, s, r) alone
    np.testing.assert_array_equal(_batch(batch_size=4), _batch(batch_size=16)[:4])


def test_offsets_cover_the_stream_uniformly():
    starts = np.concatenate([_batch(step=s, seq_len=0)[:, 0] for s in range(4000)])  # 32k starts
    hist = np.histogram(starts, bins=10, range=(0, 251))[0]
    assert abs(hist.mean() - 3200) < 1 and hist.min() > 2900 and hist.max() < 3500
    assert len(np.unique([tuple(_batch(step=s)[0, :2]) for s in range(200)])) > 150


def test_val_batches_are_fixed_non_overlapping_and_spread():
    v = val_batches(TOKENS, batch_size=4, seq_len=32, n_tokens=4096)
    assert v.shape == (32, 4, 33) and v.dtype == np.int32  # 4096 // (4 * 32) batches
    np.testing.assert_array_equal(v, val_batches(TOKENS, batch_size=4, seq_len=32, n_tokens=4096))
    pos = np.arange(len(TOKENS), dtype=np.int64)
    vp = val_batches(pos, batch_size=4, seq_len=32, n_tokens=4096).reshape(-1, 33)
    gaps = np.diff(vp[:, 0])
    assert gaps.min() >= 33  # non-overlapping
    assert vp[0, 0] == 0 and vp[-1, -1] == len(TOKENS) - 1  # from the start to the end
    assert gaps.max() - gaps.min() <= 1 and len(vp) == 128  # evenly spread


def test_val_batches_shrink_to_fit_and_refuse_a_too_short_stream():
    short = TOKENS[:1000]
    v = val_batches(short, batch_size=4, seq_len=32, n_tokens=1 << 20)
    assert v.shape == (7, 4, 33)  # 1000 // (33 * 4) = 7 batches fit
    with pytest.raises(ConfigError):
        val_batches(TOKENS[:100], batch_size=4, seq_len=32, n_tokens=4096)
    with pytest.raises(ConfigError):
        train_batch(TOKENS[:10], seed=0, step=0, batch_size=2, seq_len=16)
