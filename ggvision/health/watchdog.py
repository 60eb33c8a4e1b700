"""Watchdogs: conditions that raise an alert (what, where, since when) and resolve it when they clear.

`Watchdogs.evaluate()` is pure bookkeeping over what the tick collected (times are monotonic, turned
into epoch seconds for messages) and returns the alert messages to publish plus whether to restart
the inference component. The hung-inference rule:

- a camera counts when it receives frames (no `camera-silent`) and is not a thermal/gas sensor, and
  either it has had detections before or no camera has had any (a dead inference never publishes);
- it is hung when it has had no detection for `hungAfterS`, counted from its last detection, its first
  frame, or the inference component's last (re)start, whichever is latest;
- any hung camera opens an incident: one `inference-hung` alert and one RestartComponent. The incident
  resolves when detections arrive again on its cameras (or they stop receiving frames, or the inference
  component is no longer running); a later hang is a new incident.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..config.health import HealthConfig
from .budget import Budget
from .collectors import DiskSample, HostSample
from .state import AppView

SCHEMA = "alert/1.0"
KINDS = ("inference-hung", "camera-silent", "disk-low", "memory-low")
SEVERITY = {"inference-hung": "critical", "camera-silent": "warning", "disk-low": "critical", "memory-low": "warning"}


@dataclass
class Alert:
    alert: str
    where: str
    since: float  # monotonic
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_message(self, state: str, now: float, epoch_offset: float) -> dict[str, Any]:
        """`alert/1.0`: state is "firing" or "resolved"; times are epoch seconds."""
        return {"schema": SCHEMA, "alert": self.alert, "where": self.where,
                "since": round(self.since + epoch_offset, 3), "message": self.message,
                "severity": SEVERITY[self.alert], "state": state,
                "timestamp": round(now + epoch_offset, 3), **self.details}


@dataclass
class Incident:
    started: float
    cameras: list[str]


class Watchdogs:
    def __init__(self, now: float | None = None) -> None:
        self.active: dict[tuple[str, str], Alert] = {}
        self.incident: Incident | None = None
        self.inference_started = time.monotonic() if now is None else now  # Health's start counts as one
        self._below: dict[str, float] = {}  # disk/memory: since when below the threshold

    def inference_restarted(self, now: float) -> None:
        """The inference component (re)started (seen in its state or processes, or restarted by us)."""
        self.inference_started = max(self.inference_started, now)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(KINDS, 0)
        for kind, _ in self.active:
            out[kind] += 1
        return out

    def _set(self, out: list[dict[str, Any]], now: float, off: float, firing: bool, alert: Alert) -> None:
        key = (alert.alert, alert.where)
        cur = self.active.get(key)
        if firing and cur is None:
            self.active[key] = alert
            out.append(alert.to_message("firing", now, off))
        elif not firing and cur is not None:  # resolved: the original since, the reason it cleared
            del self.active[key]
            out.append(Alert(cur.alert, cur.where, cur.since, alert.message, cur.details).to_message("resolved", now,
                                                                                                   off))

    def evaluate(self, cfg: HealthConfig, app: AppView, host: HostSample | None, disk: DiskSample | None,
                 inference_running: bool, now: float | None = None,
                 epoch_offset: float | None = None, budget: Budget | None = None,
                 budget_root: str = "") -> tuple[list[dict[str, Any]], bool]:
        now = time.monotonic() if now is None else now
        off = time.time() - time.monotonic() if epoch_offset is None else epoch_offset
        out: list[dict[str, Any]] = []
        restart = False

        # camera-silent: no frame for cameraSilentS
        silent = {c for c, v in app.cameras.items() if v.frame_age_s >= cfg.camera_silent_s}
        for cam in silent:
            v = app.cameras[cam]
            since = v.frame_last if v.frame_last is not None else v.first_known
            self._set(out, now, off, True, Alert("camera-silent", cam, since,
                                                 f"no frames from camera {cam} for {now - since:.0f} s"))
        for (kind, cam) in list(self.active):
            if kind == "camera-silent" and cam not in silent:
                why = "frames arrive again" if cam in app.cameras else "camera removed"
                self._set(out, now, off, False, Alert("camera-silent", cam, now, why))

        # inference-hung
        receiving = [c for c, v in app.cameras.items() if c not in silent and not v.sensor]
        if self.incident is None:
            hung, since = [], now
            if inference_running:
                for cam in receiving:
                    v = app.cameras[cam]
                    if v.detections == 0 and app.any_detection:
                        continue  # never detected here while others do: not fed to this model
                    start = max(v.detection_last if v.detection_last is not None else v.first_known,
                                self.inference_started)
                    if now - start >= cfg.hung_after_s:
                        hung.append(cam)
                        since = min(since, start)
            if hung:
                self.incident = Incident(now, sorted(hung))
                msg = (f"no detections for {now - since:.0f} s on {', '.join(sorted(hung))} while frames arrive; "
                       + (f"restarting {cfg.inference_component}" if cfg.restart_inference else "restart disabled"))
                self._set(out, now, off, True, Alert("inference-hung", cfg.inference_component, since, msg,
                                                     {"cameras": sorted(hung)}))
                restart = cfg.restart_inference
        else:
            inc = self.incident
            still = [c for c in inc.cameras if c in receiving and (
                app.cameras[c].detection_last is None or app.cameras[c].detection_last < inc.started)]
            if not still or not inference_running:
                why = ("detections resumed" if inference_running and any(
                    c in receiving for c in inc.cameras) else "no frames to detect on, or inference stopped")
                for key in [k for k in self.active if k[0] == "inference-hung"]:
                    cur = self.active[key]
                    self._set(out, now, off, False, Alert(cur.alert, cur.where, cur.since, why, cur.details))
                self.incident = None
        return out + self._resources(cfg, host, disk, now, off) + self._budget(budget, budget_root, now, off), restart

    def _budget(self, b: Budget | None, root: str, now: float, off: float) -> list[dict[str, Any]]:
        """disk-low for the suite's disk budget: fires as soon as the headroom is under lowBytes, which is before
        any eviction (that starts under 0), and clears once it is back above."""
        out: list[dict[str, Any]] = []
        if b is None:
            return out
        low = b.level != "ok"
        where = f"budget:{root}"
        if low:
            self._below.setdefault("disk-budget", now)
        since = self._below.pop("disk-budget", now) if not low else self._below["disk-budget"]
        what = f"disk budget headroom {b.headroom} bytes (used {b.used}, free {b.free}"
        what += f", budget {b.budget}" if b.budget else ""
        self._set(out, now, off, low, Alert("disk-low", where, since,
                                            f"{what}; disk-low under {b.low}, eviction under 0)" if low
                                            else f"{what}) back above {b.low}",
                                            {"level": b.level, "headroom_bytes": b.headroom}))
        return out

    def _resources(self, cfg: HealthConfig, host: HostSample | None, disk: DiskSample | None, now: float,
                   off: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        checks = []
        if disk is not None and disk.total > 0:
            checks.append(("disk-low", disk.path, disk.free / disk.total, cfg.disk_min_free_ratio, "disk free"))
        if host is not None and host.memory_total > 0:
            checks.append(("memory-low", "host", host.memory_available / host.memory_total,
                           cfg.mem_min_available_ratio, "memory available"))
        for kind, where, ratio, minimum, what in checks:
            low = ratio < minimum
            if low:
                self._below.setdefault(kind, now)
            since = self._below.pop(kind, now) if not low else self._below[kind]
            self._set(out, now, off, low, Alert(kind, where, since,
                                                f"{what} {ratio:.1%} (minimum {minimum:.0%})"
                                                if low else f"{what} back to {ratio:.1%}"))
        return out
