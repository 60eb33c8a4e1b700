"""Reading component configuration values: typed, range-checked, errors that name the key."""

from __future__ import annotations

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
