"""One TOML value checked against a config field's type and coerced to it; errors name the key."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from shelfsense.errors import ConfigError

__all__ = ["coerce"]


def coerce(key: str, type_: Any, value: Any, base_dir: Path) -> Any:
    optional = isinstance(type_, types.UnionType) and type(None) in typing.get_args(type_)
    if optional:
        if value in ("", None):
            return None
        (type_,) = [t for t in typing.get_args(type_) if t is not type(None)]
    if type_ is Path:
        if not isinstance(value, str):
            raise ConfigError(f"Config '{key}' must be a path string, got {value!r}")
        p = Path(value).expanduser()
        return p if p.is_absolute() else (base_dir / p).resolve()
    if type_ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"Config '{key}' must be true or false, got {value!r}")
        return value
    if type_ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"Config '{key}' must be an integer, got {value!r}")
        return value
    if type_ is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"Config '{key}' must be a number, got {value!r}")
        return float(value)
    if type_ is str:
        if not isinstance(value, str):
            raise ConfigError(f"Config '{key}' must be a string, got {value!r}")
        return value
    if type_ == tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"Config '{key}' must be a list of strings, got {value!r}")
        return tuple(value)
    raise AssertionError(f"no coercion for {key}: {type_}")  # pragma: no cover - programming error
