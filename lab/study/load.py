"""Load a study file (a Python file whose `study()` function returns a `Study`) or a run's config
file (`lab train --config FILE.py`: its `config()` returns a `RunConfig`).

Anything wrong with the file — a syntax error, an exception while building, a missing function or
a wrong return type — becomes one ConfigError line naming the file and the place.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import traceback
from pathlib import Path

from lab.config import ConfigError, RunConfig
from lab.study.spec import Study, check_values


def load_study(path: str | Path) -> Study:
    study = _built(Path(path), "study", "study", "lab.study.Study")
    if not isinstance(study, Study):
        raise ConfigError(f"study file {path}: study() returned {type(study).__name__}, not a lab.study.Study")
    check_values(study)
    if study.lr_law and not Path(study.lr_law).is_absolute():  # relative to the study file
        study = dataclasses.replace(study, lr_law=str(Path(path).parent / study.lr_law))
    return study


def load_run_config(path: str | Path) -> RunConfig:
    """The RunConfig that FILE.py's `config()` returns (not yet validated)."""
    cfg = _built(Path(path), "config", "config", "lab.config.RunConfig")
    if not isinstance(cfg, RunConfig):
        raise ConfigError(
            f"config file {path}: config() returned {type(cfg).__name__}, not a lab.config.RunConfig"
        )
    return cfg


def _built(path: Path, kind: str, func: str, returns: str):
    """What `func()` of the Python file at `path` returns; `kind` names the file in errors."""
    label = f"{kind} file {path}"
    if not path.is_file():
        raise ConfigError(f"{label} does not exist")
    name = f"_lab_{kind}_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"{label}: syntax error at line {e.lineno}: {e.msg}") from None
    except SystemExit as e:
        raise ConfigError(f"{label}: called sys.exit({e.code!r}) while loading{_where(e, path)}") from None
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    except Exception as e:
        raise ConfigError(f"{label}: {type(e).__name__}: {e}{_where(e, path)}") from None
    build = getattr(module, func, None)
    if not callable(build):
        raise ConfigError(f"{kind} file {path} defines no {func}() function returning a {returns}")
    try:
        return build()
    except ConfigError as e:
        raise ConfigError(f"{label}: {e}") from None
    except SystemExit as e:  # sys.exit() in such a file is a mistake, not the command's exit status
        raise ConfigError(f"{label}: {func}() called sys.exit({e.code!r}){_where(e, path)}") from None
    except TypeError as e:  # e.g. Study(...) missing a required field or given an unknown one
        raise ConfigError(f"{label}: {func}(): {e}{_where(e, path)}") from None
    except Exception as e:
        raise ConfigError(f"{label}: {func}() raised {type(e).__name__}: {e}{_where(e, path)}") from None


def _where(exc: BaseException, path: Path) -> str:
    """' (line N)' for the deepest frame of the traceback that is in the file."""
    target = path.resolve()
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == target]
    return f" (line {lines[-1]})" if lines else ""
