"""Models and rollouts for the dashboard: what the rollout engine keeps (rollout/state.py's state file named by the
rollout.yaml in GGVISION_DASHBOARD_ROLLOUT_CONFIG) — versions per stage, history, the gate results of each canary —
and the operator's two actions, which go through the engine itself: pause/resume (the state file, as
`rollout pause`) and rollback (Engine.rollback on the configured backend, as `rollout rollback`).
Both backends share it: rollouts are a fleet affair, run from wherever the rollout CLI runs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout.config import RolloutConfig, load_config
from rollout.state import StateFile


@dataclass(frozen=True)
class GateRow:
    rollout: str
    model: str
    version: str
    stage: str
    event: str  # gates_passed | gate_failed
    gate: str
    thing: str
    status: str
    value: float | None
    baseline: float | None
    limit: str


class Rollouts:
    def __init__(self, config: Path) -> None:
        self.config_path = Path(config)
        try:
            self.cfg: RolloutConfig = load_config(self.config_path)
        except Exception as e:  # the loader names the file and key; the page shows it
            raise ValueError(f"dashboard: rollout config {self.config_path}: {e}") from None
        self.state = StateFile(self.cfg.state_file)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Rollouts | None:
        path = (os.environ if env is None else env).get("GGVISION_DASHBOARD_ROLLOUT_CONFIG")
        return cls(Path(path)) if path else None

    def stage_names(self) -> list[str]:
        return [s.name for s in self.cfg.stages]

    def stages(self) -> list[dict[str, Any]]:
        """One row per model and stage: the version it runs, its last rollout's status, whether it is paused."""
        doc = self.state.read()
        rows = []
        for model, stages in sorted(doc["stages"].items()):
            for s in self.stage_names():
                st = stages.get(s, {})
                rows.append({"model": model, "stage": s, "version": st.get("version") or "-",
                             "status": st.get("status") or "-", "reason": st.get("reason") or "",
                             "paused": self.state.paused(s), "updated": st.get("updated")})
        return rows

    def history(self, limit: int = 50) -> list[dict[str, Any]]:
        out = []
        for r in reversed(self.state.read()["rollouts"][-limit:]):
            out.append({"id": r.get("id"), "kind": r.get("kind"), "model": r.get("model"), "version": r.get("version"),
                        "stage": r.get("stage"), "status": r.get("status"), "reason": r.get("reason") or "",
                        "started": r.get("started"), "ended": r.get("ended")})
        return out

    def in_progress(self) -> list[dict[str, Any]]:
        return [r for r in self.history(200) if r["status"] == "in_progress"]

    def last_gates(self) -> list[GateRow]:
        """The gate results of the newest rollout that recorded any (its canary's, when it had one)."""
        for r in reversed(self.state.read()["rollouts"]):
            rows = [GateRow(r["id"], r["model"], r["version"], r["stage"], e["event"], g.get("gate", "?"),
                            g.get("thing", "?"), g.get("status", "?"), g.get("value"), g.get("baseline"),
                            str(g.get("limit", "")))
                    for e in r.get("events", []) if e.get("event") in ("gates_passed", "gate_failed")
                    for g in (e.get("data") or e).get("results") or []]
            if rows:
                return rows
        return []

    # ------------------------------------------------------------------ operator actions
    def set_paused(self, stage: str, paused: bool) -> None:
        if stage != "*" and stage not in self.stage_names():
            raise ValueError(f"no stage {stage!r} in {self.config_path} (stages: {', '.join(self.stage_names())})")
        self.state.set_paused(stage, paused)

    def rollback(self, model: str, stage: str, reason: str) -> str:
        """Engine.rollback on the configured backend; what the engine printed, for the page."""
        from rich.console import Console

        from rollout.cli import make_backend
        from rollout.engine import Engine

        out = io.StringIO()
        backend = make_backend(self.cfg)
        try:
            Engine(self.cfg, backend, console=Console(file=out, width=120)).rollback(model, stage, reason)
        finally:
            backend.close()
        return out.getvalue()
