"""com.ggvision.Uplink configuration: parsed, range-checked, unknown keys refused (errors name the key)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..component.settings import boolean as _bool
from ..component.settings import number as _number
from ..component.settings import validator
from ..component.settings import whole_number as _int

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # one S3 key / path component
MIN_PART_BYTES = 5 << 20  # S3's minimum multipart part size (all parts but the last)
IOT_MAX_BYTES = 131072  # IoT Core's message size limit


def _str(cfg: dict[str, Any], key: str, default: str | None = None, where: str = "") -> str:
    v = cfg.get(key, default)
    if not isinstance(v, str) or (default is None and not v):
        raise ValueError(f"{where}{key}: expected a {'non-empty ' if default is None else ''}string, got {v!r}")
    return v


def _obj(cfg: dict[str, Any], key: str, known: set[str]) -> dict[str, Any]:
    v = cfg.get(key) or {}
    if not isinstance(v, dict):
        raise ValueError(f"{key}: expected an object, got {v!r}")
    unknown = sorted(set(v) - known)
    if unknown:
        raise ValueError(f"{key}: unknown keys {', '.join(unknown)}")
    return v


@dataclass(frozen=True)
class SinkConfig:
    type: str = "directory"  # directory | s3
    path: str = "bucket"  # directory: relative to the component's work folder
    bucket: str = ""
    region: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    sse_kms_key_id: str = ""
    timeout_s: float = 20.0


@dataclass(frozen=True)
class StreamConfig:
    """An optional SQS queue or Kinesis data stream that receives message batches too."""
    enabled: bool = False
    target: str = ""  # SQS queue URL or Kinesis stream name
    region: str = ""
    endpoint_url: str = ""


@dataclass(frozen=True)
class UplinkConfig:
    site: str = "site"
    sink: SinkConfig = field(default_factory=SinkConfig)
    iot_enabled: bool = True
    iot_max_batch_bytes: int = IOT_MAX_BYTES
    sqs: StreamConfig = field(default_factory=StreamConfig)
    kinesis: StreamConfig = field(default_factory=StreamConfig)
    # Message batches also written as JSON objects into the directory bucket: the local stand-in for the
    # IoT rule that archives results and events to S3 in the cloud (deploy/cloudformation/routing.yaml).
    archive: bool = False
    bandwidth_kbps: float = 0.0  # 0: no cap
    camera_bandwidth_kbps: tuple[tuple[str, float], ...] = ()
    default_camera_bandwidth_kbps: float = 0.0
    quota_bytes: int = 10 << 30
    retention_days: float = 7.0
    multipart_threshold_bytes: int = 16 << 20
    multipart_part_bytes: int = 8 << 20
    metrics_period_s: float = 5.0
    backoff_max_s: float = 60.0
    queue_path: str = "queue"  # relative to the component's work folder

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0

    @property
    def message_lanes(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("iot", self.iot_enabled), ("sqs", self.sqs.enabled),
                                     ("kinesis", self.kinesis.enabled), ("archive", self.archive)) if on)


KNOWN = {"site", "sink", "iot", "sqs", "kinesis", "archive", "bandwidthKbps", "cameraBandwidthKbps",
         "defaultCameraBandwidthKbps", "quotaBytes", "retentionDays", "multipartThresholdBytes",
         "multipartPartBytes", "metricsPeriodS", "backoffMaxS", "queuePath", "accessControl"}


def _sink(cfg: dict[str, Any]) -> SinkConfig:
    s = _obj(cfg, "sink", {"type", "path", "bucket", "region", "prefix", "endpointUrl", "sseKmsKeyId", "timeoutS"})
    kind = s.get("type", "directory")
    if kind == "directory":
        extra = sorted(set(s) - {"type", "path"})
        if extra:
            raise ValueError(f"sink: keys {', '.join(extra)} apply to type s3 only")
        return SinkConfig(path=_str(s, "path", "bucket", "sink.") or "bucket")
    if kind != "s3":
        raise ValueError(f"sink.type: 'directory' or 's3', got {kind!r}")
    if "path" in s:
        raise ValueError("sink.path: applies to type directory only")
    bucket = _str(s, "bucket", None, "sink.")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"sink.bucket: not a valid S3 bucket name: {bucket!r}")
    prefix = _str(s, "prefix", "", "sink.")
    if prefix and (prefix.startswith("/") or not prefix.endswith("/")):
        raise ValueError(f"sink.prefix: must not start with '/' and must end with '/', got {prefix!r}")
    endpoint = _str(s, "endpointUrl", "", "sink.")
    if endpoint and not re.match(r"^https?://", endpoint):
        raise ValueError(f"sink.endpointUrl: expected http(s)://host[:port], got {endpoint!r}")
    return SinkConfig("s3", "", bucket, _str(s, "region", "", "sink."), prefix, endpoint,
                      _str(s, "sseKmsKeyId", "", "sink."), _number(s, "timeoutS", 20, 0.5, 600))


def _stream(cfg: dict[str, Any], key: str, target_key: str) -> StreamConfig:
    s = _obj(cfg, key, {"enabled", target_key, "region", "endpointUrl"})
    enabled = _bool(s, "enabled", bool(s))
    if not enabled:
        return StreamConfig()
    return StreamConfig(True, _str(s, target_key, None, f"{key}."), _str(s, "region", "", f"{key}."),
                        _str(s, "endpointUrl", "", f"{key}."))


def parse_config(cfg: dict[str, Any]) -> UplinkConfig:
    unknown = sorted(set(cfg) - KNOWN)
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
    site = cfg.get("site", "site")
    if not isinstance(site, str) or not SAFE_NAME.match(site):
        raise ValueError(f"site: letters, digits, '.', '_' or '-' (an S3 key component), got {site!r}")
    iot = _obj(cfg, "iot", {"enabled", "maxBatchBytes"})
    cams = cfg.get("cameraBandwidthKbps") or {}
    if not isinstance(cams, dict):
        raise ValueError("cameraBandwidthKbps: expected an object of camera id -> kbit/s")
    cam_caps = []
    for cam, v in sorted(cams.items()):
        if v is None:  # a deployment merge cannot delete a key: null removes the camera's cap
            continue
        cam_caps.append((cam, _number({f"cameraBandwidthKbps.{cam}": v}, f"cameraBandwidthKbps.{cam}", 0, 0, 1e7)))
    threshold = _int(cfg, "multipartThresholdBytes", 16 << 20, MIN_PART_BYTES, 5 << 30)
    part = _int(cfg, "multipartPartBytes", 8 << 20, MIN_PART_BYTES, 5 << 30)
    queue_path = cfg.get("queuePath", "queue")
    if not isinstance(queue_path, str) or not queue_path:
        raise ValueError(f"queuePath: expected a path, got {queue_path!r}")
    sink = _sink(cfg)
    # Only a directory bucket gets the archive; with S3 an IoT rule archives messages in the cloud.
    archive = _bool(_obj(cfg, "archive", {"enabled"}), "enabled", False) and sink.type == "directory"
    return UplinkConfig(
        site=site, sink=sink, archive=archive, iot_enabled=_bool(iot, "enabled", True),
        iot_max_batch_bytes=_int({"iot.maxBatchBytes": iot.get("maxBatchBytes", IOT_MAX_BYTES)}, "iot.maxBatchBytes",
                                 IOT_MAX_BYTES, 1024, IOT_MAX_BYTES),
        sqs=_stream(cfg, "sqs", "queueUrl"), kinesis=_stream(cfg, "kinesis", "streamName"),
        bandwidth_kbps=_number(cfg, "bandwidthKbps", 0, 0, 1e7), camera_bandwidth_kbps=tuple(cam_caps),
        default_camera_bandwidth_kbps=_number(cfg, "defaultCameraBandwidthKbps", 0, 0, 1e7),
        quota_bytes=_int(cfg, "quotaBytes", 10 << 30, 1 << 20, 1 << 50),
        retention_days=_number(cfg, "retentionDays", 7, 0.0001, 3650),
        multipart_threshold_bytes=threshold, multipart_part_bytes=part,
        metrics_period_s=_number(cfg, "metricsPeriodS", 5, 0.2, 3600),
        backoff_max_s=_number(cfg, "backoffMaxS", 60, 0.1, 3600), queue_path=queue_path)


validate = validator(parse_config)  # for ComponentApp: the reason a configuration is refused, or None
