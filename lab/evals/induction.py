"""The in-context copy evaluation, recorded on every decoder run on a byte-level text corpus: held-out
lines of `lab.data.induction` (`S|D1|...|Dk|....:` then S again) at the run's own difficulty
(`data.copy_len`, `copy_alphabet`, `copy_gap`, `copy_distractors`) and along a ladder of string lengths.

Each prompt fills a window of seq_len + 1 bytes that ends with the copy; before its line come earlier
copy lines of the same seed, cut at the window's start, as a training row of `data.copy_mix` reads.
Prompts are drawn from their own seed (`PROMPT_SEED`), so training never holds them. Recorded:

    copy_accuracy             exact match of the copied span, teacher-forced (every letter the argmax
                              given the true letters before it), at the run's difficulty
    copy_accuracy_greedy      exact match of the span the model writes greedily after the colon
    copy_char_accuracy        the fraction of copied letters that are the argmax, teacher-forced
    copy_loss                 mean cross-entropy of the copied letters (nats/byte): the task loss
    copy_chance               exact-match accuracy of a uniform guess, alphabet**-length
    copy_accuracy_len{n}      teacher-forced exact match with strings of n letters (LADDER; the other
                              dials as the run's), where a line fits the window
    copy_mix, copy_len, copy_alphabet, copy_gap, copy_distractors   the task the run trained on

Exact match under greedy decoding equals the teacher-forced one (a greedy span is right exactly when
every letter is the argmax after right letters); both are recorded, the greedy one as the check.
Corpora of symbols (synthetic Markov chains), BPE tokenizers and encoder or encoder-decoder models
record none: a byte-level decoder reads the lines as the task writes them.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils

from lab.data.induction import CopyTask, lines, task_of
from lab.training.step import cached

PROMPTS = 64
PROMPT_SEED = 20261205
LADDER = (2, 4, 8, 16, 32)


def prompt_window(rng: np.random.Generator, task: CopyTask, seq_len: int) -> np.ndarray:
    """One window of seq_len + 1 bytes ending with a copy line: uint8 [seq_len + 1]."""
    before = lines(rng, task, seq_len + 1)
    ctx, ans = task.context_answer(rng)
    text = (before + ctx + ans)[-(seq_len + 1) :]
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8)


def prompt_windows(task: CopyTask, seq_len: int, prompts: int = PROMPTS, seed: int = PROMPT_SEED):
    """int32 [prompts, seq_len + 1] windows whose last task.length bytes are the copy, or None when a line
    does not fit the window. The same for every run of a difficulty."""
    if task.line_len - 1 > seq_len + 1:
        return None
    rng = np.random.default_rng([seed, task.length, task.alphabet, task.gap, task.distractors])
    return np.stack([prompt_window(rng, task, seq_len) for _ in range(prompts)]).astype(np.int32)


def levels(task: CopyTask, seq_len: int) -> list[tuple[str, CopyTask]]:
    """(name, difficulty) of every level that fits: the run's own ("") and the length ladder."""
    out = [("", task)] + [(f"_len{n}", dataclasses.replace(task, length=n)) for n in LADDER]
    return [(name, t) for name, t in out if t.line_len - 1 <= seq_len + 1]


def _answer_mask(lengths: np.ndarray, seq_len: int) -> np.ndarray:
    """bool [N, seq_len]: the target positions (of windows[:, 1:]) that are the copy, per row."""
    return np.arange(seq_len)[None, :] >= seq_len - np.asarray(lengths)[:, None]


def score_tokens(logits_NxTxV, targets_NxT, mask_NxT):
    """(exact match [N], correct letters [N], mean cross-entropy [N]) over each row's masked targets."""
    logits_NxTxV = logits_NxTxV.astype(jnp.float32)
    target = jnp.take_along_axis(logits_NxTxV, targets_NxT[..., None], -1)[..., 0]
    nll_NxT = jax.nn.logsumexp(logits_NxTxV, -1) - target
    right_NxT = logits_NxTxV.argmax(-1) == targets_NxT
    n = mask_NxT.sum(-1)
    exact = jnp.all(right_NxT | ~mask_NxT, -1)
    return exact, (right_NxT & mask_NxT).sum(-1) / n, (nll_NxT * mask_NxT).sum(-1) / n


def greedy_span(model, windows_NxT1, length: int):
    """The last `length` bytes of each window rewritten by greedy decoding from the bytes before them:
    int32 [N, length]. One full forward pass per letter (causal: later bytes never reach earlier ones)."""
    T1 = windows_NxT1.shape[1]

    def body(j, w):
        pos = T1 - length + j
        logits = model(w[:, :-1])
        pred = jax.lax.dynamic_index_in_dim(logits, pos - 1, axis=1, keepdims=False).argmax(-1)
        return w.at[:, pos].set(pred.astype(w.dtype))

    return jax.lax.fori_loop(0, length, body, windows_NxT1)[:, -length:]


def make_copy_eval(graphdef, length: int):
    """jit(params, all windows, their answer mask, the run's windows) -> (exact, letters, loss) per row of
    all windows and the greedy exact match per row of the run's windows."""

    def run(params, windows_NxT1, mask_NxT, own_PxT1):
        model = nnx.merge(graphdef, params)
        scores = score_tokens(model(windows_NxT1[:, :-1]), windows_NxT1[:, 1:], mask_NxT)
        greedy = jnp.all(greedy_span(model, own_PxT1, length) == own_PxT1[:, -length:], -1)
        return scores, greedy

    return jax.jit(run)


def _host(a) -> np.ndarray:
    """A per-prompt result on this host: in a run over several processes the rows are spread across
    them (`process_allgather` gathers the whole array on each)."""
    return np.asarray(a if a.is_fully_addressable else multihost_utils.process_allgather(a, tiled=True))


def copy_scores(graphdef, params, cfg, corpus, prompts: int = PROMPTS) -> dict:
    """The module docstring's fields for one set of weights; {} where the run records none."""
    if cfg.model.arch != "decoder" or getattr(corpus, "tokenizer", "") != "byte":
        return {}
    task, T = task_of(cfg.data), cfg.model.seq_len
    fitting = levels(task, T)
    if not fitting:
        return {}
    windows = [prompt_windows(t, T, prompts) for _, t in fitting]
    lengths = np.repeat([t.length for _, t in fitting], prompts)
    all_w = np.concatenate(windows)
    own = windows[0] if fitting[0][0] == "" else None
    n = task.length if own is not None else 1
    fn = cached(("copy_eval", cfg.model, n), lambda: make_copy_eval(graphdef, n))  # once per shape in a worker
    (exact, letters, nll), greedy = fn(
        params,
        jnp.asarray(all_w),
        jnp.asarray(_answer_mask(lengths, T)),
        jnp.asarray(own if own is not None else all_w[:1]),
    )
    exact, letters, nll = (_host(a).reshape(len(fitting), prompts) for a in (exact, letters, nll))
    d = cfg.data
    out = {
        "copy_mix": d.copy_mix,
        "copy_len": d.copy_len,
        "copy_alphabet": d.copy_alphabet,
        "copy_gap": d.copy_gap,
        "copy_distractors": d.copy_distractors,
        "copy_chance": task.chance,
    }
    for i, (name, _) in enumerate(fitting):
        out[f"copy_accuracy{name}"] = float(exact[i].mean())
    if own is not None:
        out.update(
            copy_accuracy_greedy=float(_host(greedy).mean()),
            copy_char_accuracy=float(letters[0].mean()),
            copy_loss=float(nll[0].mean()),
        )
    return out
