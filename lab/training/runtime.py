"""Process set-up shared by every lab entry point (the `lab` command, study workers).

* The lab's warnings as one line each.
* A persistent XLA compilation cache (~/.cache/scaling-lab/jax, or $SCALING_LAB_JAX_CACHE): a
  study compiles each model shape once, not once per cell. LAB_COMPILATION_CACHE=0 disables it.
  A cache directory someone already configured is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    return Path(os.environ.get("SCALING_LAB_JAX_CACHE", Path.home() / ".cache" / "scaling-lab" / "jax"))


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str | None:
    """Point JAX's persistent compilation cache at `path`; returns the directory in use, or None
    when disabled or when it could not be created."""
    if os.environ.get("LAB_COMPILATION_CACHE", "1") == "0":
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    path = Path(path) if path is not None else cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    # the lab's programs compile in ~0.5-5 s; cache them all (the default threshold is 1 s)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return str(path)


def one_line_warnings() -> None:
    """The lab's own warnings (a damaged checkpoint set aside, …) print as one line each, without
    the source line Python appends; other libraries' warnings are left as they are."""
    import warnings

    original = warnings.formatwarning
    if getattr(original, "_lab", False):
        return

    def format_warning(message, category, filename, lineno, line=None):
        if category.__module__.split(".")[0] == "lab":
            return f"warning: {message}\n"
        return original(message, category, filename, lineno, line)

    format_warning._lab = True
    warnings.formatwarning = format_warning


def setup() -> None:
    """Everything a lab process needs before it compiles anything."""
    enable_compilation_cache()
    one_line_warnings()
