"""Training objectives: next-token prediction (decoder), masked language modelling (encoder) and
sequence-to-sequence continuation (encoder-decoder).

All are `loss_fn(params, batch_BxT1, key) -> (total, cross_entropy)` in nats per predicted
token. The key only matters for MLM, where it draws the masked positions; the training step
derives it from (seed, step), so masks too are a pure function of the step.

Seq2seq (`arch="encdec"`) on the same windows of seq_len + 1 tokens x[0..T], with S = T // 2:
the encoder reads the source x[0:S]; the decoder reads x[S:T] with teacher forcing and predicts
x[S+1:T+1] — it continues the text the encoder has read, its first input being the token right
after the source. The loss averages over those T - S predicted tokens; the model reads T tokens
per window (S encoder + T - S decoder), which is what `lab.costs` counts as trained tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def cross_entropy(logits_BxTxV, targets_BxT, weights_BxT=None, z_loss: float = 0.0):
    """Mean cross-entropy in nats (float32) over weighted positions, plus optional z-loss."""
    logz_BxT = jax.nn.logsumexp(logits_BxTxV, axis=-1)
    target_logit_BxT = jnp.take_along_axis(logits_BxTxV, targets_BxT[..., None], axis=-1)[..., 0]
    nll_BxT = logz_BxT - target_logit_BxT
    if weights_BxT is None:
        weights_BxT = jnp.ones_like(nll_BxT)
    denom = jnp.maximum(weights_BxT.sum(), 1.0)
    loss = (nll_BxT * weights_BxT).sum() / denom
    total = loss + z_loss * ((logz_BxT**2) * weights_BxT).sum() / denom if z_loss else loss
    return total, loss


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


def make_loss_fn(graphdef, model_cfg, z_loss: float = 0.0, mlm_prob: float = 0.15):
    if model_cfg.arch == "encoder":
        mask_id = model_cfg.vocab_size - 1  # the last id is reserved for [MASK]

        def mlm_loss(params, batch_BxT1, key):
            tokens_BxT = batch_BxT1[:, :-1]
            inputs_BxT, weights_BxT = mlm_corrupt(tokens_BxT, key, mlm_prob, mask_id, n_real=mask_id)
            logits_BxTxV = nnx.merge(graphdef, params)(inputs_BxT)
            return cross_entropy(logits_BxTxV, tokens_BxT, weights_BxT, z_loss)

        return mlm_loss

    if model_cfg.arch == "encdec":
        S = model_cfg.seq_len // 2

        def seq2seq_loss(params, batch_BxT1, key):
            logits_BxTxV = nnx.merge(graphdef, params)(batch_BxT1[:, S:-1], source_BxS=batch_BxT1[:, :S])
            return cross_entropy(logits_BxTxV, batch_BxT1[:, S + 1:], z_loss=z_loss)

        return seq2seq_loss

    def next_token_loss(params, batch_BxT1, key):
        logits_BxTxV = nnx.merge(graphdef, params)(batch_BxT1[:, :-1])
        return cross_entropy(logits_BxTxV, batch_BxT1[:, 1:], z_loss=z_loss)

    return next_token_loss
