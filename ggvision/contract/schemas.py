"""Every versioned message of the suite: its schema id (`"schema": "<name>/<major>.<minor>"` in the message),
who produces it, who reads it and the topics it travels on. docs/messages.md documents each one; a test holds
the two together, so a message cannot appear on one side only."""

from __future__ import annotations

from dataclasses import dataclass

from . import topics as t

FRAME = "frame/1.0"
FRAME_RINGS = "frame-rings/1.0"
SEGMENT = "segment/1.0"
GAS = "gas/1.0"
DETECTIONS = "detections/1.0"
EVENT = "event/1.0"
ALERT = "alert/1.0"
FILTER_ALERT = "filter-alert/1.0"
COUNTS = "counts/1.0"
CAPTURE_METRICS = "capture-metrics/1.1"
INFERENCE_METRICS = "inference-metrics/1.1"
FILTER_METRICS = "filter-metrics/1.0"
UPLINK_METRICS = "uplink-metrics/1.0"
HEALTH_SUMMARY = "health-summary/1.0"
UPLINK_PUT = "uplink-put/1.0"
UPLINK_ACK = "uplink-ack/1.0"
UPLINK_BATCH = "uplink-batch/1.0"
UPLINK_STATUS = "uplink-status/1.0"
UPLINK_RECORD = "uplink-record/1.0"
MODEL_MANIFEST = "model-manifest/1.0"
DISK_BUDGET = "disk-budget/1.0"


@dataclass(frozen=True)
class Message:
    schema: str
    producer: str
    readers: tuple[str, ...]
    topics: tuple[str, ...]  # topic templates (contract.topics); empty: not a topic message (a file, or an
    # SQS message / Kinesis record: contract.streams)


MESSAGES: tuple[Message, ...] = (
    Message(FRAME, "Capture", ("Inference", "Filter"), (t.FRAMES, t.MOTION)),
    Message(FRAME_RINGS, "Capture", ("Inference",), (t.FRAME_RINGS,)),
    Message(SEGMENT, "Capture", ("Filter",), (t.SEGMENTS,)),
    Message(GAS, "Capture", ("Inference",), (t.SENSORS,)),
    Message(DETECTIONS, "Inference", ("Filter", "live view"), (t.DETECTIONS,)),
    Message(EVENT, "Filter", ("live view", "cloud"), (t.EVENTS, t.IOT_RESULTS)),
    Message(ALERT, "Health, Inference", ("operators", "cloud"), (t.ALERTS, t.IOT_EVENTS)),
    Message(FILTER_ALERT, "Filter", ("operators", "cloud"), (t.IOT_EVENTS,)),
    Message(COUNTS, "Filter", ("cloud",), (t.IOT_RESULTS,)),  # per camera and interval, inside uplink-batch/1.0
    Message(CAPTURE_METRICS, "Capture", ("Health", "live view"), (t.METRICS,)),
    Message(INFERENCE_METRICS, "Inference", ("Health", "live view"), (t.METRICS,)),
    Message(FILTER_METRICS, "Filter", ("Health",), (t.METRICS,)),
    Message(UPLINK_METRICS, "Uplink", ("Health", "live view"), (t.METRICS,)),
    Message(HEALTH_SUMMARY, "Health", ("rollout gates", "cloud"), (t.IOT_METRICS,)),
    Message(UPLINK_PUT, "Filter", ("Uplink",), (t.UPLINK_PUT,)),
    Message(UPLINK_ACK, "Uplink", ("Filter",), (t.UPLINK_ACKS,)),
    Message(UPLINK_BATCH, "Uplink", ("cloud",), (t.IOT_RESULTS, t.IOT_EVENTS, t.IOT_STATUS)),
    Message(UPLINK_STATUS, "Uplink", ("cloud",), (t.IOT_STATUS,)),
    Message(UPLINK_RECORD, "Uplink", ("cloud",), ()),  # one item per SQS message / Kinesis record
    Message(MODEL_MANIFEST, "model registry", ("Inference",), ()),
    Message(DISK_BUDGET, "Health", ("Capture", "Filter", "Uplink"), (t.DISK_BUDGET,)),
)

BY_SCHEMA = {m.schema: m for m in MESSAGES}
