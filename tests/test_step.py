"""One compiled training step: train, `lab bench` and the study dry-run's timing all run what
`lab.training.step.compile_step` builds, with the run's shardings; it computes what a step jitted by hand
on allocated state computes; and the model's abstract shapes cost linear time in depth."""

import dataclasses
import re

import jax
import numpy as np
import pytest
from flax import nnx

from lab import sharding
from lab.config import resolve_impl
from lab.model.layers import next_key
from lab.training import step as step_module
from lab.training.microbatch import check_batch_split
from lab.training.step import compile_step, make_step
from tests.helpers.runs import TINY

# A one-layer TINY, as the study dry-run times it (100 steps) and as train resolves it (bytes).
MODEL = dataclasses.replace(TINY.model, n_layers=1, seq_len=16)
CFG = dataclasses.replace(
    TINY,
    model=dataclasses.replace(MODEL, vocab_size=256),
    train=dataclasses.replace(TINY.train, steps=100, tokens=0, eval_every=50, log_every=50),
)


@pytest.fixture
def compiled_steps(monkeypatch):
    """Every CompiledStep built while the test runs, in order."""
    built = []

    def spy(cfg, mesh, **kw):
        built.append(real(cfg, mesh, **kw))
        return built[-1]

    real = step_module.compile_step
    monkeypatch.setattr(step_module, "compile_step", spy)
    monkeypatch.setattr("lab.training.train.compile_step", spy)
    return built


def test_train_bench_and_dry_run_compile_the_same_program(compiled_steps, tmp_path):
    from lab.bench.step import time_step
    from lab.study.estimate import step_seconds
    from lab.study.spec import Cell
    from lab.training.train import train

    result = train(dataclasses.replace(CFG, model=MODEL), tmp_path / "run", progress=False)
    timing = time_step(CFG, steps=2, warmup=1)
    seconds = step_seconds([Cell(cell_id="c", config=CFG)], repeats=2)
    assert len(compiled_steps) == 3  # one compile each, all through compile_step
    trained, benched, estimated = compiled_steps
    assert trained.cfg.model == benched.cfg.model == estimated.cfg.model
    text = _hlo(trained)
    assert "input_output_alias" in text  # state donated
    assert _hlo(benched) == text and _hlo(estimated) == text
    for other in (benched, estimated):
        assert other.executable.input_shardings == trained.executable.input_shardings
        assert other.executable.cost_analysis()["flops"] == trained.executable.cost_analysis()["flops"]
    assert result["compile_s"] == trained.compile_s and timing["compile_s"] == benched.compile_s
    assert result["step_temp_size_in_bytes"] == trained.memory["temp_size_in_bytes"] > 0
    assert result["attn_impl"] == resolve_impl(
        CFG.model.attn_impl, CFG.model.dtype, CFG.model.head_dim
    )  # auto, resolved
    assert seconds[(CFG.model, CFG.train.batch_size)] > 0


def _hlo(compiled) -> str:
    """The optimised program, without source locations (which say who traced it)."""
    blocks = compiled.executable.as_text().split("\n\n")
    tables = ("FileNames", "FunctionNames", "FileLocations", "StackFrames")
    program = "\n\n".join(b for b in blocks if not b.startswith(tables))
    return re.sub(r", metadata=\{[^}]*\}", "", program)


def test_compiled_step_matches_a_step_jitted_by_hand():
    """The losses of the first steps are those of the step jitted on allocated state, as train
    did before compile_step existed (same shardings), bit for bit."""
    mesh = sharding.make_mesh("")
    compiled = compile_step(CFG, mesh)
    by_hand = jax.jit(
        make_step(compiled.graphdef, CFG),
        donate_argnums=(0, 1),
        in_shardings=(*compiled.state_sh, compiled.batch_sh, sharding.replicated(mesh), sharding.replicated(mesh)),
        out_shardings=(*compiled.state_sh, sharding.replicated(mesh)),
    )
    batches = np.random.default_rng(0).integers(0, 256, (4, 8, 17), np.int32)
    losses = {}
    for name, fn in (("compiled", compiled), ("by_hand", lambda *a: by_hand(*a, compiled.constants))):
        params, opt_state = compiled.init_state()
        losses[name] = []
        with jax.set_mesh(mesh):
            for i, batch in enumerate(batches):
                params, opt_state, metrics = fn(
                    params, opt_state, jax.device_put(batch, compiled.batch_sh), np.int32(i)
                )
                losses[name].append(float(metrics["loss"]))
    assert losses["compiled"] == losses["by_hand"]
    assert losses["compiled"][0] == pytest.approx(np.log(256), abs=0.05)  # small init: uniform
    assert losses["compiled"][-1] < losses["compiled"][0]


def test_next_key_is_rngs_params():
    a, b = nnx.Rngs(params=3), nnx.Rngs(params=3)
    for _ in range(3):
        assert np.array_equal(jax.random.key_data(next_key(a)), jax.random.key_data(b.params()))
    assert int(a.params.count[...]) == int(b.params.count[...]) == 3


def _losses_and_params(cfg, batches):
    """Per-step losses and the final parameters of `cfg`'s compiled step over `batches`."""
    mesh = sharding.make_mesh("")
    compiled = compile_step(cfg, mesh)
    params, opt_state = compiled.init_state()
    losses = []
    with jax.set_mesh(mesh):
        for i, batch in enumerate(batches):
            params, opt_state, metrics = compiled(
                params, opt_state, jax.device_put(batch, compiled.batch_sh), np.int32(i)
            )
            losses.append(float(metrics["loss"]))
    return np.array(losses), jax.device_get(params)


@pytest.mark.parametrize(
    "arch",
    ["decoder", pytest.param("encoder", marks=pytest.mark.slow), pytest.param("encdec", marks=pytest.mark.slow)],
)
def test_four_microbatches_give_the_full_batch_update(arch):
    """train.microbatches=4: the loss curve and the parameters of the full batch (float32, 1e-4
    relative), token-weighted: MLM micro-batches mask different numbers of tokens."""
    model = dataclasses.replace(CFG.model, arch=arch, vocab_size=257 if arch == "encoder" else 256)
    train_ = dataclasses.replace(CFG.train, steps=6, warmup_steps=1, z_loss=1e-3, mlm_prob=0.3)
    batches = np.random.default_rng(1).integers(0, 8, (6, 8, 17), np.int32)  # 8 symbols: learnable
    curves = {}
    for K in (1, 4):
        cfg = dataclasses.replace(CFG, model=model, train=dataclasses.replace(train_, microbatches=K))
        curves[K] = _losses_and_params(cfg, batches)
    (full, full_params), (micro, micro_params) = curves[1], curves[4]
    np.testing.assert_allclose(micro, full, rtol=1e-4)
    assert full[-1] < full[0]  # it trained: the comparison is between moving curves
    for a, b in zip(jax.tree.leaves(full_params), jax.tree.leaves(micro_params)):
        # Adam divides by sqrt(v): a near-zero gradient's rounding moves a weight by up to ~lr, so
        # the parameters agree to a small fraction of one step (lr = 3e-3), not to 1e-4 relative.
        # Measured, encdec (losses equal to 1e-7): 5.5e-5 with the XLA kernel, 1.2e-4 with the chunked
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=2e-4)


def test_microbatches_must_split_the_batch_over_devices():
    from lab.config import ConfigError

    with pytest.raises(ConfigError, match="not divisible by train.microbatches=3"):
        dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, microbatches=3)).validate()
    cfg = dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, microbatches=4))
    check_batch_split(cfg, {"data": 2, "fsdp": 1, "tensor": 1})  # 8 = 4 x 2
    with pytest.raises(ConfigError, match=r"microbatches=4 x 4 data-parallel"):
        check_batch_split(cfg, {"data": 2, "fsdp": 2, "tensor": 1})


_SHARDED_MICRO = """
import dataclasses, json, jax, numpy as np
from lab import sharding
from lab.training.step import compile_step
from tests.test_step import CFG
batches = np.random.default_rng(1).integers(0, 8, (4, 8, 17), np.int32)
out = {}
for mesh_spec, K in (("data=1,fsdp=1,tensor=8", 1), ("data=2,fsdp=2,tensor=2", 2)):
    cfg = dataclasses.replace(CFG, mesh=mesh_spec, train=dataclasses.replace(CFG.train, microbatches=K))
    mesh = sharding.make_mesh(mesh_spec)
    step = compile_step(cfg, mesh)
    params, opt_state = step.init_state()
    losses = []
    with jax.set_mesh(mesh):
        for i, b in enumerate(batches):
            b = jax.device_put(b, step.batch_sh)
            params, opt_state, m = step(params, opt_state, b, np.int32(i))
            losses.append(float(m["loss"]))
    out[K] = losses
print(json.dumps(out))
"""


@pytest.mark.slow
def test_microbatches_on_a_sharded_mesh_match_the_whole_batch():
    """2 micro-batches over data=2 x fsdp=2 (each device holds its rows of every micro-batch) give
    the loss curve of the whole batch at once (8 fake CPU devices, a subprocess)."""
    import json

    from tests.helpers.runs import run_python

    proc = run_python(_SHARDED_MICRO, devices=8, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    curves = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(curves["2"], curves["1"], rtol=1e-4)
    assert curves["1"][-1] < curves["1"][0]


def test_weight_decay_skips_norms_of_scanned_stacks():
    """Stacked layers make a norm's scale [L, D]: decay is chosen by name, not by rank."""
    import jax
    from flax import nnx

    from lab.config import ModelConfig
    from lab.model.transformer import Transformer
    from lab.training.optimizer import decays

    model = Transformer(
        ModelConfig(d_model=32, n_layers=3, n_heads=4, seq_len=16, vocab_size=64), rngs=nnx.Rngs(params=0)
    )
    params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
    flags = {
        jax.tree_util.keystr(path): decays(path, p) for path, p in jax.tree_util.tree_leaves_with_path(params)
    }
    assert flags["['blocks']['attn_norm']['scale']"] is False and flags["['final_norm']['scale']"] is False
    assert flags["['blocks']['attn']['wq']"] is True and flags["['embed']"] is True
    assert sum(flags.values()) == 1 + 6  # the embedding and the six stacked matmul weights


def test_runs_of_one_shape_share_one_compiled_step(monkeypatch):
    """Issue 25: two configs that differ only in learning rate and length (and so in warmup and
    decay) trace and compile one step program in a process (the schedule's numbers are its
    arguments), and each gives the losses of a step with its schedule's numbers as constants,
    bit for bit, through warmup, the stable phase and the decay."""
    from lab.training.optimizer import schedule_args

    monkeypatch.setattr(step_module, "_CACHE", {})
    traces = []
    real_make_step = step_module.make_step

    def counting(*args, **kw):
        fn = real_make_step(*args, **kw)
        return lambda *a: traces.append(1) or fn(*a)

    monkeypatch.setattr(step_module, "make_step", counting)
    short = dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, lr=3e-3, steps=12))
    long = dataclasses.replace(CFG, train=dataclasses.replace(CFG.train, lr=1.1e-3, steps=21))
    mesh = sharding.make_mesh("")
    a, b = compile_step(short, mesh), compile_step(long, mesh)
    assert len(traces) == 1 and b.executable is a.executable and b.compile_s == 0.0 < a.compile_s
    batches = np.random.default_rng(2).integers(0, 8, (21, 8, 17), np.int32)
    for cfg, compiled in ((short, a), (long, b)):
        constant = jax.jit(
            lambda p, o, x, i, cfg=cfg: real_make_step(compiled.graphdef, cfg)(p, o, x, i, schedule_args(cfg)),
            donate_argnums=(0, 1),
            in_shardings=(*compiled.state_sh, compiled.batch_sh, sharding.replicated(mesh)),
            out_shardings=(*compiled.state_sh, sharding.replicated(mesh)),
        )
        curves = {}
        for name, fn in (("shared", compiled), ("constant", constant)):
            params, opt_state = compiled.init_state()
            curves[name] = []
            with jax.set_mesh(mesh):
                for i, batch in enumerate(batches[: cfg.total_steps]):
                    batch = jax.device_put(batch, compiled.batch_sh)
                    params, opt_state, metrics = fn(params, opt_state, batch, np.int32(i))
                    curves[name].append((float(metrics["loss"]), float(metrics["lr"])))
        assert curves["shared"] == curves["constant"] and len(curves["shared"]) == cfg.total_steps
        assert curves["shared"][-1][1] == pytest.approx(cfg.train.lr * 0.1, rel=1e-5)  # decayed to the floor
    assert len(traces) == 1  # the constant-schedule steps are traced by `real_make_step`, not counted
