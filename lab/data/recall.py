"""The associative-recall text format, shared by the in-context evaluation (`lab.evals.icl`) and the
training mixture `data.recall_mix` (numpy only: the data pipeline imports it).

A line builds a dict of random lowercase keys and values and reads one key back:

    d={'qk':'mb','ze':'tw'};d['ze']=='tw'

Keys and values are fresh random words in every line, so nothing outside the line predicts the
answer: only finding the key earlier in the line and copying what follows it does.

`data.recall_mix=f` replaces a fraction f of training rows (a pure function of seed, step and row,
like every batch) by windows of such lines, each with 1-8 pairs read back at every key in random
order (`training_line`), drawn from a generator seeded by the row's hash. The evaluation prompts
come from their own seed (`lab.evals.icl.RecallTask.seed`) and every pair is random, so a model cannot
score on them by memorising training lines. This is the
design of the synthetic-recall studies (Zoology's MQAR, Arora et al. 2023; Olsson et al. 2022 on
induction heads): the question becomes at what scale a model trained on text that contains the
pattern learns to do it in context, rather than whether it meets the format at all.
"""

from __future__ import annotations

import numpy as np

LETTERS = "abcdefghijklmnopqrstuvwxyz"
MAX_PAIRS = 8
_RECALL_SALT = 0x5EC411  # decorrelates "is this row replaced" from the row's window offset


def words(rng: np.random.Generator, n: int, length: int) -> list[str]:
    """n distinct random lowercase words of `length` letters."""
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(list(LETTERS), length))
        if w not in out:
            out.append(w)
    return out


def _dict(rng: np.random.Generator, pairs: int, key_len: int, value_len: int) -> tuple[list, list, str]:
    """(keys, values, `d={'k1':'v1',...}`) of `pairs` fresh random pairs."""
    keys, values = words(rng, pairs, key_len), words(rng, pairs, value_len)
    return keys, values, "d={" + ",".join(f"'{k}':'{v}'" for k, v in zip(keys, values)) + "}"


def recall_line(rng: np.random.Generator, pairs: int, key_len: int = 2, value_len: int = 2) -> tuple[str, str]:
    """(context, answer): `d={'k1':'v1',...};d['kq']=='` and `vq`."""
    keys, values, literal = _dict(rng, pairs, key_len, value_len)
    q = int(rng.integers(pairs))
    return f"{literal};d['{keys[q]}']=='", values[q]


def training_line(rng: np.random.Generator, pairs: int, key_len: int = 2, value_len: int = 2) -> str:
    """A dict of `pairs` pairs read back at every key, in random order (multi-query recall, MQAR):
    `d={'k1':'v1','k2':'v2'};d['k2']=='v2';d['k1']=='v1'`. Its first query is the evaluation's
    format; the later ones give every line `pairs` answers to learn from rather than one."""
    keys, values, literal = _dict(rng, pairs, key_len, value_len)
    return literal + "".join(f";d['{keys[q]}']=='{values[q]}'" for q in rng.permutation(pairs))


def recall_window(row_hash: int, span: int) -> np.ndarray:
    """`span` bytes of training lines (1-8 pairs each, newline-separated) from a generator seeded by
    `row_hash`: uint8 [span]."""
    rng = np.random.default_rng(int(row_hash))
    text = ""
    while len(text) < span:
        text += training_line(rng, int(rng.integers(1, MAX_PAIRS + 1))) + "\n"
    return np.frombuffer(text[:span].encode("ascii"), dtype=np.uint8)


def mixed_rows(row_hash_fn, mix: float, idx: np.ndarray) -> np.ndarray:
    """Boolean [len(idx)]: which rows are recall windows, a fraction ≈ `mix` of rows; `row_hash_fn(salt,
    idx)` gives each row's uint64 hash under a salt."""
    u = (row_hash_fn(_RECALL_SALT, idx) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return u < mix


def apply_recall_mix(windows: np.ndarray, row_hash_fn, mix: float, idx: np.ndarray) -> np.ndarray:
    """`windows` (int32 [R, span]) with a fraction `mix` of its rows replaced by recall windows."""
    chosen = mixed_rows(row_hash_fn, mix, idx)
    return replace_rows(windows, chosen, lambda: row_hash_fn(_RECALL_SALT ^ 0xC0FFEE, idx), recall_window)


def replace_rows(windows: np.ndarray, chosen: np.ndarray, hashes, make_window) -> np.ndarray:
    """`windows` with each `chosen` row replaced by `make_window(its hash, span)`; `hashes()` gives the
    rows' uint64 hashes (computed only where a row is chosen). Shared by the recall and copy mixes."""
    if not chosen.any():
        return windows
    out, h = windows.copy(), hashes()
    for r in np.flatnonzero(chosen):
        out[r] = make_window(int(h[r]), windows.shape[1])
    return out
