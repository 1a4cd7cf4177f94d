"""An in-context ability measured on every run: associative recall from a prompt.

Each prompt is a line of Python that builds a dict of random two-letter keys and values and
then reads one key back — `d={'qk':'mb','ze':'tw'};d['ze']=='` — and the model must continue it
with that key's value (`tw`). Keys and values are drawn from a seed, so nothing learnable
outside the prompt predicts the answer: a model scores above chance (1/676 for two letters)
only by finding the key in its context and copying what follows it, the induction-head
behaviour that appears with scale (Olsson et al. 2022). The format is what a model trained on
source code has seen (`lab.data.recall`, which `data.recall_mix` also mixes into training).

Scored teacher-forced, one forward pass per prompt batch: `icl_accuracy` is the fraction of
prompts whose every answer token is the model's argmax; `icl_loss` the mean cross-entropy of
the answer tokens (nats/token). Each prompt fills a window of seq_len + 1 tokens, left-padded
with newlines, so the answer ends where the window ends and every architecture reads it as it
reads training windows: the decoder predicts the answer tokens; the encoder (masked LM) sees
them as [MASK] and restores them; the encoder-decoder reads the first half of the window as
its source and predicts them in the second. The number of pairs shrinks to what fits the
window (`icl_pairs`); corpora of abstract symbols (synthetic Markov data) have no text to put a
prompt in, and their runs record no score.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lab.data.recall import LETTERS, recall_line


@dataclass(frozen=True)
class RecallTask:
    pairs: int = 8  # key → value pairs in the prompt (fewer if the window is short)
    key_len: int = 2
    value_len: int = 2
    prompts: int = 64
    seed: int = 20241201

    @property
    def chance(self) -> float:
        return float(len(LETTERS)) ** -self.value_len


def prompt_texts(task: RecallTask, pairs: int) -> list[tuple[str, str]]:
    """(context, answer) of each prompt, with `pairs` pairs; the same for every run."""
    rng = np.random.default_rng(task.seed)
    return [recall_line(rng, pairs, task.key_len, task.value_len) for _ in range(task.prompts)]


def encoder_of(corpus):
    """text -> token ids under the corpus's tokenizer; None for symbol corpora."""
    if corpus.tokenizer == "byte":
        return lambda text: list(text.encode("utf-8"))
    if corpus.tokenizer.startswith("bpe"):
        from lab.data import tokenizer

        tok = tokenizer.load_bpe(corpus.tokenizer_path)
        return lambda text: [int(i) for i in tokenizer.encode_bpe(tok, [text])]
    return None


def build_windows(task: RecallTask, encode, seq_len: int):
    """(windows [N, seq_len + 1] int32, answer_len, pairs) for the most pairs that fit, or None."""
    pad = encode("\n")[:1]
    for pairs in range(task.pairs, 0, -1):
        rows = [(encode(ctx), encode(ans)) for ctx, ans in prompt_texts(task, pairs)]
        if any(len(a) != len(rows[0][1]) for _, a in rows):  # BPE: answers of unequal length
            rows = [(c, a[: min(len(a) for _, a in rows)]) for c, a in rows]
        longest = max(len(c) + len(a) for c, a in rows)
        if longest <= seq_len + 1 and len(rows[0][1]) < seq_len // 2:
            windows = [pad * (seq_len + 1 - len(c) - len(a)) + c + a for c, a in rows]
            return np.asarray(windows, np.int32), len(rows[0][1]), pairs
    return None


def _logits_and_targets(model, windows_NxT1, answer_len: int):
    """Logits and targets of the last `answer_len` predictions, as the architecture reads a window."""
    cfg = model.cfg
    if cfg.arch == "encoder":
        tokens_NxT = windows_NxT1[:, 1:]  # the answer ends the window
        T = tokens_NxT.shape[1]
        is_answer_T = jnp.arange(T) >= T - answer_len
        inputs_NxT = jnp.where(is_answer_T[None], cfg.vocab_size - 1, tokens_NxT)
        return model(inputs_NxT)[:, -answer_len:], tokens_NxT[:, -answer_len:]
    if cfg.arch == "encdec":
        S = cfg.seq_len // 2
        logits = model(windows_NxT1[:, S:-1], source_BxS=windows_NxT1[:, :S])
    else:
        logits = model(windows_NxT1[:, :-1])
    return logits[:, -answer_len:], windows_NxT1[:, -answer_len:]


def score_logits(logits_NxAxV, targets_NxA):
    """(every answer token is the argmax [N] bool, mean answer cross-entropy [N] in nats)."""
    logits_NxAxV = logits_NxAxV.astype(jnp.float32)
    target_NxA = jnp.take_along_axis(logits_NxAxV, targets_NxA[..., None], -1)[..., 0]
    nll_NxA = jax.nn.logsumexp(logits_NxAxV, -1) - target_NxA
    return (logits_NxAxV.argmax(-1) == targets_NxA).all(-1), nll_NxA.mean(-1)


def make_scorer(graphdef, answer_len: int):
    """jit(params, windows) -> score_logits of the model's answer predictions."""

    def score(params, windows_NxT1):
        model = nnx.merge(graphdef, params)
        return score_logits(*_logits_and_targets(model, windows_NxT1, answer_len))

    return jax.jit(score)


def evaluate_icl(graphdef, params, model_cfg, corpus, task: RecallTask = RecallTask(), chunk: int = 16) -> dict:
    """{"icl_accuracy", "icl_loss", "icl_pairs"} of the model on the recall prompts; {} where no
    prompt fits the window or the corpus has no text."""
    encode = encoder_of(corpus)
    built = build_windows(task, encode, model_cfg.seq_len) if encode else None
    if built is None:
        return {}
    windows, answer_len, pairs = built
    scorer = make_scorer(graphdef, answer_len)
    correct, nll = [], []
    for start in range(0, len(windows), chunk):
        c, n = scorer(params, jnp.asarray(windows[start : start + chunk]))
        correct.append(np.asarray(c))
        nll.append(np.asarray(n))
    return {
        "icl_accuracy": float(np.concatenate(correct).mean()),
        "icl_loss": float(np.concatenate(nll).mean()),
        "icl_pairs": pairs,
    }
