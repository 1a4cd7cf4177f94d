"""Training batches as a pure function of (seed, step, row); a fixed held-out validation set.

`train_batch` draws random windows from the 1-D train stream. The start of row r at step s is a
counter-based hash of (seed, s, r) (the splitmix64 finaliser, vectorised in numpy), so:

- a run resumes exactly from any step (nothing to save but the step number);
- each host of a multi-host run asks for only its own `rows`, and the global batch is identical
  however it is split;
- a batch costs a few microseconds (no Generator objects, one gather).
"""

from __future__ import annotations

import numpy as np

from lab.config import ConfigError

_GOLDEN, _M1, _M2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_MASK64 = (1 << 64) - 1


def _mix_int(x: int) -> int:
    """splitmix64 on a Python int: a bijective, well-mixed 64-bit -> 64-bit map."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * _M1) & _MASK64
    x = ((x ^ (x >> 27)) * _M2) & _MASK64
    return x ^ (x >> 31)


def _mix(x: np.ndarray) -> np.ndarray:
    """The same map on a uint64 array (multiplication wraps modulo 2**64, as intended)."""
    x = x + np.uint64(_GOLDEN)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(_M1)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(_M2)
    return x ^ (x >> np.uint64(31))


def row_hashes(seed: int, step: int, rows: np.ndarray) -> np.ndarray:
    """uint64 hash of (seed, step, row) for each row: the only randomness in `train_batch`."""
    key = _mix_int(_mix_int(seed & _MASK64) ^ (step & _MASK64))
    return _mix(np.asarray(rows, dtype=np.uint64) ^ np.uint64(key))


def _row_indices(rows, batch_size: int) -> np.ndarray:
    if rows is None:
        return np.arange(batch_size, dtype=np.int64)
    if isinstance(rows, slice):
        rows = range(*rows.indices(batch_size))
    idx = np.asarray(rows, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= batch_size):
        raise ValueError(f"rows must lie in [0, {batch_size}), got {idx.min()}..{idx.max()}")
    return idx


def train_batch(tokens: np.ndarray, *, seed: int, step: int, batch_size: int, seq_len: int,
                rows=None) -> np.ndarray:
    """Windows of `seq_len + 1` tokens (inputs and shifted targets) at hashed offsets.

    Returns int32 [len(rows), seq_len + 1]; `rows` (None = all, a range, a slice or a list of row
    indices in [0, batch_size)) selects rows of the global batch without changing them.
    """
    span = seq_len + 1
    n_starts = len(tokens) - span + 1
    if n_starts < 1:
        raise ConfigError(f"training stream has {len(tokens)} tokens, fewer than seq_len+1={span}")
    idx = _row_indices(rows, batch_size)
    starts = (row_hashes(seed, step, idx) % np.uint64(n_starts)).astype(np.int64)
    return np.asarray(tokens[starts[:, None] + np.arange(span)], dtype=np.int32)


def val_batches(tokens: np.ndarray, *, batch_size: int, seq_len: int, n_tokens: int) -> np.ndarray:
    """A fixed held-out set: int32 [n_batches, batch_size, seq_len + 1].

    n_batches = max(1, n_tokens // (batch_size * seq_len)), fewer if the stream is too short;
    the windows do not overlap and are spread evenly over the whole validation stream, so the set
    covers all of it rather than its first documents.
    """
    span = seq_len + 1
    n_batches = min(max(1, n_tokens // (batch_size * seq_len)), len(tokens) // (span * batch_size))
    if n_batches < 1:
        raise ConfigError(
            f"validation stream has {len(tokens)} tokens, fewer than one batch of "
            f"{batch_size}x{span}; lower train.batch_size or model.seq_len"
        )
    n = n_batches * batch_size
    starts = (np.arange(n, dtype=np.int64) * (len(tokens) - span)) // max(n - 1, 1)
    windows = np.asarray(tokens[starts[:, None] + np.arange(span)], dtype=np.int32)
    return windows.reshape(n_batches, batch_size, span)


def check_streams(corpus, cfg) -> None:
    """Refuse, before a run writes anything, a config its corpus cannot feed: a training window
    longer than the training stream, a validation set larger than the validation stream, or a
    validation stream shorter than one batch."""
    T, B, want = cfg.model.seq_len, cfg.train.batch_size, cfg.data.val_tokens
    span = T + 1
    if len(corpus.train) < span:
        raise ConfigError(f"the training stream of {corpus.name} has {len(corpus.train):,} tokens, fewer than "
                          f"model.seq_len+1={span}")
    if len(corpus.val) < span * B:
        raise ConfigError(f"the validation stream of {corpus.name} has {len(corpus.val):,} tokens, fewer than one "
                          f"batch of {B}x{span}; lower train.batch_size or model.seq_len")
    if want > len(corpus.val):
        raise ConfigError(f"data.val_tokens={want:,} exceeds the {len(corpus.val):,} tokens of the validation "
                          f"stream of {corpus.name}; ask for at most that many")

