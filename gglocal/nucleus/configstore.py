"""Component configuration store: one JSON tree per component, change events per key path.

Mirrors what components can observe of the nucleus config store: GetConfiguration,
UpdateConfiguration (merge at a key path with a timestamp check), and change notifications
for SubscribeToConfigurationUpdate. Deployments replace whole trees (reset + merge).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..ipc.host import (  # the IPC layer's errors, so operations map them without importing the nucleus
    ConfigError,
    StaleUpdateError,
)

KeyPath = tuple[str, ...]
Listener = Callable[[str, list[str]], None]


def merge(base: Any, update: Any) -> Any:
    """Deployment/IPC merge: objects merge key by key, anything else (lists too) replaces."""
    if isinstance(base, dict) and isinstance(update, dict):
        out = dict(base)
        for k, v in update.items():
            out[k] = merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(update)


def get_path(tree: Any, path: KeyPath) -> Any:
    node = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise KeyError("/".join(path))
        node = node[key]
    return node


def reset_pointer(config: dict[str, Any], default: dict[str, Any], pointer: str) -> dict[str, Any]:
    """Apply one deployment `reset` JSON pointer: restore that node from the default (or remove it)."""
    if pointer in ("", "/"):
        return copy.deepcopy(default)
    if not pointer.startswith("/"):
        raise ConfigError(f"reset path {pointer!r} is not a JSON pointer (must start with '/')")
    keys = tuple(k.replace("~1", "/").replace("~0", "~") for k in pointer[1:].split("/"))
    out = copy.deepcopy(config)
    parent = out
    for k in keys[:-1]:
        if not isinstance(parent.get(k), dict):
            return out
        parent = parent[k]
    try:
        parent[keys[-1]] = copy.deepcopy(get_path(default, keys))
    except KeyError:
        parent.pop(keys[-1], None)
    return out


def _changed_paths(old: Any, new: Any, prefix: KeyPath, out: list[KeyPath]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in old.keys() | new.keys():
            if k not in old or k not in new:
                out.append(prefix + (k,))
            else:
                _changed_paths(old[k], new[k], prefix + (k,), out)
    elif old != new:
        out.append(prefix)


class ConfigStore:
    def __init__(self, persist_path: Path | None = None) -> None:
        self._configs: dict[str, dict[str, Any]] = {}
        self._stamps: dict[str, dict[KeyPath, float]] = {}
        self._listeners: list[tuple[str, KeyPath, Listener]] = []
        self._persist_path = persist_path
        self.version = 0  # bumped on every change; lets readers cache what they derive from config
        if persist_path and persist_path.exists():
            self._configs = json.loads(persist_path.read_text())

    def components(self) -> list[str]:
        return sorted(self._configs)

    def has(self, component: str) -> bool:
        return component in self._configs

    def get(self, component: str, key_path: list[str] | KeyPath = ()) -> Any:
        """Deep copy of the node at key_path; KeyError when the component or key is missing."""
        if component not in self._configs:
            raise KeyError(component)
        return copy.deepcopy(get_path(self._configs[component], tuple(key_path)))

    def peek(self, component: str, key_path: KeyPath = ()) -> Any:
        """Like get() but without copying and None when missing; callers must not mutate it."""
        try:
            return get_path(self._configs.get(component, {}), key_path)
        except KeyError:
            return None

    def replace(self, component: str, config: dict[str, Any]) -> list[KeyPath]:
        """Set the whole tree (deployments); notifies listeners of what changed."""
        old = self._configs.get(component, {})
        new = copy.deepcopy(config)
        changed: list[KeyPath] = []
        _changed_paths(old, new, (), changed)
        self._configs[component] = new
        now = time.time()
        stamps = self._stamps.setdefault(component, {})
        for p in changed:
            stamps[p] = now
        self._save()
        self._notify(component, changed)
        return changed

    def remove(self, component: str) -> None:
        self._configs.pop(component, None)
        self._stamps.pop(component, None)
        self._save()

    def update(self, component: str, key_path: list[str], value: Any, timestamp: float | None) -> list[KeyPath]:
        """UpdateConfiguration: merge `value` at key_path, refusing updates older than stored values."""
        if component not in self._configs:
            raise KeyError(component)
        path = tuple(key_path)
        ts = time.time() if timestamp is None else float(timestamp)
        old_tree = self._configs[component]
        try:
            old_node = get_path(old_tree, path)
        except KeyError:
            old_node = None
        new_node = merge(old_node, value) if isinstance(value, dict) else copy.deepcopy(value)
        changed: list[KeyPath] = []
        _changed_paths(old_node, new_node, path, changed)
        stamps = self._stamps.setdefault(component, {})
        for p in changed:
            for q, stamp in stamps.items():
                if (q[: len(p)] == p or p[: len(q)] == q) and stamp > ts:
                    raise StaleUpdateError(
                        f"{'/'.join(p) or '/'} was updated at {stamp:.3f}, after the request's timestamp {ts:.3f}"
                    )
        if not path:
            if not isinstance(new_node, dict):
                raise ConfigError("the configuration root must be an object")
            self._configs[component] = new_node
        else:
            new_tree = copy.deepcopy(old_tree)
            parent = new_tree
            for k in path[:-1]:
                if not isinstance(parent.get(k), dict):
                    parent[k] = {}
                parent = parent[k]
            parent[path[-1]] = new_node
            self._configs[component] = new_tree
        for p in changed:
            stamps[p] = ts
        self._save()
        self._notify(component, changed)
        return changed

    def subscribe(self, component: str, key_path: list[str] | KeyPath, listener: Listener) -> Callable[[], None]:
        entry = (component, tuple(key_path), listener)
        self._listeners.append(entry)

        def unsubscribe() -> None:
            if entry in self._listeners:
                self._listeners.remove(entry)

        return unsubscribe

    def _notify(self, component: str, changed: list[KeyPath]) -> None:
        if not changed:
            return
        for comp, prefix, listener in list(self._listeners):
            if comp != component:
                continue
            for p in changed:
                if p[: len(prefix)] == prefix or prefix[: len(p)] == p:
                    listener(component, list(p))

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return copy.deepcopy(self._configs)

    def _save(self) -> None:
        self.version += 1
        if self._persist_path is None:
            return
        tmp = self._persist_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._configs, indent=1, sort_keys=True))
        os.replace(tmp, self._persist_path)
