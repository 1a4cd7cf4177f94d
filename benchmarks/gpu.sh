#!/usr/bin/env bash
# One short GPU check, for a session that is lent a device (see benchmarks/README.md):
#   install CUDA JAX, then lab bench (matmul peak, step tokens/s and MFU of the presets in
#   float32 and bfloat16); every JSON/log goes to $OUT (or ./gpu-out).
# Usage on the device machine, from the repository root:  bash benchmarks/gpu.sh
set -euo pipefail
OUT="${OUT:-gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q -e ".[cuda]" 2>&1 | tail -2
python3 -c "import jax; print(jax.devices())" | tee "$OUT/devices.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
# presets from small to base, both dtypes, one bench run (the ratios are measured side by side)
timeout 420 lab bench --model tiny --model small --model medium --model base --steps 20 \
    --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.log"
