"""Thing shadows with the document semantics of AWS IoT's Device Shadow service and Greengrass ShadowManager.

`ShadowStore` holds documents keyed by (thing, shadow name; '' is the classic shadow), persisted as one JSON
file. An update merges its `desired`/`reported` patch (null deletes a key, a null section deletes the section),
bumps the version and, like ShadowManager's UpdateThingShadowRequestHandler, publishes on the shadow topics:
`.../update/delta` (only while desired differs from reported), `.../update/documents` (previous and current)
and `.../update/accepted`; a refused update publishes `.../update/rejected`, a delete `.../delete/accepted`.
The nucleus wires `publish` to local pub/sub (ShadowManager sends them as binary messages) and the IoT Core
stand-in's Device Shadow service (shadowcloud.py) wires it to MQTT. `on_change` listeners (the cloud sync)
hear (thing, name, origin) after every change.

`merge_patch` and `three_way_merge` are the pieces the cloud sync (shadowsync.py) builds on.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..ipc.host import (  # the IPC layer's errors, so operations map them without importing the nucleus
    ShadowError,
    ShadowNotFound,
    ShadowVersionConflict,
)

Publish = Callable[[str, bytes], None]
ChangeListener = Callable[[str, str, str], None]  # thing, shadow name, origin ("local", "sync", ...)


def shadow_prefix(thing: str, name: str = "") -> str:
    """The reserved topic prefix of a shadow (AWS IoT developer guide, "Device Shadow MQTT topics")."""
    return f"$aws/things/{thing}/shadow" + (f"/name/{name}" if name else "")


def _apply(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    # JSON merge: null deletes a key, objects merge, anything else replaces.
    out = dict(doc)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _apply(out[k], v)
        elif isinstance(v, dict):
            out[k] = _apply({}, v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _delta(desired: Any, reported: Any) -> Any:
    if isinstance(desired, dict):
        rep = reported if isinstance(reported, dict) else {}
        out = {}
        for k, v in desired.items():
            d = _delta(v, rep.get(k)) if k in rep else copy.deepcopy(v)
            if d is not None:
                out[k] = d
        return out or None
    return None if desired == reported else copy.deepcopy(desired)


def _metadata(state: Any, ts: int) -> Any:
    if isinstance(state, dict):
        return {k: _metadata(v, ts) for k, v in state.items()}
    return {"timestamp": ts}


def merge_patch(old: Any, new: Any) -> Any:
    """The update patch that turns `old` into `new` under shadow merge rules (removed keys become null);
    None when they are equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = {k: None for k in old if k not in new}
        for k, v in new.items():
            if k not in old:
                out[k] = copy.deepcopy(v)
            elif old[k] != v:
                both = isinstance(v, dict) and isinstance(old[k], dict)
                out[k] = merge_patch(old[k], v) if both else copy.deepcopy(v)
        return out or None
    return None if old == new else copy.deepcopy(new)


_ABSENT = object()


def three_way_merge(local: Any, cloud: Any, base: Any, prefer: str) -> Any:
    """ShadowManager's sync merge (aws-greengrass-shadow-manager, util/SyncNodeMerger.java): objects merge key by
    key against the last synced document `base`; a value changed on one side only wins; changed on both, the
    `prefer` side ("local" or "cloud") wins. Missing values are _ABSENT; the result may be _ABSENT."""
    if local is _ABSENT and cloud is _ABSENT:
        return _ABSENT
    if isinstance(local, dict) and isinstance(cloud, dict) and isinstance(base, dict):
        out = {}
        for k in [*local, *(k for k in cloud if k not in local)]:
            v = three_way_merge(local.get(k, _ABSENT), cloud.get(k, _ABSENT), base.get(k, _ABSENT), prefer)
            if v is not _ABSENT:
                out[k] = v
        return out if out else _ABSENT
    local_changed, cloud_changed = local != base, cloud != base
    if local_changed and not cloud_changed:
        return local
    if cloud_changed and not local_changed:
        return cloud
    return local if prefer == "local" else cloud


class ShadowStore:
    """Shadows keyed by (thing, shadow name); see the module docstring. Thread-safe."""

    def __init__(self, path: Path | None = None, publish: Publish | None = None) -> None:
        self._path = path
        self._docs: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()
        self.publish = publish
        self.on_change: list[ChangeListener] = []
        if path and path.exists():
            self._docs = json.loads(path.read_text())

    @staticmethod
    def _key(thing: str, name: str) -> str:
        return f"{thing}\x00{name}"

    def document(self, thing: str, name: str = "") -> dict[str, Any] | None:
        """The stored document (state.desired/reported, version) as a copy, or None."""
        with self._lock:
            doc = self._docs.get(self._key(thing, name))
            return copy.deepcopy(doc) if doc is not None else None

    def get(self, thing: str, name: str = "") -> dict[str, Any]:
        with self._lock:
            doc = self._docs.get(self._key(thing, name))
            if doc is None:
                raise ShadowNotFound(f"No shadow exists with name: {name or 'classic'} for thing {thing}")
            return self._view(doc)

    @staticmethod
    def _view(doc: dict[str, Any]) -> dict[str, Any]:
        state = {k: copy.deepcopy(v) for k, v in doc["state"].items() if v}
        delta = _delta(doc["state"].get("desired", {}), doc["state"].get("reported", {}))
        if delta:
            state["delta"] = delta
        return {"state": state, "metadata": copy.deepcopy(doc["metadata"]), "version": doc["version"],
                "timestamp": int(time.time())}

    def update(self, thing: str, name: str, payload: bytes, origin: str = "local") -> dict[str, Any]:
        prefix = shadow_prefix(thing, name)
        token = None
        try:
            try:
                req = json.loads(payload)
            except (ValueError, UnicodeDecodeError) as e:
                raise ShadowError(f"shadow update payload is not JSON: {e}") from None
            if isinstance(req, dict) and isinstance(req.get("clientToken"), str):
                token = req["clientToken"]
            with self._lock:
                out, messages = self._update(thing, name, req, token)
        except ShadowError as e:
            code = 409 if isinstance(e, ShadowVersionConflict) else 400
            self._send(f"{prefix}/update/rejected", _error(code, str(e), token))
            raise
        for topic, message in messages:
            self._send(f"{prefix}/{topic}", message)
        self._changed(thing, name, origin)
        return out

    def _update(self, thing: str, name: str, req: Any, token: str | None) -> tuple[dict[str, Any], list]:
        if not isinstance(req, dict) or not isinstance(req.get("state"), dict):
            raise ShadowError("shadow update payload must be an object with a 'state' object")
        unknown = set(req["state"]) - {"desired", "reported"}
        if unknown:
            raise ShadowError(f"shadow state may only contain desired/reported, got {sorted(unknown)}")
        key = self._key(thing, name)
        previous = self._docs.get(key)
        doc = copy.deepcopy(previous) if previous else {"state": {}, "metadata": {}, "version": 0}
        if "version" in req and req["version"] != doc["version"]:
            raise ShadowVersionConflict(
                f"Version conflict: shadow is at version {doc['version']}, request has {req['version']}")
        ts = int(time.time())
        for section in ("desired", "reported"):
            if section in req["state"]:
                patch = req["state"][section]
                if patch is None:
                    doc["state"].pop(section, None)
                    doc["metadata"].pop(section, None)
                    continue
                if not isinstance(patch, dict):
                    raise ShadowError(f"state.{section} must be an object or null")
                doc["state"][section] = _apply(doc["state"].get(section, {}), patch)
                doc["metadata"][section] = _apply(doc["metadata"].get(section, {}), _metadata(patch, ts))
        doc["version"] += 1
        self._docs[key] = doc
        self._save()
        tok = {"clientToken": token} if token else {}
        out = {"state": req["state"], "metadata": {k: _metadata(v, ts) for k, v in req["state"].items() if v},
               "version": doc["version"], "timestamp": ts, **tok}
        messages: list[tuple[str, dict[str, Any]]] = []
        delta = _delta(doc["state"].get("desired", {}), doc["state"].get("reported", {}))
        if delta:  # ShadowManager publishes a delta after every update that leaves desired != reported
            messages.append(("update/delta", {"state": delta, "version": doc["version"], "timestamp": ts, **tok}))
        current = self._view(doc)
        messages.append(("update/documents", {
            "previous": self._view(previous) if previous else None, "current": current, "timestamp": ts, **tok}))
        messages.append(("update/accepted", out))
        return out, messages

    def delete(self, thing: str, name: str = "", origin: str = "local", token: str | None = None) -> dict[str, Any]:
        with self._lock:
            doc = self._docs.pop(self._key(thing, name), None)
            if doc is None:
                self._send(f"{shadow_prefix(thing, name)}/delete/rejected",
                           _error(404, f"No shadow exists with name: {name or 'classic'}", token))
                raise ShadowNotFound(f"No shadow exists with name: {name or 'classic'} for thing {thing}")
            self._save()
        out = {"version": doc["version"], "timestamp": int(time.time()), **({"clientToken": token} if token else {})}
        self._send(f"{shadow_prefix(thing, name)}/delete/accepted", out)
        self._changed(thing, name, origin)
        return out

    def list_named(self, thing: str) -> list[str]:
        prefix = f"{thing}\x00"
        with self._lock:
            return sorted(k[len(prefix):] for k in self._docs if k.startswith(prefix) and k != prefix)

    def _send(self, topic: str, message: dict[str, Any]) -> None:
        if self.publish is not None:
            self.publish(topic, json.dumps(message, separators=(",", ":")).encode())

    def _changed(self, thing: str, name: str, origin: str) -> None:
        for listener in list(self.on_change):
            listener(thing, name, origin)

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._docs))
        os.replace(tmp, self._path)


def _error(code: int, message: str, token: str | None) -> dict[str, Any]:
    return {"code": code, "message": message, "timestamp": int(time.time()),
            **({"clientToken": token} if token else {})}
