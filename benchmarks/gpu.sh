#!/usr/bin/env bash
# The one prepared GPU check (issue 10), for a machine with an NVIDIA GPU (H100/H200):
#   1. CUDA JAX: the installed one if it sees a GPU, else `pip install -e ".[cuda]"` (needs network)
#   2. lab bench in bfloat16 over the presets tiny .. gpt2-small (one run: ratios side by side;
#      --fit-batch, so a batch too large for the card runs in micro-batches rather than being refused)
#   3. lab bench of the ~1B preset `1b` at its 0.5M-token batch, --fit-batch: the fewest
#      train.microbatches whose compiled step fits the card (XLA's memory analysis), i.e. the
#      largest micro-batch that fits, accumulated to the full batch
#   3b. benchmarks/bench_pack.py: K = 1, 2, 4, 8 tiny cells packed (lab.training.packed) vs run one after
#      another, aggregate tokens/s side by side (goal: >= 5x at K = 8), bench_pack.json
#   3c. a sweep's overhead share (issue 25): `lab study SWEEP_STUDY` (default experiments/lr_sweep_cpu.py)
#      unpacked (--pack 1) and packed (--pack SWEEP_PACK, default 5) in persistent workers, each cut at
#      SWEEP_S seconds; summary.json's "sweeps": sum(overhead_s) / sum(cell_wall_s) over each one's rows
#   4. tests/test_sharding.py (8 fake CPU devices, run on the host CPU beside step 2) and
#      tests/test_checkpoint.py (bitwise resume, on the GPU)
# Every number goes to $OUT (or the first argument, or ./gpu-out): summary.json (GPU, versions,
# each part's exit code, seconds and headline figures), bench_presets.json, bench_1b.json,
# tests_sharding.xml, tests_checkpoint.xml, gpu.log. The whole run stays under 8 minutes: each
# part is cut by `timeout` to what is left of TOTAL_S (default 470 s).
#
# Usage, from the repository root:  bash benchmarks/gpu.sh [OUT_DIR]
# Knobs (for a CPU dry run of the flow with tiny sizes, see benchmarks/README.md): PRESETS,
# BIG_MODEL, BIG_SET, PRESET_SET, STEPS, DTYPE, TOTAL_S, SKIP_INSTALL=1, SKIP_TESTS=1, SKIP_BENCH=1 (no
# parts 2-3b), SWEEP_STUDY, SWEEP_PACK, SWEEP_S, SKIP_SWEEPS=1.
set -uo pipefail
OUT="${1:-${OUT:-gpu-out}}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
PRESETS="${PRESETS:-tiny small medium base gpt2-small}"
BIG_MODEL="${BIG_MODEL:-1b}"
BIG_SET="${BIG_SET:-}"        # extra --set KEY=VALUE words for the big model, e.g. "model.remat=full"
PRESET_SET="${PRESET_SET:-}"  # extra --set KEY=VALUE words for the presets
STEPS="${STEPS:-10}"
DTYPE="${DTYPE:-bfloat16}"
TOTAL_S="${TOTAL_S:-470}"
export PYTHONUNBUFFERED=1 LAB_COMPILATION_CACHE=0 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
T0=$(date +%s)
LOG="$OUT/gpu.log"
: >"$LOG"
declare -A RC SECONDS_OF

say() { echo "[gpu.sh $(($(date +%s) - T0))s] $*" | tee -a "$LOG"; }
left() { local l=$((TOTAL_S - ($(date +%s) - T0))); echo $((l > 5 ? l : 5)); }
sets() { local w out=(); for w in $1; do out+=(--set "$w"); done; echo "${out[@]+"${out[@]}"}"; }
part() {  # part NAME CAP_S COMMAND...: run with timeout min(CAP_S, time left), log, record rc and seconds
  local name=$1 cap=$2; shift 2
  local limit; limit=$(left); limit=$((cap < limit ? cap : limit))
  say "$name (timeout ${limit}s): $*"
  local t=$(date +%s)
  timeout "$limit" "$@" >>"$LOG" 2>&1
  RC[$name]=$?; SECONDS_OF[$name]=$(($(date +%s) - t))
  say "$name: exit ${RC[$name]} after ${SECONDS_OF[$name]}s"
}

# 1. CUDA JAX
gpu_ok() { "$PY" -c "import jax, sys; sys.exit(0 if jax.default_backend() == 'gpu' else 1)" >>"$LOG" 2>&1; }
if [ "${SKIP_INSTALL:-0}" = 1 ] || gpu_ok; then
  RC[install]=skipped
else
  part install 150 "$PY" -m pip install -q --retries 1 --timeout 20 -e ".[cuda]"
fi
"$PY" -c "import jax, jaxlib, flax, optax; print('jax', jax.__version__, jaxlib.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$LOG"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$OUT/nvidia-smi.txt" 2>&1 || true

# 4a. the sharding tests on the host CPU (8 fake devices), beside the GPU benches
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  (t=$(date +%s); JAX_PLATFORMS=cpu timeout "$(left)" "$PY" -m pytest -q -p no:cacheprovider tests/test_sharding.py \
      --junitxml="$OUT/tests_sharding.xml" >"$OUT/.sharding.log" 2>&1; echo "$? $(($(date +%s) - t))" >"$OUT/.sharding.rc") &
  SHARDING_PID=$!
fi

if [ "${SKIP_BENCH:-0}" != 1 ]; then
# 2. the presets, one bench run
models=(); for m in $PRESETS; do models+=(--model "$m"); done
# shellcheck disable=SC2046
# --fit-batch: a preset whose batch does not fit at once (gpt2-small: 256 x 1024 tokens) is split into
# micro-batches instead of being refused; the others run with train.microbatches=1
part bench_presets 200 "$PY" -m lab bench "${models[@]}" --dtype "$DTYPE" --fit-batch --steps "$STEPS" --warmup 2 \
  $(sets "$PRESET_SET") --out "$OUT/bench_presets.json"

# 3. the ~1B config: the largest micro-batch that fits, accumulated to the preset's batch
# shellcheck disable=SC2046
part bench_big 240 "$PY" -m lab bench --model "$BIG_MODEL" --dtype "$DTYPE" --fit-batch --steps 3 --warmup 1 \
  $(sets "$BIG_SET") --out "$OUT/bench_1b.json"

# 3b. packing (issue 11): K = 1, 2, 4, 8 tiny cells as one vmapped step vs one after another,
# aggregate tokens/s side by side in one process (goal: >= 5x at K = 8)
part bench_pack 90 "$PY" benchmarks/bench_pack.py --ks 1,2,4,8 --steps 20 --repeats 3 --json "$OUT/bench_pack.json"
fi

# 3c. a sweep's overhead share, unpacked and packed (issue 25): persistent workers, the compile cache off
# (LAB_COMPILATION_CACHE=0 above: every program compiles once per worker); a part cut short keeps the
# rows of the cells that finished
SWEEP_STUDY="${SWEEP_STUDY:-experiments/lr_sweep_cpu.py}"
SWEEP_PACK="${SWEEP_PACK:-5}"
SWEEP_S="${SWEEP_S:-75}"
if [ "${SKIP_SWEEPS:-0}" != 1 ]; then
  for p in 1 "$SWEEP_PACK"; do
    rm -rf "$OUT/sweep_pack$p"
    part "sweep_pack$p" "$SWEEP_S" "$PY" -m lab study "$SWEEP_STUDY" --out "$OUT/sweep_pack$p" --pack "$p" --workers 1 \
      --no-analysis --quiet
  done
fi

# 4b. bitwise resume on the GPU, with what is left
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  wait "$SHARDING_PID"
  read -r RC[tests_sharding] SECONDS_OF[tests_sharding] <"$OUT/.sharding.rc"
  cat "$OUT/.sharding.log" >>"$LOG"; rm -f "$OUT/.sharding.log" "$OUT/.sharding.rc"
  say "tests_sharding (host CPU, beside the benches): exit ${RC[tests_sharding]} after ${SECONDS_OF[tests_sharding]}s"
  # several JAX processes share the card (the test's own run and the runs it starts): no preallocation
  part tests_checkpoint 240 env XLA_PYTHON_CLIENT_PREALLOCATE=false "$PY" -m pytest -q -p no:cacheprovider tests/test_checkpoint.py \
    --junitxml="$OUT/tests_checkpoint.xml"
fi

# summary.json: every part's exit code and seconds, the GPU, and the headline figures of the benches
parts=""; for k in "${!RC[@]}"; do parts+="$k=${RC[$k]}:${SECONDS_OF[$k]:-0},"; done
"$PY" - "$OUT" "$parts" "$(($(date +%s) - T0))" <<'PYTHON' 2>&1 | tee -a "$LOG"
import json, sys, xml.etree.ElementTree as ET
from pathlib import Path

out, parts, elapsed = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
summary = {"total_s": elapsed, "parts": {}, "goals": {"1b": 0.50, "gpt2-small": 0.40}, "rows": [], "tests": {}}
for item in filter(None, parts.split(",")):
    name, rest = item.split("=", 1)
    rc, seconds = rest.rsplit(":", 1)
    summary["parts"][name] = {"exit": rc, "seconds": int(seconds)}
smi = out / "nvidia-smi.txt"
summary["nvidia_smi"] = smi.read_text().strip() if smi.exists() else None
for file in ("bench_presets.json", "bench_1b.json"):
    path = out / file
    if not path.exists():
        continue
    bench = json.loads(path.read_text())
    summary["header"] = bench["header"]
    summary.setdefault("matmul", {})[file] = bench["matmul"]
    for r in bench["steps"]:
        row = {k: r.get(k) for k in ("model", "dtype", "batch_size", "microbatches", "seq_len", "tokens_per_step",
                                     "remat", "attn_impl_resolved", "compile_s", "step_ms", "tokens_per_s",
                                     "mfu_measured", "mfu_nominal", "temp_bytes", "argument_bytes")}
        row["params_total"] = r["costs"]["params_total"]
        goal = summary["goals"].get(r["model"])
        row["goal_mfu_nominal"] = goal
        row["goal_met"] = None if goal is None or r.get("mfu_nominal") is None else r["mfu_nominal"] >= goal
        summary["rows"].append(row)
for name in ("tests_sharding", "tests_checkpoint"):
    path = out / f"{name}.xml"
    if path.exists():
        suite = ET.parse(path).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        summary["tests"][name] = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
pack = out / "bench_pack.json"
if pack.exists():  # packed tiny cells vs sequential: the K = 8 gain against its goal
    rows = json.loads(pack.read_text())["rows"]
    k8 = [r for r in rows if r["K"] == 8]
    summary["pack"] = {"rows": rows, "goal_gain_k8": 5.0, "goal_met": bool(k8) and k8[0]["gain"] >= 5.0}
for sweep in sorted(out.glob("sweep_pack*/results.csv")):  # sum(overhead_s) / sum(cell_wall_s), issue 25
    import csv

    rows = [r for r in csv.DictReader(open(sweep)) if r.get("overhead_s") and r.get("cell_wall_s")]
    over, wall = sum(float(r["overhead_s"]) for r in rows), sum(float(r["cell_wall_s"]) for r in rows)
    summary.setdefault("sweeps", {})[sweep.parent.name] = {
        "cells": len(rows), "overhead_s": over, "cell_wall_s": wall, "overhead_share": over / wall if wall else None,
        "parts_s": {k: sum(float(r.get(k) or 0) for r in rows)
                    for k in ("startup_s", "compile_s", "eval_s", "final_eval_s", "checkpoint_s")},
    }
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
for row in summary["rows"]:
    print(f"{row['model']:<10} {row['dtype']:<9} K={row['microbatches']:<3} step {row['step_ms']:9.1f} ms  "
          f"tok/s {row['tokens_per_s']:12,.0f}  MFU measured {row['mfu_measured']:.3f}  nominal {row['mfu_nominal']}")
print(json.dumps({"parts": summary["parts"], "tests": summary["tests"],
                  "sweeps": {k: v["overhead_share"] for k, v in summary.get("sweeps", {}).items()}}))
PYTHON
say "done in $(($(date +%s) - T0))s; files in $OUT"
