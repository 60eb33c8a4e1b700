"""com.ggvision.Filter's configuration as typed models: what the recipe's DefaultConfiguration and a deployment's
merge may hold, range-checked, with defaults and errors that name the key path (`cameras.cam-1.zones.road: ...`).

Shape (every camera key is optional; `defaults` is deep-merged under each camera before the camera is
validated, so an error in a default is reported under each camera that inherits it)::

    workDir: ""                 # "": ./filter in the component's work folder (snapshots wait here for the Uplink)
    metricsPeriodS: 5
    localLog: {enabled: true, retentionDays: 7, fireEveryS: 10}   # the box's own event + fire-risk log
    defaults: {<camera settings>}
    cameras: {<camera id>: {<camera settings>} | null}      # null removes a camera

It gives:
- FilterConfig, the whole configuration: `parse(FilterConfig, cfg)` for the component, `validator(FilterConfig)`
  for ComponentApp, `json_schema(FilterConfig)` for docs and editors;
- CameraConfig and its parts (motion, tracker, stationary, events, snapshot/alertImage, redact, classes,
  alert rules), the per-camera settings the Filter's pipeline reads; `parse_camera(id, settings)` gives one
  camera's settings as the component would see them (tests, benches);
- Polygon, the zone and mask geometry: points normalised to the frame (0..1, x right, y down), so they
  survive a change of the analysed resolution (Capture's maxWidth).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from .base import ComponentConfig, ConfigModel, Flag, entries, number, parse, whole

Point = tuple[float, float]
Polygon = tuple[Point, ...]
"""A zone or mask: at least 3 points, normalised to the frame."""

Policy = Literal["continuous", "events", "metadata"]
ClipsFor = Literal["all", "alerts", "none"]
RedactMethod = Literal["pixelate", "blur", "fill"]
ImageFormat = Literal["jpeg", "webp"]
ZoneAnchor = Literal["bottom", "center"]
Side = Literal["left", "right"]


# -- value types ------------------------------------------------------------------------------------------

def _one_of(choices: Any) -> Callable[[Any], Any]:
    allowed = get_args(choices)

    def check(v: Any) -> Any:
        if v not in allowed:
            raise ValueError(f"one of {', '.join(allowed)}, got {v!r}")
        return v

    return check


def _choice(choices: Any) -> Any:
    """One of a Literal's strings; the error lists them."""
    return Annotated[choices, BeforeValidator(_one_of(choices))]


def _unit(c: Any) -> bool:
    return not isinstance(c, bool) and isinstance(c, int | float) and math.isfinite(c) and 0 <= c <= 1


def _point(p: Any) -> Point:
    if not isinstance(p, list | tuple) or len(p) != 2 or not all(_unit(c) for c in p):
        raise ValueError(f"expected [x, y] with 0 <= x, y <= 1, got {p!r}")
    return float(p[0]), float(p[1])


def _polygon(v: Any) -> Any:
    if not isinstance(v, list | tuple) or len(v) < 3:
        raise ValueError("expected a polygon of at least 3 [x, y] points (0..1)")
    return v


def _polygons(v: Any) -> Any:
    if not isinstance(v, list | tuple):
        raise ValueError("expected a list of polygons")
    return v


def _labels(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not all(isinstance(x, str) and x for x in v):
        raise ValueError("expected a list of labels")
    return tuple(v)


def _name(v: Any) -> Any:
    if not isinstance(v, str) or not v:
        raise ValueError("expected a non-empty string")
    return v


def _path(v: Any) -> Any:
    if not isinstance(v, str):
        raise ValueError("expected a path (string)")
    return v


def _zones(v: Any) -> Any:
    if not isinstance(v, Mapping):
        raise ValueError("expected an object of zone name -> polygon")
    return v


def _defaults(v: Any) -> Any:
    v = v or {}
    if not isinstance(v, Mapping):
        raise ValueError("expected an object of camera settings")
    return v


ValidPolygon = Annotated[tuple[Annotated[Point, BeforeValidator(_point)], ...], BeforeValidator(_polygon)]
Polygons = Annotated[tuple[ValidPolygon, ...], BeforeValidator(_polygons)]
Labels = Annotated[tuple[str, ...], BeforeValidator(_labels)]


class Section(ConfigModel):
    """An object of settings; null means all defaults (unless `null_is_empty` is off), anything else that is
    not an object is refused."""

    null_is_empty: ClassVar[bool] = True

    @model_validator(mode="before")
    @classmethod
    def _an_object(cls, v: Any) -> Any:
        if v is None and cls.null_is_empty:
            return {}
        if not isinstance(v, Mapping | cls):
            raise ValueError("expected an object")
        return v


# -- camera settings ---------------------------------------------------------------------------------------

class MotionConfig(Section):
    # Publish motion descriptors on ggvision/v1/motion/{camera}. Off (the default), the Filter does not even read
    # this camera's frame descriptors: nothing else uses the gate, and each descriptor costs IPC and a ring read.
    # Inference reading `frameTopics: [ggvision/v1/motion/+]` needs it on for every camera it should analyse.
    publish: Flag = False
    enabled: Flag = True
    width: whole(32, 1920) = 160  # the gate works on a frame downscaled to this width
    threshold: whole(1, 255) = 25  # grey-level difference from the background that counts as change
    min_area: number(0, 1) = 0.002  # smallest changed blob, as a fraction of the frame, that is motion
    masks: Polygons = ()  # ignored areas (trees, clocks, roads outside the property)
    global_change: number(0.05, 1) = 0.35  # more than this fraction changed at once: IR switch / lights: recalibrate
    learn_rate: number(0.001, 1) = 0.05  # background running average weight per frame
    keepalive_s: number(0.1, 3600) = 5.0  # forward one frame this often even without motion


class ClassRule(Section):
    min_score: number(0, 1) = 0.3  # parsed: the camera's minScore unless the class sets its own
    min_area: number(0, 1) = 0.0  # fraction of the frame area
    max_area: number(0, 1) = 1.0

    @model_validator(mode="after")
    def _area_range(self) -> ClassRule:
        if self.min_area > self.max_area:
            raise ValueError("minArea is above maxArea")
        return self


class TrackerConfig(Section):
    iou: number(0.01, 1) = 0.2  # least overlap of a detection with a track's predicted box to continue it
    max_age_s: number(0.1, 600) = 1.5  # a moving track not seen for this long ends
    min_hits: whole(1, 100) = 2  # detections before a track becomes an event (one-frame false positives make none)
    max_tracks: whole(1, 10_000) = 100  # per camera; a frame with more detections tracks its best-scored ones
    # a box at least this much covered by two better-scored boxes of its label is doubtful: matched after the
    # others, never starts a track (one box over a pair of people); above 1 no box is (docs/filter.md)
    cover: number(0.1, 2) = 0.5


class StationaryConfig(Section):
    after_s: number(0.5, 86400) = 10.0  # a track that has not moved for this long is stationary (no more updates)
    max_age_s: number(0.1, 86400) = 60.0  # a stationary track survives missed detections this long
    move_iou: number(0.05, 0.99) = 0.6  # overlap with its anchor box below which a stationary object has moved
    remember_s: number(0, 86400) = 600.0  # a new track on an ended stationary object's spot makes no new event


class EventsConfig(Section):
    pre_roll_s: number(0, 300) = 5.0
    post_roll_s: number(0, 300) = 5.0
    update_min_s: number(0, 3600) = 5.0  # at most one "update" per event this often (zone changes always go)
    max_boxes: whole(2, 1000) = 32  # box history on the local "end" message (evenly thinned)
    cloud_boxes: whole(2, 1000) = 8  # box history on the "end" sent to the cloud (a sketch; bytes count there)
    snapshot_gain: number(0, 1) = 0.05  # a new best snapshot needs this much more score
    snapshot_after_s: number(0, 86400) = 30.0  # an event still open this long uploads its best snapshot (once)
    cloud_new_after_s: number(0, 86400) = 5.0  # the cloud hears of an event once it is this old (or alerts)


class ImageConfig(Section):
    # Defaults measured on vtest (bench/bandwidth.py): a WebP crop of the object with half a box of context
    # costs ~1 kB; a 640-wide full-frame JPEG ~40 kB, which alone is most of the bytes of a busy scene.
    format: _choice(ImageFormat) = "webp"
    quality: whole(1, 100) = 70
    max_width: whole(0, 8192) = 320  # 0: keep the size
    crop: Flag = True  # crop to the object's box (plus margin) instead of the whole frame
    margin: number(0, 2) = 0.5


class AlertImageConfig(ImageConfig):
    """The thumbnail inside an alert message: small, so the alert stays one IoT message."""

    format: _choice(ImageFormat) = "jpeg"
    quality: whole(1, 100) = 60
    max_width: whole(0, 8192) = 160
    margin: number(0, 2) = 0.2


class RedactConfig(Section):
    classes: Labels = ()
    method: _choice(RedactMethod) = "pixelate"
    masks: Polygons = ()  # static privacy masks (neighbours' windows)
    min_score: number(0, 1) = 0.2  # redact detections of the classes from this score (lower than the event filter)
    margin: number(0, 1) = 0.05  # box grown by this fraction on each side


class AlertRule(Section):
    null_is_empty: ClassVar[bool] = False

    name: Annotated[str, BeforeValidator(_name)]  # parsed: rule-<index> when not given
    classes: Labels = ()  # empty: any class
    zones: Labels = ()  # empty: anywhere; otherwise the object must be in one of them
    min_score: number(0, 1) = 0.0
    min_dwell_s: number(0, 86400) = 0.0  # in the zone (or seen, without zones) at least this long


def _segment(v: Any) -> Any:
    if not isinstance(v, list | tuple) or len(v) != 2:
        raise ValueError("expected a line of 2 [x, y] points (0..1)")
    return v


class LineConfig(Section):
    """A counting line: crossings of a track's anchor (zoneAnchor) through the segment between two points."""

    null_is_empty: ClassVar[bool] = False

    points: Annotated[tuple[Annotated[Point, BeforeValidator(_point)], ...], BeforeValidator(_segment)]
    # the side a crossing goes *into* to count as "in", seen on the image walking from the first point to the
    # second (y down: for a line drawn left to right, "right" is below it)
    in_side: _choice(Side) = "right"
    labels: Labels = ()  # empty: every label the camera keeps
    band: number(0, 0.5) = 0.03  # hysteresis: half-width of the band either side, as a fraction of the frame height

    @model_validator(mode="after")
    def _a_segment(self) -> LineConfig:
        if self.points[0] == self.points[1]:
            raise ValueError("points: the two points are the same")
        return self


class ZoneRule(Section):
    """What is counted and watched in one of the camera's zones."""

    labels: Labels = ()  # empty: every label the camera keeps
    loiter_s: number(0, 86400) = 0.0  # a track in the zone longer than this raises a loitering alert (0: none)
    max_occupancy: whole(0, 100_000) = 0  # more tracks in the zone at once raise an overcrowding alert (0: none)


class AnalyticsConfig(Section):
    """Line crossings, zone occupancy and dwell per camera (ggvision/filter/analytics.py; docs/filter.md)."""

    interval_s: number(0, 86400) = 60.0  # one counts/1.0 message per camera this often (0: none)
    handover_s: number(0, 60) = 2.0  # a track born where one of its label was lost this recently continues it
    lines: dict[str, LineConfig] = Field(default_factory=dict)
    zones: dict[str, ZoneRule] = Field(default_factory=dict)  # by zone name (the camera's `zones`)

    @field_validator("lines", "zones", mode="before")
    @classmethod
    def _named(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise ValueError("expected an object of name -> settings")
        return v


def _alert_image(v: Any) -> Any:
    if v is False:  # no thumbnail in alerts
        return None
    return {} if v is None else v


def _or_false(schema: dict[str, Any]) -> None:
    schema.setdefault("anyOf", []).append({"const": False, "description": "no thumbnail in alerts"})


class CameraConfig(Section):
    """One camera's settings (the defaults merged with the camera's own). `camera` is its id."""

    policy: _choice(Policy) = "events"
    clips_for: _choice(ClipsFor) = "alerts"
    budget_kbps: number(0, 1e6) = 0.0  # 0: no budget
    burst_s: number(1, 3600) = 600.0  # deep enough for a few 10 s clips of a 3 Mbit/s camera at the default budget
    min_score: number(0, 1) = 0.3
    classes: dict[str, ClassRule] = Field(default_factory=dict)  # empty: every class; a list: those, no limits
    zones: Annotated[dict[str, ValidPolygon], BeforeValidator(_zones)] = Field(default_factory=dict)
    zone_anchor: _choice(ZoneAnchor) = "bottom"
    zones_only: Flag = False
    motion: MotionConfig = MotionConfig()
    tracker: TrackerConfig = TrackerConfig()
    stationary: StationaryConfig = StationaryConfig()
    events: EventsConfig = EventsConfig()
    snapshot: ImageConfig = ImageConfig()
    alert_image: Annotated[AlertImageConfig | None, BeforeValidator(_alert_image),
                           Field(json_schema_extra=_or_false)] = AlertImageConfig()  # false: none
    redact: RedactConfig = RedactConfig()
    alerts: tuple[AlertRule, ...] = ()
    alerts_per_min: whole(1, 100_000) = 30  # per camera: a crowd must not turn into an alert storm (rest counted)
    analytics: AnalyticsConfig = AnalyticsConfig()

    _camera: str = PrivateAttr("")

    @property
    def camera(self) -> str:
        return self._camera

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, list):  # a plain allow-list
            v = {c: {} for c in v}
        if not isinstance(v, Mapping):
            raise ValueError("expected an object of label -> {minScore, minArea, maxArea} or a list")
        min_score = info.data.get("min_score")
        if min_score is None:  # the camera's own minScore is wrong (reported there)
            return v
        out = {}
        for label, rule in v.items():
            if rule is None:
                rule = {}
            if isinstance(rule, Mapping) and not {"minScore", "min_score"} & set(rule):
                rule = {"minScore": min_score, **rule}
            out[label] = rule
        return out

    @field_validator("analytics")
    @classmethod
    def _analytics_zones(cls, v: AnalyticsConfig, info: ValidationInfo) -> AnalyticsConfig:
        zones = info.data.get("zones")
        missing = [z for z in v.zones if zones is not None and z not in zones]
        if missing:
            raise ValidationError.from_exception_data(cls.__name__, [InitErrorDetails(
                type=PydanticCustomError("value_error", "no such zone (the camera's zones: {known})",
                                         {"known": ", ".join(sorted(zones)) or "none"}),
                loc=("zones", z), input=z) for z in missing])
        return v

    @field_validator("alerts", mode="before")
    @classmethod
    def _alert_names(cls, v: Any) -> Any:
        if not isinstance(v, list):
            raise ValueError("expected a list of rules")
        return [{"name": f"rule-{i}", **r} if isinstance(r, Mapping) and "name" not in r else r
                for i, r in enumerate(v)]

    @field_validator("alerts")
    @classmethod
    def _alert_zones(cls, v: tuple[AlertRule, ...], info: ValidationInfo) -> tuple[AlertRule, ...]:
        zones = info.data.get("zones")
        if zones is not None:
            errors = [InitErrorDetails(type=PydanticCustomError("value_error", "no such zone {zones}",
                                                                {"zones": ", ".join(missing)}),
                                       loc=(i, "zones"), input=list(rule.zones))
                      for i, rule in enumerate(v) if (missing := [z for z in rule.zones if z not in zones])]
            if errors:
                raise ValidationError.from_exception_data(cls.__name__, errors)
        if len({a.name for a in v}) != len(v):
            raise ValueError("rule names must be unique")
        return v


# -- the component's configuration ------------------------------------------------------------------------

def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def _schema(schema: dict[str, Any]) -> None:
    """`defaults` holds camera settings: the same schema as a camera's."""
    props = schema.get("properties", {})
    if "cameras" in props and "defaults" in props:
        cam = props["cameras"].get("additionalProperties")
        if cam:
            props["defaults"] = {**cam, "description": "camera settings merged under every camera"}


class LocalLogConfig(ConfigModel):
    """The box's own log of events and fire-risk results under workDir/local (ggvision/filter/locallog.py): what a
    technician reviews on the edge dashboard during a VPN outage. The privacy rule caps it at 7 days."""

    enabled: Flag = True
    retention_days: number(1 / 24, 7) = 7.0  # at most 7 days (the privacy rule); at least an hour (its unit)
    fire_every_s: number(0, 3600) = 10.0  # at most one fire-risk result per sensor this often (0: every one)


class FilterConfig(ComponentConfig):
    """com.ggvision.Filter's whole configuration."""

    model_config = ConfigDict(json_schema_extra=_schema)

    work_dir: Annotated[str, BeforeValidator(_path)] = ""
    metrics_period_s: number(0.5, 3600) = 5.0
    # snapshots are not written when fewer bytes would stay free on workDir's filesystem: the last space is
    # left to event records and alerts (the event says its snapshot is missing, and why)
    min_free_bytes: whole(0, 1 << 50) = 64 << 20
    local_log: LocalLogConfig = LocalLogConfig()
    defaults: Annotated[dict[str, Any], BeforeValidator(_defaults)] = Field(default_factory=dict)
    cameras: entries(CameraConfig, "camera") = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, cfg: Any) -> Any:
        """Each camera's settings are the defaults deep-merged with the camera's own."""
        if not isinstance(cfg, Mapping):
            return cfg
        cfg = dict(cfg)
        cameras = cfg.get("cameras") or {}
        defaults = cfg.get("defaults") or {}
        if isinstance(cameras, Mapping) and isinstance(defaults, Mapping):
            cameras = {cam: _merge(defaults, s) if isinstance(s, Mapping) else s for cam, s in cameras.items()}
        cfg["cameras"] = cameras
        return cfg

    @field_validator("cameras")
    @classmethod
    def _camera_ids(cls, v: dict[str, CameraConfig]) -> dict[str, CameraConfig]:
        out = {}
        for cam, c in v.items():
            c = out[cam] = c.model_copy()
            c._camera = cam
        return out


def parse_camera(camera: str, settings: Mapping[str, Any]) -> CameraConfig:
    """One camera's settings as the component would see them (no defaults); ConfigError naming
    `cameras.<camera>...` on bad input."""
    return parse(FilterConfig, {"cameras": {camera: settings}}).cameras[camera]
