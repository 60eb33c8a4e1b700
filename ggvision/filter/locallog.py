"""The box's own log: every event's `end` record, its snapshots and the fire-risk results, kept under
`{workDir}/local/` so the edge dashboard can show them while the uplink (VPN) is down — whether or not the Uplink
has sent them yet, and whatever its sink (S3 keeps nothing on the box once sent).

    local/{YYYYMMDDTHH}/events.jsonl       {"t": logged, "thing": ..., "event": <event/1.0 end>} a line
    local/{YYYYMMDDTHH}/fire.jsonl         {"t": result time, "sensor", "probability", "label", "model"} a line
    local/{YYYYMMDDTHH}/counts.jsonl       {"t": logged, "thing": ..., "counts": <counts/1.0>} a line: each
                                           interval of the counting analytics the Filter sent
    local/{YYYYMMDDTHH}/snapshots/<id>     the snapshot put to the Uplink, hard-linked (no copy); <id> = its
                                           Uplink item id, percent-quoted, plus the extension

One folder per UTC hour (of the time logged), so the privacy rule deletes whole hours: a folder goes once its
hour began `retentionDays` (at most 7) ago, less the expiry period, so nothing stays longer. The disk budget
counts the pictures as `snapshots` (given up oldest first, before the Uplink's queued results) and the JSON lines
as `records` (never given up for space: they are small and are what the box is for; retention removes them).
Readers (dashboard/data/edge.py) take the folders as they are; lines are appended whole (one write each), so a
torn last line is possible only after a crash and readers skip it.
"""

from __future__ import annotations

import calendar
import errno
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..component.storage import StorageFaults
from ..config.filter import LocalLogConfig

log = logging.getLogger("ggvision.filter")

EVENTS, FIRE, COUNTS, SNAPSHOTS = "events.jsonl", "fire.jsonl", "counts.jsonl", "snapshots"
EXPIRE_PERIOD_S = 60.0  # how often the component calls expire(); the cutoff allows for it
HOUR = "%Y%m%dT%H"


def hour_of(t: float) -> str:
    return time.strftime(HOUR, time.gmtime(t))


def hour_start(name: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(name, HOUR)))
    except ValueError:
        return None


def snapshot_name(item_id: str, file: str) -> str:
    """The log's file name of a snapshot: its Uplink item id (what event records name), quoted, + extension."""
    return quote(item_id, safe="") + Path(file).suffix


def parse_fire(msg: Any) -> dict[str, Any]:
    """A fire-risk line from a detections/1.x message with task "tabular"; ValueError naming the field."""
    if not isinstance(msg, dict):
        raise ValueError("detections: expected a JSON object")
    sensor, ts, outputs = msg.get("camera"), msg.get("timestamp"), msg.get("outputs")
    if not isinstance(sensor, str) or not sensor or len(sensor) > 256:
        raise ValueError("detections (tabular) field 'camera': expected the sensor id")
    if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts) or ts < 0:
        raise ValueError("detections (tabular) field 'timestamp': expected a time in seconds")
    if not isinstance(outputs, dict):
        raise ValueError("detections (tabular) field 'outputs': expected an object")
    p = outputs.get("fire_probability")
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
        raise ValueError(f"detections (tabular) field 'outputs.fire_probability': expected 0..1, got {p!r}")
    model = msg.get("model") if isinstance(msg.get("model"), dict) else {}
    return {"t": round(float(ts), 3), "sensor": sensor, "probability": round(float(p), 5),
            "label": str(outputs.get("label", ""))[:64],
            "model": {k: str(model.get(k, ""))[:128] for k in ("name", "version")}}


class LocalLog:
    """Appends to the log and applies its retention and the disk budget; one thread owns it (the pipeline's)."""

    def __init__(self, root: Path, cfg: LocalLogConfig, thing: str, faults: StorageFaults,
                 clock: Callable[[], float] = time.time) -> None:
        self.root, self.cfg, self.thing, self.faults, self.clock = root, cfg, thing, faults, clock
        self._fire_last: dict[str, float] = {}  # sensor -> time of the last result kept
        self._held: dict[str, int] | None = None  # class -> bytes, recounted after deletions
        self.evicted = 0  # snapshot bytes the disk budget made it give up
        self.expired_hours = 0

    # -- writing ------------------------------------------------------------------------------------
    def _hour(self) -> Path:
        return self.root / hour_of(self.clock())

    def _append(self, name: str, doc: dict[str, Any]) -> None:
        line = (json.dumps(doc, separators=(",", ":")) + "\n").encode()
        try:
            folder = self._hour()
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, line)  # one write: readers never see half a line but after a crash
            finally:
                os.close(fd)
        except OSError as e:  # a full or read-only disk: the event still goes to the Uplink; counted, logged once
            self.faults.failed("local log", e, "events and fire results still go out; the box's log misses them")
            return
        self.faults.ok("local log")
        if self._held is not None:
            self._held["records"] = self._held.get("records", 0) + len(line)

    def event(self, msg: dict[str, Any]) -> None:
        """An event/1.0 message the Filter published: `end` records are kept (they hold the whole event)."""
        if msg.get("kind") == "end":
            self._append(EVENTS, {"t": round(self.clock(), 3), "thing": self.thing, "event": msg})

    def counts(self, body: dict[str, Any]) -> None:
        """A counts/1.0 message the Filter put to the Uplink (one interval of a camera's analytics)."""
        if body.get("schema") == "counts/1.0":
            self._append(COUNTS, {"t": round(self.clock(), 3), "thing": self.thing, "counts": body})

    def fire(self, msg: Any) -> bool:
        """A tabular detections message: kept when `fireEveryS` passed since the sensor's last kept one. ValueError
        (naming the field) for a malformed one."""
        doc = parse_fire(msg)
        last = self._fire_last.get(doc["sensor"])
        if last is not None and 0 <= doc["t"] - last < self.cfg.fire_every_s:
            return False
        self._fire_last[doc["sensor"]] = doc["t"]
        self._append(FIRE, doc)
        return True

    def snapshot(self, item_id: str, file: str) -> None:
        """Keep a snapshot the Filter is putting to the Uplink: a hard link to its file (same bytes on disk)."""
        try:
            dest = self._hour() / SNAPSHOTS / snapshot_name(item_id, file)
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(file, dest)
            except FileExistsError:
                return
            except OSError as e:
                if e.errno != errno.EXDEV:  # the log on another filesystem than the snapshot: copy it once
                    raise
                shutil.copyfile(file, dest)
            size = dest.stat().st_blocks * 512
        except OSError as e:
            self.faults.failed("local log snapshot", e, "the event's record is kept without its picture")
            return
        if self._held is not None:
            self._held["snapshots"] = self._held.get("snapshots", 0) + size

    def forget(self, item_id: str) -> None:
        """The Uplink refused this snapshot (no room, say): the box's copy goes too."""
        for p in self.root.glob(f"*/{SNAPSHOTS}/{quote(item_id, safe='')}.*"):
            p.unlink(missing_ok=True)
        self._held = None

    # -- retention and the disk budget ------------------------------------------------------------
    def hours(self) -> list[tuple[float, Path]]:
        out = []
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return []
        for e in entries:
            t = hour_start(e.name)
            if t is not None and e.is_dir(follow_symlinks=False):
                out.append((t, Path(e.path)))
        return sorted(out)

    def expire(self) -> int:
        """The privacy rule: hours that began retentionDays ago (less the period between calls) are deleted.
        Returns how many went."""
        cutoff = self.clock() - self.cfg.retention_days * 86400 + EXPIRE_PERIOD_S
        gone = 0
        for t, path in self.hours():
            if t > cutoff:
                break
            shutil.rmtree(path, ignore_errors=True)
            gone += 1
        if gone:
            self.expired_hours += gone
            self._held = None
            log.info("local log: deleted %d hour(s) older than %g days (the privacy rule)", gone,
                     self.cfg.retention_days)
        return gone

    def held(self) -> dict[str, int]:
        """Bytes on disk by budget class: {"snapshots": pictures, "records": JSON lines}."""
        if self._held is None:
            held = {"snapshots": 0, "records": 0}
            for _, hour in self.hours():
                for p in hour.rglob("*"):
                    try:
                        st = p.stat()
                    except OSError:
                        continue
                    if p.is_file():
                        held["snapshots" if p.parent.name == SNAPSHOTS else "records"] += st.st_blocks * 512
            self._held = held
        return dict(self._held)

    def evict_snapshots(self, nbytes: int) -> int:
        """The disk budget asks for `nbytes` of snapshots: the oldest pictures go first, records stay."""
        freed = 0
        for _, hour in self.hours():
            snaps = sorted(hour.glob(f"{SNAPSHOTS}/*"), key=lambda p: p.stat().st_mtime if p.exists() else 0)
            for p in snaps:
                if freed >= nbytes:
                    break
                try:
                    size = p.stat().st_blocks * 512
                    p.unlink()
                except OSError:
                    continue
                freed += size
            if freed >= nbytes:
                break
        if freed:
            self.evicted += freed
            self._held = None
            log.warning("disk budget: the local log gave up %d bytes of snapshots (%d asked)", freed, nbytes)
        return freed
