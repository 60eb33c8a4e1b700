"""com.ggvision.Filter configuration: per-camera settings, parsed and range-checked, errors naming the key path.

Shape (recipe DefaultConfiguration; every camera key is optional, `defaults` applies under each camera)::

    workDir: ""                 # "": ./filter in the component's work folder (snapshots wait here for the Uplink)
    metricsPeriodS: 5
    defaults: {<camera settings>}
    cameras: {<camera id>: {<camera settings>} | null}

Coordinates of zones and masks are normalised to the frame (0..1, x right, y down), so they survive a
change of the analysed resolution (Capture's maxWidth).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..component.settings import entries, validator
from ..component.settings import number as _number

POLICIES = ("continuous", "events", "metadata")
CLIPS_FOR = ("all", "alerts", "none")
REDACT_METHODS = ("pixelate", "blur", "fill")
FORMATS = ("jpeg", "webp")
Polygon = tuple[tuple[float, float], ...]


def _where(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _num(d: Mapping[str, Any], where: str, key: str, default: float, lo: float, hi: float) -> float:
    try:
        return _number(dict(d), key, default, lo, hi)
    except ValueError as e:
        raise ValueError(f"{where}.{e}" if where else str(e)) from None


def _int(d: Mapping[str, Any], where: str, key: str, default: int, lo: int, hi: int) -> int:
    v = _num(d, where, key, default, lo, hi)
    if v != int(v):
        raise ValueError(f"{_where(where, key)}: expected a whole number, got {v!r}")
    return int(v)


def _bool(d: Mapping[str, Any], where: str, key: str, default: bool) -> bool:
    v = d.get(key, default)
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if not isinstance(v, bool):
        raise ValueError(f"{_where(where, key)}: expected true or false, got {v!r}")
    return v


def _choice(d: Mapping[str, Any], where: str, key: str, default: str, choices: tuple[str, ...]) -> str:
    v = d.get(key, default)
    if v not in choices:
        raise ValueError(f"{_where(where, key)}: one of {', '.join(choices)}, got {v!r}")
    return str(v)


def _obj(d: Mapping[str, Any], where: str, key: str, known: set[str]) -> dict[str, Any]:
    v = d.get(key, {})
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ValueError(f"{_where(where, key)}: expected an object")
    unknown = sorted(set(v) - known)
    if unknown:
        raise ValueError(f"{_where(where, key)}: unknown keys {', '.join(unknown)}")
    return dict(v)


def _labels(d: Mapping[str, Any], where: str, key: str) -> tuple[str, ...]:
    v = d.get(key, [])
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{_where(where, key)}: expected a list of labels")
    return tuple(v)


def _unit(c: Any) -> bool:
    return not isinstance(c, bool) and isinstance(c, int | float) and math.isfinite(c) and 0 <= c <= 1


def parse_polygon(v: Any, where: str) -> Polygon:
    if not isinstance(v, list | tuple) or len(v) < 3:
        raise ValueError(f"{where}: expected a polygon of at least 3 [x, y] points (0..1)")
    pts = []
    for i, p in enumerate(v):
        if not isinstance(p, list | tuple) or len(p) != 2 or not all(_unit(c) for c in p):
            raise ValueError(f"{where}[{i}]: expected [x, y] with 0 <= x, y <= 1, got {p!r}")
        pts.append((float(p[0]), float(p[1])))
    return tuple(pts)


def _polygons(d: Mapping[str, Any], where: str, key: str) -> tuple[Polygon, ...]:
    v = d.get(key, [])
    if not isinstance(v, list | tuple):
        raise ValueError(f"{_where(where, key)}: expected a list of polygons")
    return tuple(parse_polygon(p, f"{_where(where, key)}[{i}]") for i, p in enumerate(v))


@dataclass(frozen=True)
class MotionConfig:
    enabled: bool = True
    width: int = 160  # the gate works on a frame downscaled to this width
    threshold: int = 25  # grey-level difference from the background that counts as change
    min_area: float = 0.002  # smallest changed blob, as a fraction of the frame, that is motion
    masks: tuple[Polygon, ...] = ()  # ignored areas (trees, clocks, roads outside the property)
    global_change: float = 0.35  # more than this fraction changed at once: IR switch / lights: recalibrate
    learn_rate: float = 0.05  # background running average weight per frame
    keepalive_s: float = 5.0  # forward one frame this often even without motion


@dataclass(frozen=True)
class ClassRule:
    min_score: float
    min_area: float  # fraction of the frame area
    max_area: float


@dataclass(frozen=True)
class TrackerConfig:
    iou: float = 0.2  # least overlap of a detection with a track's predicted box to continue it
    max_age_s: float = 1.5  # a moving track not seen for this long ends
    min_hits: int = 2  # detections before a track becomes an event (one-frame false positives make none)
    max_tracks: int = 100  # per camera; a frame with more detections tracks its best-scored ones (counted)


@dataclass(frozen=True)
class StationaryConfig:
    after_s: float = 10.0  # a track that has not moved for this long is stationary (no more updates)
    max_age_s: float = 60.0  # a stationary track survives missed detections this long
    move_iou: float = 0.6  # overlap with its anchor box below which a stationary object has moved
    remember_s: float = 600.0  # a new track on an ended stationary object's spot makes no new event


@dataclass(frozen=True)
class EventsConfig:
    pre_roll_s: float = 5.0
    post_roll_s: float = 5.0
    update_min_s: float = 5.0  # at most one "update" per event this often (zone changes always go)
    max_boxes: int = 32  # box history on the local "end" message (evenly thinned)
    cloud_boxes: int = 8  # box history on the "end" sent to the cloud (the path is a sketch; bytes count there)
    snapshot_gain: float = 0.05  # a new best snapshot needs this much more score
    snapshot_after_s: float = 30.0  # an event still open this long uploads its best snapshot so far (once)
    cloud_new_after_s: float = 5.0  # the cloud hears of an event once it is this old (or alerts); shorter: its end


@dataclass(frozen=True)
class ImageConfig:
    # Defaults measured on vtest (bench/bandwidth.py): a WebP crop of the object with half a box of context
    # costs ~1 kB; a 640-wide full-frame JPEG ~40 kB, which alone is most of the bytes of a busy scene.
    format: str = "webp"
    quality: int = 70
    max_width: int = 320  # 0: keep the size
    crop: bool = True  # crop to the object's box (plus margin) instead of the whole frame
    margin: float = 0.5


@dataclass(frozen=True)
class RedactConfig:
    classes: tuple[str, ...] = ()
    method: str = "pixelate"
    masks: tuple[Polygon, ...] = ()  # static privacy masks (neighbours' windows)
    min_score: float = 0.2  # redact detections of the classes from this score (lower than the event filter)
    margin: float = 0.05  # box grown by this fraction on each side


@dataclass(frozen=True)
class AlertRule:
    name: str
    classes: tuple[str, ...] = ()  # empty: any class
    zones: tuple[str, ...] = ()  # empty: anywhere; otherwise the object must be in one of them
    min_score: float = 0.0
    min_dwell_s: float = 0.0  # in the zone (or seen, without zones) at least this long


@dataclass(frozen=True)
class CameraConfig:
    camera: str
    policy: str = "events"
    clips_for: str = "alerts"
    budget_kbps: float = 0.0  # 0: no budget
    burst_s: float = 600.0  # deep enough for a few 10 s clips of a 3 Mbit/s camera at the default budget
    min_score: float = 0.3
    classes: Mapping[str, ClassRule] = field(default_factory=dict)  # empty: every class
    zones: Mapping[str, Polygon] = field(default_factory=dict)
    zone_anchor: str = "bottom"
    zones_only: bool = False
    motion: MotionConfig = MotionConfig()
    tracker: TrackerConfig = TrackerConfig()
    stationary: StationaryConfig = StationaryConfig()
    events: EventsConfig = EventsConfig()
    snapshot: ImageConfig = ImageConfig()
    alert_image: ImageConfig | None = ImageConfig(format="jpeg", quality=60, max_width=160, crop=True, margin=0.2)
    redact: RedactConfig = RedactConfig()
    alerts: tuple[AlertRule, ...] = ()
    alerts_per_min: int = 30  # per camera: a crowd must not turn into an alert storm (the rest is counted)


CAMERA_KEYS = {"alertsPerMin", "policy", "clipsFor", "budgetKbps", "burstS", "minScore", "classes", "zones",
               "zoneAnchor", "zonesOnly", "motion", "tracker", "stationary", "events", "snapshot", "alertImage",
               "redact", "alerts"}


def _image(d: Mapping[str, Any], where: str, key: str, default: ImageConfig) -> ImageConfig:
    v = _obj(d, where, key, {"format", "quality", "maxWidth", "crop", "margin"})
    w = _where(where, key)
    return ImageConfig(
        format=_choice(v, w, "format", default.format, FORMATS),
        quality=_int(v, w, "quality", default.quality, 1, 100),
        max_width=_int(v, w, "maxWidth", default.max_width, 0, 8192),
        crop=_bool(v, w, "crop", default.crop),
        margin=_num(v, w, "margin", default.margin, 0, 2),
    )


def parse_camera(camera: str, d: Mapping[str, Any]) -> CameraConfig:
    w = f"cameras.{camera}"
    if not isinstance(d, Mapping):
        raise ValueError(f"{w}: expected an object")
    unknown = sorted(set(d) - CAMERA_KEYS)
    if unknown:
        raise ValueError(f"{w}: unknown keys {', '.join(unknown)}")
    min_score = _num(d, w, "minScore", 0.3, 0, 1)
    classes_raw = d.get("classes", {})
    if isinstance(classes_raw, list):  # a plain allow-list
        classes_raw = {c: {} for c in classes_raw}
    if not isinstance(classes_raw, Mapping):
        raise ValueError(f"{w}.classes: expected an object of label -> {{minScore, minArea, maxArea}} or a list")
    classes = {}
    for label, rule in classes_raw.items():
        rw = f"{w}.classes.{label}"
        rule = _obj({label: rule}, f"{w}.classes", label, {"minScore", "minArea", "maxArea"})
        r = ClassRule(_num(rule, rw, "minScore", min_score, 0, 1), _num(rule, rw, "minArea", 0, 0, 1),
                      _num(rule, rw, "maxArea", 1, 0, 1))
        if r.min_area > r.max_area:
            raise ValueError(f"{rw}: minArea is above maxArea")
        classes[label] = r
    zones_raw = d.get("zones", {})
    if not isinstance(zones_raw, Mapping):
        raise ValueError(f"{w}.zones: expected an object of zone name -> polygon")
    zones = {name: parse_polygon(poly, f"{w}.zones.{name}") for name, poly in zones_raw.items()}

    m = _obj(d, w, "motion", {"enabled", "width", "threshold", "minArea", "masks", "globalChange", "learnRate",
                              "keepaliveS"})
    mw = f"{w}.motion"
    motion = MotionConfig(_bool(m, mw, "enabled", True), _int(m, mw, "width", 160, 32, 1920),
                          _int(m, mw, "threshold", 25, 1, 255), _num(m, mw, "minArea", 0.002, 0, 1),
                          _polygons(m, mw, "masks"), _num(m, mw, "globalChange", 0.35, 0.05, 1),
                          _num(m, mw, "learnRate", 0.05, 0.001, 1), _num(m, mw, "keepaliveS", 5, 0.1, 3600))
    t = _obj(d, w, "tracker", {"iou", "maxAgeS", "minHits", "maxTracks"})
    tw = f"{w}.tracker"
    tracker = TrackerConfig(_num(t, tw, "iou", 0.2, 0.01, 1), _num(t, tw, "maxAgeS", 1.5, 0.1, 600),
                            _int(t, tw, "minHits", 2, 1, 100), _int(t, tw, "maxTracks", 100, 1, 10_000))
    s = _obj(d, w, "stationary", {"afterS", "maxAgeS", "moveIou", "rememberS"})
    sw = f"{w}.stationary"
    stationary = StationaryConfig(_num(s, sw, "afterS", 10, 0.5, 86400), _num(s, sw, "maxAgeS", 60, 0.1, 86400),
                                  _num(s, sw, "moveIou", 0.6, 0.05, 0.99), _num(s, sw, "rememberS", 600, 0, 86400))
    e = _obj(d, w, "events", {"preRollS", "postRollS", "updateMinS", "maxBoxes", "cloudBoxes", "snapshotGain",
                              "snapshotAfterS", "cloudNewAfterS"})
    ew = f"{w}.events"
    events = EventsConfig(_num(e, ew, "preRollS", 5, 0, 300), _num(e, ew, "postRollS", 5, 0, 300),
                          _num(e, ew, "updateMinS", 5, 0, 3600), _int(e, ew, "maxBoxes", 32, 2, 1000),
                          _int(e, ew, "cloudBoxes", 8, 2, 1000), _num(e, ew, "snapshotGain", 0.05, 0, 1),
                          _num(e, ew, "snapshotAfterS", 30, 0, 86400), _num(e, ew, "cloudNewAfterS", 5, 0, 86400))
    r = _obj(d, w, "redact", {"classes", "method", "masks", "minScore", "margin"})
    rw = f"{w}.redact"
    redact = RedactConfig(_labels(r, rw, "classes"), _choice(r, rw, "method", "pixelate", REDACT_METHODS),
                          _polygons(r, rw, "masks"), _num(r, rw, "minScore", 0.2, 0, 1),
                          _num(r, rw, "margin", 0.05, 0, 1))
    alert_image = None if d.get("alertImage", {}) is False else _image(d, w, "alertImage", CameraConfig.alert_image)
    rules = d.get("alerts", [])
    if not isinstance(rules, list):
        raise ValueError(f"{w}.alerts: expected a list of rules")
    alerts = []
    for i, rule in enumerate(rules):
        aw = f"{w}.alerts[{i}]"
        if not isinstance(rule, Mapping):
            raise ValueError(f"{aw}: expected an object")
        unknown = sorted(set(rule) - {"name", "classes", "zones", "minScore", "minDwellS"})
        if unknown:
            raise ValueError(f"{aw}: unknown keys {', '.join(unknown)}")
        name = rule.get("name", f"rule-{i}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{aw}.name: expected a non-empty string")
        zones_of_rule = _labels(rule, aw, "zones")
        missing = [z for z in zones_of_rule if z not in zones]
        if missing:
            raise ValueError(f"{aw}.zones: no such zone {', '.join(missing)}")
        alerts.append(AlertRule(name, _labels(rule, aw, "classes"), zones_of_rule, _num(rule, aw, "minScore", 0, 0, 1),
                                _num(rule, aw, "minDwellS", 0, 0, 86400)))
    if len({a.name for a in alerts}) != len(alerts):
        raise ValueError(f"{w}.alerts: rule names must be unique")
    return CameraConfig(
        camera=camera,
        policy=_choice(d, w, "policy", "events", POLICIES),
        clips_for=_choice(d, w, "clipsFor", "alerts", CLIPS_FOR),
        budget_kbps=_num(d, w, "budgetKbps", 0, 0, 1e6),
        burst_s=_num(d, w, "burstS", 600, 1, 3600),
        min_score=min_score,
        classes=classes,
        zones=zones,
        zone_anchor=_choice(d, w, "zoneAnchor", "bottom", ("bottom", "center")),
        zones_only=_bool(d, w, "zonesOnly", False),
        motion=motion, tracker=tracker, stationary=stationary, events=events,
        snapshot=_image(d, w, "snapshot", ImageConfig()),
        alert_image=alert_image,
        redact=redact,
        alerts=tuple(alerts),
        alerts_per_min=_int(d, w, "alertsPerMin", 30, 1, 100_000),
    )


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


@dataclass(frozen=True)
class FilterConfig:
    work_dir: str = ""
    metrics_period_s: float = 5.0
    cameras: Mapping[str, CameraConfig] = field(default_factory=dict)


def parse_config(cfg: Mapping[str, Any]) -> FilterConfig:
    unknown = sorted(set(cfg) - {"workDir", "metricsPeriodS", "defaults", "cameras", "accessControl"})
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
    work_dir = cfg.get("workDir", "")
    if not isinstance(work_dir, str):
        raise ValueError("workDir: expected a path (string)")
    defaults = cfg.get("defaults") or {}
    if not isinstance(defaults, Mapping):
        raise ValueError("defaults: expected an object of camera settings")
    cameras = {cam: parse_camera(cam, _merge(defaults, settings))
               for cam, settings in entries(cfg.get("cameras") or {}, "cameras", "camera").items()}
    return FilterConfig(work_dir, _number(dict(cfg), "metricsPeriodS", 5, 0.5, 3600), cameras)


validate = validator(parse_config)  # for ComponentApp: the reason a configuration is refused, or None
