"""`lab train --tracker`: TensorBoard event files readable while the run still trains, and a W&B
offline run directory with the run's numbers once it ends."""

import json
import struct
import subprocess
import time
from pathlib import Path

import pytest

from lab.cli import main
from tests.helpers.runs import TINY, env, lab_cmd, set_args

pytest.importorskip("tensorboardX")


def tb_scalars(logdir: Path) -> dict:
    """{tag: [(step, value)]} of the complete records of a TensorBoard event file (TFRecord: length,
    its CRC, the Event proto, its CRC); a record still being written is skipped."""
    from tensorboardX.proto import event_pb2

    out = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data, i = path.read_bytes(), 0
        while i + 12 <= len(data):
            n = struct.unpack("<Q", data[i : i + 8])[0]
            if i + 12 + n + 4 > len(data):
                break
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                if v.HasField("simple_value"):
                    out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_tensorboard_curves_are_readable_while_the_run_trains(tmp_path):
    out = tmp_path / "R"
    steps = 2000
    cmd = lab_cmd(
        "train",
        "--out",
        out,
        "--quiet",
        "--steps",
        steps,
        *set_args(TINY),
        "--set",
        "train.steps=2000",
        "--set",
        "train.log_every=10",
        "--set",
        "train.eval_every=500",
        "--tracker",
        "tensorboard",
    )
    proc = subprocess.Popen(cmd, env=env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, seen = time.time() + 240, {}
        while time.time() < deadline and not seen.get("train_loss"):
            assert proc.poll() is None, "the run ended before its curves were read: " + proc.stderr.read()[-2000:]
            seen = tb_scalars(out / "tensorboard") if (out / "tensorboard").exists() else {}
            time.sleep(0.05)
        assert seen.get("train_loss"), "no train_loss in the event file in time"
        assert proc.poll() is None  # read while the run still trains
        logged = {json.loads(l)["step"]: json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()}
        for step, value in seen["train_loss"]:
            assert value == pytest.approx(logged[step]["train_loss"], rel=1e-6)
        assert {"lr", "grad_norm", "tokens_per_s", "flops_per_s"} <= seen.keys()
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def test_wandb_offline_run_directory_after_the_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = tmp_path / "W"
    assert (
        main(["train", "--out", str(out), "--quiet", "--steps", "24", *set_args(TINY), "--tracker", "wandb"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    runs = list((out / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    # the run's records (protobuf, values as JSON text): the logged metrics, the config, the result
    records = next(runs[0].glob("run-*.wandb")).read_bytes()
    for text in ("train_loss", "val_loss", "flops_per_s", "config_hash", result["status"]):
        assert text.encode() in records, text
    assert repr(result["final_val_loss"]).encode() in records
