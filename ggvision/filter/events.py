"""One camera's pipeline, as pure logic (no IPC): motion gate → detection filters → tracker → events,
snapshots, alerts and segment selection under the camera's upload policy and budget.

Its methods take parsed messages (and, for pixels, a callable that reads the frame from the ring) and
return `Out` messages for the component to publish: events on ggvision/v1/events/{camera}, motion
descriptors, and uplink-put/1.0 items on ggvision/v1/uplink/put.

Events: a track becomes an event ("new") after tracker.minHits detections; "update" when it enters or
leaves a zone (at once) or when a better snapshot was taken (at most every events.updateMinS); "end"
when the tracker drops it. Each carries the best snapshot (uploaded as its own item; the event names the
item id), a bounded box history, zones and zone enter/leave events, and the ids of the recorded segments
that cover [start − preRollS, last seen + postRollS] as far as they are known when the message is made
(later segments of the post-roll still go up as clips, with the event id in their metadata).

What goes to the cloud is less than what is published locally (bytes there are the cost; docs/filter.md has
the measurements): results are "end" (box history thinned to events.cloudBoxes), "new" once the event is
events.cloudNewAfterS old or raises an alert, and after that the updates that change zones or name a newly
uploaded snapshot; snapshot-only updates stay local. The best snapshot goes up once, at the end — earlier
only when an alert fires (the alert names it) or when the event is still open after events.snapshotAfterS —
and again at the end only if a better one was taken since.

Analytics (analytics.py, fed with the tracker's output): its zone rule hits (loitering, overcrowding) go out
as filter-alert/1.0 on the event of the object concerned, through the same alert path; its counts/1.0 per
interval go to the cloud as results items.

Media that cannot be written (a full disk, a read-only or forbidden folder, or less free space than
`minFreeBytes`, which is left to event records and alerts) never holds an event back: the event and its end
go out all the same, with `media_missing` saying what is missing and why; the picture is kept in memory and
tried again at the event's end. The condition is counted and logged once (ggvision/component/storage.py).
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..component.storage import StorageFaults, describe, short_of_space
from ..config.filter import CameraConfig, ImageConfig
from ..contract import topics
from ..contract.keys import CLIPS, IMAGES, SEGMENTS
from .analytics import Analytics, Hit
from .encode import CONTENT_TYPES, EXTENSIONS, encode, prepare
from .messages import Detection, Detections, Segment
from .motion import MotionGate
from .policy import PRIORITY, Budget, Pending, SegmentLog
from .redact import redact
from .rules import FilterStats, TrackFacts, fired, select, zones_of
from .tracker import IouTracker, Track

PRODUCER = "com.ggvision.Filter"
EVENTS_TOPIC = topics.EVENTS
MOTION_TOPIC = topics.MOTION
PUT_TOPIC = topics.UPLINK_PUT
IOT_RESULTS = topics.IOT_RESULTS
IOT_EVENTS = topics.IOT_EVENTS
IOT_LIMIT = 127 * 1024  # IoT Core takes 128 KB per message; leave room for the transport's own framing
MAX_ZONE_EVENTS = 32
MAX_SEGMENTS = 64
MAX_MISSING = 8  # media_missing entries per event message
ALERT_DETECTIONS = 50


def json_size(obj: Any) -> int:
    return len(json.dumps(obj, separators=(",", ":")).encode())


def _r(v: float) -> int:
    return round(float(v))  # whole pixels: a detector's boxes are not sub-pixel accurate


def thin(boxes: list[list[float]], limit: int) -> list[list[float]]:
    """At most `limit` entries, evenly spread, always keeping the first and the last."""
    if len(boxes) <= limit:
        return boxes
    step = (len(boxes) - 1) / (limit - 1)
    return [boxes[round(i * step)] for i in range(limit)]


def fit_alert(alert: dict[str, Any], limit: int = IOT_LIMIT) -> dict[str, Any]:
    """Trim an alert until its JSON fits `limit` bytes: the image goes first, then detections are halved."""
    if json_size(alert) <= limit:
        return alert
    alert = dict(alert)
    if "image_b64" in alert:
        alert.pop("image_b64")
        alert["truncated"] = True
    while json_size(alert) > limit and alert.get("detections"):
        alert["detections"] = alert["detections"][: len(alert["detections"]) // 2]
        alert["truncated"] = True
    while json_size(alert) > limit and len(alert.get("objects", {})) > 1:  # absurd label counts: keep the biggest
        objs = sorted(alert["objects"].items(), key=lambda kv: -kv[1])
        alert["objects"] = dict(objs[: len(objs) // 2])
        alert["truncated"] = True
    return alert


def fit_event(event: dict[str, Any], limit: int = IOT_LIMIT) -> dict[str, Any]:
    while json_size(event) > limit and len(event["boxes"]) > 2:
        event = {**event, "boxes": thin(event["boxes"], len(event["boxes"]) // 2), "truncated": True}
    return event


@dataclass
class Out:
    topic: str
    message: dict[str, Any]
    pending: Pending | None = None  # for uplink puts: what to expect an ack for


@dataclass
class EventState:
    event_id: str = ""
    emitted: bool = False
    boxes: list[list[float]] = field(default_factory=list)
    zones: frozenset[str] = frozenset()
    zone_since: dict[str, float] = field(default_factory=dict)
    zone_events: list[dict[str, Any]] = field(default_factory=list)
    zone_changed: bool = False
    best_score: float = -1.0
    best_box: tuple[float, float, float, float] | None = None
    best_t: float = 0.0
    best_image: bytes | _Crop | None = None  # encoded (or a crop to encode), not uploaded yet
    improved: bool = False  # a better snapshot since the last event message
    cloud_open: bool = False  # its "new" went to the cloud
    best_frame: np.ndarray | None = None  # redacted pixels, kept only until the alert image is made
    snapshot_id: str | None = None
    snapshots: int = 0
    updates: int = 0
    last_update_t: float = -math.inf
    fired: set[str] = field(default_factory=set)
    clips: bool = False  # its segments are selected (clipsFor)
    missing: dict[str, dict[str, Any]] = field(default_factory=dict)  # media kind -> why it is missing


@dataclass
class Stats:
    frames_in: int = 0
    frames_read_failed: int = 0
    motion_out: int = 0
    motion_ratio_sum: float = 0.0
    detections_msgs: int = 0
    snapshot_frames_missed: int = 0
    events: Counter[str] = field(default_factory=Counter)
    alerts: int = 0
    alerts_suppressed: int = 0
    suppressed_tracks: int = 0
    event_times: list[float] = field(default_factory=list)  # wall times of "new" in the last minute
    media_missing: Counter[str] = field(default_factory=Counter)  # ends published with media missing, by kind
    hits_without_event: int = 0  # analytics hits whose track had no event to raise the alert on
    counts_sent: int = 0


class _Crop:
    """A best-snapshot candidate, cropped and downscaled at once (a small copy) and encoded only when it goes up:
    a track's best picture improves many times before its one upload, and encoding was most of the Filter's
    CPU per frame on a busy scene (vtest: 2.5 encodes per frame for 0.7 uploads, bench/suite.py)."""

    __slots__ = ("cfg", "img")

    def __init__(self, img: np.ndarray, cfg: ImageConfig) -> None:
        self.img, self.cfg = img, cfg

    def encode(self) -> bytes:
        return encode(self.img, self.cfg)  # already cropped and at most max_width: the same bytes as before


class _FrameOnce:
    """One detections message's pixels: read from the ring and redacted at most once, only if needed; the
    full-frame snapshot encoded once for all tracks that want it; the top detections sorted once."""

    def __init__(self, read: Callable[[], np.ndarray | None] | None, msg: Detections, cfg: CameraConfig) -> None:
        self._read, self._msg, self._cfg = read, msg, cfg
        self._img: list[np.ndarray | None] = []
        self._full: bytes | None = None
        self._top: list[Detection] | None = None

    def __call__(self) -> np.ndarray | None:
        if not self._img:
            raw = self._read() if self._read is not None else None
            self._img.append(None if raw is None else redact(raw, self._msg.detections, self._cfg.redact)[0])
        return self._img[0]

    def encoded(self, box: tuple[float, float, float, float]) -> bytes | _Crop | None:
        img = self()
        if img is None:
            return None
        if self._cfg.snapshot.crop:
            return _Crop(prepare(img, self._cfg.snapshot, box, copy=True), self._cfg.snapshot)
        if self._full is None:
            self._full = encode(img, self._cfg.snapshot)
        return self._full

    def top(self, n: int) -> list[Detection]:
        if self._top is None:
            self._top = sorted(self._msg.detections, key=lambda x: -x.score)[:n]
        return self._top


class CameraPipeline:
    def __init__(self, cfg: CameraConfig, work_dir: Path, producer: str = PRODUCER,
                 faults: StorageFaults | None = None, min_free_bytes: int = 0) -> None:
        self.cfg = cfg
        self.faults = faults or StorageFaults(producer)
        self.min_free_bytes = min_free_bytes
        self.camera = cfg.camera
        self.producer = producer
        self.snap_dir = work_dir / "snapshots"
        self.motion = MotionGate(cfg.motion)
        self.tracker = IouTracker(cfg.tracker, cfg.stationary)
        self.analytics = Analytics(cfg.analytics, cfg.zones, cfg.zone_anchor, cfg.tracker.min_hits)
        self.filter_stats = FilterStats()
        self.budget = Budget(cfg.budget_kbps, cfg.burst_s)
        self.segments = SegmentLog(keep_s=max(120.0, 4 * (cfg.events.pre_roll_s + cfg.events.post_roll_s)))
        self.windows: dict[str, list[float]] = {}  # clip-selected event id -> [t0, t1, ended 0/1]
        self.stats = Stats()
        self.model: dict[str, str] = {}
        self.size: tuple[int, int] | None = None  # (w, h) of the analysed frames
        self.clock = 0.0  # latest message time (epoch s)
        self._last_forward = -math.inf
        self._alert_times: list[float] = []
        self._snaps_now = {}
        self.now: Callable[[], float] = time.monotonic  # budget clock (tests pin it)

    # -- motion -------------------------------------------------------------------------------------
    def on_frame(self, desc: dict[str, Any], frame: np.ndarray | None) -> Out | None:
        """Motion gate for one frame descriptor (its pixels read from the ring, None if overwritten)."""
        self.stats.frames_in += 1
        if frame is None:
            self.stats.frames_read_failed += 1
            return None
        self.size = (frame.shape[1], frame.shape[0])
        t = float(desc.get("timestamp", 0.0))
        if not self.cfg.motion.enabled:
            res_moving, ratio = True, 1.0
        else:
            res = self.motion.check(frame)
            res_moving, ratio = res.moving, res.ratio
        if not res_moving and t - self._last_forward < self.cfg.motion.keepalive_s:
            return None
        self._last_forward = t
        self.stats.motion_out += 1
        self.stats.motion_ratio_sum += ratio
        return Out(MOTION_TOPIC.format(camera=self.camera), {**desc, "motion": {"ratio": round(ratio, 4)}})

    # -- detections → tracks → events ---------------------------------------------------------------------
    def on_detections(self, msg: Detections, read_frame: Callable[[], np.ndarray | None] | None = None) -> list[Out]:
        self.stats.detections_msgs += 1
        self._snaps_now: dict[str, Out] = {}  # snapshots put while handling this message, by content
        t = msg.timestamp
        self.clock = max(self.clock, t)
        if msg.model.get("name"):
            self.model = msg.model
        if msg.size:
            self.size = msg.size
        size = self.size or (1, 1)
        kept = select(msg.detections, self.cfg, size, self.filter_stats) if self.size else \
            select(msg.detections, _no_geometry(self.cfg), size, self.filter_stats)
        counts = Counter(d.label for d in kept)  # what was seen, before the tracking limit
        if len(kept) > self.cfg.tracker.max_tracks:
            self.filter_stats.dropped["limit"] += len(kept) - self.cfg.tracker.max_tracks
            kept = sorted(kept, key=lambda x: -x.score)[: self.cfg.tracker.max_tracks]
        upd = self.tracker.update(kept, t)
        # intervals are [start, end): one that closed by this message goes out before the message counts
        out: list[Out] = self._counts(t) if self.size else []
        frame = _FrameOnce(read_frame, msg, self.cfg)

        for tr in upd.ended:
            out += self._end(tr)
        for tr in (*upd.started, *upd.updated):
            out += self._observe(tr, t, frame, msg, counts)
        if self.size:
            hits = self.analytics.update(upd.started, upd.updated, upd.ended, self.tracker.tracks, t, self.size)
            out += self._hits(hits, t, counts, msg, frame)
        return out + ([] if self.size else self._counts(t))

    def _observe(self, tr: Track, t: float, frame: _FrameOnce, msg: Detections,
                 counts: Counter[str]) -> list[Out]:
        st: EventState = tr.data.setdefault("event", EventState())
        if tr.suppressed:
            if tr.hits == 1:
                self.stats.suppressed_tracks += 1
            return []
        d = tr.detection
        assert d is not None
        out: list[Out] = []
        if not st.boxes or not tr.stationary:
            st.boxes.append([round(t, 3), _r(d.box[0]), _r(d.box[1]), _r(d.box[2]), _r(d.box[3])])
            if len(st.boxes) > 2 * self.cfg.events.max_boxes:
                st.boxes = thin(st.boxes, self.cfg.events.max_boxes)
        zones = zones_of(d.box, self.size or (1, 1), self.cfg.zones, self.cfg.zone_anchor) if self.size else frozenset()
        for z in sorted(zones - st.zones):
            st.zone_since[z] = t
            st.zone_events.append({"zone": z, "action": "enter", "t": round(t, 3)})
        for z in sorted(st.zones - zones):
            st.zone_since.pop(z, None)
            st.zone_events.append({"zone": z, "action": "leave", "t": round(t, 3)})
        st.zone_changed = st.zone_changed or zones != st.zones
        st.zones = zones
        better = st.best_box is None or d.score >= st.best_score + self.cfg.events.snapshot_gain
        if better:
            img = frame()
            if img is None:
                self.stats.snapshot_frames_missed += 1  # overwritten in the ring: keep the previous best
                if st.best_box is None:  # no picture yet: still remember the box and score
                    st.best_score, st.best_box, st.best_t = d.score, d.box, t
            else:
                st.best_score, st.best_box, st.best_t = d.score, d.box, t
                st.improved = True
                if self.cfg.policy != "metadata":
                    st.best_image = frame.encoded(d.box)
                st.best_frame = img if self.cfg.alerts and self.cfg.alert_image else None
        if not st.emitted:
            if tr.hits < self.cfg.tracker.min_hits:
                return out
            st.emitted = True
            st.event_id = f"{self.camera}-{int(tr.first_t * 1000)}-{tr.track_id}"
            st.clips = self.cfg.clips_for == "all" or self.cfg.policy == "continuous"
            if st.clips:
                out += self._open_window(st, tr)
            out += self._early_snapshot(st, tr, t)
            out += self._emit("new", tr, st, cloud=t - tr.first_t >= self.cfg.events.cloud_new_after_s)
            self.stats.event_times.append(time.time())
        else:
            if st.clips:
                self.windows[st.event_id][1] = tr.last_t + self.cfg.events.post_roll_s
            early = self._early_snapshot(st, tr, t)
            out += early
            if st.zone_changed or early:
                out += self._emit("update", tr, st, cloud=st.cloud_open)
            elif st.improved and not tr.stationary and t - st.last_update_t >= self.cfg.events.update_min_s:
                out += self._emit("update", tr, st, cloud=False)  # a better picture, not uploaded yet: local
            if not st.cloud_open and t - tr.first_t >= self.cfg.events.cloud_new_after_s:
                # the cloud's record opens late: most passers-by end before, and go up as their "end" alone
                out += self._emit("new", tr, st, local=False)
        st.zone_changed = False
        if self.cfg.alerts:
            out += self._alerts(tr, st, t, counts, msg, frame)
        return out

    def _early_snapshot(self, st: EventState, tr: Track, t: float) -> list[Out]:
        """The best snapshot so far of an event still open after snapshotAfterS, once (the rest wait for the end)."""
        if st.snapshots or t - tr.first_t < self.cfg.events.snapshot_after_s:
            return []
        return self._snapshot(st, tr)

    def _end(self, tr: Track) -> list[Out]:
        st: EventState | None = tr.data.get("event")
        if st is None or not st.emitted:
            return []
        out = self._snapshot(st, tr)
        out += self._emit("end", tr, st)
        if st.event_id in self.windows:
            self.windows[st.event_id][1] = tr.last_t + self.cfg.events.post_roll_s
            self.windows[st.event_id][2] = 1
        st.best_frame = None
        return out

    def _emit(self, kind: str, tr: Track, st: EventState, cloud: bool = True, local: bool = True) -> list[Out]:
        """The event message on the local topic (if `local`) and its cloud copy as a results item (if `cloud`)."""
        ev = self.cfg.events
        t1 = tr.last_t + ev.post_roll_s
        segs = [s.id for s in self.segments.covering(tr.first_t - ev.pre_roll_s, t1)][-MAX_SEGMENTS:]
        event = {
            "schema": "event/1.0", "event_id": st.event_id, "camera": self.camera, "kind": kind,
            "label": tr.label, "track_id": tr.track_id, "start": round(tr.first_t, 3), "end": round(tr.last_t, 3),
            "best": {"score": round(st.best_score, 4), "box": [_r(v) for v in st.best_box or (0, 0, 0, 0)],
                     "timestamp": round(st.best_t, 3), "snapshot": st.snapshot_id},
            # the history goes with "end"; new/update carry the latest box (they are sent often, ends once)
            "boxes": thin(st.boxes, ev.max_boxes) if kind == "end" else st.boxes[-1:], "zones": sorted(st.zones),
            "zone_events": st.zone_events[-MAX_ZONE_EVENTS:], "segments": segs,
            "model": self.model, "stationary": tr.stationary, "frame_size": list(self.size or ()),
        }
        missing = list(st.missing.values()) + [
            {"kind": "segment", "start": round(g.start, 3), "end": round(g.end, 3), "reason": g.missing}
            for g in self.segments.gaps_covering(tr.first_t - ev.pre_roll_s, t1)]
        if missing:
            event["media_missing"] = missing[-MAX_MISSING:]
            if kind == "end":
                self.stats.media_missing.update(m["kind"] for m in missing)
        event = fit_event(event)
        st.updates += 1  # numbers every message of the event, so each cloud item id is new
        out = []
        if local:
            self.stats.events[kind] += 1
            st.last_update_t = tr.last_t
            st.improved = False
            out.append(Out(EVENTS_TOPIC.format(camera=self.camera), event))
        if not cloud:
            return out
        st.cloud_open = True
        if kind == "end" and len(event["boxes"]) > ev.cloud_boxes:
            event = {**event, "boxes": thin(event["boxes"], ev.cloud_boxes)}
        item = {"id": f"filter:{self.camera}:{st.event_id}:{kind}-{st.updates}", "priority": "results",
                "destination": "iot", "topic": IOT_RESULTS, "payload": event}
        put = self._put("result", item, tr.first_t, tr.last_t, json_size(event))
        return out + ([put] if put else [])

    def _snapshot(self, st: EventState, tr: Track) -> list[Out]:
        """Upload the pending best snapshot (if the policy sends pixels and the budget allows)."""
        pending, st.best_image = st.best_image, None
        if pending is None or self.cfg.policy == "metadata":
            return []
        img = pending.encode() if isinstance(pending, _Crop) else pending
        sha = hashlib.sha256(img).hexdigest()
        shared = self._snaps_now.get(sha)
        if shared is not None:  # the same picture as another event's in this message: one upload for both
            meta = shared.message["metadata"]
            meta["event_ids"].append(st.event_id)
            meta["labels"][tr.label] = meta["labels"].get(tr.label, 0) + 1
            st.snapshot_id = shared.message["id"]
            return []
        st.snapshots += 1
        fmt = self.cfg.snapshot.format
        name = f"{st.event_id}-{st.snapshots}.{EXTENSIONS[fmt]}"
        item_id = f"filter:{self.camera}:{st.event_id}:snapshot-{st.snapshots}"
        if not self.budget.admit("snapshot", len(img), self.now()):
            return []
        path = self.snap_dir / name
        try:
            short = short_of_space(self.snap_dir, self.min_free_bytes, len(img))
            if short:
                raise OSError(errno.ENOSPC, short)
            _write_atomically(path, img)
        except OSError as e:
            cond = self.faults.failed("snapshot", e, "events still go out, marked media_missing; the picture is "
                                                     "kept in memory for the event's end")
            self.faults.count("snapshot")
            st.missing["snapshot"] = {"kind": "snapshot", "reason": f"{cond}: {describe(e)}"}
            st.best_image = img  # tried again at the end (or replaced by a better one)
            return []
        self.faults.ok("snapshot")
        st.missing.pop("snapshot", None)
        st.snapshot_id = item_id
        msg = {"schema": "uplink-put/1.0", "id": item_id, "producer": self.producer, "priority": "clips",
               "camera": self.camera, "start": st.best_t, "end": st.best_t, "destination": "s3",
               "file": str(path), "move": True, "name": name, "kind": IMAGES, "content_type": CONTENT_TYPES[fmt],
               "sha256": sha, "metadata": {"event_ids": [st.event_id], "labels": {tr.label: 1}}}
        put = Out(PUT_TOPIC, msg, Pending(self.camera, "snapshot", len(img), str(path), (st.event_id,)))
        self._snaps_now[sha] = put
        return [put]

    def _alerts(self, tr: Track, st: EventState, t: float, counts: Counter[str], msg: Detections,
                frame: _FrameOnce) -> list[Out]:
        facts = TrackFacts(tr.label, st.best_score, st.zones, t - tr.first_t,
                           {z: t - s for z, s in st.zone_since.items()})
        out: list[Out] = []
        for rule in fired(self.cfg.alerts, facts, st.fired):
            st.fired.add(rule.name)
            dwell = t - min([st.zone_since[z] for z in rule.zones if z in st.zone_since] or [tr.first_t])
            out += self._alert(rule.name, tr, st, t, counts, msg, frame, dwell, sorted(st.zones))
        return out

    def _alert(self, name: str, tr: Track, st: EventState, t: float, counts: Counter[str], msg: Detections,
               frame: _FrameOnce, dwell_s: float, zones: list[str], extra: dict[str, Any] | None = None) -> list[Out]:
        """One filter-alert/1.0 on this track's event (its snapshot goes up at once), within alertsPerMin."""
        now = time.monotonic()
        self._alert_times = [x for x in self._alert_times if x > now - 60]
        if len(self._alert_times) >= self.cfg.alerts_per_min:
            self.stats.alerts_suppressed += 1
            return []
        self._alert_times.append(now)
        self.stats.alerts += 1
        out = self._snapshot(st, tr)  # an alert has its picture in S3 right away, not at the event's end
        if not st.cloud_open:  # and the cloud has its event record
            out += self._emit("new", tr, st, local=False)
        d = tr.detection
        box = d.box if d is not None else tr.box  # an analytics hit may name a track missed this frame
        top = frame.top(ALERT_DETECTIONS)
        alert: dict[str, Any] = {
            "schema": "filter-alert/1.0", "alert": name, "camera": self.camera, "event_id": st.event_id,
            "label": tr.label, "score": round(d.score if d is not None else tr.score, 4), "zones": zones,
            "dwell_s": round(dwell_s, 2),
            "timestamp": round(t, 3), "box": [_r(v) for v in box], "frame_size": list(self.size or ()),
            "objects": dict(counts), "detections_total": len(msg.detections),
            "detections": [[x.label, round(x.score, 3), *(_r(v) for v in x.box)] for x in top],
            "snapshot": st.snapshot_id, "model": self.model, **(extra or {}),
        }
        if self.cfg.alert_image and st.best_frame is not None and self.cfg.policy != "metadata":
            import base64

            thumb = encode(st.best_frame, self.cfg.alert_image, st.best_box)
            alert["image_b64"] = base64.b64encode(thumb).decode()
            alert["image_type"] = CONTENT_TYPES[self.cfg.alert_image.format]
        alert = fit_alert(alert)
        item = {"id": f"filter:{self.camera}:{st.event_id}:alert-{name}", "priority": "alerts",
                "destination": "iot", "topic": IOT_EVENTS, "payload": alert}
        put = self._put("alert", item, t, t, json_size(alert))
        if put:
            out.append(put)
        if self.cfg.clips_for == "alerts" and self.cfg.policy == "events" and not st.clips:
            st.clips = True
            out += self._open_window(st, tr)
        return out

    # -- analytics: zone rule hits as alerts, counts per interval ------------------------------------------
    def _hits(self, hits: list[Hit], t: float, counts: Counter[str], msg: Detections,
              frame: _FrameOnce) -> list[Out]:
        out: list[Out] = []
        for h in hits:
            st: EventState | None = h.track.data.get("event")
            if st is None or not st.emitted or h.track.suppressed:
                self.stats.hits_without_event += 1  # no event to carry it (a parked object's spot, say)
                continue
            name = f"{h.kind}-{h.zone}" + (f"-{h.n}" if h.kind == "overcrowding" else "")
            rule = {"kind": h.kind, "zone": h.zone, "occupancy": h.occupancy,
                    ("loiter_s" if h.kind == "loitering" else "max_occupancy"): h.limit}
            out += self._alert(name, h.track, st, t, counts, msg, frame, h.dwell_s, sorted(st.zones), {"rule": rule})
        return out

    def _counts(self, t: float, final: bool = False) -> list[Out]:
        out: list[Out] = []
        for body in self.analytics.due(t, final):
            body = {**body, "camera": self.camera, "model": self.model}
            item = {"id": f"filter:{self.camera}:counts:{body['start']}-{body['end']}", "priority": "results",
                    "destination": "iot", "topic": IOT_RESULTS, "payload": body}
            put = self._put("result", item, body["start"], body["end"], json_size(body))
            self.stats.counts_sent += 1
            out += [put] if put else []
        return out

    # -- segments ---------------------------------------------------------------------------------
    def _open_window(self, st: EventState, tr: Track) -> list[Out]:
        ev = self.cfg.events
        self.windows[st.event_id] = [tr.first_t - ev.pre_roll_s, tr.last_t + ev.post_roll_s, 0]
        out = []
        for seg in self.segments.covering(tr.first_t - ev.pre_roll_s, tr.last_t + ev.post_roll_s):
            out += self._send_segment(seg)
        return out

    def on_segment(self, seg: Segment) -> list[Out]:
        if seg.missing:  # time Capture could not record: events covering it say so
            self.segments.gap(seg)
            return []
        self.segments.add(seg)
        # windows of ended events close once segments are past their post-roll
        for eid, (_, t1, ended) in list(self.windows.items()):
            if ended and seg.start >= t1:
                del self.windows[eid]
        if self.cfg.policy == "metadata":
            return []
        return self._send_segment(seg)

    def _send_segment(self, seg: Segment) -> list[Out]:
        ids = sorted(eid for eid, (t0, t1, _) in self.windows.items() if seg.end > t0 and seg.start < t1)
        if ids:
            kind = "clip"
        elif self.cfg.policy == "continuous":
            kind = "video"
        else:
            return []
        if seg.path in self.segments.sent:
            return []
        item = {"id": f"filter:{self.camera}:seg:{seg.id}", "priority": PRIORITY[kind], "destination": "s3",
                "file": seg.path, "move": False, "name": seg.id, "kind": CLIPS if kind == "clip" else SEGMENTS,
                "content_type": "video/mp2t",
                "metadata": {"event_ids": ids[:20]}}
        if seg.sha256:
            item["sha256"] = seg.sha256
        put = self._put(kind, item, seg.start, seg.end, seg.size)
        if put is None:
            return []
        if put.pending is not None:
            put.pending.events = tuple(ids)
        self.segments.mark_sent(seg)
        return [put]

    def _put(self, kind: str, item: dict[str, Any], start: float, end: float, nbytes: int) -> Out | None:
        if not self.budget.admit(kind, nbytes, self.now()):
            return None
        msg = {"schema": "uplink-put/1.0", "producer": self.producer, "camera": self.camera,
               "start": round(start, 3), "end": round(end, 3), **item}
        return Out(PUT_TOPIC, msg, Pending(self.camera, kind, nbytes, None))

    def media_refused(self, kind: str, event_ids: tuple[str, ...], reason: str) -> None:
        """The Uplink refused a snapshot or clip of these events (no room, say): their messages from now on
        say so in media_missing."""
        if kind not in ("snapshot", "clip") or not event_ids:
            return
        for tr in self.tracker.tracks:
            st: EventState | None = tr.data.get("event")
            if st is not None and st.event_id in event_ids:
                st.missing[kind] = {"kind": kind, "reason": f"uplink refused it: {reason}"[:300]}

    # -- time passing, shutdown, metrics ------------------------------------------------------------
    def expire(self, now: float) -> list[Out]:
        """End tracks not seen for their max age (called when no detections arrive, e.g. camera down)."""
        out: list[Out] = []
        ended = self.tracker.expire(now)
        for tr in ended:
            out += self._end(tr)
        if self.size and ended:
            self.analytics.update((), (), ended, self.tracker.tracks, now, self.size)
        return out + self._counts(now)

    def flush(self) -> list[Out]:
        out: list[Out] = []
        for tr in self.tracker.end_all():
            out += self._end(tr)
        return out + self._counts(self.clock, final=True)

    def metrics(self) -> dict[str, Any]:
        s, fs, b = self.stats, self.filter_stats, self.budget
        now = time.time()
        s.event_times = [x for x in s.event_times if x > now - 60]
        return {
            "policy": self.cfg.policy,
            "frames_in": s.frames_in, "frames_unreadable": s.frames_read_failed, "motion_out": s.motion_out,
            "motion_ratio": round(s.motion_out / s.frames_in, 4) if s.frames_in else None,
            "motion_mean": round(s.motion_ratio_sum / s.motion_out, 4) if s.motion_out else None,
            "recalibrations": self.motion.recalibrations,
            "detection_msgs": s.detections_msgs, "detections_in": fs.seen, "detections_kept": fs.kept,
            "detections_dropped": dict(fs.dropped), "tracks_active": len(self.tracker.tracks),
            "suppressed_tracks": s.suppressed_tracks, "snapshot_frames_missed": s.snapshot_frames_missed,
            "events": dict(s.events), "events_per_min": len(s.event_times), "alerts": s.alerts,
            "alerts_suppressed": s.alerts_suppressed, "media_missing": dict(s.media_missing),
            "segments_in": self.segments.count, "bytes_in": self.segments.bytes_in,
            "bytes_selected": dict(b.selected), "items_selected": dict(b.selected_items),
            "bytes_dropped_budget": dict(b.dropped), "items_dropped_budget": dict(b.dropped_items),
            "budget_kbps": self.cfg.budget_kbps,
            **({"analytics": {**self.analytics.totals(), "counts_sent": s.counts_sent,
                              "hits_without_event": s.hits_without_event}} if self.analytics.enabled else {}),
        }


def _write_atomically(path: Path, data: bytes) -> None:
    """temp file, fsync, rename; nothing is left behind when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def _no_geometry(cfg: CameraConfig) -> CameraConfig:
    """Without a known frame size, area and zone rules cannot be applied (score and class still are)."""
    return cfg.model_copy(update={"zones_only": False, "classes": {
        k: r.model_copy(update={"min_area": 0.0, "max_area": 1.0}) for k, r in cfg.classes.items()}})


__all__ = ["CameraPipeline", "Detection", "Out", "fit_alert", "fit_event", "json_size"]
