"""What every run does around its loop, alone or as a member of a pack: the checks before anything
is written (config resolved against the corpus, mesh, memory), resuming a finished run, the result
fields known before training, config.json, and the result written at the end (completed,
diverged or failed).
"""

from __future__ import annotations

import dataclasses
import errno
import time
import traceback

import jax

from lab import sharding
from lab.config import ConfigError, RunConfig
from lab.data import Corpus, check_streams, load_corpus, repeat_fields
from lab.memory import check_fits
from lab.result import FINAL, LOSSES, MODEL, VARIANT
from lab.rundir import RunDir, git_sha
from lab.training.loop import WALL_BEFORE
from lab.training.microbatch import check_batch_split
from lab.training.optimizer import warmup_steps
from lab.training.state import abstract_model


def resolve_config(cfg: RunConfig, corpus: Corpus) -> RunConfig:
    """Fill in what the corpus decides (vocabulary size) and check the whole config."""
    cfg = dataclasses.replace(cfg, model=cfg.model.with_corpus_vocab(corpus.vocab_size))
    cfg.validate()
    return cfg


def checked_setup(cfg: RunConfig):
    """(resolved config, corpus, mesh), after every check that needs no run directory."""
    cfg.validate()
    sharding.parse_mesh(cfg.mesh, jax.device_count())  # a mesh that does not fit: error before any write
    corpus = load_corpus(cfg.data)
    cfg = resolve_config(cfg, corpus)
    check_streams(corpus, cfg)
    mesh = sharding.make_mesh(cfg.mesh)
    check_batch_split(cfg, dict(mesh.shape))  # micro-batches split evenly over the data-parallel devices
    check_fits(cfg, mesh)  # a model that cannot fit: one line with the numbers, before any write
    sharding.param_shardings(abstract_model(cfg)[1], mesh)  # every dimension divides its mesh axes
    return cfg, corpus, mesh


def finished_result(rundir: RunDir, cfg: RunConfig) -> dict | None:
    """On resume: the finished result if the run already ended; an error if the directory holds
    a run of another config; None when training should continue."""
    saved = rundir.config_dict()
    if saved is not None and saved.get("config_hash", cfg.hash()) != cfg.hash():
        raise ConfigError(
            f"{rundir.path} holds a run of another config ({saved['config_hash']}, this is "
            f"{cfg.hash()}); resume it with its own config, or use another directory"
        )
    done = rundir.read_result()
    if done and done["status"] in FINAL and done.get("config_hash") in (None, cfg.hash()):
        return done
    return None


def result_header(cfg: RunConfig, corpus: Corpus, rundir: RunDir, costs) -> dict:
    """The result fields known before training (identity, model, costs, data)."""
    m = cfg.model
    return {
        "run_id": rundir.path.resolve().name,
        "config_hash": cfg.hash(),
        "git_sha": git_sha(),
        "status": "running",
        "seed": cfg.train.seed,
        **{k: getattr(m, k) for k in MODEL + VARIANT},
        **costs.totals(cfg.total_tokens),
        "steps": cfg.total_steps,
        "batch_size": cfg.train.batch_size,
        "lr": cfg.train.lr,
        "dataset": corpus.name,
        "tokenizer": corpus.tokenizer,
        "corpus_fingerprint": corpus.text_fingerprint,
        "tokens_fingerprint": corpus.tokens_fingerprint,
        "entropy_nats_per_token": corpus.entropy_nats_per_token,
        **repeat_fields(cfg.data.unique_tokens, cfg.total_tokens, len(corpus.train)),
        "recall_mix": cfg.data.recall_mix,
    }


def write_config(rundir: RunDir, cfg: RunConfig, costs) -> None:
    """OUT/config.json: the resolved config, its hash, the model's costs and the warmup it runs."""
    rundir.write_config(
        {**cfg.to_dict(), "config_hash": cfg.hash(), "costs": costs.as_dict(), "warmup_steps": warmup_steps(cfg)}
    )


def disk_full_error(e: BaseException) -> OSError:
    """The OSError(ENOSPC) a full disk raised (or the one a checkpoint's disk-full error became),
    which the CLI reports in one line, exit 2 (`analysis.errors.run_command`)."""
    while e is not None and not (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)):
        e = e.__cause__ or e.__context__
    return e if e is not None else OSError(errno.ENOSPC, "No space left on device")


def record_failed(rundir: RunDir, result: dict, e: BaseException, t_start: float) -> None:
    """Status `failed`, the error (traceback in OUT/error.txt) and the wall time, in OUT/result.json."""
    path = rundir.write_error(traceback.format_exc())
    result.update(status="failed", error=f"{type(e).__name__}: {e} (traceback in {path})")
    rundir.write_result({**result, "wall_s": time.perf_counter() - t_start})


def record_ended(rundir: RunDir, result: dict, t_start: float) -> None:
    """The result of a run that ended (completed or diverged): losses it has not measured as None,
    the wall time (with the earlier process's, for a run re-run from its final checkpoint), in
    OUT/result.json."""
    for key in LOSSES:
        result.setdefault(key, None)
    result["wall_s"] = result.pop(WALL_BEFORE, 0.0) + time.perf_counter() - t_start
    rundir.write_result(result)
