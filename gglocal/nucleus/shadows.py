"""Local thing shadows with the document semantics of AWS IoT / Shadow Manager."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

from ..ipc.host import (  # the IPC layer's errors, so operations map them without importing the nucleus
    ShadowError,
    ShadowNotFound,
    ShadowVersionConflict,
)


def _apply(doc: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    # JSON merge: null deletes a key, objects merge, anything else replaces.
    out = dict(doc)
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _apply(out[k], v)
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


class ShadowStore:
    """Shadows keyed by (thing, shadow name); '' is the classic shadow. Persisted as one JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._docs: dict[str, dict[str, Any]] = {}
        if path and path.exists():
            self._docs = json.loads(path.read_text())

    @staticmethod
    def _key(thing: str, name: str) -> str:
        return f"{thing}\x00{name}"

    def get(self, thing: str, name: str = "") -> dict[str, Any]:
        doc = self._docs.get(self._key(thing, name))
        if doc is None:
            raise ShadowNotFound(f"No shadow exists with name: {name or 'classic'} for thing {thing}")
        state = {k: v for k, v in doc["state"].items() if v}
        delta = _delta(doc["state"].get("desired", {}), doc["state"].get("reported", {}))
        if delta:
            state["delta"] = delta
        return {"state": state, "metadata": doc["metadata"], "version": doc["version"], "timestamp": int(time.time())}

    def update(self, thing: str, name: str, payload: bytes) -> dict[str, Any]:
        try:
            req = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as e:
            raise ShadowError(f"shadow update payload is not JSON: {e}") from None
        if not isinstance(req, dict) or not isinstance(req.get("state"), dict):
            raise ShadowError("shadow update payload must be an object with a 'state' object")
        unknown = set(req["state"]) - {"desired", "reported"}
        if unknown:
            raise ShadowError(f"shadow state may only contain desired/reported, got {sorted(unknown)}")
        key = self._key(thing, name)
        doc = self._docs.get(key, {"state": {}, "metadata": {}, "version": 0})
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
        return {"state": req["state"], "metadata": {k: _metadata(v, ts) for k, v in req["state"].items() if v},
                "version": doc["version"], "timestamp": ts}

    def delete(self, thing: str, name: str = "") -> dict[str, Any]:
        doc = self._docs.pop(self._key(thing, name), None)
        if doc is None:
            raise ShadowNotFound(f"No shadow exists with name: {name or 'classic'} for thing {thing}")
        self._save()
        return {"version": doc["version"], "timestamp": int(time.time())}

    def list_named(self, thing: str) -> list[str]:
        prefix = f"{thing}\x00"
        return sorted(k[len(prefix):] for k in self._docs if k.startswith(prefix) and k != prefix)

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._docs))
        os.replace(tmp, self._path)
