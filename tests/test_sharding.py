"""One sharding policy: mesh parsing, rules, and the sharded step on 8 fake CPU devices
(in a subprocess, since the device count is fixed when JAX starts)."""

import dataclasses
import json
import re

import jax
import numpy as np
import pytest

from lab import sharding
from lab.config import ConfigError
from lab.training.train import train
from tests.helpers.runs import TINY, losses, run_python

MESHES = ["data=8", "fsdp=8", "tensor=8", "data=2,fsdp=2,tensor=2"]


def test_parse_mesh():
    assert sharding.parse_mesh("", 8) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert sharding.parse_mesh("fsdp=4,tensor=2", 8) == {"data": 1, "fsdp": 4, "tensor": 2}
    assert sharding.parse_mesh("data=-1,tensor=2", 8) == {"data": 4, "fsdp": 1, "tensor": 2}
    with pytest.raises(ConfigError, match="needs 3 devices but 8"):
        sharding.parse_mesh("data=3", 8)
    with pytest.raises(ConfigError, match="bad mesh"):
        sharding.parse_mesh("model=8", 8)
    with pytest.raises(ConfigError, match="bad mesh"):
        sharding.parse_mesh("data=0", 8)


def test_rules_are_strict():
    with pytest.raises(ConfigError, match="no sharding rule for logical axis 'experts'"):
        sharding.logical_to_spec(("experts", "embed"))
    assert sharding.logical_to_spec(("embed", "mlp")) == sharding.P("fsdp", "tensor")
    assert sharding.logical_to_spec(("layers", "embed", "mlp")) == sharding.P(None, "fsdp", "tensor")


SHAPES_WORKER = """
import json, dataclasses, jax
from lab import sharding
from lab.config import RunConfig
from lab.overrides import from_dict
from lab.training.optimizer import make_optimizer
from lab.training.state import state_shardings
cfg = from_dict(RunConfig, json.loads({cfg!r}))
out = {{}}
for spec in {meshes!r}:
    c = dataclasses.replace(cfg, mesh=spec)
    mesh = sharding.make_mesh(spec)
    resolved = dataclasses.replace(c, model=dataclasses.replace(c.model, vocab_size=256))
    param_sh, opt_sh, (params, opt_state) = state_shardings(resolved, mesh, make_optimizer(resolved)[0])
    flat = lambda tree: {{"/".join(str(getattr(k, "key", k)) for k in path): v
                         for path, v in jax.tree_util.tree_flatten_with_path(tree)[0]}}
    shapes, shs = flat(params), flat(param_sh)
    mu = opt_sh[1][0].mu
    out[spec] = {{
        "specs": {{k: [str(a) for a in v.spec] for k, v in shs.items()}},
        "shard_shapes": {{k: list(shs[k].shard_shape(v.shape)) for k, v in shapes.items()}},
        "shapes": {{k: list(v.shape) for k, v in shapes.items()}},
        "mu_embed_shard": list(mu["embed"].shard_shape(params["embed"].shape)),
    }}
print("RESULT" + json.dumps(out))
"""

TRAIN_WORKER = """
import json, dataclasses
from lab.config import RunConfig
from lab.overrides import from_dict
from lab.training.train import train
cfg = dataclasses.replace(from_dict(RunConfig, json.loads({cfg!r})), mesh={mesh!r})
print("RESULT" + json.dumps(train(cfg, {out!r}, progress=False)))
"""


def _result_line(proc) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


@pytest.fixture(scope="module")
def sharded_runs():
    """Every mesh's parameter and optimizer shardings (no training: the placement is the claim)."""
    proc = run_python(SHAPES_WORKER.format(cfg=json.dumps(TINY.to_dict()), meshes=MESHES), devices=8, timeout=600)
    return None, _result_line(proc)


def test_every_parameter_sharded_as_the_policy_says(sharded_runs):
    _, runs = sharded_runs
    shapes = {m: r["shard_shapes"] for m, r in runs.items()}
    specs = {m: r["specs"] for m, r in runs.items()}
    # data parallel: every parameter whole on every device
    assert shapes["data=8"] == runs["data=8"]["shapes"]
    assert shapes["data=8"]["embed"] == [256, 32]
    # FSDP: the model-width axis split 8 ways, in parameters and Adam moments alike
    assert shapes["fsdp=8"]["embed"] == [256, 4] and runs["fsdp=8"]["mu_embed_shard"] == [256, 4]
    # the scanned stack: a leading [layers] axis, never split
    assert shapes["fsdp=8"]["blocks/attn/wq"] == [2, 4, 8, 4]
    assert shapes["fsdp=8"]["blocks/mlp/w_out"] == [2, 128, 4]
    # tensor parallel: heads, MLP hidden and vocabulary split 8 ways
    assert shapes["tensor=8"]["blocks/attn/wq"] == [2, 32, 1, 4]
    assert shapes["tensor=8"]["blocks/attn/wo"] == [2, 1, 4, 32]
    assert shapes["tensor=8"]["blocks/mlp/w_in"] == [2, 32, 16]
    assert shapes["tensor=8"]["embed"] == [32, 32]
    # 2x2x2: both at once
    assert shapes["data=2,fsdp=2,tensor=2"]["blocks/attn/wq"] == [2, 16, 4, 4]
    assert specs["data=2,fsdp=2,tensor=2"]["blocks/mlp/w_in"] == ["None", "fsdp", "tensor"]
    # norms are replicated on purpose
    for mesh in MESHES:
        assert shapes[mesh]["final_norm/scale"] == [32] and shapes[mesh]["blocks/attn_norm/scale"] == [2, 32]


@pytest.mark.parametrize(
    "mesh", [pytest.param(m, marks=[] if m == MESHES[-1] else pytest.mark.slow) for m in MESHES]
)
def test_sharded_run_matches_one_device(tmp_path, reference_run, mesh):
    """The 2x2x2 mesh (every axis at once) in the default suite; each single-axis mesh under -m slow."""
    out = tmp_path / "run"
    proc = run_python(
        TRAIN_WORKER.format(cfg=json.dumps(TINY.to_dict()), mesh=mesh, out=str(out)), devices=8, timeout=600
    )
    result = _result_line(proc)
    assert result["status"] == "completed" and result["devices"] == 8
    ref, got = losses(reference_run), losses(out)
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=2e-4, abs=2e-4), key


def test_bad_mesh_fails_before_anything_is_written(tmp_path):
    with pytest.raises(ConfigError, match="needs 2 devices"):
        train(dataclasses.replace(TINY, mesh="data=2"), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_indivisible_dimension_is_an_error(tmp_path):
    code = """
import dataclasses, json
from lab.config import ConfigError, RunConfig
from lab.overrides import from_dict
from lab.training.train import train
cfg = from_dict(RunConfig, json.loads({cfg!r}))
try:
    train(dataclasses.replace(cfg, mesh="tensor=8", model=dataclasses.replace(cfg.model, n_heads=4)), {out!r})
except ConfigError as e:
    print("ERR", e)
"""
    proc = run_python(code.format(cfg=json.dumps(TINY.to_dict()), out=str(tmp_path / "r")), devices=8)
    assert re.search(
        r"ERR parameter blocks/attn/w[qkv]: dimension '(kv_)?heads' of size 4 is not divisible "
        r"by mesh axes \('tensor',\) of size 8",
        proc.stdout,
    ), proc.stdout + proc.stderr[-2000:]
    assert not (tmp_path / "r" / "result.json").exists()


def test_steps_on_several_cpu_devices_are_awaited_one_by_one(monkeypatch):
    """jaxlib 0.10's CPU runtime deadlocks when two programs with collectives over several CPU devices
    are in flight (lab.sharding.serial_steps): the hot loop awaits each step there, and only there."""
    from lab.sharding import make_mesh, serial_steps
    from lab.training import loop

    assert not serial_steps(make_mesh())  # this process: one CPU device
    code = """
from lab.sharding import make_mesh, serial_steps
print("SERIAL", serial_steps(make_mesh("data=2")), serial_steps(make_mesh("data=1,fsdp=2")))
"""
    proc = run_python(code, devices=2)
    assert "SERIAL True True" in proc.stdout, proc.stderr[-2000:]

    class Runner:  # counts what the loop awaits
        mesh, saved, awaited = make_mesh(), "", []

        def dispatch(self, step, batch):
            return {"step": step}

        def record(self, fetched, done, due, train_time):
            pass

        def save(self, step):
            pass

        def running(self):
            return True

    class Batches:
        def get(self, step):
            return None

    waits, real = [], jax.block_until_ready
    monkeypatch.setattr(jax, "block_until_ready", lambda x: waits.append(x) or real(x))
    cadence = loop.Cadence(steps=4, log_every=2, eval_every=4, checkpoint_every=None)
    loop.run_steps(Runner(), cadence, 0, loop.StopFlag(), Batches())
    assert waits == []  # one device: steps stay asynchronous
    Runner.mesh = type("CpuPair", (), {"devices": np.array([jax.devices()[0]] * 2)})()
    loop.run_steps(Runner(), cadence, 0, loop.StopFlag(), Batches())
    assert waits == [{"step": s} for s in range(4)]  # each step awaited before the next


@pytest.mark.slow
def test_two_processes_match_one_device(tmp_path, reference_run):
    """A real multi-process run on localhost: 2 processes x 2 CPU devices, joined by
    jax.distributed.initialize (gloo collectives); only process 0 writes."""
    import socket
    import subprocess

    from tests.helpers.runs import env, lab_cmd, set_args

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    out = tmp_path / "multi"
    procs = [
        subprocess.Popen(
            lab_cmd(
                "train",
                "--out",
                out,
                "--quiet",
                "--steps",
                TINY.train.steps,
                *set_args(TINY),
                "--coordinator",
                f"localhost:{port}",
                "--num-processes",
                2,
                "--process-id",
                i,
            ),
            env=env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    assert '"status": "completed"' in outs[0][0] and '"status"' not in outs[1][0]  # only process 0 reports
    result = json.loads((out / "result.json").read_text())
    assert result["processes"] == 2 and result["devices"] == 4 and result["mesh"]["data"] == 4
    ref, got = losses(reference_run), losses(out)
    assert got.keys() == ref.keys()
    for key in ref:
        assert got[key] == pytest.approx(ref[key], rel=2e-4, abs=2e-4), key
