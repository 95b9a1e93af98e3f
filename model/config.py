"""`--key=value` overrides for config dataclasses; unknown keys are refused."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any, TypeVar, get_args, get_type_hints

T = TypeVar("T")


def _parse(value: str, kind: Any) -> object:
    if kind is bool:
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected a boolean, got {value!r}")
    if kind is int:
        return int(value)
    if kind is float:
        return float(value)
    if kind is str:
        return value
    if value.lower() in ("none", "null"):
        return None
    if str in get_args(kind):  # an optional string (a path): taken as written
        return value
    parsed = json.loads(value)  # tuples, lists, optional numbers
    if isinstance(parsed, list):
        return tuple(tuple(x) if isinstance(x, list) else x for x in parsed)
    return parsed


def apply_overrides(config: T, args: Sequence[str]) -> T:
    """Return ``config`` with each ``--key=value`` applied; unknown keys raise ValueError."""
    hints = get_type_hints(type(config))
    fields = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    changes: dict[str, object] = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"expected --key=value, got {arg!r}")
        key, value = arg[2:].split("=", 1)
        key = key.replace("-", "_")
        if key not in fields:
            raise ValueError(f"unknown setting {key!r}; known: {', '.join(sorted(fields))}")
        try:
            changes[key] = _parse(value, hints[key])
        except ValueError as exc:
            raise ValueError(f"bad value for {key}: {exc}") from exc
    return dataclasses.replace(config, **changes)  # type: ignore[type-var]
