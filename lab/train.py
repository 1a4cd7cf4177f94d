"""One training run: a jitted, donated, sharded step over batches that are a function of
(seed, step), periodic evaluation on a fixed validation set, and the run directory's files.

The step is pure: (params, opt_state, batch) -> (params, opt_state, metrics). Parameters are
an `nnx.State` split from the model once; the step merges them back inside the trace, so the
hot loop does no Python-side work beyond feeding the next batch.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from lab import sharding
from lab.config import ConfigError, RunConfig
from lab.costs import model_costs
from lab.data import Corpus, load_corpus, train_batch, val_batches
from lab.model import Transformer, cross_entropy
from lab.rundir import RunDir, git_sha
from lab.schedules import make_schedule, warmup_policy

LN2 = math.log(2.0)


class Diverged(Exception):
    pass


class RunFailed(RuntimeError):
    """The run crashed; its status `failed` and traceback are in the run directory."""


# ----------------------------------------------------------------------------- pieces


def resolve_config(cfg: RunConfig, corpus: Corpus) -> RunConfig:
    """Fill in what the corpus decides (vocabulary size) and check the whole config."""
    model = cfg.model
    if model.vocab_size < corpus.vocab_size:
        model = dataclasses.replace(model, vocab_size=corpus.vocab_size)
    cfg = dataclasses.replace(cfg, model=model)
    cfg.validate()
    return cfg


def warmup_steps(cfg: RunConfig) -> int:
    if cfg.train.warmup_steps >= 0:
        return min(cfg.train.warmup_steps, cfg.total_steps)
    return warmup_policy(model_costs(cfg.model).params_total, cfg.tokens_per_step, cfg.total_steps)


def make_optimizer(cfg: RunConfig):
    t = cfg.train
    schedule = make_schedule(
        t.schedule, peak=t.lr, total_steps=cfg.total_steps, warmup_steps=warmup_steps(cfg),
        min_ratio=t.min_lr_ratio, decay_frac=t.decay_frac,
    )
    decay_mask = lambda params: jax.tree.map(lambda p: p.ndim >= 2, params)  # no decay on norms
    tx = optax.chain(
        optax.clip_by_global_norm(t.grad_clip) if t.grad_clip > 0 else optax.identity(),
        optax.adamw(schedule, b1=t.beta1, b2=t.beta2, eps=t.eps, weight_decay=t.weight_decay, mask=decay_mask),
    )
    return tx, schedule


def make_loss_fn(graphdef, cfg: RunConfig):
    z_loss = cfg.train.z_loss

    def loss_fn(params, batch_BxT1):
        model = nnx.merge(graphdef, params)
        logits_BxTxV = model(batch_BxT1[:, :-1])
        return cross_entropy(logits_BxTxV, batch_BxT1[:, 1:], z_loss=z_loss)

    return loss_fn


def make_step(graphdef, tx, schedule, cfg: RunConfig):
    loss_fn = make_loss_fn(graphdef, cfg)

    def step(params, opt_state, batch_BxT1, step_index):
        (_, loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch_BxT1)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.global_norm(grads), "lr": schedule(step_index)}
        return params, opt_state, metrics

    return step


def make_eval(graphdef, cfg: RunConfig):
    loss_fn = make_loss_fn(graphdef, cfg)

    def evaluate(params, val_NxBxT1):
        def body(total, batch):
            return total + loss_fn(params, batch)[1], None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), val_NxBxT1)
        return total / val_NxBxT1.shape[0]

    return evaluate


def init_state(cfg: RunConfig, mesh):
    """Parameters and optimizer state, created directly in their shardings."""
    abstract = nnx.eval_shape(lambda: Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed)))
    graphdef, abstract_params = nnx.split(abstract, nnx.Param)
    param_sh = sharding.param_shardings(abstract_params, mesh)
    tx, schedule = make_optimizer(cfg)

    def create():
        model = Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed))
        params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
        return params, tx.init(params)

    abstract_opt = jax.eval_shape(lambda: create()[1])
    opt_sh = optax.tree_map_params(tx, lambda _, s: s, abstract_opt, param_sh,
                                   transform_non_params=lambda _: sharding.replicated(mesh))
    params, opt_state = jax.jit(create, out_shardings=(param_sh, opt_sh))()
    return graphdef, tx, schedule, params, opt_state, (param_sh, opt_sh)


# ----------------------------------------------------------------------------- the run


def train(cfg: RunConfig, out: str | Path, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, extra_result: dict | None = None) -> dict:
    """Train one model; returns the result dict (also written to OUT/result.json).

    User errors (bad config, an occupied run directory) raise ConfigError before anything is
    written. A NaN/inf loss ends the run with status `diverged`; any other exception is
    recorded as status `failed` (traceback in OUT/error.txt) and raised as RunFailed.
    """
    cfg.validate()
    is_writer = jax.process_index() == 0
    rundir = RunDir.prepare(out, resume=resume, overwrite=overwrite, writer=is_writer)
    done = rundir.read_result() if resume else None
    if done and done.get("status") == "completed":
        return done
    corpus = load_corpus(cfg.data)
    cfg = resolve_config(cfg, corpus)
    costs = model_costs(cfg.model)
    result = {
        "run_id": rundir.path.name,
        "config_hash": cfg.hash(),
        "git_sha": git_sha(),
        "status": "running",
        "seed": cfg.train.seed,
        "arch": cfg.model.arch,
        "d_model": cfg.model.d_model,
        "n_layers": cfg.model.n_layers,
        "n_heads": cfg.model.n_heads,
        "seq_len": cfg.model.seq_len,
        "vocab_size": cfg.model.vocab_size,
        **costs.totals(cfg.total_tokens),
        "steps": cfg.total_steps,
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "dataset": corpus.name,
        "tokenizer": corpus.tokenizer,
        "corpus_fingerprint": corpus.fingerprint,
        "entropy_nats_per_token": corpus.entropy_nats_per_token,
        **(extra_result or {}),
    }
    rundir.write_config({**cfg.to_dict(), "costs_per_token": costs.per_token(), "warmup_steps": warmup_steps(cfg)})
    t_start = time.perf_counter()
    try:
        outcome = _loop(cfg, corpus, rundir, progress=progress)
        result.update(outcome)
    except Diverged as e:
        result.update(status="diverged", error=str(e))
    except KeyboardInterrupt:
        raise
    except Exception as e:
        path = rundir.write_error(traceback.format_exc())
        result.update(status="failed", error=f"{type(e).__name__}: {e} (traceback in {path})")
        rundir.write_result({**result, "wall_s": time.perf_counter() - t_start})
        raise RunFailed(result["error"]) from e
    result.setdefault("final_train_loss", None)
    result.setdefault("final_val_loss", None)
    result.setdefault("val_bits_per_byte", None)
    result["wall_s"] = time.perf_counter() - t_start
    rundir.write_result(result)
    return result


def _loop(cfg: RunConfig, corpus: Corpus, rundir: RunDir, *, progress: bool) -> dict:
    t = cfg.train
    T, B, steps = cfg.model.seq_len, t.batch_size, cfg.total_steps
    costs = model_costs(cfg.model)
    log_every = t.log_every or max(1, steps // 100)
    eval_every = t.eval_every or max(1, steps // 10)
    to_bits_per_byte = 1.0 / (LN2 * corpus.bytes_per_token)

    mesh = sharding.make_mesh(cfg.mesh)
    with jax.set_mesh(mesh):
        graphdef, tx, schedule, params, opt_state, (param_sh, opt_sh) = init_state(cfg, mesh)
        batch_sh = sharding.batch_sharding(mesh)
        metric_sh = sharding.replicated(mesh)
        step_fn = jax.jit(
            make_step(graphdef, tx, schedule, cfg), donate_argnums=(0, 1),
            in_shardings=(param_sh, opt_sh, batch_sh, metric_sh), out_shardings=(param_sh, opt_sh, metric_sh),
        )
        val_np = val_batches(corpus.val, batch_size=B, seq_len=T, n_tokens=cfg.data.val_tokens)
        val = jax.device_put(val_np, sharding.logical_sharding(mesh, (None, "batch", "seq")))
        eval_fn = jax.jit(make_eval(graphdef, cfg), out_shardings=metric_sh)

        def global_batch(step):
            return jax.device_put(train_batch(corpus.train, seed=t.seed, step=step, batch_size=B, seq_len=T), batch_sh)

        t0 = time.perf_counter()
        step_c = step_fn.lower(params, opt_state, global_batch(0), np.int32(0)).compile()
        compile_s = time.perf_counter() - t0

        def evaluate(step, tokens):
            loss = float(eval_fn(params, val))
            rec = {"step": step, "tokens": tokens, "flops": costs.flops_exact * tokens,
                   "val_loss": loss, "val_bits_per_byte": loss * to_bits_per_byte}
            rundir.log(rec)
            return rec

        bar = _progress(steps, progress)
        pending, train_time, last_eval, last_train = [], 0.0, None, None
        t_mark = time.perf_counter()
        for step in range(steps):
            params, opt_state, metrics = step_c(params, opt_state, global_batch(step), np.int32(step))
            pending.append(metrics)
            done = step + 1
            if done % log_every == 0 or done == steps or done % eval_every == 0:
                fetched = jax.device_get(pending)
                pending = []
                now = time.perf_counter()
                train_time += now - t_mark
                losses = np.array([m["loss"] for m in fetched])
                if not np.all(np.isfinite(losses)):
                    raise Diverged(f"non-finite loss at step {done}")
                tokens = done * cfg.tokens_per_step
                last_train = float(losses.mean())
                rundir.log({"step": done, "tokens": tokens, "flops": costs.flops_exact * tokens,
                            "train_loss": last_train, "lr": float(fetched[-1]["lr"]),
                            "grad_norm": float(fetched[-1]["grad_norm"]),
                            "tokens_per_s": done * cfg.tokens_per_step / train_time})
                bar.update(len(fetched))
                bar.set_postfix(loss=f"{last_train:.3f}")
                if done % eval_every == 0 or done == steps:
                    last_eval = evaluate(done, tokens)
                    bar.set_postfix(loss=f"{last_train:.3f}", val=f"{last_eval['val_loss']:.3f}")
                t_mark = time.perf_counter()
        bar.close()

    tokens_per_s = cfg.total_tokens / train_time
    return {
        "status": "completed",
        "final_train_loss": last_train,
        "final_val_loss": last_eval["val_loss"],
        "val_bits_per_byte": last_eval["val_bits_per_byte"],
        "tokens_per_s": tokens_per_s,
        "flops_per_s": tokens_per_s * costs.flops_exact,
        "compile_s": compile_s,
        "devices": jax.device_count(),
        "device_kind": jax.devices()[0].device_kind,
    }


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, unit="step", dynamic_ncols=True, leave=False)
