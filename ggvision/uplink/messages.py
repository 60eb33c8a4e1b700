"""uplink-put/1.0 requests, validated at the boundary, and the uplink-ack/1.0 replies (docs/messages.md)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from ..config.uplink import SAFE_NAME
from ..contract import keys, topics
from . import PRIORITIES

PUT_TOPIC = topics.UPLINK_PUT
ACK_TOPIC = topics.UPLINK_ACKS
METRICS_TOPIC = topics.metrics("uplink")
STATUS_TOPIC = topics.IOT_STATUS
IOT_TOPICS = (topics.IOT_RESULTS, topics.IOT_EVENTS)  # what the recipe lets Uplink publish for producers
MAX_METADATA_BYTES = 1800  # S3 user metadata is limited to 2 KB in total, our own keys included
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Refused(ValueError):
    """The request cannot be queued; the reason goes back to the producer in its ack."""


@dataclass
class PutRequest:
    id: str
    producer: str
    priority: int
    camera: str
    start: float
    end: float
    destination: str  # "s3" (an object) or "iot" (a message)
    name: str = ""
    file: str = ""
    data: bytes | None = None
    move: bool = False
    content_type: str = "application/octet-stream"
    sha256: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
    payload: bytes = b""  # a message's JSON payload, encoded
    kind: str = ""  # objects: segments | clips | images | results (contract.keys), the key's first segment
    lanes: tuple[str, ...] = ()  # internal items only: the message lanes to use instead of all enabled ones


def _num(msg: dict[str, Any], key: str, default: float | None = None) -> float:
    v = msg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise Refused(f"{key}: expected a positive epoch time in seconds, got {v!r}")
    return float(v)


def _text(msg: dict[str, Any], key: str, max_len: int = 256, required: bool = True) -> str:
    v = msg.get(key, "" if not required else None)
    if not isinstance(v, str) or (required and not v) or len(v) > max_len or any(ord(c) < 32 for c in v):
        raise Refused(f"{key}: expected {'a non-empty' if required else 'a'} string of at most {max_len} "
                      f"printable characters, got {str(v)[:80]!r}")
    return v


def parse_put(msg: Any, thing: str, max_message_bytes: int) -> PutRequest:
    """A valid request, or Refused naming the field. `thing` replaces {thing} in message topics."""
    if not isinstance(msg, dict):
        raise Refused("expected a JSON object")
    schema = msg.get("schema")
    if not isinstance(schema, str) or not schema.startswith("uplink-put/1."):
        raise Refused(f"schema: expected uplink-put/1.x, got {schema!r}")
    req_id = _text(msg, "id")
    priority = msg.get("priority")
    if priority not in PRIORITIES:
        raise Refused(f"priority: one of {', '.join(PRIORITIES)}, got {priority!r}")
    camera = msg.get("camera")
    if not isinstance(camera, str) or not SAFE_NAME.match(camera):
        raise Refused(f"camera: letters, digits, '.', '_' or '-', got {camera!r}")
    start = _num(msg, "start")
    end = _num(msg, "end", start)
    if end < start:
        raise Refused(f"end: {end} is before start {start}")
    req = PutRequest(req_id, _text(msg, "producer", required=False), PRIORITIES.index(priority), camera, start, end,
                     msg.get("destination"))  # type: ignore[arg-type]
    if req.destination == "s3":
        _parse_object(msg, req)
    elif req.destination == "iot":
        topic = _text(msg, "topic")
        req.topic = topic.replace("{thing}", thing)
        allowed = [topics.iot(t, thing) for t in IOT_TOPICS]
        if req.topic not in allowed:
            raise Refused(f"topic: one of {', '.join(allowed)} (with {{thing}} for the thing name), got {topic!r}")
        payload = msg.get("payload")
        if not isinstance(payload, dict):
            raise Refused("payload: expected a JSON object")
        req.payload = json.dumps(payload, separators=(",", ":")).encode()
        if len(req.payload) > max_message_bytes:
            raise Refused(f"payload: {len(req.payload)} bytes is over the {max_message_bytes}-byte IoT Core "
                          "message limit (less the batch envelope); send it as an object instead")
    else:
        raise Refused(f"destination: 's3' or 'iot', got {req.destination!r}")
    return req


def _parse_object(msg: dict[str, Any], req: PutRequest) -> None:
    has_file, has_data = "file" in msg, "data_b64" in msg
    if has_file == has_data:
        raise Refused("an s3 item needs exactly one of file or data_b64")
    if has_file:
        req.file = _text(msg, "file", 4096)
        if not os.path.isabs(req.file):
            raise Refused(f"file: expected an absolute path, got {req.file!r}")
        move = msg.get("move", False)
        if not isinstance(move, bool):
            raise Refused(f"move: expected true or false, got {move!r}")
        req.move = move
    else:
        raw = msg.get("data_b64")
        try:
            req.data = base64.b64decode(raw if isinstance(raw, str) else b"\x00", validate=True)
        except (binascii.Error, ValueError):
            raise Refused("data_b64: not valid base64") from None
    req.name = _text(msg, "name", 128)
    if not SAFE_NAME.match(req.name):
        raise Refused(f"name: letters, digits, '.', '_' or '-' (the last S3 key component), got {req.name!r}")
    req.content_type = _text(msg, "content_type", 128, required=False) or "application/octet-stream"
    kind = msg.get("kind")
    if kind is None:
        kind = keys.kind_for(req.content_type, PRIORITIES[req.priority])
    elif kind not in keys.KINDS:
        raise Refused(f"kind: one of {', '.join(keys.KINDS)}, got {kind!r}")
    req.kind = kind
    sha = msg.get("sha256", "")
    if not isinstance(sha, str) or (sha and not _HEX64.match(sha)):
        raise Refused(f"sha256: expected 64 lower-case hex digits, got {sha!r}")
    req.sha256 = sha
    meta = msg.get("metadata", {})
    if not isinstance(meta, dict):
        raise Refused("metadata: expected an object")
    if len(json.dumps(meta, separators=(",", ":"))) > MAX_METADATA_BYTES:
        raise Refused(f"metadata: over {MAX_METADATA_BYTES} bytes as JSON (S3 object metadata is limited to 2 KB)")
    req.metadata = meta


def ack(req_id: str, status: str, reason: str = "") -> dict[str, Any]:
    return {"schema": "uplink-ack/1.0", "id": req_id, "status": status, "reason": reason}
