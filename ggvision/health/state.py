"""What Health learns from local messages: inference, capture and uplink metrics, the `storage` block any
component's metrics carry (ggvision/component/storage.py: write failures per condition, the conditions still
active), and the Filter's per-camera `analytics` counts (line crossings, zone occupancy, rule hits;
ggvision/filter/analytics.py).

Health reads no per-frame message: each camera's last frame comes from capture-metrics/1.1 (`frames_published`,
`last_frame_age_s`) and its detections from inference-metrics/1.1 (`cameras`: detections messages published and
the last one's age), so it knows of a frame or a detection within one metrics period of the component's, at the
time the component saw it. Older producers without those fields still work, more coarsely: a camera whose
`frames_out` grew has had a frame by the time its metrics arrived; a model whose `frames` counter grew counts as
a detection on every camera (no per-camera detection fps then).

IPC callbacks (on the client's event thread) call `on_*`; each does a little validation and
bookkeeping under a lock and returns. A malformed message is counted per topic and dropped.
The tick reads consistent copies through `view()`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ..contract import disk, topics

# topic prefix: what follows the last "/" names the component
METRICS = topics.METRICS.removesuffix("{component}")
_CAPTURE = re.compile(r"^capture-metrics/1\.\d+$")
_DECODER = re.compile(r"^[a-z0-9_-]{1,16}$")  # it becomes a Prometheus label value
_INFERENCE = re.compile(r"^inference-metrics/1\.\d+$")
_UPLINK = re.compile(r"^uplink-metrics/1\.\d+$")
_FILTER = re.compile(r"^filter-metrics/1\.\d+$")
MAX_ANALYTICS_NAMES = 32  # lines, zones, labels per camera kept for metrics (bounded label sets)
MAX_TOPIC_LABELS = 256  # malformed-message counters beyond this many topics go under "other"
MAX_CAMERAS = 1024  # cameras tracked from capture and inference metrics (a runaway publisher cannot grow us)
MODEL_STALE_S = 600.0  # a model not reported for this long (swapped out) is forgotten
RATE_MIN_S = 0.5  # detection fps over reports at least this far apart (the primaries' messages of one period share one)
MAX_STORAGE_COMPONENTS = 64  # components whose storage block is kept
STORAGE_CONDITIONS = ("disk-full", "read-only", "permission-denied", "io-error")


class Malformed(ValueError):
    pass


def _num(d: dict[str, Any], key: str, lo: float = 0.0) -> float | None:
    """An optional finite number ≥ lo; Malformed if present and not one."""
    if key not in d or d[key] is None:
        return None
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < lo:
        raise Malformed(f"{key}: expected a finite number >= {lo:g}, got {v!r}")
    return float(v)


def _text(d: dict[str, Any], key: str, required: bool = False, limit: int = 128) -> str | None:
    v = d.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v or len(v) > limit:
        raise Malformed(f"{key}: expected a string of 1..{limit} characters, got {str(v)[:40]!r}")
    return v


@dataclass(frozen=True)
class InferenceMetrics:
    model: str
    version: str | None
    provider: str | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    batches_per_s: float | None
    load_ms: float | None
    errors: float | None  # cumulative since the inference process started
    runs: float | None
    score_mean: float | None
    role: str = "primary"  # "shadow"/"split": an A/B candidate (arm B), kept apart from the primary
    shadow: dict[str, float] | None = None  # the primary's agreement with its shadow (IoU-matched detections)
    arms: ArmFigures | None = None  # the A/B figures while the model has a candidate (docs/inference.md)
    model_id: str | None = None  # the configured model id (`id`)
    frames: float | None = None  # frames that got a result, cumulative for the process
    timestamp: float | None = None  # when Inference made the message (epoch seconds)
    cameras: dict[str, CameraDetections] | None = None  # 1.1: detections messages per camera (None: older)

    @property
    def key(self) -> str:
        """Where Health keeps this model: a shadow of the same model must not look like its restart."""
        return self.model if self.role == "primary" else f"{self.model}#{self.role}"


@dataclass(frozen=True)
class CameraDetections:
    """One camera's entry of inference-metrics' `cameras` block."""

    messages: int  # detections messages published since the inference process started
    last_age_s: float | None  # seconds since the last one, when the metrics were made


def _cameras_block(block: Any) -> dict[str, CameraDetections] | None:
    if block is None:
        return None
    if not isinstance(block, dict):
        raise Malformed("cameras: expected an object keyed by camera")
    out = {}
    for cam, c in list(block.items())[:MAX_CAMERAS]:
        if not isinstance(c, dict):
            raise Malformed(f"cameras.{str(cam)[:64]}: expected an object")
        where = f"cameras.{str(cam)[:64]}"
        out[str(cam)[:128]] = CameraDetections(_count(c.get("detection_msgs"), f"{where}.detection_msgs"),
                                               _num(c, "last_age_s"))
    return out


OUTCOMES = ("matched", "label_flips", "a_only", "b_only")


@dataclass(frozen=True)
class ArmFigures:
    """One arm's side of an A/B experiment, from the `arm`/`ab` fields of inference-metrics/1.x."""

    model_id: str  # the configured model id both arms belong to
    arm: str  # "a" | "b"
    mode: str  # "shadow" | "split"
    detections_per_frame: dict[str, float]  # label -> detections per frame since the arm's model loaded
    frames: float | None  # the frames detections_per_frame is over (inference-metrics `label_frames`)
    score_hist: tuple[float, ...]  # confidence counts in 10 buckets of 0.1
    b_skipped: float | None
    b_failed: float | None
    agreement: dict[str, dict[str, float]]  # outcome (OUTCOMES) -> label -> count, shadow mode


def _labels(block: Any, key: str) -> dict[str, float]:
    if block is None:
        return {}
    if not isinstance(block, dict):
        raise Malformed(f"{key}: expected an object label -> number")
    return {str(k)[:64]: float(v) for k, v in list(block.items())[:64]
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


def _arm_figures(msg: dict[str, Any]) -> ArmFigures | None:
    arm, ab = msg.get("arm"), msg.get("ab")
    if arm is None:
        return None
    if arm not in ("a", "b"):
        raise Malformed(f"arm: expected 'a' or 'b', got {str(arm)[:40]!r}")
    if not isinstance(ab, dict):
        raise Malformed("ab: expected an object with the arm's experiment")
    hist = msg.get("score_hist") or []
    if not isinstance(hist, list) or not all(isinstance(h, int | float) and not isinstance(h, bool) for h in hist):
        raise Malformed("score_hist: expected a list of counts")
    by_label = (ab.get("agreement") or {}).get("by_label") or {}
    if not isinstance(by_label, dict):
        raise Malformed("ab.agreement.by_label: expected an object")
    return ArmFigures(
        model_id=_text(msg, "id", required=True) or "", arm=str(arm), mode=str(ab.get("mode", ""))[:16],
        detections_per_frame=_labels(msg.get("detections_per_frame"), "detections_per_frame"),
        frames=_num(msg, "label_frames"),
        score_hist=tuple(float(h) for h in hist[:32]), b_skipped=_num(ab, "b_skipped"), b_failed=_num(ab, "b_failed"),
        agreement={k: _labels(by_label.get(k), f"ab.agreement.by_label.{k}") for k in OUTCOMES if k in by_label})


def parse_inference(msg: Any) -> InferenceMetrics:
    """`inference-metrics/1.x` (produced by com.ggvision.Inference); Malformed names the field."""
    if not isinstance(msg, dict):
        raise Malformed("expected a JSON object")
    if not isinstance(msg.get("schema"), str) or not _INFERENCE.match(msg["schema"]):
        raise Malformed(f"schema: expected inference-metrics/1.x, got {str(msg.get('schema'))[:40]!r}")
    lat = msg.get("latency_ms") or {}
    if not isinstance(lat, dict):
        raise Malformed("latency_ms: expected an object {p50, p95, p99}")
    return InferenceMetrics(
        model=_text(msg, "model", required=True) or "",
        version=None if msg.get("version") is None else str(msg["version"])[:64],
        provider=_text(msg, "provider"),
        p50_ms=_num(lat, "p50"), p95_ms=_num(lat, "p95"), p99_ms=_num(lat, "p99"),
        batches_per_s=_num(msg, "batches_per_s"), load_ms=_num(msg, "load_ms"),
        errors=_num(msg, "errors"), runs=_num(msg, "runs"), score_mean=_num(msg, "score_mean", lo=-math.inf),
        role=_role(msg), shadow=_agreement(msg.get("shadow")), arms=_arm_figures(msg),
        model_id=str(msg["id"])[:128] if isinstance(msg.get("id"), str) else None,
        frames=_num(msg, "frames"), timestamp=_num(msg, "timestamp"), cameras=_cameras_block(msg.get("cameras")),
    )


def _role(msg: dict[str, Any]) -> str:
    role = msg.get("role", "primary")
    if role not in ("primary", "shadow", "split"):  # shadow/split: an A/B candidate (B arm), kept apart from A
        raise Malformed(f"role: expected 'primary', 'shadow' or 'split', got {str(role)[:40]!r}")
    return str(role)


def _agreement(block: Any) -> dict[str, float] | None:
    """The numeric agreement figures of a primary's `shadow` block (model/version strings are dropped)."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise Malformed("shadow: expected an object")
    return {k: float(v) for k, v in block.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


@dataclass(frozen=True)
class CaptureCamera:
    status: str
    input_fps: float | None
    decoded_fps: float | None
    frames: float | None = None  # 1.1 `frames_published`, else `frames_out` (cumulative for the process)
    last_frame_age_s: float | None = None  # 1.1: seconds since the last descriptor, when the metrics were made
    decoder: str | None = None  # "cuda" (NVDEC) or "cpu" once connected (hwDecode); None before, or not said


def parse_capture(msg: Any) -> tuple[dict[str, CaptureCamera], set[str]]:
    """`capture-metrics/1.x` → (cameras, sensor ids)."""
    if not isinstance(msg, dict):
        raise Malformed("expected a JSON object")
    if not isinstance(msg.get("schema"), str) or not _CAPTURE.match(msg["schema"]):
        raise Malformed(f"schema: expected capture-metrics/1.x, got {str(msg.get('schema'))[:40]!r}")
    cams, sensors = msg.get("cameras") or {}, msg.get("sensors") or {}
    if not isinstance(cams, dict) or not isinstance(sensors, dict):
        raise Malformed("cameras/sensors: expected objects keyed by id")
    out = {}
    for cam, m in {**sensors, **cams}.items():
        if not isinstance(m, dict):
            raise Malformed(f"cameras.{cam}: expected an object")
        status = m.get("status")
        if not isinstance(status, str):
            raise Malformed(f"cameras.{cam}.status: expected a string")
        frames = _num(m, "frames_published")
        decoder = m.get("decoder")
        if decoder is not None and (not isinstance(decoder, str) or not _DECODER.match(decoder)):
            raise Malformed(f"cameras.{cam}.decoder: expected a short name like cpu or cuda, got {str(decoder)[:40]!r}")
        out[cam] = CaptureCamera(status, _num(m, "input_fps"), _num(m, "decoded_fps"),
                                 _num(m, "frames_out") if frames is None else frames, _num(m, "last_frame_age_s"),
                                 decoder)
    return out, set(sensors) - set(cams)


def parse_uplink(msg: Any) -> dict[str, float]:
    """Uplink metrics: {"backlog_bytes": {"<priority>": n}} (schema uplink-metrics/1.x when given)."""
    if not isinstance(msg, dict):
        raise Malformed("expected a JSON object")
    schema = msg.get("schema")
    if schema is not None and (not isinstance(schema, str) or not _UPLINK.match(schema)):
        raise Malformed(f"schema: expected uplink-metrics/1.x, got {str(schema)[:40]!r}")
    backlog = msg.get("backlog_bytes")
    if not isinstance(backlog, dict):
        raise Malformed("backlog_bytes: expected an object of priority -> bytes")
    out = {}
    for prio, n in backlog.items():
        v = _num({"v": n}, "v")
        if v is None or len(str(prio)) > 64:
            raise Malformed(f"backlog_bytes.{str(prio)[:64]}: expected a number >= 0")
        out[str(prio)] = v
    return out


@dataclass(frozen=True)
class StorageReport:
    """One component's storage block: failed writes per condition (cumulative since it started) and the
    conditions still active with what they affect."""

    errors: dict[str, float]
    active: dict[str, str]  # condition -> "what: first error"
    since: dict[str, float]  # condition -> epoch it began


def parse_storage(block: Any) -> StorageReport | None:
    """The optional `storage` block of a `*-metrics/1.x` message; Malformed names the field."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise Malformed("storage: expected an object")
    errors, active = block.get("errors") or {}, block.get("active") or {}
    if not isinstance(errors, dict) or not isinstance(active, dict):
        raise Malformed("storage.errors/active: expected objects keyed by condition")
    out_e: dict[str, float] = {}
    for cond, n in errors.items():
        if cond not in STORAGE_CONDITIONS:
            raise Malformed(f"storage.errors.{str(cond)[:32]}: unknown condition")
        v = _num({"v": n}, "v")
        out_e[cond] = v or 0.0
    out_a, since = {}, {}
    for cond, a in active.items():
        if cond not in STORAGE_CONDITIONS or not isinstance(a, dict):
            raise Malformed(f"storage.active.{str(cond)[:32]}: expected a known condition with an object")
        out_a[cond] = str(a.get("error", ""))[:300]
        since[cond] = _num(a, "since") or 0.0
    return StorageReport(out_e, out_a, since)


@dataclass
class ModelState:
    metrics: InferenceMetrics
    received: float  # monotonic
    errors_total: float = 0.0  # accumulated across inference restarts (a Prometheus counter)
    error_ratio: float = 0.0  # errors / runs over the last reporting interval


@dataclass
class CameraTrack:
    first_known: float  # monotonic: when Health first heard of the camera
    frame_last: float | None = None
    frames: float | None = None  # capture's cumulative count at its last metrics (an older capture: frames_out)
    detections: int = 0  # detections messages since Health first heard of the camera (across Inference restarts)
    detection_last: float | None = None
    detection_msgs: int | None = None  # Inference's own cumulative count at its last metrics
    detection_at: float | None = None  # monotonic: when Inference last reported this camera
    detection_fps: float = 0.0  # over the last two reports at least RATE_MIN_S apart
    rate_mark: tuple[int, float] | None = None  # (detections, Inference's timestamp) the rate counts from


@dataclass
class CameraView:
    camera: str
    sensor: bool
    up: bool
    input_fps: float | None
    decoded_fps: float | None
    frame_age_s: float
    frame_last: float | None  # monotonic
    detections: int
    detection_last: float | None
    first_known: float
    detection_fps: float = 0.0
    decoder: str | None = None


@dataclass
class AppView:
    cameras: dict[str, CameraView]
    models: dict[str, ModelState]
    backlog: dict[str, float]
    malformed: dict[str, int]
    any_detection: bool
    storage: dict[str, StorageReport] = field(default_factory=dict)  # by component name
    disk: dict[str, DiskReport] = field(default_factory=dict)  # by component name: what it holds, for the budget
    analytics: dict[str, AnalyticsReport] = field(default_factory=dict)  # by camera


@dataclass(frozen=True)
class AnalyticsReport:
    """A camera's counts as the Filter reports them (cumulative since its pipeline started)."""

    crossings: dict[tuple[str, str, str], int]  # (line, in|out, label) -> n
    occupancy: dict[str, int]  # zone -> objects in it now
    hits: dict[str, int]  # loitering | overcrowding -> n


def _count(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise Malformed(f"{where}: expected a count")
    return v


def _names(v: Any, where: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise Malformed(f"{where}: expected an object")
    return {str(k)[:64]: x for k, x in list(v.items())[:MAX_ANALYTICS_NAMES]}


def parse_filter(msg: Any) -> dict[str, AnalyticsReport]:
    """The `analytics` blocks of `filter-metrics/1.x`, by camera; Malformed names the field."""
    schema = msg.get("schema") if isinstance(msg, dict) else None
    if not isinstance(msg, dict) or not _FILTER.match(str(schema)):
        raise Malformed(f"schema: expected filter-metrics/1.x, got {str(schema)[:40]!r}")
    out = {}
    for cam, m in _names(msg.get("cameras", {}), "cameras").items():
        a = m.get("analytics") if isinstance(m, dict) else None
        if a is None:
            continue
        where = f"cameras.{cam}.analytics"
        a = _names(a, where)
        crossings = {(line, d, lbl): _count(n, f"{where}.crossings.{line}.{d}.{lbl}")
                     for line, dirs in _names(a.get("crossings", {}), f"{where}.crossings").items()
                     for d in ("in", "out")
                     for lbl, n in _names(_names(dirs, f"{where}.crossings.{line}").get(d, {}),
                                          f"{where}.crossings.{line}.{d}").items()}
        occupancy = {z: _count(n, f"{where}.occupancy.{z}")
                     for z, n in _names(a.get("occupancy", {}), f"{where}.occupancy").items()}
        hits = {k: _count(n, f"{where}.hits.{k}") for k, n in _names(a.get("hits", {}), f"{where}.hits").items()
                if k in ("loitering", "overcrowding")}
        out[cam] = AnalyticsReport(crossings, occupancy, hits)
    return out


@dataclass(frozen=True)
class DiskReport:
    """A component's `disk` block (contract/disk.py): bytes it holds and bytes the budget made it give up."""

    held: dict[str, int]
    evicted: dict[str, int]


@dataclass
class AppState:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    malformed: dict[str, int] = field(default_factory=dict)
    models: dict[str, ModelState] = field(default_factory=dict)
    capture: dict[str, CaptureCamera] = field(default_factory=dict)
    sensors: set[str] = field(default_factory=set)
    capture_at: float | None = None
    capture_interval: float = 5.0
    inference_at: float | None = None
    inference_interval: float = 5.0
    backlog: dict[str, float] = field(default_factory=dict)
    tracks: dict[str, CameraTrack] = field(default_factory=dict)
    any_detection: bool = False
    storage: dict[str, tuple[StorageReport, float]] = field(default_factory=dict)  # component -> (report, when)
    disk: dict[str, tuple[DiskReport, float]] = field(default_factory=dict)  # component -> (report, when)
    analytics: dict[str, AnalyticsReport] = field(default_factory=dict)  # camera -> the Filter's latest
    analytics_at: float | None = None

    def _bad(self, topic: str) -> None:
        key = topic if topic in self.malformed or len(self.malformed) < MAX_TOPIC_LABELS else "other"
        self.malformed[key] = self.malformed.get(key, 0) + 1

    def _track(self, cam: str, now: float) -> CameraTrack | None:
        t = self.tracks.get(cam)
        if t is None:
            if len(self.tracks) >= MAX_CAMERAS:
                return None
            t = self.tracks[cam] = CameraTrack(now)
        return t

    # -- IPC callbacks ---------------------------------------------------------------------
    def on_message(self, topic: str, msg: Any, now: float | None = None) -> None:
        """Any subscribed message (msg: the JSON message, or None for a binary one)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            try:
                if topic == METRICS + "inference":
                    m = parse_inference(msg)
                    # the messages that carry per-camera counts; a period's several primaries count once
                    if m.role == "primary" and m.cameras is not None and (
                            self.inference_at is None or now - self.inference_at >= RATE_MIN_S):
                        if self.inference_at is not None:
                            self.inference_interval = now - self.inference_at
                        self.inference_at = now
                    self._on_inference(m, now)
                elif topic == METRICS + "capture":
                    cams, sensors = parse_capture(msg)
                    if self.capture_at is not None:
                        self.capture_interval = max(0.1, now - self.capture_at)
                    self.capture, self.sensors, self.capture_at = cams, sensors, now
                    for cam, m in cams.items():
                        self._on_capture_camera(cam, m, now)
                elif topic == METRICS + "uplink":
                    self.backlog = parse_uplink(msg)
                # of other components' metrics Health reads only the storage block
                if topic.startswith(METRICS):
                    self._on_storage(topic, msg, now)
                if topic == METRICS + "filter":  # after its storage block: bad counts must not hide that
                    self.analytics, self.analytics_at = parse_filter(msg), now
            except Exception:  # Malformed, or anything odd: count and drop
                self._bad(topic)

    def _on_storage(self, topic: str, msg: Any, now: float) -> None:
        if not isinstance(msg, dict):
            raise Malformed("expected a JSON object")
        name = msg.get("component") if isinstance(msg.get("component"), str) else topic[len(METRICS):]
        name = str(name)[:128]
        if msg.get("disk") is not None:
            try:
                held, evicted = disk.parse_held(msg["disk"])
            except ValueError as e:
                raise Malformed(str(e)) from None
            if name in self.disk or len(self.disk) < MAX_STORAGE_COMPONENTS:
                self.disk[name] = (DiskReport(held, evicted), now)
        report = parse_storage(msg.get("storage"))
        if report is None:
            return
        if name in self.storage or len(self.storage) < MAX_STORAGE_COMPONENTS:
            self.storage[name] = (report, now)

    def _on_capture_camera(self, cam: str, m: CaptureCamera, now: float) -> None:
        t = self._track(cam, now)
        if t is None:
            return
        if m.last_frame_age_s is not None and m.frames:
            t.frame_last = max(t.frame_last or -math.inf, now - m.last_frame_age_s)
        elif m.frames is not None and t.frames is not None and m.frames != t.frames:  # an older capture
            t.frame_last = now  # a frame arrived since its last metrics: known to within one period
        t.frames = m.frames

    def _on_detections(self, m: InferenceMetrics, now: float) -> None:
        for cam, c in (m.cameras or {}).items():
            t = self._track(cam, now)
            if t is None:
                continue
            prev = t.detection_msgs
            new = c.messages - prev if prev is not None and c.messages >= prev else c.messages  # a restart: anew
            t.detection_msgs, t.detection_at = c.messages, now
            if new > 0 and c.last_age_s is not None:
                t.detections += new
                t.detection_last = max(t.detection_last or -math.inf, now - c.last_age_s)
                self.any_detection = True
            if m.timestamp is not None:
                if t.rate_mark is None or m.timestamp < t.rate_mark[1]:
                    t.rate_mark = (t.detections, m.timestamp)
                elif m.timestamp - t.rate_mark[1] >= RATE_MIN_S:
                    t.detection_fps = (t.detections - t.rate_mark[0]) / (m.timestamp - t.rate_mark[1])
                    t.rate_mark = (t.detections, m.timestamp)

    def _on_progress(self, m: InferenceMetrics, prev: InferenceMetrics | None, now: float) -> None:
        """An older Inference without per-camera counts: its model's frames counter moving stands for a detection on
        every camera (so the hung watchdog does not fire while it works)."""
        if m.role != "primary" or m.frames is None or prev is None or prev.frames is None or m.frames == prev.frames:
            return
        for cam, t in self.tracks.items():
            if cam not in self.sensors:
                t.detection_last = now

    def _on_inference(self, m: InferenceMetrics, now: float) -> None:
        prev = self.models.get(m.key)
        if m.cameras is not None:
            self._on_detections(m, now)
        else:
            self._on_progress(m, prev.metrics if prev is not None else None, now)
        st = ModelState(m, now)
        errors, runs = m.errors or 0.0, m.runs or 0.0
        if prev is None:
            st.errors_total = errors
            st.error_ratio = errors / runs if runs > 0 else 0.0
        else:
            pe, pr = prev.metrics.errors or 0.0, prev.metrics.runs or 0.0
            if errors < pe or runs < pr:  # the inference process restarted: its counters start over
                de, dr = errors, runs
            else:
                de, dr = errors - pe, runs - pr
            st.errors_total = prev.errors_total + de
            st.error_ratio = min(1.0, de / dr) if dr > 0 else (1.0 if de > 0 else 0.0)
        self.models[m.key] = st
        if m.role == "primary" and m.arms is None and m.model_id:  # A without a candidate: its B was removed
            for key in [k for k, s in self.models.items() if s.metrics.arms is not None
                        and s.metrics.arms.arm == "b" and s.metrics.arms.model_id == m.model_id]:
                del self.models[key]

    # -- the tick's view ---------------------------------------------------------------------
    def view(self, silent_s: float, now: float | None = None) -> AppView:
        now = time.monotonic() if now is None else now
        with self._lock:
            stale_after = max(silent_s, 3 * self.capture_interval)
            fresh = self.capture_at is not None and now - self.capture_at <= stale_after
            cams = {}
            for cam, t in list(self.tracks.items()):
                cap = self.capture.get(cam) if fresh else None
                recent = any(x is not None and now - x <= stale_after for x in (t.frame_last, t.detection_last))
                fps = t.detection_fps if t.detection_at is not None and now - t.detection_at <= max(
                    3 * self.inference_interval, 1.0) else 0.0  # Inference stopped reporting the camera
                if fresh and cap is None and not recent:
                    del self.tracks[cam]  # capture no longer lists it and nothing arrives: removed
                    continue
                age = now - (t.frame_last if t.frame_last is not None else t.first_known)
                up = cap.status == "connected" if cap is not None else age < silent_s
                cams[cam] = CameraView(cam, cam in self.sensors, up, cap.input_fps if cap else None,
                                       cap.decoded_fps if cap else None, age, t.frame_last, t.detections,
                                       t.detection_last, t.first_known, fps, cap.decoder if cap else None)
            for model in [m for m, s in self.models.items() if now - s.received > MODEL_STALE_S]:
                del self.models[model]
            for comp in [c for c, (_, at) in self.storage.items() if now - at > MODEL_STALE_S]:
                del self.storage[comp]  # a component that stopped reporting
            for comp in [c for c, (_, at) in self.disk.items() if now - at > MODEL_STALE_S]:
                del self.disk[comp]
            if self.analytics_at is not None and now - self.analytics_at > MODEL_STALE_S:
                self.analytics = {}  # the Filter stopped reporting: no stale occupancy
            return AppView(cams, dict(self.models), dict(self.backlog), dict(self.malformed), self.any_detection,
                           {c: r for c, (r, _) in self.storage.items()}, {c: r for c, (r, _) in self.disk.items()},
                           dict(self.analytics))
