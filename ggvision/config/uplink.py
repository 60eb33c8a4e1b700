"""com.ggvision.Uplink's configuration as a model: where objects and messages go, and how fast and how much.

`parse(UplinkConfig, cfg)` gives the whole configuration or a ConfigError naming the key path; the component
passes `validator(UplinkConfig)` to ComponentApp, so a deployment with a bad value is refused with that text:
- `sink` is a directory bucket (`path`) or S3 (`bucket`, `region`, `prefix`, ...): keys of the other type
  are refused, a bucket name and prefix must be valid S3;
- `iot`, `sqs`, `kinesis` and `archive` switch the message lanes; SQS/Kinesis are on when configured at all
  (unless `enabled: false`) and then need their queue URL / stream name; their request sizes are bounded by
  the services' limits (SQS_* and KINESIS_* below);
- caps, quota, retention and multipart sizes are range-checked (parts at least S3's minimum part size,
  IoT batches at most IoT Core's message size);
- sections given as null count as empty, `cameraBandwidthKbps.<camera>: null` removes that camera's cap,
  unknown keys are refused (`accessControl` travels along and is ignored).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator, model_validator

from .base import ComponentConfig, ConfigModel, Flag, number, whole

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # one S3 key / path component
MIN_PART_BYTES = 5 << 20  # S3's minimum multipart part size (all parts but the last)
MAX_PART_BYTES = 5 << 30  # S3's maximum part (and single PUT) size
IOT_MAX_BYTES = 131072  # IoT Core's message size limit
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
# SQS SendMessageBatch (API reference, SendMessageBatch): at most 10 entries; a message and the whole request at
# most 1 MiB (1,048,576 bytes; 256 KiB until 2025, and a queue's MaximumMessageSize may be set lower).
SQS_MAX_ENTRIES = 10
SQS_MAX_BYTES = 1 << 20
SQS_DEFAULT_REQUEST_BYTES = 256 << 10  # what every queue accepts, also one created with the old default
QUEUE_URL = re.compile(r"^https?://[^/\s]+/[0-9]+/([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo)$")
# Kinesis PutRecords (API reference, PutRecords): at most 500 records; a record (data + partition key) at most
# the stream's MaxRecordSizeInKiB (1 MiB unless raised, up to 10 MiB), the request at most 10 MiB (5 MiB before
# records could exceed 1 MiB: the default stays there).
KINESIS_MAX_RECORDS = 500
KINESIS_MAX_BYTES = 10 << 20
KINESIS_DEFAULT_RECORD_BYTES = 1 << 20
KINESIS_DEFAULT_REQUEST_BYTES = 5 << 20
STREAM_NAME = re.compile(r"^[a-zA-Z0-9_.-]{1,128}$")


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a string, got {v!r}")
    return v


Text = Annotated[str, BeforeValidator(_text)]


def _nonempty(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a non-empty string, got {v!r}")
    return v


def _required(v: Mapping[str, Any], model: type[ConfigModel], name: str) -> Mapping[str, Any]:
    """`v` with the key of field `name` set to null when absent, so that its check runs (and reports the key)."""
    alias = model.model_fields[name].alias or name
    return v if alias in v or name in v else {**v, alias: None}


class Section(ConfigModel):
    """An object under a top-level key; null (or absent) stands for {}."""

    @model_validator(mode="before")
    @classmethod
    def _object(cls, v: Any) -> Any:
        if v is None:
            return {}
        if not isinstance(v, Mapping):
            raise ValueError(f"expected an object, got {v!r}")
        return v


class SinkConfig(Section):
    """Where objects go: a folder standing in for a bucket, or S3."""

    type: Literal["directory", "s3"] = "directory"
    path: Text = "bucket"  # directory: relative to the component's work folder
    bucket: str = ""  # s3: required
    region: Text = ""
    prefix: Text = ""
    endpoint_url: Text = ""
    sse_kms_key_id: Text = ""
    timeout_s: number(0.5, 600) = 20.0

    @model_validator(mode="before")
    @classmethod
    def _keys_of_the_type(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        if v.get("type", "directory") == "directory":
            s3_only = {k for name, f in cls.model_fields.items() if name not in ("type", "path")
                       for k in (name, f.alias)}
            extra = sorted(set(v) & s3_only)
            if extra:
                raise ValueError(f"keys {', '.join(extra)} apply to type s3 only")
        return _required(v, cls, "bucket") if v.get("type") == "s3" else v

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, v: Any) -> Any:
        if v not in ("directory", "s3"):
            raise ValueError(f"'directory' or 's3', got {v!r}")
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("type") == "s3":
            raise ValueError("applies to type directory only")
        return v or "bucket"

    @field_validator("bucket", mode="before")
    @classmethod
    def _bucket(cls, v: Any, info: ValidationInfo) -> Any:
        if info.data.get("type") == "s3" and not BUCKET_NAME.fullmatch(_nonempty(v)):
            raise ValueError(f"not a valid S3 bucket name: {v!r}")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if v and (v.startswith("/") or not v.endswith("/")):
            raise ValueError(f"must not start with '/' and must end with '/', got {v!r}")
        return v

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://", v):
            raise ValueError(f"expected http(s)://host[:port], got {v!r}")
        return v


class IotConfig(Section):
    """Message batches to IoT Core through the nucleus' MQTT bridge."""

    enabled: Flag = True
    max_batch_bytes: whole(1024, IOT_MAX_BYTES) = IOT_MAX_BYTES


class StreamConfig(Section):
    """An optional SQS queue or Kinesis data stream that receives every message too (one item per SQS message /
    Kinesis record, sent in batches); on when configured (unless `enabled: false`), and then its target is
    required. `strictOrder`: at most one item per camera in a request, so that no failure can ever let a later
    item of the camera overtake an earlier one (costs throughput per camera)."""

    TARGET: ClassVar[str] = ""  # the field naming the queue or stream

    enabled: Flag = False
    region: Text = ""
    endpoint_url: Text = ""
    timeout_s: number(0.5, 600) = 20.0
    strict_order: Flag = False

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://", v):
            raise ValueError(f"expected http(s)://host[:port], got {v!r}")
        return v

    @property
    def target(self) -> str:
        """The SQS queue URL or Kinesis stream name."""
        return getattr(self, self.TARGET) if self.TARGET else ""

    @model_validator(mode="before")
    @classmethod
    def _on_when_configured(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            return v
        if "enabled" not in v:
            v = {**v, "enabled": bool(v)}
        return _required(v, cls, cls.TARGET) if cls.TARGET and str(v["enabled"]).lower() == "true" else v

    @staticmethod
    def _target(v: Any, info: ValidationInfo) -> Any:
        return _nonempty(v) if info.data.get("enabled") else _text(v)


class SqsConfig(StreamConfig):
    """Messages to an SQS queue too (SendMessageBatch); a FIFO queue (`.fifo`) keeps each camera's order."""

    TARGET = "queue_url"
    queue_url: str = ""
    max_request_bytes: whole(1024, SQS_MAX_BYTES) = SQS_DEFAULT_REQUEST_BYTES

    _queue_url = field_validator("queue_url", mode="before")(StreamConfig._target)

    @field_validator("queue_url")
    @classmethod
    def _queue_url_format(cls, v: str) -> str:
        if v and not QUEUE_URL.match(v):
            raise ValueError(f"expected https://sqs.<region>.amazonaws.com/<account>/<queue name>, got {v!r}")
        return v


class KinesisConfig(StreamConfig):
    """Messages to a Kinesis data stream too (PutRecords; partition key = the camera)."""

    TARGET = "stream_name"
    stream_name: str = ""
    max_request_bytes: whole(1024, KINESIS_MAX_BYTES) = KINESIS_DEFAULT_REQUEST_BYTES
    max_record_bytes: whole(1024, KINESIS_MAX_BYTES) = KINESIS_DEFAULT_RECORD_BYTES

    _stream_name = field_validator("stream_name", mode="before")(StreamConfig._target)

    @field_validator("stream_name")
    @classmethod
    def _stream_name_format(cls, v: str) -> str:
        if v and not STREAM_NAME.match(v):
            raise ValueError(f"a stream name is 1-128 of letters, digits, '_', '.' and '-', got {v!r}")
        return v


def _off_is_default(s: StreamConfig) -> StreamConfig:
    """A stream that is off is the default, whatever else it says (a change there reconfigures nothing)."""
    return s if s.enabled else type(s)()


class ArchiveConfig(Section):
    """Message batches also written as JSON objects into a directory bucket (ignored with S3)."""

    enabled: Flag = True  # as the recipe: a directory bucket gets the messages too


def _site(v: Any) -> str:
    if not isinstance(v, str) or not SAFE_NAME.match(v):
        raise ValueError(f"letters, digits, '.', '_' or '-' (an S3 key component), got {v!r}")
    return v


def _camera_caps(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ValueError("expected an object of camera id -> kbit/s")
    return {cam: kbps for cam, kbps in v.items() if kbps is not None}  # null removes the camera's cap


def _path(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a path, got {v!r}")
    return v


class UplinkConfig(ComponentConfig):
    """The whole configuration of com.ggvision.Uplink."""

    site: Annotated[str, BeforeValidator(_site)] = "site"
    sink: SinkConfig = SinkConfig()
    iot: IotConfig = IotConfig()
    sqs: Annotated[SqsConfig, AfterValidator(_off_is_default)] = SqsConfig()
    kinesis: Annotated[KinesisConfig, AfterValidator(_off_is_default)] = KinesisConfig()
    # Message batches also written as JSON objects into the directory bucket: the local stand-in for the
    # IoT rule that archives results and events to S3 in the cloud (deploy/cloudformation/routing.yaml).
    # Only a directory bucket gets the archive; with S3 an IoT rule archives messages in the cloud.
    archive_lane: ArchiveConfig = Field(ArchiveConfig(), alias="archive")
    bandwidth_kbps: number(0, 1e7) = 0.0  # 0: no cap
    camera_bandwidth_kbps: Annotated[dict[str, number(0, 1e7)], BeforeValidator(_camera_caps),
                                     AfterValidator(lambda d: dict(sorted(d.items())))] = {}
    default_camera_bandwidth_kbps: number(0, 1e7) = 0.0
    quota_bytes: whole(1 << 20, 1 << 50) = 10 << 30
    # media (objects) is refused when storing it would leave fewer bytes free on the queue's filesystem: the
    # last space is kept for event records and alerts, which are held in memory if even that runs out
    min_free_bytes: whole(0, 1 << 50) = 32 << 20
    retention_days: number(0.0001, 3650) = 7.0
    multipart_threshold_bytes: whole(MIN_PART_BYTES, MAX_PART_BYTES) = 16 << 20
    multipart_part_bytes: whole(MIN_PART_BYTES, MAX_PART_BYTES) = 8 << 20
    metrics_period_s: number(0.2, 3600) = 5.0
    backoff_max_s: number(0.1, 3600) = 60.0
    queue_path: Annotated[str, BeforeValidator(_path)] = "queue"  # relative to the component's work folder

    @property
    def iot_enabled(self) -> bool:
        return self.iot.enabled

    @property
    def iot_max_batch_bytes(self) -> int:
        return self.iot.max_batch_bytes

    @property
    def archive(self) -> bool:
        return self.archive_lane.enabled and self.sink.type == "directory"

    @property
    def retention_s(self) -> float:
        return self.retention_days * 86400.0

    @property
    def message_lanes(self) -> tuple[str, ...]:
        return tuple(n for n, on in (("iot", self.iot_enabled), ("sqs", self.sqs.enabled),
                                     ("kinesis", self.kinesis.enabled), ("archive", self.archive)) if on)
