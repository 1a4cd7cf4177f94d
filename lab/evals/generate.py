"""Text generation with a KV cache: prefill the prompt, then decode one token per step.

The cache is stacked over the decoder's layers, ([L, B, C, K, E] keys, the same for values), and
carried through the layer scan. Slots: without a window, C = prompt + new tokens, slot = position.
With a window W and g global tokens (when g + W is fewer), C = g + W: a global token keeps its own
slot, and position p >= g lives in ring slot g + (p - g) mod W, overwriting p - W, which no later
query can see. A call with T new tokens attends over the C slots as they were (each slot's
position derived from the write index; unwritten slots masked) plus its own T keys, under the
model's causal / window / global-token rule, then writes the new keys (of those sharing a ring
slot, the last). Prefill and the `lax.scan` over new tokens are one jitted program. For encdec the
source is encoded once and every layer's cross-attention keys/values are computed once.

    new_BxN = generate(graphdef, model_cfg, params, prompt_BxP, 32, jax.random.key(0), temperature=0.8, top_k=40)

`unpack` maps the stored params to float params inside the jitted program (e.g.
`lab.model.quant.dequantize_unstacked`: the layers dequantize their own weights inside the
layer scan). `lab sample RUN_DIR` is the command-line front end.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from lab.config import ConfigError
from lab.model.attention import attention_mask
from lab.model.transformer import scan_layers


def cache_layout(cfg, slots: int) -> tuple[int, int]:
    """(global slots, ring slots) of a cache with `slots` slots: (g, W) for a windowed model whose
    g + W slots are fewer than the sequence, else (0, slots) — a ring as long as the sequence."""
    W, g = cfg.attn_window, cfg.attn_global_tokens
    return (g, W) if W and slots >= g + W else (0, slots)


def init_cache(cfg, batch: int, length: int) -> tuple:
    """Zeroed keys and values [L, B, C, K, E] in the compute dtype for `length` positions."""
    W, g = cfg.attn_window, cfg.attn_global_tokens
    slots = g + W if W and g + W < length else length
    n_layers = cfg.dec_layers if cfg.arch == "encdec" else cfg.n_layers
    shape = (n_layers, batch, slots, cfg.kv_heads, cfg.head_dim)
    return jnp.zeros(shape, cfg.dtype), jnp.zeros(shape, cfg.dtype)


def slot_positions(index, n_global: int, ring: int):
    """[C]: the position each slot holds once positions < `index` are written (-1: none)."""
    slot_C = jnp.arange(n_global + ring)
    behind_C = index - 1 - slot_C  # ring slot r = slot - g last held g + r + ring·k <= index - 1
    ring_C = slot_C + ring * jnp.floor_divide(behind_C, ring)
    return jnp.where(
        slot_C < n_global, jnp.where(slot_C < index, slot_C, -1), jnp.where(behind_C >= 0, ring_C, -1)
    )


def write_slots(index_T, n_global: int, ring: int):
    """[T]: the slot each new position is written to; n_global + ring (dropped) for a position
    that a later one of the same call overwrites."""
    slot_T = jnp.where(index_T < n_global, index_T, n_global + (index_T - n_global) % ring)
    kept_T = (index_T < n_global) | (index_T > index_T[-1] - ring)
    return jnp.where(kept_T, slot_T, n_global + ring)


def cached_forward(model, tokens_BxT, index, cache, cross_kv=None):
    """Logits [B, T, V] of T new tokens at positions index .. index+T-1 (every earlier position
    already in the cache), and the updated cache."""
    cfg = model.cfg
    k_LxBxCxKxE, v_LxBxCxKxE = cache
    n_global, ring = cache_layout(cfg, k_LxBxCxKxE.shape[2])
    index_T = index + jnp.arange(tokens_BxT.shape[1])
    positions_T = index_T + (model.target_start if cfg.arch == "encdec" else 0)
    key_pos_S = jnp.concatenate([slot_positions(index, n_global, ring), index_T])  # S = C + T
    mask_TxS = (
        attention_mask(
            index_T, key_pos_S, causal=True, window=cfg.attn_window, global_tokens=cfg.attn_global_tokens
        )
        & (key_pos_S >= 0)[None, :]
    )

    def layer(block, x_BxTxD, xs):
        k_BxCxKxE, v_BxCxKxE, cross_kv_l = xs
        return block(x_BxTxD, positions_T, cache=(k_BxCxKxE, v_BxCxKxE, mask_TxS), cross_kv=cross_kv_l)

    x_BxTxD = model.embed_tokens(tokens_BxT, positions_T)
    x_BxTxD, (k_LxBxTxKxE, v_LxBxTxKxE) = scan_layers(
        model.blocks, x_BxTxD, layer, xs=(k_LxBxCxKxE, v_LxBxCxKxE, cross_kv)
    )
    slot_T = write_slots(index_T, n_global, ring)
    write = lambda c, new: c.at[:, :, slot_T].set(new.astype(c.dtype), mode="drop")
    return model.logits(x_BxTxD), (write(k_LxBxCxKxE, k_LxBxTxKxE), write(v_LxBxCxKxE, v_LxBxTxKxE))


def sample_logits(logits_BxV, key, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0):
    """Greedy (temperature 0) or a draw from softmax(logits / temperature) over the top k, then
    over the nucleus: the most likely tokens whose probabilities, taken in descending order, first
    reach `top_p` (the token that crosses it included; the most likely token always kept)."""
    if temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits_BxV = logits_BxV / temperature
    if top_k:
        kth_Bx1 = jax.lax.top_k(logits_BxV, top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_Bx1, -jnp.inf, logits_BxV)
    if top_p < 1.0:
        sorted_BxV = -jnp.sort(-logits_BxV, axis=-1)
        p_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        before_BxV = jnp.cumsum(p_BxV, axis=-1) - p_BxV  # mass of the more likely tokens
        floor_Bx1 = jnp.min(jnp.where(before_BxV < top_p, sorted_BxV, jnp.inf), axis=-1, keepdims=True)
        logits_BxV = jnp.where(logits_BxV < floor_Bx1, -jnp.inf, logits_BxV)
    return jax.random.categorical(key, logits_BxV, axis=-1).astype(jnp.int32)


def max_new_tokens(cfg, prompt_len: int) -> int:
    """Tokens that fit after a prompt in the trained context (the decoder's half for encdec)."""
    context = cfg.seq_len - cfg.seq_len // 2 if cfg.arch == "encdec" else cfg.seq_len
    return context - prompt_len


def generate(
    graphdef,
    model_cfg,
    params,
    prompt_BxP,
    n_new: int,
    key,
    *,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    source_BxS=None,
    unpack=None,
):
    """`n_new` tokens [B, n_new] continuing `prompt_BxP` (for encdec: the decoder's prefix, given
    the encoder's `source_BxS` of at most seq_len // 2 tokens). Token i is drawn with
    fold_in(key, i), so a seed fixes the sample."""
    cfg, P = model_cfg, prompt_BxP.shape[1]
    if cfg.arch == "encoder":
        raise ConfigError("an encoder (masked LM) does not generate text: use a decoder or encdec model")
    if n_new < 1 or P < 1:
        raise ConfigError("generation needs a prompt of at least one token and at least one new token")
    if n_new > max_new_tokens(cfg, P):
        raise ConfigError(
            f"a prompt of {P} tokens + {n_new} new ones exceeds the model's trained context "
            f"({max_new_tokens(cfg, 0)} decoder positions)"
        )
    if not (0 <= temperature < math.inf and 0 <= top_k <= cfg.vocab_size and 0 < top_p <= 1):
        raise ConfigError(
            f"temperature must be a finite number >= 0, top-k in [0, {cfg.vocab_size}] and top-p in (0, 1]"
        )
    if (cfg.arch == "encdec") != (source_BxS is not None):
        raise ConfigError("an encdec model generates from a source and a decoder prefix; a decoder from a prompt")
    if source_BxS is not None and not 1 <= source_BxS.shape[1] <= cfg.seq_len // 2:
        raise ConfigError(f"the source must have 1 to {cfg.seq_len // 2} tokens, got {source_BxS.shape[1]}")
    fn = _compiled(graphdef, n_new, float(temperature), int(top_k), float(top_p), unpack or _identity)
    source_BxS = None if source_BxS is None else jnp.asarray(source_BxS, jnp.int32)
    return fn(params, jnp.asarray(prompt_BxP, jnp.int32), source_BxS, key)


def _identity(params):
    return params


@functools.lru_cache(maxsize=32)
def _compiled(graphdef, n_new: int, temperature: float, top_k: int, top_p: float, unpack):
    def run(params, prompt_BxP, source_BxS, key):
        model = nnx.merge(graphdef, unpack(params))
        B, P = prompt_BxP.shape
        cache = init_cache(model.cfg, B, P + n_new)
        cross_kv = None if source_BxS is None else model.cross_kv(model.encode(source_BxS))
        logits_BxPxV, cache = cached_forward(model, prompt_BxP, 0, cache, cross_kv)
        first_B = sample_logits(logits_BxPxV[:, -1], jax.random.fold_in(key, 0), temperature, top_k, top_p)

        def step(carry, i):
            token_B, cache = carry
            logits_Bx1xV, cache = cached_forward(model, token_B[:, None], P + i - 1, cache, cross_kv)
            next_B = sample_logits(logits_Bx1xV[:, 0], jax.random.fold_in(key, i), temperature, top_k, top_p)
            return (next_B, cache), next_B

        _, rest_NxB = jax.lax.scan(step, (first_B, cache), jnp.arange(1, n_new))
        return jnp.concatenate([first_B[:, None], rest_NxB.T], axis=1)

    return jax.jit(run)


# ----------------------------------------------------------------------------- lab sample


def load_run(run_dir, step: int | None = None):
    """(RunConfig, graphdef, params) of a run directory's checkpoint at `step` (default: the
    newest intact one); see `restore_run`."""
    return restore_run(run_dir, step)[:3]


def restore_run(run_dir, step: int | None = None, who: str = "lab"):
    """(RunConfig, graphdef, params, step, line) from a run directory's checkpoint, read-only:
    nothing in the run directory changes, a damaged checkpoint included.

    `step` None: the newest checkpoint that restores intact; a damaged newer one is named in
    `line`. A given `step` must exist (else one line naming the steps there are) and be intact
    (else one line; no other step is used in its place). `line`: which step was used, for the
    caller to print (on stderr) once its command succeeded."""
    from lab import sharding
    from lab.rundir import RunDir
    from lab.training.checkpoint import abstract_like, restore_read_only
    from lab.training.optimizer import make_optimizer
    from lab.training.state import abstract_model, state_shardings

    run = RunDir(run_dir)
    cfg = run.load_config()
    if cfg is None:
        raise ConfigError(f"{run_dir} is not a run directory (no readable config.json)")
    if not run.checkpoints.is_dir():
        raise ConfigError(f"{run_dir} has no checkpoints")
    graphdef = abstract_model(cfg)[0]
    tx, _ = make_optimizer(cfg)
    param_sh, opt_sh, abstract = state_shardings(cfg, sharding.make_mesh(""), tx)  # what train saves, on 1 device
    abstract = abstract_like(abstract, (param_sh, opt_sh))
    s, state, _, damaged = restore_read_only(run.checkpoints, abstract, step, what=str(run_dir))
    note = f"; newer checkpoint damaged, left in place: {', '.join(damaged)}" if damaged else ""
    return cfg, graphdef, state[0], s, f"{who}: {run_dir} at step {s}{note}"


def encode_text(corpus, text: str) -> np.ndarray:
    """Token ids of `text` under the corpus's tokenizer."""
    from lab.data import tokenizer

    if corpus.tokenizer.startswith("bpe"):
        return tokenizer.encode_bpe(tokenizer.load_bpe(corpus.tokenizer_path), [text]).astype(np.int32)
    if corpus.tokenizer == "symbols":
        try:
            return np.array([int(s) for s in text.split()], np.int32)
        except ValueError:
            raise ConfigError(
                "this corpus's tokens are symbols: give the prompt as integers, e.g. '3 1 4'"
            ) from None
    return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)


def sample(
    run_dir,
    *,
    prompt: str | None = None,
    tokens: int | None = None,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    num_samples: int = 1,
    seed: int = 0,
    quant: str | None = None,
    step: int | None = None,
    log=None,
) -> list[str]:
    """`lab sample`: `num_samples` texts, each the prompt (default: the start of the validation
    split) and a continuation by the run's checkpoint at `step` (default: the newest intact one;
    `log` gets the line saying which), drawn together as one batch. `quant`: None, "int8" or
    "int4" (weight-only)."""
    from lab.data import load_corpus

    if num_samples < 1:
        raise ConfigError(f"--num-samples must be at least 1, got {num_samples}")
    cfg, graphdef, params, _, used = restore_run(run_dir, step, who="lab sample")
    m = cfg.model
    if m.arch == "encoder":
        raise ConfigError(f"{run_dir} is an encoder (masked LM) and does not generate text")
    corpus = load_corpus(cfg.data)
    default_len = m.seq_len // 2 + (1 if m.arch == "encdec" else 0)
    ids = encode_text(corpus, prompt) if prompt is not None else np.asarray(corpus.val[:default_len], np.int32)
    source, prompt_1xP = _split_prompt(m, ids)
    room = max_new_tokens(m, 1)  # the most new tokens after a one-token prompt
    n_new = tokens if tokens is not None else max(max_new_tokens(m, prompt_1xP.shape[1]), room // 2)
    if not 1 <= n_new <= room:
        raise ConfigError(f"--tokens must lie in [1, {room}] for this model's context")
    prompt_1xP = prompt_1xP[
        :, prompt_1xP.shape[1] - min(prompt_1xP.shape[1], room + 1 - n_new) :
    ]  # the end that fits
    unpack = None
    if quant:
        from lab.model.quant import dequantize_unstacked, quantize

        params, unpack = quantize(params, bits=int(quant[3:])), dequantize_unstacked
    rows = lambda x: None if x is None else np.repeat(x, num_samples, axis=0)
    new_KxN = generate(
        graphdef,
        m,
        params,
        rows(prompt_1xP),
        n_new,
        jax.random.key(seed),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        source_BxS=rows(source),
        unpack=unpack,
    )
    texts = [corpus.decode(ids) + corpus.decode(np.asarray(row)) for row in new_KxN]
    if log is not None:
        print(used, file=log)
    return texts


def _split_prompt(m, ids: np.ndarray):
    """(encoder source or None, decoder prompt), each with a batch axis of 1. An encdec model's
    encoder reads all but the last token; its decoder starts from the last."""
    if len(ids) < (2 if m.arch == "encdec" else 1):
        raise ConfigError(
            "the prompt is empty" if len(ids) == 0 else "an encdec model needs a prompt of 2+ tokens"
        )
    if m.arch == "encdec":
        return ids[:-1][-(m.seq_len // 2) :][None], ids[-1:][None]
    return None, ids[None]
