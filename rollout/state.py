"""Rollout state and history, persisted as one JSON file (atomic replace under an fcntl lock).

- ``stages[model][stage]``: the version the stage runs, the status of its last rollout and the deployment
  documents (revisions) to go back to.
- ``rollouts``: every promote/rollback with its events and, when it failed, the reason: ``rollout history``.
- ``paused``: stages (or "*") where rollouts wait; a running promote re-reads it at every poll.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SCHEMA = "rollout-state/1.0"


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.path.with_suffix(self.path.suffix + ".lock")

    def read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            doc = {}
        doc.setdefault("schema", SCHEMA)
        doc.setdefault("stages", {})
        doc.setdefault("rollouts", [])
        doc.setdefault("paused", [])
        return doc

    @contextlib.contextmanager
    def update(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write under an exclusive lock (a `rollout pause` from another shell is not lost)."""
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            doc = self.read()
            yield doc
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)

    # -- helpers ----------------------------------------------------------------------------------------------
    def stage(self, model: str, stage: str) -> dict[str, Any]:
        return self.read()["stages"].get(model, {}).get(stage, {})

    def set_stage(self, model: str, stage: str, **values: Any) -> None:
        with self.update() as doc:
            doc["stages"].setdefault(model, {}).setdefault(stage, {}).update(values, updated=time.time())

    def paused(self, stage: str) -> bool:
        p = self.read()["paused"]
        return "*" in p or stage in p

    def set_paused(self, stage: str, paused: bool) -> None:
        with self.update() as doc:
            p = set(doc["paused"])
            (p.add if paused else p.discard)(stage)
            doc["paused"] = sorted(p)

    def start_rollout(self, kind: str, model: str, version: str, stage: str, **extra: Any) -> str:
        rid = f"r-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        with self.update() as doc:
            doc["rollouts"].append({"id": rid, "kind": kind, "model": model, "version": version, "stage": stage,
                                    "status": "in_progress", "started": time.time(), "ended": None,
                                    "reason": "", "events": [], **extra})
        return rid

    def _find(self, doc: dict[str, Any], rid: str) -> dict[str, Any]:
        for r in doc["rollouts"]:
            if r["id"] == rid:
                return r
        raise KeyError(rid)

    def event(self, rid: str, event: str, detail: str = "", **data: Any) -> None:
        with self.update() as doc:
            self._find(doc, rid)["events"].append({"t": time.time(), "event": event, "detail": detail, **data})

    def update_rollout(self, rid: str, **values: Any) -> None:
        with self.update() as doc:
            self._find(doc, rid).update(values)

    def finish(self, rid: str, status: str, reason: str = "") -> None:
        with self.update() as doc:
            r = self._find(doc, rid)
            r.update(status=status, reason=reason, ended=time.time())

    def rollouts(self, model: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.read()["rollouts"] if model is None or r["model"] == model]
