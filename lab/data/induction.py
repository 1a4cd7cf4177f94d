"""The in-context copy (induction) task family: a random string, then its copy (numpy only: the data
pipeline imports it, as it imports `lab.data.recall`).

A line writes a random string S, `distractors` other random strings of the same length, 0 to `gap`
filler dots (drawn per line), a colon, and S again:

    qzkbtwam|hfoeluxc|....:qzkbtwam

The strings are fresh in every line, so only copying S from earlier in the line predicts the copy:
the induction behaviour of Olsson et al. 2022 (find the earlier occurrence of the current token and
repeat what followed it). Its difficulty is a dial, `CopyTask`:

- `length`: letters in S (exact match of a longer span needs every letter right);
- `alphabet`: how many symbols S is drawn from (the first `alphabet` of `SYMBOLS`): a small one repeats
  letters inside S and across distractors, so matching one letter back is ambiguous;
- `gap`: the most filler between the strings and the copy, its length uniform in [0, gap] per line:
  the distance attention must reach, and with gap > 0 no fixed offset finds S (a model must match
  content, the induction circuit, rather than copy from a fixed distance back);
- `distractors`: other strings in the line, drawn from the same alphabet, that must not be copied.

`data.copy_mix=f` replaces a fraction f of training rows (a pure function of seed, step and row, like
every batch and like `data.recall_mix`) by windows of such lines at the configured difficulty, drawn from
a generator seeded by the row's hash. The evaluation (`lab.evals.induction`) draws its prompts from its own
seed. Exact-match chance is alphabet**-length: without copying, every letter of S is a uniform guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lab.data.recall import replace_rows

SYMBOLS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
MAX_ALPHABET = len(SYMBOLS)
_COPY_SALT = 0xC0B1ED  # decorrelates "is this row a copy window" from the row's offset and the recall mix


@dataclass(frozen=True)
class CopyTask:
    """One difficulty of the family (see the module docstring)."""

    length: int = 8
    alphabet: int = 26
    gap: int = 0
    distractors: int = 0

    def __post_init__(self):
        if not (
            self.length >= 1 and 2 <= self.alphabet <= MAX_ALPHABET and self.gap >= 0 and self.distractors >= 0
        ):
            raise ValueError(
                f"bad copy task {self}: length >= 1, 2 <= alphabet <= {MAX_ALPHABET}, gap, distractors >= 0"
            )

    @property
    def chance(self) -> float:
        """Exact-match accuracy of a uniform guess of every letter."""
        return float(self.alphabet) ** -self.length

    @property
    def line_len(self) -> int:
        """Bytes of the longest line with its newline: strings, separators, filler, colon, copy."""
        return (self.distractors + 2) * (self.length + 1) + self.gap + 1

    def context_answer(self, rng: np.random.Generator) -> tuple[str, str]:
        """(`S|D1|...|Dk|....:`, `S`) of one fresh line."""
        letters = np.array(list(SYMBOLS[: self.alphabet]))
        strings = ["".join(rng.choice(letters, self.length)) for _ in range(self.distractors + 1)]
        filler = "." * int(rng.integers(self.gap + 1)) if self.gap else ""
        return "|".join(strings) + "|" + filler + ":", strings[0]


def task_of(data_cfg) -> CopyTask:
    """The difficulty a DataConfig trains at (`data.copy_len`, `copy_alphabet`, `copy_gap`, `copy_distractors`)."""
    return CopyTask(data_cfg.copy_len, data_cfg.copy_alphabet, data_cfg.copy_gap, data_cfg.copy_distractors)


def lines(rng: np.random.Generator, task: CopyTask, n_bytes: int) -> str:
    """Whole newline-ended lines, at least `n_bytes` of them."""
    text = ""
    while len(text) < n_bytes:
        ctx, ans = task.context_answer(rng)
        text += ctx + ans + "\n"
    return text


def copy_window(row_hash: int, span: int, task: CopyTask) -> np.ndarray:
    """`span` bytes of copy lines from a generator seeded by `row_hash`: uint8 [span]."""
    text = lines(np.random.default_rng(int(row_hash)), task, span)
    return np.frombuffer(text[:span].encode("ascii"), dtype=np.uint8)


def copy_rows(row_hash_fn, mix: float, idx: np.ndarray) -> np.ndarray:
    """Boolean [len(idx)]: which rows are copy windows, a fraction ≈ `mix`."""
    u = (row_hash_fn(_COPY_SALT, idx) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return u < mix


def apply_copy_mix(windows: np.ndarray, row_hash_fn, mix: float, idx: np.ndarray, task: CopyTask) -> np.ndarray:
    """`windows` (int32 [R, span]) with a fraction `mix` of its rows replaced by copy windows;
    `row_hash_fn(salt, idx)` gives each row's uint64 hash under a salt."""
    chosen = copy_rows(row_hash_fn, mix, idx)
    return replace_rows(
        windows,
        chosen,
        lambda: row_hash_fn(_COPY_SALT ^ 0xFACADE, idx),
        lambda h, span: copy_window(h, span, task),
    )
