"""Persistent XLA compilation cache for the analysis entry points (CLI, benchmarks).

Compiling the batched fits takes a few seconds; with the cache a fresh `lab fit` process loads
them from disk instead. Called by entry points only, never on import, and it leaves a cache
directory someone else already configured alone.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DIR = Path(os.environ.get("SCALING_LAB_JAX_CACHE", Path.home() / ".cache" / "scaling-lab" / "jax"))


def enable_persistent_cache(path: str | os.PathLike | None = None) -> str | None:
    """Point JAX's persistent compilation cache at `path` (default ~/.cache/scaling-lab/jax).

    Returns the directory in use, or None if it could not be created.
    """
    if os.environ.get("LAB_COMPILATION_CACHE", "1") == "0":  # the same switch as the lab's (lab.training.runtime)
        return None
    import jax

    current = jax.config.jax_compilation_cache_dir
    if current:
        return current
    path = Path(path) if path is not None else DEFAULT_DIR
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # our programs compile in ~1-3 s; cache them all (the default threshold is 1 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)
