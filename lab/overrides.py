"""`--set key=value` overrides of the frozen config dataclasses (`lab.config`), and building them
from a saved dict (a run's config.json).

Every field can be overridden from the command line by its dotted name, e.g. `--set model.d_model=96`;
values are parsed according to the field's declared type, and unknown keys or badly typed values raise
`ConfigError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from lab.config import ConfigError


def from_dict(cls, data: dict):
    """Build a (nested) config dataclass from a dict, e.g. a saved config.json."""
    kwargs = {}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key {cls.__name__}.{key}")
        tp = hints[key]
        kwargs[key] = from_dict(tp, value) if dataclasses.is_dataclass(tp) else value
    return cls(**kwargs)


def apply_overrides(cfg, overrides: typing.Iterable[str]):
    """Apply `key=value` strings (dotted keys into nested dataclasses) to a frozen config."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        cfg = set_path(cfg, key.strip(), raw.strip())
    return cfg


def set_path(cfg, dotted: str, raw, prefix: str = ""):
    head, _, rest = dotted.partition(".")
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    full = prefix + dotted
    if head not in fields:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"unknown config key {full!r} (known{' in ' + prefix[:-1] if prefix else ''}: {known})")
    hints = typing.get_type_hints(type(cfg))
    current = getattr(cfg, head)
    if dataclasses.is_dataclass(current):
        if not rest:
            raise ConfigError(f"{full!r} is a group; set one of its fields, e.g. {full}.<field>=...")
        return dataclasses.replace(cfg, **{head: set_path(current, rest, raw, prefix + head + ".")})
    if rest:
        raise ConfigError(f"{prefix + head!r} has no sub-field {rest!r}")
    return dataclasses.replace(cfg, **{head: parse_value(full, hints[head], raw)})


def parse_value(key: str, tp, raw):
    """Parse a command-line string into the declared type of a config field."""
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if raw.lower() in ("none", "null"):
                    return None
                continue
            try:
                return parse_value(key, arg, raw)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: cannot parse {raw!r} as {tp}")
    try:
        if tp is bool:
            low = raw.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            value = float(raw)  # accept 1e6 for integers
            if value != int(value):
                raise ValueError
            return int(value)
        if tp is float:
            return float(raw)
        if tp is str:
            return raw
    except ValueError:
        raise ConfigError(f"{key}: expected {tp.__name__}, got {raw!r}") from None
    raise ConfigError(f"{key}: unsupported field type {tp}")
