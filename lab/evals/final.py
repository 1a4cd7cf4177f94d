"""What a finished run's weights are worth beyond their validation loss, measured on every run:
the loss with the weights quantized after training (int8 and int4 weight-only, see `lab.model.quant`,
and rounded to bfloat16), the bytes of the weights in each format, and the in-context recall
score (`lab.evals.icl`).

One jitted function computes all of it, so a run pays one extra compile, not four:

    val_loss_int8 / val_loss_int4 / val_loss_bf16   the fixed validation set, as `val_loss`
    weight_bytes_f32 / _bf16 / _int8 / _int4        every parameter; quantized formats count
                                                   codes + per-channel float32 scales, and keep
                                                   norms and position tables in float32
    icl_accuracy / icl_loss / icl_pairs             `lab.evals.icl` (absent where no prompt fits)
    copy_accuracy / copy_loss / copy_chance / ...   `lab.evals.induction` (byte-level decoders)

`lab eval RUN_DIR [--quant int8|int4] [--step S] [--json]` computes the same from a run's checkpoint.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from lab.evals.icl import RecallTask, build_windows, encoder_of, make_scorer
from lab.evals.induction import copy_scores
from lab.model.quant import QTensor, dequantize_unstacked, quantize
from lab.training.step import cached, eval_key, make_eval

FORMATS = ("int8", "int4", "bf16")


def _bf16(params):
    return jax.tree.map(lambda w: w.astype(jnp.bfloat16).astype(w.dtype), params)


def weight_bytes(params) -> dict:
    """Bytes of the whole parameter tree in float32, bfloat16, int8 and int4 (see module docstring)."""
    leaves = jax.tree.leaves(params)
    out = {
        "weight_bytes_f32": sum(math.prod(w.shape) * 4 for w in leaves),
        "weight_bytes_bf16": sum(math.prod(w.shape) * 2 for w in leaves),
    }
    is_q = lambda t: isinstance(t, QTensor)
    for bits in (8, 4):
        q = jax.eval_shape(lambda p: quantize(p, bits=bits), params)
        sizes = [(t.codes, t.scale) if is_q(t) else (t,) for t in jax.tree.leaves(q, is_leaf=is_q)]
        out[f"weight_bytes_int{bits}"] = sum(
            math.prod(a.shape) * np.dtype(a.dtype).itemsize for s in sizes for a in s
        )
    return out


def make_final_eval(graphdef, cfg, answer_len: int | None):
    """jit(params, val_NxBxT1, windows or None) -> {val_loss_<format>, and icl scores if windows}."""
    evaluate = make_eval(graphdef, cfg)
    score = make_scorer(graphdef, answer_len) if answer_len else None

    def final(params, val_NxBxT1, windows_CxMxT1):
        out = {
            f"val_loss_int{bits}": evaluate(dequantize_unstacked(quantize(params, bits=bits)), val_NxBxT1)
            for bits in (8, 4)
        }
        out["val_loss_bf16"] = evaluate(_bf16(params), val_NxBxT1)
        if windows_CxMxT1 is not None:
            correct_CxM, nll_CxM = jax.lax.map(lambda w: score(params, w), windows_CxMxT1)
            out["icl_accuracy"], out["icl_loss"] = correct_CxM.mean(), nll_CxM.mean()
        return out

    return jax.jit(final)


def icl_windows(cfg, corpus, task: RecallTask = RecallTask(), chunk: int = 16):
    """(windows [C, M, T+1] in chunks of M prompts, answer length, pairs), or (None, None, None)."""
    encode = encoder_of(corpus)
    built = build_windows(task, encode, cfg.model.seq_len) if encode else None
    if built is None:
        return None, None, None
    windows, answer_len, pairs = built
    m = math.gcd(len(windows), chunk)
    return windows.reshape(-1, m, windows.shape[1]), answer_len, pairs


def final_scores(graphdef, params, cfg, corpus, val_NxBxT1) -> dict:
    """Every figure of the module docstring for one set of trained weights. The prompts and the
    jitted function are built once per corpus and model shape in a process
    (`lab.training.step.cached`): a persistent study worker compiles them once for the cells of
    one shape."""
    windows, answer_len, pairs = cached(
        ("icl_windows", corpus.name, corpus.tokens_fingerprint, cfg.model.seq_len),
        lambda: icl_windows(cfg, corpus),
    )
    fn = cached(("final_eval", eval_key(cfg), answer_len), lambda: make_final_eval(graphdef, cfg, answer_len))
    out = {
        k: float(v) for k, v in fn(params, val_NxBxT1, None if windows is None else jnp.asarray(windows)).items()
    }
    if pairs:
        out["icl_pairs"] = pairs
    out.update(weight_bytes(params))
    out.update(copy_scores(graphdef, params, cfg, corpus))
    return out


def eval_run(run_dir, quant: str | None = None, step: int | None = None, log=None) -> dict:
    """`lab eval`: the float validation loss of a run's checkpoint at `step` (default: the newest
    intact one; `log` gets the line saying which) and, for `quant` (int8 | int4) or every format
    when None, the module docstring's figures."""
    from lab.data import load_corpus, val_batches
    from lab.evals.generate import restore_run

    cfg, graphdef, params, step, used = restore_run(run_dir, step, who="lab eval")
    corpus = load_corpus(cfg.data)
    val = jnp.asarray(
        val_batches(
            corpus.val, batch_size=cfg.train.batch_size, seq_len=cfg.model.seq_len, n_tokens=cfg.data.val_tokens
        )
    )
    out = {
        "run_dir": str(run_dir),
        "step": step,
        "val_loss": float(jax.jit(make_eval(graphdef, cfg))(params, val)),
    }
    scores = final_scores(graphdef, params, cfg, corpus, val)
    if quant:
        keep = {f"val_loss_{quant}", "weight_bytes_f32", f"weight_bytes_{quant}"}
        scores = {k: v for k, v in scores.items() if k in keep}
    out.update(scores)
    for fmt in FORMATS:
        if f"val_loss_{fmt}" in out:
            out[f"damage_{fmt}"] = out[f"val_loss_{fmt}"] / out["val_loss"] - 1
    if log is not None:
        print(used, file=log)
    return out


def format_eval(res: dict) -> str:
    lines = [
        f"{res['run_dir']} (step {res['step']}): val_loss {res['val_loss']:.4f} nats/token (float32 weights, "
        f"{res['weight_bytes_f32'] / 2**20:.2f} MiB)"
    ]
    for fmt in FORMATS:
        if f"val_loss_{fmt}" in res:
            lines.append(
                f"  {fmt:<5} val_loss {res[f'val_loss_{fmt}']:.4f} ({100 * res[f'damage_{fmt}']:+.2f}%), "
                f"weights {res[f'weight_bytes_{fmt}'] / 2**20:.2f} MiB "
                f"({res[f'weight_bytes_{fmt}'] / res['weight_bytes_f32']:.3f}× float32)"
            )
    if "icl_accuracy" in res:
        lines.append(
            f"  in-context recall ({res['icl_pairs']} pairs): accuracy {res['icl_accuracy']:.3f}, "
            f"answer loss {res['icl_loss']:.3f}"
        )
    return "\n".join(lines)
