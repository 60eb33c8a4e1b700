"""Reading recipe documents: JSON/YAML text, and the typed field reads every recipe parser shares.

Gives `RecipeError` (names the file and the key path), `parse_document` (JSON or YAML, no implicit
YAML dates, as the nucleus reads them) and `RecipeReader`, which reads one document's values:
case-insensitive keys (duplicates differing only by case are refused), strings, enums, Setenv-style
maps, timeouts and booleans, each failure reported with its key path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import yaml


class RecipeError(ValueError):
    """A recipe is malformed or cannot be used; the message names the file and the key path."""


class _NoDatesLoader(yaml.SafeLoader):
    """SafeLoader without timestamp typing: an unquoted ``2020-01-25`` stays a string, as in Java."""


_NoDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_document(data: str | bytes, source: str = "<recipe>") -> Any:
    """Parse JSON or YAML text the way recipes are read (no implicit YAML dates)."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        return json.loads(text)
    except ValueError as exc:
        if source.lower().endswith(".json"):
            raise RecipeError(f"{source}: invalid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_NoDatesLoader)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: invalid YAML/JSON: {exc}") from None


def join_path(path: str, key: str | int) -> str:
    """The key path of ``key`` inside ``path``, as error messages show it (``A.B[2].C``)."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def show(value: Any) -> str:
    """A value as an error message quotes it (repr, cut to 60 characters)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class RecipeReader:
    """Reads the values of one recipe document, keeping the source label for every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> RecipeError:
        return RecipeError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    def ci(self, value: Any, path: str) -> dict[str, tuple[str, Any]]:
        """Lower-case a mapping's keys; values keep the key as written (for error paths)."""
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object, got {show(value)}")
        out: dict[str, tuple[str, Any]] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise self.error(path, f"keys must be strings, got {show(key)}")
            low = key.lower()
            if low in out:
                raise self.error(path, f"duplicate key {key!r} (keys are case-insensitive; "
                                       f"also given as {out[low][0]!r})")
            out[low] = (key, item)
        return out

    def string(self, value: Any, path: str, *, allow_scalar: bool = False) -> str:
        if isinstance(value, str):
            return value
        if allow_scalar and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if allow_scalar and isinstance(value, bool):
            return "true" if value else "false"
        hint = " (quote it in YAML)" if isinstance(value, (int, float, bool)) else ""
        raise self.error(path, f"expected a string, got {show(value)}{hint}")

    def enum(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        text = self.string(value, path).upper()
        if text not in allowed:
            raise self.error(path, f"expected one of {', '.join(allowed)}, got {show(value)}")
        return text

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        """Setenv-style map: names keep their case, scalar values become strings."""
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object of NAME: value, got {show(value)}")
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise self.error(path, f"names must be non-empty strings, got {show(key)}")
            out[key] = self.string(item, join_path(path, key), allow_scalar=True)
        return out

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool):
            raise self.error(path, f"expected a number, got {show(value)}")
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                raise self.error(path, f"expected a number, got {show(value)}") from None
        if not number > 0 or number != number or number == float("inf"):
            raise self.error(path, f"expected a positive number of seconds, got {show(value)}")
        return number

    def boolean(self, value: Any, path: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self.error(path, f"expected true or false, got {show(value)}")
