"""Load a study file: a Python file whose `study()` function returns a `Study`.

Anything wrong with the file — a syntax error, an exception while building the study, a missing
`study()` or a wrong return type — becomes one ConfigError line naming the file and the place.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

from lab.config import ConfigError
from lab.study.spec import Study, check_values


def load_study(path: str | Path) -> Study:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study file {path} does not exist")
    name = f"_lab_study_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ConfigError(f"study file {path}: syntax error at line {e.lineno}: {e.msg}") from None
    except SystemExit as e:
        raise ConfigError(
            f"study file {path}: called sys.exit({e.code!r}) while loading{_where(e, path)}"
        ) from None
    except ConfigError as e:
        raise ConfigError(f"study file {path}: {e}") from None
    except Exception as e:
        raise ConfigError(f"study file {path}: {type(e).__name__}: {e}{_where(e, path)}") from None
    build = getattr(module, "study", None)
    if not callable(build):
        raise ConfigError(f"study file {path} defines no study() function returning a lab.study.Study")
    try:
        study = build()
    except ConfigError as e:
        raise ConfigError(f"study file {path}: {e}") from None
    except SystemExit as e:  # sys.exit() in a study file is a mistake, not the command's exit status
        raise ConfigError(f"study file {path}: study() called sys.exit({e.code!r}){_where(e, path)}") from None
    except TypeError as e:  # e.g. Study(...) missing a required field or given an unknown one
        raise ConfigError(f"study file {path}: study(): {e}{_where(e, path)}") from None
    except Exception as e:
        raise ConfigError(f"study file {path}: study() raised {type(e).__name__}: {e}{_where(e, path)}") from None
    if not isinstance(study, Study):
        raise ConfigError(f"study file {path}: study() returned {type(study).__name__}, not a lab.study.Study")
    check_values(study)
    return study


def _where(exc: BaseException, path: Path) -> str:
    """' (line N)' for the deepest frame of the traceback that is in the study file."""
    target = path.resolve()
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == target]
    return f" (line {lines[-1]})" if lines else ""
