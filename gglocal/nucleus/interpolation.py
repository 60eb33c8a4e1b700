"""Recipe variables: ``{artifacts:path}``, ``{configuration:/ptr}``, ``{Dep.Name:work:path}``, ...

Unknown or unresolvable variables are left in the text unchanged, as the nucleus does, so a
script sees ``{configuration:/missing}`` literally rather than an empty string.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VARIABLE = re.compile(r"\{([^{}]+)\}")
_MISSING = object()


@dataclass
class ComponentPaths:
    artifacts_path: Path
    decompressed_path: Path
    work_path: Path
    configuration: dict[str, Any] = field(default_factory=dict)


@dataclass
class InterpolationContext:
    component: str
    paths: ComponentPaths
    kernel_root: Path
    thing_name: str
    dependencies: dict[str, ComponentPaths] = field(default_factory=dict)  # DIRECT dependencies only


def json_pointer(document: Any, pointer: str) -> Any:
    """Value at an RFC 6901 pointer, or the module's ``_MISSING`` sentinel when absent."""
    if pointer == "":
        return document
    if not pointer.startswith("/"):
        return _MISSING
    node = document
    for token in pointer[1:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")  # this order, per RFC 6901
        if isinstance(node, dict):
            if token not in node:
                return _MISSING
            node = node[token]
        elif isinstance(node, list):
            if not token.isdigit() or (token != "0" and token.startswith("0")) or int(token) >= len(node):
                return _MISSING
            node = node[int(token)]
        else:
            return _MISSING
    return node


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _lookup(paths: ComponentPaths, namespace: str, key: str) -> str | None:
    if namespace == "configuration":
        value = json_pointer(paths.configuration, key)
        return None if value is _MISSING else _render(value)
    if namespace == "artifacts" and key == "path":
        return str(paths.artifacts_path)
    if namespace == "artifacts" and key == "decompressedPath":
        return str(paths.decompressed_path)
    if namespace == "work" and key == "path":
        return str(paths.work_path)
    return None


def _replace(inner: str, ctx: InterpolationContext) -> str | None:
    namespace, sep, key = inner.partition(":")
    if not sep:
        return None
    # Own-component forms first: a pointer may itself contain ':' ({configuration:/a:b}).
    own = _lookup(ctx.paths, namespace, key)
    if own is not None:
        return own
    if namespace == "kernel" and key == "rootPath":
        return str(ctx.kernel_root)
    if namespace == "iot" and key == "thingName":
        return ctx.thing_name
    if namespace in ("configuration", "artifacts", "work", "kernel", "iot"):
        return None
    # {Component.Name:namespace:key} - only direct dependencies are visible.
    dep_namespace, sep, dep_key = key.partition(":")
    dep = ctx.dependencies.get(namespace)
    if not sep or dep is None:
        return None
    return _lookup(dep, dep_namespace, dep_key)


def interpolate(text: str, ctx: InterpolationContext) -> str:
    """Replace every recognised recipe variable in ``text``; anything else stays literal."""

    def sub(match: re.Match[str]) -> str:
        value = _replace(match.group(1), ctx)
        return match.group(0) if value is None else value

    return _VARIABLE.sub(sub, text)


def interpolate_tree(obj: Any, ctx: InterpolationContext) -> Any:
    """Return a copy of a nested dict/list with every string value interpolated (keys untouched)."""
    if isinstance(obj, str):
        return interpolate(obj, ctx)
    if isinstance(obj, dict):
        return {k: interpolate_tree(v, ctx) for k, v in obj.items()}
    if isinstance(obj, list):
        return [interpolate_tree(v, ctx) for v in obj]
    return obj
