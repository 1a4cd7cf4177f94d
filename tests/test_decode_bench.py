"""The decode benchmark measures what it says: the uncached path decodes the same greedy tokens as
the KV cache, the roofline arithmetic, and the report and figure of a short run."""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from lab.bench.decode import (
    PROMPT,
    decode_config,
    format_decode,
    kv_bytes_per_position,
    plot_decode,
    roofline,
    run_decode_bench,
    uncached_times,
)
from lab.evals.generate import generate
from lab.model.transformer import Transformer


def test_recomputing_the_prefix_decodes_what_the_cache_decodes():
    m = decode_config("tiny", ["model.d_model=32", "model.n_heads=4"], 40)
    model = Transformer(m, rngs=nnx.Rngs(params=3))
    graphdef, state = nnx.split(model, nnx.Param)
    params = nnx.to_pure_dict(state)
    _, uncached = uncached_times(m, params, 2, (10, 40))
    cached = generate(graphdef, m, params, jnp.ones((2, PROMPT), jnp.int32), 40, jax.random.key(0))
    assert uncached.shape == (2, 40)
    assert (uncached == cached).all()


def test_roofline_counts_weights_once_and_the_cache_per_sequence():
    m = decode_config("tiny", [], 64)
    per_pos = kv_bytes_per_position(m)
    assert per_pos == 2 * m.n_layers * m.kv_heads * m.head_dim * 4
    r = roofline(m, 1000, 4, 32, bandwidth=1e9)
    assert r["bytes_per_step"] == 1000 + 4 * per_pos * (PROMPT + 16)
    assert r["roofline_tokens_per_s"] == pytest.approx(4 * 1e9 / r["bytes_per_step"])


@pytest.mark.slow
def test_a_short_run_reports_every_format_and_writes_its_figure(tmp_path):
    res = run_decode_bench(
        "tiny", ["model.d_model=32", "model.n_heads=4"], lengths=(8, 16), batches=(1,), format_length=8
    )
    assert [r["new_tokens"] for r in res["cache"]] == [8, 16]
    assert [r["format"] for r in res["formats"]] == ["f32", "bf16", "int8", "int4"]
    by = {r["format"]: r["weight_bytes"] for r in res["formats"]}
    assert by["bf16"] * 2 == by["f32"] and by["int4"] < by["int8"] < by["bf16"]
    assert all(r["tokens_per_s"] > 0 and r["roofline_tokens_per_s"] > 0 for r in res["formats"])
    assert "roofline" in format_decode(res)
    paths = plot_decode(res, tmp_path)
    assert all(p.exists() for p in paths)
