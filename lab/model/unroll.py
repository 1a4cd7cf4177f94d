"""Loops XLA's cost analysis can read. `jax.lax.scan` compiles to a while loop, and XLA's cost
analysis counts a loop's body once; traces made inside `unrolled_loops()` unroll the layer scan
(`lab.model.transformer.scan_layers`) and the chunked attention (`lab.model.attention_chunked`) into straight-line
code, so the FLOP audit (tests/test_costs.py, benchmarks/bench_attention.py) reads every iteration.
"""

from __future__ import annotations

import contextlib

_UNROLL = [False]


@contextlib.contextmanager
def unrolled_loops():
    """Inside: `unroll()` is True, and the lab's loops trace as straight-line code."""
    _UNROLL.append(True)
    try:
        yield
    finally:
        _UNROLL.pop()


def unroll() -> bool:
    """The `unroll=` argument for the lab's `jax.lax.scan` calls."""
    return _UNROLL[-1]
