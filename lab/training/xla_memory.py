"""XLA's memory analysis of a compiled step, and the memory report a run records: bytes per
device of the compiled program, of the live state, and the pre-flight estimate (`lab.memory`).
"""

from __future__ import annotations

from lab import sharding

MEMORY_KEYS = (
    "argument_size_in_bytes",
    "output_size_in_bytes",
    "temp_size_in_bytes",
    "generated_code_size_in_bytes",
    "alias_size_in_bytes",
)


def xla_memory(executable) -> dict:
    """XLA's memory analysis of a compiled program, bytes per device ({} where not implemented)."""
    try:
        mem = executable.memory_analysis()
    except Exception:  # not every backend implements it
        return {}
    return {key: int(getattr(mem, key)) for key in MEMORY_KEYS if mem is not None and hasattr(mem, key)}


def memory_report(cfg, mesh, step_memory: dict, params, opt_state, members: int = 1) -> dict:
    """Bytes per device of the compiled step (`step_memory`: its `xla_memory`), of the live state,
    and the pre-flight estimate (`lab.memory`) it can be held against; `members`: the runs the
    step trains at once (a pack's K: the estimate is K single runs')."""
    from lab.memory import estimate, xla_needed

    guess, xla = estimate(cfg, dict(mesh.shape)).total * members, xla_needed(step_memory)
    return {
        "param_bytes_per_device": sharding.bytes_per_device(params),
        "opt_state_bytes_per_device": sharding.bytes_per_device(opt_state),
        **{f"step_{key}": value for key, value in step_memory.items()},
        "estimate_bytes_per_device": guess,
        "estimate_over_xla": guess / xla if xla else None,
    }
