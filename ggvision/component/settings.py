"""Reading component configuration values: typed, range-checked, errors that name the key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def number(cfg: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    """A number from `cfg[key]` (or `default`) within [lo, hi]; ValueError naming the key otherwise."""
    v = cfg.get(key, default)
    if isinstance(v, str):  # Greengrass recommends numbers as strings in configuration
        try:
            v = float(v)
        except ValueError:
            raise ValueError(f"{key}: expected a number, got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ValueError(f"{key}: expected a number from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


def whole_number(cfg: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    """An integer from `cfg[key]` (a number or a numeric string, as `number`), within [lo, hi]."""
    v = number(cfg, key, default, lo, hi)
    if v != int(v):
        raise ValueError(f"{key}: expected a whole number, got {v!r}")
    return int(v)


def boolean(cfg: dict[str, Any], key: str, default: bool) -> bool:
    """true/false, or the strings "true"/"false" (Greengrass configuration often carries strings)."""
    v = cfg.get(key, default)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ValueError(f"{key}: expected true or false, got {v!r}")
    return v


def validator(parse: Callable[[dict[str, Any]], object]) -> Callable[[dict[str, Any]], str | None]:
    """The ComponentApp validator of a configuration parser: the parser's ValueError text, or None if valid."""

    def validate(cfg: dict[str, Any]) -> str | None:
        try:
            parse(cfg)
        except ValueError as e:
            return str(e)
        return None

    return validate


def entries(value: Any, key: str, what: str) -> dict[str, Any]:
    """A configuration map of id -> settings object (cameras, sensors, ...), without the ids set to null: a
    deployment's merge cannot delete a key, so null is how an entry is removed. ValueError naming the key."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected an object of {what} id -> settings")
    out = {}
    for item_id, settings in value.items():
        if settings is None:
            continue
        if not isinstance(settings, Mapping):
            raise ValueError(f"{key}.{item_id}: expected an object")
        out[item_id] = settings
    return out
