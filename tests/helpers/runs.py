"""Shared helpers for tests that train tiny models (in-process or as real subprocesses)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig

REPO = Path(__file__).resolve().parents[2]

# d32, 2 layers, 8 heads of 4: every axis divides 8 devices; compiles in ~2 s, steps in ~ms.
TINY = RunConfig(
    model=ModelConfig(d_model=32, n_layers=2, n_heads=8, seq_len=32),
    data=DataConfig(name="python_stdlib", val_tokens=2048),
    train=TrainConfig(batch_size=8, steps=24, lr=3e-3, eval_every=8, log_every=4, warmup_steps=4),
)


def losses(run_dir) -> dict:
    """{(kind, step): loss} of a run's metrics.jsonl, kind in train/val."""
    out = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "train_loss" in rec:
            out[("train", rec["step"])] = rec["train_loss"]
        if "val_loss" in rec:
            out[("val", rec["step"])] = rec["val_loss"]
    return out


def killed_after_save(run_dir, step: int) -> None:
    """Leave `run_dir` as a run killed right after its checkpoint at `step` would: no result.json
    and no checkpoint newer than `step`."""
    run_dir = Path(run_dir)
    (run_dir / "result.json").unlink()
    for ckpt in (run_dir / "checkpoints").iterdir():
        if ckpt.name.isdigit() and int(ckpt.name) > step:
            shutil.rmtree(ckpt)


def lab_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "lab", *map(str, args)]


def env(devices: int = 1, **extra) -> dict:
    e = dict(os.environ)
    e["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e.update({k: str(v) for k, v in extra.items()})
    return e


def run_python(code: str, devices: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh process with `devices` fake CPU devices."""
    return subprocess.run(
        [sys.executable, "-c", code], env=env(devices), capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def set_args(cfg: RunConfig) -> list[str]:
    """`--set` flags reproducing `cfg`'s model/train/data fields on the command line."""
    flags = []
    for group in ("model", "train", "data"):
        for key, value in getattr(cfg, group).__dict__.items():
            flags += ["--set", f"{group}.{key}={value}"]
    return flags
