"""The result.json of a run: its fields, declared once, and what makes one trustworthy.

Every result row of a study (`lab.study.results`), the summary `lab train` prints and the tests
read these names from here. A run's result.json holds at least `FIELDS`; it may hold more
(timings, memory, the study's own columns, which `lab.training.train.train(extra_result=...)` adds).
"""

from __future__ import annotations

import math

STATUSES = ("completed", "diverged", "failed")
FINAL = ("completed", "diverged")  # a run that ended by itself: not trained again

IDENTITY = ("run_id", "config_hash", "git_sha", "status", "seed")
MODEL = ("arch", "d_model", "n_layers", "n_heads", "seq_len", "vocab_size")
# the model fields a study may vary besides size (lab.study.spec variants): one column each
VARIANT = (
    "n_kv_heads",
    "d_ff",
    "n_dec_layers",
    "attn_window",
    "attn_global_tokens",
    "pos_encoding",
    "norm",
    "mlp",
    "tie_embeddings",
    "dtype",
)
PARAMS = ("params_non_embedding", "params_embedding", "params_head", "params_total")
COMPUTE = ("tokens", "flops_exact", "flops_6n", "flops_6n_total", "flops_deepseek")
LOSSES = ("final_train_loss", "final_val_loss", "val_bits_per_byte")
TIMING = ("wall_s", "tokens_per_s")
# model FLOPs utilisation over the whole run and the per-device peak it divides by (lab.costs.run_peak);
# null where the device's peak is unknown and train.peak_flops is unset (CPUs)
MFU = ("mfu", "peak_flops")
DATA = ("dataset", "corpus_fingerprint", "tokens_fingerprint")  # text alone; text + tokenizer
REPEAT = ("unique_tokens", "epochs")  # training tokens drawn from; tokens / unique_tokens (data.unique_tokens)
MIX = ("recall_mix",)  # fraction of training rows that are associative-recall text (data.recall_mix)
QUANT = (
    "val_loss_int8",
    "val_loss_int4",
    "val_loss_bf16",  # final weights quantized after training (lab.evals.final)
    "weight_bytes_f32",
    "weight_bytes_bf16",
    "weight_bytes_int8",
    "weight_bytes_int4",
)
ICL = ("icl_accuracy", "icl_loss", "icl_pairs")  # in-context recall (lab.evals.icl); absent where no prompt fits

# where a run's time went besides its training steps (lab.training.timing): its cell's wall time, the
# steps' own time, the rest (overhead_s) and its parts
OVERHEAD = (
    "cell_wall_s",
    "train_s",
    "overhead_s",
    "startup_s",
    "compile_s",
    "eval_s",
    "final_eval_s",
    "checkpoint_s",
)

# a member of a packed run (lab.training.packed): the pack it trained in; absent when the run trained alone
PACK = ("pack_id",)
# a run started from another run's checkpoint (lab train --init-from): that run directory and the step
# of its checkpoint; absent when the run started from a fresh init
INIT = ("init_from", "init_step")

# the contract, in the column order of a results table
FIELDS = (
    IDENTITY
    + MODEL
    + VARIANT
    + PARAMS
    + COMPUTE
    + LOSSES
    + TIMING
    + MFU
    + DATA
    + REPEAT
    + MIX
    + QUANT
    + ICL
    + OVERHEAD
)
# fields added after results were first written: a result without them is still trusted
LATER = ("tokens_fingerprint",) + MFU + VARIANT + REPEAT + MIX + QUANT + ICL + OVERHEAD

# what `lab train` prints when a run ends
SUMMARY = (
    "status",
    "params_total",
    "tokens",
    "final_train_loss",
    "final_val_loss",
    "val_bits_per_byte",
    "tokens_per_s",
    "wall_s",
)

_NUMERIC = PARAMS + COMPUTE + ("seed",)


def problems(result: dict) -> list[str]:
    """Why `result` cannot be trusted as a finished run's record; [] when it can.

    A completed run needs every contract field and finite losses; a diverged or failed one needs
    its identity and an error message. Anything else (an unknown status, a missing field) is a
    problem: the run should be resumed, which rewrites its result from the newest checkpoint."""
    status = result.get("status")
    if status not in STATUSES:
        return [f"status {status!r} is not one of {', '.join(STATUSES)}"]
    if status != "completed":
        return [] if result.get("error") else [f"a {status} result without an error message"]
    out = [f"missing {k}" for k in FIELDS if k not in result and k not in LATER]
    for key in _NUMERIC + ("final_val_loss", "final_train_loss"):
        value = result.get(key)
        if key in result and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out.append(f"{key}={value!r} is not a finite number")
    return out
