"""com.ggvision.Capture's configuration as models: what a deployment may set, checked before anything runs.

`parse(CaptureConfig, cfg)` gives the whole configuration (`validator(CaptureConfig)` is what the component
hands ComponentApp), with errors that name the key path the user wrote
(`cameras.door.source.url: must start with rtsp:// or rtsps:// ...`):
- `cameras`: camera id -> CameraConfig (null removes one): the source, chosen by its `type` (rtsp, file,
  images, usb, synthetic), the detect rate, downscaling, reconnect timing, recording and whether each frame is
  also announced by a frame/1.0 descriptor (`frameDescriptors`);
- `sensors`: sensor id -> SensorConfig (null removes one): simulated thermal camera + gas sensor;
- `ringSlots`, `metricsPeriodS`.
Inside a camera or sensor a key set to null takes its default. Ids are checked (CAMERA_ID_RE) and each
entry knows its own (`camera_id`, `sensor_id`). Configs get logged: an RTSP URL's password never appears
in repr() or str() of a model, nor in an error (`redact_url`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, get_args
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PrivateAttr,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
    field_validator,
    model_validator,
)

from .base import ComponentConfig, ConfigModel, Flag, entries, error_at, number, parse, whole

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Scenario = Literal["normal", "heater", "sunlight", "cooking", "fire"]  # as ggvision.sim.thermal.SCENARIOS
SCENARIOS: tuple[str, ...] = get_args(Scenario)
LEPTON_FPS = 8.7  # as ggvision.sim.thermal.LEPTON_FPS: a simulated sensor's default rate
# Query parameters some cameras use for credentials (e.g. `?user=admin&password=...`).
_SECRET_QUERY_KEYS = {"password", "passwd", "pwd", "pass", "token", "key", "secret", "auth", "signature"}


def redact_url(url: str) -> str:
    """The URL with its password (and credential-like query values) replaced by ***; safe to log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{hostport}" if ":" in userinfo else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_QUERY_KEYS for k, _ in pairs):
            query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY_KEYS else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_at = error_at  # errors at a key below the object being validated (config.base)


# -- value types and errors of this configuration --------------------------------------------------------

def _text(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a non-empty string")
    return v


Text = Annotated[str, BeforeValidator(_text), WithJsonSchema({"type": "string", "minLength": 1})]


def _above_zero(v: float) -> float:
    if v <= 0:
        raise ValueError(f"must be greater than 0, got {v:g}")
    return v


def positive(hi: float) -> Any:
    """A number in (0, hi]."""
    return Annotated[number(0, hi), AfterValidator(_above_zero),
                     WithJsonSchema({"type": ["number", "string"], "exclusiveMinimum": 0, "maximum": hi})]


def _one_of(choices: Any) -> BeforeValidator:
    """The check of a Literal's values, naming what was given."""
    allowed = get_args(choices)
    if len(allowed) <= 2:
        expected = " or ".join(repr(a) for a in allowed)
    else:
        expected = "one of " + ", ".join(allowed)

    def check(v: Any) -> Any:
        if not isinstance(v, str) or v not in allowed:
            raise ValueError(f"must be {expected}, got {v!r}")
        return v

    return BeforeValidator(check)


def _id_check(what: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not CAMERA_ID_RE.match(v):
            raise ValueError(f"{what} id must match {CAMERA_ID_RE.pattern}")
        return v

    return check


CameraId = Annotated[str, BeforeValidator(_id_check("camera")),
                     WithJsonSchema({"type": "string", "pattern": CAMERA_ID_RE.pattern})]
SensorId = Annotated[str, BeforeValidator(_id_check("sensor")),
                     WithJsonSchema({"type": "string", "pattern": CAMERA_ID_RE.pattern})]


class _Entry(ConfigModel):
    """An object inside a camera or sensor entry: an object it must be, and a key set to null takes its
    default."""

    @model_validator(mode="before")
    @classmethod
    def _object(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise ValueError(f"must be an object, got {type(v).__name__}")
        return {k: x for k, x in v.items() if x is not None}


# -- sources ---------------------------------------------------------------------------------------------

Transport = Literal["tcp", "udp"]


class RtspSource(_Entry):
    """An IP camera. Credentials are best kept in a Secrets Manager secret (`credentialsSecret`, named
    ggvision/{thing}/cameras/{camera}: contract/secrets.py), as `user:password` or {"username", "password"};
    they are injected at connect."""

    kind: Literal["rtsp"] = Field("rtsp", alias="type")
    url: Text
    transport: Annotated[Transport, _one_of(Transport)] = "tcp"
    credentials_secret: Text | None = None

    @field_validator("url")
    @classmethod
    def _rtsp_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError(f"must start with rtsp:// or rtsps:// and name a host, got {redact_url(url)!r}")
        return url

    @model_validator(mode="after")
    def _one_password(self) -> RtspSource:
        if self.credentials_secret is not None and urlsplit(self.url).password:
            raise _at("credentialsSecret", "the url already carries a password; keep it in the secret only")
        return self

    def __repr_args__(self) -> Any:  # configs get logged: never with a password in the URL
        for name, value in super().__repr_args__():
            yield name, redact_url(value) if name == "url" else value


class FileSource(_Entry):
    """A video file, played at its own pace (`realtime`) or as fast as it decodes."""

    kind: Literal["file"] = Field("file", alias="type")
    path: Text
    loop: Flag = False
    realtime: Flag = True


class ImagesSource(_Entry):
    """A folder cameras upload still images into, read at `fps` at most."""

    kind: Literal["images"] = Field("images", alias="type")
    dir: Text
    fps: positive(240) = 1.0
    loop: Flag = False


class UsbSource(_Entry):
    """A V4L2 device; size, rate and `inputFormat` (mjpeg, h264, yuyv422, ...) as the device offers them."""

    kind: Literal["usb"] = Field("usb", alias="type")
    device: Text = "/dev/video0"
    width: whole(16, 16384) | None = None
    height: whole(16, 16384) | None = None
    fps: positive(240) | None = None
    input_format: Text | None = None

    @field_validator("device")
    @classmethod
    def _device_path(cls, device: str) -> str:
        if not device.startswith("/dev/"):
            raise ValueError(f"must be a device path like /dev/video0, got {device!r}")
        return device

    @model_validator(mode="after")
    def _size(self) -> UsbSource:
        if (self.width is None) != (self.height is None):
            raise _at("width" if self.width is None else "height", "width and height must be given together")
        return self


def _classes(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not 1 <= len(v) <= 32 or not all(
            isinstance(c, str) and c.strip() for c in v):
        raise ValueError("must be a list of 1 to 32 non-empty strings")
    return tuple(v)


class SyntheticSource(_Entry):
    """A generated scene of moving objects (ggvision.sim.scenes), deterministic by `seed`."""

    kind: Literal["synthetic"] = Field("synthetic", alias="type")
    width: whole(32, 7680) = 640
    height: whole(32, 4320) = 360
    fps: positive(120) = 10.0
    seed: whole(0, 2**63 - 1) = 0
    objects: whole(0, 64) = 4
    classes: Annotated[tuple[str, ...], BeforeValidator(_classes)] = ("person", "car", "bicycle")


SourceConfig = RtspSource | FileSource | ImagesSource | UsbSource | SyntheticSource
SOURCES: dict[str, type[_Entry]] = {
    "rtsp": RtspSource, "file": FileSource, "images": ImagesSource, "usb": UsbSource, "synthetic": SyntheticSource}


def _by_type(v: Any, handler: Callable[[Any], Any]) -> Any:
    """The source model its `type` names; errors at `source.<key>` (pydantic's own tagged union would put
    the tag into the path: `source.rtsp.url`)."""
    if isinstance(v, tuple(SOURCES.values())):
        return v
    if not isinstance(v, Mapping):
        raise ValueError(f"must be an object, got {type(v).__name__}")
    kind = v.get("type")
    if kind is None:
        raise ValidationError.from_exception_data("source", [{"type": "missing", "loc": ("type",), "input": v}])
    if not isinstance(kind, str) or kind not in SOURCES:
        raise _at("type", f"must be one of {', '.join(SOURCES)}; got {kind!r}")
    return SOURCES[kind].model_validate(v)


# -- a camera --------------------------------------------------------------------------------------------

# Hardware decoding (ggvision/capture/sources.py, hw_decoder): off = the CPU (FFmpeg's software decoder); auto =
# NVDEC when a CUDA device opens in this process, else the CPU (logged once); cuda = NVDEC or no frames (the
# camera retries with backoff, its status says why). Default off until GPU figures say auto pays (docs/performance.md).
HwDecode = Literal["off", "auto", "cuda"]
HW_DECODE_MODES: tuple[str, ...] = get_args(HwDecode)

class RecordConfig(_Entry):
    """Recording of the compressed stream into MPEG-TS segments (no re-encoding) under `dir`."""

    enabled: Flag = False
    segment_seconds: number(1, 3600) = 10.0
    dir: Text | None = None
    retain_s: number(1, 30 * 86400) = 3600.0  # local segments older than this are deleted
    # no new segment when fewer bytes would stay free on dir's filesystem (left to event records and alerts)
    min_free_bytes: whole(0, 1 << 50) = 128 << 20

    @model_validator(mode="after")
    def _consistent(self) -> RecordConfig:
        if self.retain_s < self.segment_seconds:
            raise _at("retainS", f"must be at least segmentSeconds ({self.segment_seconds:g}), "
                                 f"got {self.retain_s:g}")
        if self.enabled and self.dir is None:
            raise _at("dir", "is required when recording is enabled")
        return self


class CameraConfig(_Entry):
    """One `cameras.<id>` entry."""

    # the discriminator shapes the JSON Schema (oneOf by `type`); _by_type does the validating
    source: Annotated[SourceConfig, Field(discriminator="kind"), WrapValidator(_by_type)]
    detect_fps: positive(240) = 5.0
    max_width: whole(16, 16384) | None = None
    stall_timeout_s: positive(3600) = 10.0
    backoff_min_s: positive(3600) = 1.0
    backoff_max_s: positive(86400) = 30.0
    decode_threads: whole(0, 64) = 1  # 1 = most CPU-efficient per camera; 0 = FFmpeg's automatic count
    hw_decode: Annotated[HwDecode, _one_of(HwDecode)] = "off"
    record: RecordConfig = RecordConfig()
    # one frame/1.0 per frame on ggvision/v1/frames/<id>: only the Filter's motion gate (motion.publish) needs
    # them; Inference follows the rings announced on frame-rings/1.0
    frame_descriptors: Flag = False
    _camera_id: str = PrivateAttr("")

    @model_validator(mode="after")
    def _consistent(self) -> CameraConfig:
        if self.backoff_max_s < self.backoff_min_s:
            raise _at("backoffMaxS", f"must be >= backoffMinS ({self.backoff_min_s:g})")
        if self.record.enabled and self.source.kind == "images":
            raise _at(("record", "enabled"), "an images source has no video stream to record")
        if self.hw_decode == "cuda" and self.source.kind in ("images", "synthetic"):
            raise _at("hwDecode", f"cuda needs a video stream to decode; a {self.source.kind} source has none "
                                  "(use off or auto)")
        return self

    @property
    def camera_id(self) -> str:
        """The id this camera has in `cameras`."""
        return self._camera_id

    @property
    def is_live(self) -> bool:
        """Live sources reconnect when the stream ends; files and image folders simply end or loop."""
        return self.source.kind in ("rtsp", "usb")

    @classmethod
    def from_dict(cls, camera_id: str, d: Mapping[str, Any]) -> CameraConfig:
        """One camera's settings on their own (tools, tests); ConfigError naming `cameras.<id>.<key>`."""
        return parse(CaptureConfig, {"cameras": {camera_id: d}}).cameras[camera_id]


# -- a sensor --------------------------------------------------------------------------------------------

ThermalSim = Literal["thermal-sim"]


class SensorConfig(_Entry):
    """One `sensors.<id>` entry: a simulated thermal camera (radiometric °C frames into a ring like video)
    and gas sensor (SCD41 readings on ggvision/v1/sensors/<id>)."""

    kind: Annotated[ThermalSim, _one_of(ThermalSim)] = Field(alias="type")
    scenario: Annotated[Scenario, _one_of(Scenario)] = "normal"
    seed: whole(0, 2**31) = 0
    fps: number(0.1, 30) = LEPTON_FPS
    _sensor_id: str = PrivateAttr("")

    @property
    def sensor_id(self) -> str:
        """The id this sensor has in `sensors`."""
        return self._sensor_id


# -- the component ---------------------------------------------------------------------------------------

class CaptureConfig(ComponentConfig):
    """com.ggvision.Capture's whole configuration."""

    cameras: entries(CameraConfig, "camera", CameraId) = Field(default_factory=dict)
    sensors: entries(SensorConfig, "sensor", SensorId) = Field(default_factory=dict)
    ring_slots: whole(2, 64) = 8  # slots per camera or sensor ring
    metrics_period_s: number(0.5, 3600) = 5.0  # seconds between metrics messages

    @model_validator(mode="after")
    def _ids(self) -> CaptureConfig:
        for sensor_id in self.sensors:
            if sensor_id in self.cameras:
                raise _at(("sensors", sensor_id), "the id is also a camera id")
        # each entry learns its id; an object given under two ids (built in Python) is copied first
        for camera_id, camera in self.cameras.items():
            if camera._camera_id not in ("", camera_id):
                camera = self.cameras[camera_id] = camera.model_copy()
            camera._camera_id = camera_id
        for sensor_id, sensor in self.sensors.items():
            if sensor._sensor_id not in ("", sensor_id):
                sensor = self.sensors[sensor_id] = sensor.model_copy()
            sensor._sensor_id = sensor_id
        return self
