"""Camera configuration: parsing/validation of one `cameras.<id>` entry, and URL redaction.

Every error is a ValueError whose message starts with the full key path, e.g.
``cameras.door.source.url: must start with rtsp:// or rtsps://``, so a refused configuration
update can say exactly what is wrong.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

CAMERA_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Query parameters some cameras use for credentials (e.g. `?user=admin&password=...`).
_SECRET_QUERY_KEYS = {"password", "passwd", "pwd", "pass", "token", "key", "secret", "auth", "signature"}


@dataclass(frozen=True)
class RtspSource:
    url: str
    transport: Literal["tcp", "udp"] = "tcp"
    credentials_secret: str | None = None
    kind: Literal["rtsp"] = "rtsp"

    def __repr__(self) -> str:  # configs get logged: never with a password in the URL
        return (
            f"RtspSource(url={redact_url(self.url)!r}, transport={self.transport!r}, "
            f"credentials_secret={self.credentials_secret!r})"
        )


@dataclass(frozen=True)
class FileSource:
    path: str
    loop: bool = False
    realtime: bool = True
    kind: Literal["file"] = "file"


@dataclass(frozen=True)
class ImagesSource:
    dir: str
    fps: float = 1.0
    loop: bool = False
    kind: Literal["images"] = "images"


@dataclass(frozen=True)
class UsbSource:
    device: str = "/dev/video0"
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    input_format: str | None = None  # v4l2 pixel/compressed format, e.g. "mjpeg", "h264", "yuyv422"
    kind: Literal["usb"] = "usb"


@dataclass(frozen=True)
class SyntheticSource:
    width: int = 640
    height: int = 360
    fps: float = 10.0
    seed: int = 0
    objects: int = 4
    classes: tuple[str, ...] = ("person", "car", "bicycle")
    kind: Literal["synthetic"] = "synthetic"


SourceConfig = RtspSource | FileSource | ImagesSource | UsbSource | SyntheticSource


@dataclass(frozen=True)
class RecordConfig:
    enabled: bool = False
    segment_seconds: float = 10.0
    dir: str | None = None
    retain_s: float = 3600.0  # local segments older than this are deleted (the Uplink keeps what it queued)


@dataclass(frozen=True)
class CameraConfig:
    camera_id: str
    source: SourceConfig
    detect_fps: float = 5.0
    max_width: int | None = None
    stall_timeout_s: float = 10.0
    backoff_min_s: float = 1.0
    backoff_max_s: float = 30.0
    decode_threads: int = 1  # 1 = most CPU-efficient per camera; 0 = FFmpeg's automatic count
    record: RecordConfig = field(default_factory=RecordConfig)

    @property
    def is_live(self) -> bool:
        """Live sources reconnect when the stream ends; files and image folders simply end or loop."""
        return self.source.kind in ("rtsp", "usb")

    @classmethod
    def from_dict(cls, camera_id: str, d: Mapping[str, Any]) -> CameraConfig:
        return _parse_camera(camera_id, d)


# --------------------------------------------------------------------------- parsing helpers


class _Reader:
    """Reads typed keys from one mapping, remembering which were used, with errors naming the key path."""

    def __init__(self, path: str, d: Any) -> None:
        self.path = path
        if not isinstance(d, Mapping):
            raise ValueError(f"{path}: must be an object, got {type(d).__name__}")
        self.d = d
        self.used: set[str] = set()

    def error(self, key: str, msg: str) -> ValueError:
        return ValueError(f"{self.path}.{key}: {msg}")

    def raw(self, key: str) -> Any:
        self.used.add(key)
        return self.d.get(key)

    def string(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        v = self.raw(key)
        if v is None:
            if required:
                raise self.error(key, "is required")
            return default
        if not isinstance(v, str) or not v.strip():
            raise self.error(key, "must be a non-empty string")
        return v

    def boolean(self, key: str, default: bool) -> bool:
        v = self.raw(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self.error(key, f"must be true or false, got {v!r}")
        return v

    def number(self, key: str, default: float | None, *, lo: float, hi: float) -> float | None:
        v = _numeric_string(self.raw(key))
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
            raise self.error(key, f"must be a number in [{lo:g}, {hi:g}], got {v!r}")
        return float(v)

    def positive(self, key: str, default: float | None, *, hi: float) -> float | None:
        v = self.number(key, default, lo=0.0, hi=hi)
        if v is not None and v <= 0:
            raise self.error(key, f"must be greater than 0, got {v!r}")
        return v

    def integer(self, key: str, default: int | None, *, lo: int, hi: int) -> int | None:
        v = _numeric_string(self.raw(key))
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self.error(key, f"must be an integer in [{lo}, {hi}], got {v!r}")
        return v

    def finish(self) -> None:
        unknown = sorted(set(self.d) - self.used)
        if unknown:
            raise self.error(unknown[0], f"unknown key (allowed: {', '.join(sorted(self.used))})")


def _numeric_string(v: Any) -> Any:
    """Greengrass recipes often carry numbers as strings ("5"); accept those, leave anything else as is."""
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    return v


def _parse_camera(camera_id: str, d: Mapping[str, Any]) -> CameraConfig:
    if not isinstance(camera_id, str) or not CAMERA_ID_RE.match(camera_id):
        raise ValueError(f"cameras.{camera_id}: camera id must match {CAMERA_ID_RE.pattern}")
    r = _Reader(f"cameras.{camera_id}", d)
    if "source" not in r.d:
        raise r.error("source", "is required")
    r.used.add("source")
    source = _parse_source(f"{r.path}.source", r.d["source"])
    detect_fps = r.positive("detectFps", 5.0, hi=240)
    max_width = r.integer("maxWidth", None, lo=16, hi=16384)
    stall = r.positive("stallTimeoutS", 10.0, hi=3600)
    bmin = r.positive("backoffMinS", 1.0, hi=3600)
    bmax = r.positive("backoffMaxS", 30.0, hi=86400)
    if bmax < bmin:
        raise r.error("backoffMaxS", f"must be >= backoffMinS ({bmin:g})")
    threads = r.integer("decodeThreads", 1, lo=0, hi=64)
    record = _parse_record(r, source) if "record" in r.d else RecordConfig()
    r.used.add("record")
    r.finish()
    return CameraConfig(
        camera_id=camera_id,
        source=source,
        detect_fps=detect_fps,
        max_width=max_width,
        stall_timeout_s=stall,
        backoff_min_s=bmin,
        backoff_max_s=bmax,
        decode_threads=threads,
        record=record,
    )


def _parse_record(parent: _Reader, source: SourceConfig) -> RecordConfig:
    r = _Reader(f"{parent.path}.record", parent.d["record"])
    enabled = r.boolean("enabled", False)
    seconds = r.number("segmentSeconds", 10.0, lo=1.0, hi=3600)
    retain = r.number("retainS", 3600.0, lo=seconds, hi=30 * 86400)
    out_dir = r.string("dir")
    r.finish()
    if enabled and out_dir is None:
        raise r.error("dir", "is required when recording is enabled")
    if enabled and source.kind == "images":
        raise r.error("enabled", "an images source has no video stream to record")
    return RecordConfig(enabled=enabled, segment_seconds=seconds, dir=out_dir, retain_s=retain)


def _parse_source(path: str, d: Any) -> SourceConfig:
    r = _Reader(path, d)
    kind = r.string("type", required=True)
    src: SourceConfig
    if kind == "rtsp":
        url = r.string("url", required=True)
        assert url is not None
        parts = urlsplit(url)
        if parts.scheme not in ("rtsp", "rtsps") or not parts.hostname:
            raise r.error("url", f"must start with rtsp:// or rtsps:// and name a host, got {redact_url(url)!r}")
        transport = r.string("transport", "tcp")
        if transport not in ("tcp", "udp"):
            raise r.error("transport", f"must be 'tcp' or 'udp', got {transport!r}")
        secret = r.string("credentialsSecret")
        if secret is not None and parts.password:
            raise r.error("credentialsSecret", "the url already carries a password; keep it in the secret only")
        src = RtspSource(url=url, transport=transport, credentials_secret=secret)  # type: ignore[arg-type]
    elif kind == "file":
        src = FileSource(
            path=r.string("path", required=True),  # type: ignore[arg-type]
            loop=r.boolean("loop", False),
            realtime=r.boolean("realtime", True),
        )
    elif kind == "images":
        src = ImagesSource(
            dir=r.string("dir", required=True),  # type: ignore[arg-type]
            fps=r.positive("fps", 1.0, hi=240),  # type: ignore[arg-type]
            loop=r.boolean("loop", False),
        )
    elif kind == "usb":
        device = r.string("device", "/dev/video0")
        assert device is not None
        if not device.startswith("/dev/"):
            raise r.error("device", f"must be a device path like /dev/video0, got {device!r}")
        width = r.integer("width", None, lo=16, hi=16384)
        height = r.integer("height", None, lo=16, hi=16384)
        if (width is None) != (height is None):
            raise r.error("width" if width is None else "height", "width and height must be given together")
        src = UsbSource(
            device=device,
            width=width,
            height=height,
            fps=r.positive("fps", None, hi=240),
            input_format=r.string("inputFormat"),
        )
    elif kind == "synthetic":
        classes = r.raw("classes")
        if classes is None:
            classes = list(SyntheticSource.classes)
        if (
            not isinstance(classes, list)
            or not 1 <= len(classes) <= 32
            or not all(isinstance(c, str) and c.strip() for c in classes)
        ):
            raise r.error("classes", "must be a list of 1 to 32 non-empty strings")
        src = SyntheticSource(
            width=r.integer("width", 640, lo=32, hi=7680),  # type: ignore[arg-type]
            height=r.integer("height", 360, lo=32, hi=4320),  # type: ignore[arg-type]
            fps=r.positive("fps", 10.0, hi=120),  # type: ignore[arg-type]
            seed=r.integer("seed", 0, lo=0, hi=2**63 - 1),  # type: ignore[arg-type]
            objects=r.integer("objects", 4, lo=0, hi=64),  # type: ignore[arg-type]
            classes=tuple(classes),
        )
    else:
        raise r.error("type", f"must be one of rtsp, file, images, usb, synthetic; got {kind!r}")
    r.finish()
    return src


# --------------------------------------------------------------------------- credentials and redaction


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


def parse_credentials(value: str) -> tuple[str, str]:
    """A secret value as (user, password): either `user:password` or JSON {"username", "password"}."""
    text = value.rstrip("\r\n")  # secret files often end with a newline; anything else is the password
    if text.lstrip().startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"credentials secret is not valid JSON (line {e.lineno})") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("username"), str) or "password" not in obj:
            raise ValueError('credentials secret JSON must be {"username": ..., "password": ...}')
        return obj["username"], str(obj["password"])
    user, sep, password = text.partition(":")
    if not sep or not user:
        raise ValueError("credentials secret must be 'user:password' or JSON {username, password}")
    return user, password


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` with percent-encoded credentials injected (replacing any user already in it)."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
