"""Training objectives: next-token prediction (decoder), masked language modelling (encoder) and
sequence-to-sequence continuation (encoder-decoder).

All are `loss_fn(params, batch_BxT1, key) -> (total, cross_entropy)` in nats per predicted
token. The key only matters for MLM, where it draws the masked positions; the training step
derives it from (seed, step), so masks too are a pure function of the step.

Each is built from an `Objective`: `prepare(batch_BxT1, key) -> (example, denom)` turns a whole
batch into the model's inputs, targets and weights (every array batch-major; MLM masks drawn for
the whole batch) and the number of predicted tokens; `sums(params, example)` gives the weighted
sums of (objective, cross-entropy) over any subset of the example's rows. Gradient accumulation
(`lab.training.step`) sums `sums / denom` over micro-batches: token-weighted, so the result is the
full-batch mean even when micro-batches predict different numbers of tokens (MLM masks).

Seq2seq (`arch="encdec"`) on the same windows of seq_len + 1 tokens x[0..T], with S = T // 2:
the encoder reads the source x[0:S]; the decoder reads x[S:T] with teacher forcing and predicts
x[S+1:T+1] — it continues the text the encoder has read, its first input being the token right
after the source. The loss averages over those T - S predicted tokens; the model reads T tokens
per window (S encoder + T - S decoder), which is what `lab.costs` counts as trained tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


def cross_entropy_sums(logits_BxTxV, targets_BxT, weights_BxT=None, z_loss: float = 0.0):
    """(objective, cross-entropy) summed in float32 over weighted positions (z-loss included).

    The target's logit is picked with a one-hot product rather than a gather: its gradient is
    then an elementwise product, not a scatter into a [B, T, V] zero tensor."""
    logits_BxTxV = logits_BxTxV.astype(jnp.float32)
    logz_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
    onehot_BxTxV = jax.nn.one_hot(targets_BxT, logits_BxTxV.shape[-1], dtype=jnp.float32)
    target_logit_BxT = (logits_BxTxV * onehot_BxTxV).sum(-1)
    nll_BxT = logz_BxT - target_logit_BxT
    if weights_BxT is None:
        nll = nll_BxT.sum()
        return (nll + z_loss * (logz_BxT**2).sum() if z_loss else nll), nll
    nll = (nll_BxT * weights_BxT).sum()
    return (nll + z_loss * ((logz_BxT**2) * weights_BxT).sum() if z_loss else nll), nll


def cross_entropy(logits_BxTxV, targets_BxT, weights_BxT=None, z_loss: float = 0.0):
    """Mean cross-entropy in nats (float32) over weighted positions, plus optional z-loss."""
    total, nll = cross_entropy_sums(logits_BxTxV, targets_BxT, weights_BxT, z_loss)
    denom = jnp.maximum(weights_BxT.sum(), 1.0) if weights_BxT is not None else float(targets_BxT.size)
    return total / denom, nll / denom


def mlm_corrupt(tokens_BxT, key, prob: float, mask_id: int, n_real: int):
    """BERT's corruption: choose `prob` of positions; of those 80% -> [MASK], 10% -> a random
    token, 10% unchanged. Returns (inputs, weights marking the chosen positions)."""
    k_pick, k_kind, k_rand = jax.random.split(key, 3)
    chosen_BxT = jax.random.uniform(k_pick, tokens_BxT.shape) < prob
    kind_BxT = jax.random.uniform(k_kind, tokens_BxT.shape)
    random_BxT = jax.random.randint(k_rand, tokens_BxT.shape, 0, n_real, dtype=tokens_BxT.dtype)
    inputs = jnp.where(chosen_BxT & (kind_BxT < 0.8), mask_id, tokens_BxT)
    inputs = jnp.where(chosen_BxT & (kind_BxT >= 0.8) & (kind_BxT < 0.9), random_BxT, inputs)
    return inputs, chosen_BxT.astype(jnp.float32)


class Objective(NamedTuple):
    """`prepare(batch_BxT1, key) -> (example, denom)`; `sums(params, example) -> (objective, ce)`
    summed over the example's rows (see the module docstring)."""

    prepare: Callable
    sums: Callable


def make_objective(graphdef, model_cfg, z_loss: float = 0.0, mlm_prob: float = 0.15) -> Objective:
    if model_cfg.arch == "encoder":
        mask_id = model_cfg.vocab_size - 1  # the last id is reserved for [MASK]

        def prepare_mlm(batch_BxT1, key):
            tokens_BxT = batch_BxT1[:, :-1]
            inputs_BxT, weights_BxT = mlm_corrupt(tokens_BxT, key, mlm_prob, mask_id, n_real=mask_id)
            example = {"inputs": inputs_BxT, "targets": tokens_BxT, "weights": weights_BxT}
            return example, jnp.maximum(weights_BxT.sum(), 1.0)

        def mlm_sums(params, ex):
            logits_BxTxV = nnx.merge(graphdef, params)(ex["inputs"])
            return cross_entropy_sums(logits_BxTxV, ex["targets"], ex["weights"], z_loss)

        return Objective(prepare_mlm, mlm_sums)

    if model_cfg.arch == "encdec":
        S = model_cfg.seq_len // 2

        def prepare_seq2seq(batch_BxT1, key):
            example = {
                "source": batch_BxT1[:, :S],
                "inputs": batch_BxT1[:, S:-1],
                "targets": batch_BxT1[:, S + 1 :],
            }
            return example, float(example["targets"].size)

        def seq2seq_sums(params, ex):
            logits_BxTxV = nnx.merge(graphdef, params)(ex["inputs"], source_BxS=ex["source"])
            return cross_entropy_sums(logits_BxTxV, ex["targets"], z_loss=z_loss)

        return Objective(prepare_seq2seq, seq2seq_sums)

    def prepare_next_token(batch_BxT1, key):
        example = {"inputs": batch_BxT1[:, :-1], "targets": batch_BxT1[:, 1:]}
        return example, float(example["targets"].size)

    def next_token_sums(params, ex):
        logits_BxTxV = nnx.merge(graphdef, params)(ex["inputs"])
        return cross_entropy_sums(logits_BxTxV, ex["targets"], z_loss=z_loss)

    return Objective(prepare_next_token, next_token_sums)


def make_loss_fn(graphdef, model_cfg, z_loss: float = 0.0, mlm_prob: float = 0.15):
    """`loss_fn(params, batch_BxT1, key) -> (total, cross_entropy)`, means over predicted tokens."""
    objective = make_objective(graphdef, model_cfg, z_loss, mlm_prob)

    def loss_fn(params, batch_BxT1, key):
        example, denom = objective.prepare(batch_BxT1, key)
        total, nll = objective.sums(params, example)
        return total / denom, nll / denom

    return loss_fn
