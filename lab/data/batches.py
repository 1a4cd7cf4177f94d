"""Training batches as a pure function of (seed, step, row); a fixed held-out validation set.

`train_batch` draws random windows from the 1-D train stream. The start of row r at step s is a
counter-based hash of (seed, s, r) (the splitmix64 finaliser, vectorised in numpy), so:

- a run resumes exactly from any step (nothing to save but the step number);
- each host of a multi-host run asks for only its own `rows`, and the global batch is identical
  however it is split;
- a batch costs a few microseconds (no Generator objects, one gather).

With `unique_tokens=U` (config `data.unique_tokens`) the run trains on the first U tokens of the
stream, repeated: they are cut into n = U // (seq_len + 1) disjoint windows, and sequence
i = step * batch_size + row is window perm_e[i mod n] of epoch e = i // n, where perm_e is a
permutation of the n windows drawn from (seed, e) — every window once per epoch, the order
reshuffled each epoch, still a pure function of (seed, step, row).
"""

from __future__ import annotations

import functools

import numpy as np

from lab.config import ConfigError
from lab.data import induction, recall

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


def train_batch(
    tokens: np.ndarray,
    *,
    seed: int,
    step: int,
    batch_size: int,
    seq_len: int,
    rows=None,
    unique_tokens: int = 0,
    recall_mix: float = 0.0,
    copy_mix: float = 0.0,
    copy_task: induction.CopyTask | None = None,
) -> np.ndarray:
    """Windows of `seq_len + 1` tokens (inputs and shifted targets) at hashed offsets, or, with
    `unique_tokens` > 0, the epoch-ordered windows of the first `unique_tokens` tokens (`repeated_batch`);
    with `recall_mix` > 0 a hashed fraction of rows are associative-recall text (`lab.data.recall`);
    with `copy_mix` > 0 another hashed fraction are in-context copy lines at `copy_task`'s difficulty
    (`lab.data.induction`).

    Returns int32 [len(rows), seq_len + 1]; `rows` (None = all, a range, a slice or a list of row
    indices in [0, batch_size)) selects rows of the global batch without changing them.
    """
    if unique_tokens:
        windows = repeated_batch(
            tokens,
            unique_tokens=unique_tokens,
            seed=seed,
            step=step,
            batch_size=batch_size,
            seq_len=seq_len,
            rows=rows,
        )
    else:
        windows = stream_batch(tokens, seed=seed, step=step, batch_size=batch_size, seq_len=seq_len, rows=rows)
    if recall_mix <= 0 and copy_mix <= 0:
        return windows
    idx = _row_indices(rows, batch_size)
    hash_fn = lambda salt, i: row_hashes(seed ^ salt, step, i)
    if recall_mix > 0:
        windows = recall.apply_recall_mix(windows, hash_fn, recall_mix, idx)
    if copy_mix > 0:
        windows = induction.apply_copy_mix(windows, hash_fn, copy_mix, idx, copy_task or induction.CopyTask())
    return windows


def stream_batch(
    tokens: np.ndarray, *, seed: int, step: int, batch_size: int, seq_len: int, rows=None
) -> np.ndarray:
    """Windows of `seq_len + 1` tokens of the whole stream at offsets hashed from (seed, step, row)."""
    span = seq_len + 1
    n_starts = len(tokens) - span + 1
    if n_starts < 1:
        raise ConfigError(f"training stream has {len(tokens)} tokens, fewer than seq_len+1={span}")
    idx = _row_indices(rows, batch_size)
    starts = (row_hashes(seed, step, idx) % np.uint64(n_starts)).astype(np.int64)
    return np.asarray(tokens[starts[:, None] + np.arange(span)], dtype=np.int32)


@functools.lru_cache(maxsize=4)
def epoch_order(seed: int, epoch: int, n_windows: int) -> np.ndarray:
    """The permutation of `n_windows` windows used in `epoch` (int64 [n_windows]): windows sorted
    by a hash of (seed, epoch, window). Cached: a batch reads it, an epoch spans many batches."""
    key = _mix_int(_mix_int(seed & _MASK64) ^ _mix_int((epoch ^ 0xE90C4) & _MASK64))
    order = np.argsort(_mix(np.arange(n_windows, dtype=np.uint64) ^ np.uint64(key)), kind="stable")
    order.setflags(write=False)
    return order


def n_windows(unique_tokens: int, seq_len: int) -> int:
    """Disjoint training windows of seq_len + 1 tokens in the first `unique_tokens` tokens."""
    return int(unique_tokens) // (seq_len + 1)


def sequence_windows(seq: np.ndarray, *, seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, window index) of global sequence numbers `seq` when n windows are repeated."""
    epochs, pos = np.divmod(np.asarray(seq, dtype=np.int64), n)
    window = np.empty_like(pos)
    for e in np.unique(epochs):  # a batch spans at most a few epochs
        sel = epochs == e
        window[sel] = epoch_order(int(seed), int(e), int(n))[pos[sel]]
    return epochs, window


def repeated_batch(
    tokens: np.ndarray, *, unique_tokens: int, seed: int, step: int, batch_size: int, seq_len: int, rows=None
) -> np.ndarray:
    """Rows of the global batch at `step` when the first `unique_tokens` tokens are repeated in
    epochs (see the module docstring): int32 [len(rows), seq_len + 1]."""
    span = seq_len + 1
    n = n_windows(unique_tokens, seq_len)
    if n < 1 or unique_tokens > len(tokens):
        raise ConfigError(
            f"data.unique_tokens={unique_tokens:,} must hold at least one window of seq_len+1={span} "
            f"tokens and at most the {len(tokens):,} tokens of the training stream"
        )
    idx = _row_indices(rows, batch_size)
    _, window = sequence_windows(np.int64(step) * batch_size + idx, seed=seed, n=n)
    return np.asarray(tokens[window[:, None] * span + np.arange(span)], dtype=np.int32)


def repeat_fields(unique_tokens: int, tokens: int, train_tokens: int) -> dict:
    """The result fields of a run's data repetition: `unique_tokens` (the configured U, else the
    whole training stream) and `epochs` = training tokens / unique tokens (Muennighoff et al.'s D/U;
    below 1 when a run sees less than its stream)."""
    u = int(unique_tokens) if unique_tokens else int(train_tokens)
    return {"unique_tokens": u, "epochs": float(tokens) / u}


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
        raise ConfigError(
            f"the training stream of {corpus.name} has {len(corpus.train):,} tokens, fewer than "
            f"model.seq_len+1={span}"
        )
    if len(corpus.val) < span * B:
        raise ConfigError(
            f"the validation stream of {corpus.name} has {len(corpus.val):,} tokens, fewer than one "
            f"batch of {B}x{span}; lower train.batch_size or model.seq_len"
        )
    U = getattr(cfg.data, "unique_tokens", 0)
    if U > len(corpus.train):
        raise ConfigError(
            f"data.unique_tokens={U:,} exceeds the {len(corpus.train):,} training tokens of "
            f"{corpus.name}; ask for at most that many"
        )
    if U and n_windows(U, T) < 1:
        raise ConfigError(
            f"data.unique_tokens={U:,} is shorter than one training window of model.seq_len+1={span} tokens"
        )
    if want > len(corpus.val):
        raise ConfigError(
            f"data.val_tokens={want:,} exceeds the {len(corpus.val):,} tokens of the validation "
            f"stream of {corpus.name}; ask for at most that many"
        )
