"""The event documents the ingest handler receives, read strictly: an SQS event (Lambda's event source
mapping: Records[] with messageId, body, ...) whose bodies are S3 event notifications — `Records[]` of
ObjectCreated events, or the one-off `s3:TestEvent` S3 sends when a notification is configured.

Anything else is `Malformed`: retrying cannot fix it, so the handler sends it to the dead-letter queue with
the reason instead of letting it be received again and again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


class Malformed(ValueError):
    """A message or object that no retry can make good; the text says what and where."""


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str
    size: int
    event_name: str  # "ObjectCreated:Put", ...


def parse_body(body: str, message_id: str) -> list[S3Object]:
    """The created objects an SQS message body announces ([] for s3:TestEvent); Malformed otherwise."""
    where = f"message {message_id}"
    try:
        doc = json.loads(body)
    except (TypeError, ValueError) as e:
        raise Malformed(f"{where}: body is not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Malformed(f"{where}: body is not a JSON object")
    if doc.get("Event") == "s3:TestEvent":
        return []
    records = doc.get("Records")
    if not isinstance(records, list) or not records:
        raise Malformed(f"{where}: not an S3 event notification (no Records[])")
    out = []
    for i, r in enumerate(records):
        at = f"{where}: Records[{i}]"
        s3 = r.get("s3") if isinstance(r, dict) else None
        if not isinstance(s3, dict) or r.get("eventSource") != "aws:s3":
            raise Malformed(f"{at}: not an S3 event record (eventSource {r.get('eventSource')!r})"
                            if isinstance(r, dict) else f"{at}: not an object")
        name = r.get("eventName", "")
        if not isinstance(name, str) or not name.startswith("ObjectCreated:"):
            raise Malformed(f"{at}: eventName {name!r}: the ingest queue takes ObjectCreated events only")
        bucket, obj = s3.get("bucket") or {}, s3.get("object") or {}
        key, size = obj.get("key"), obj.get("size", 0)
        if not isinstance(bucket.get("name"), str) or not isinstance(key, str) or not key:
            raise Malformed(f"{at}: s3.bucket.name or s3.object.key missing")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise Malformed(f"{at}: s3.object.size {size!r} is not a byte count")
        # S3 URL-encodes the key in notifications (a space as '+')
        out.append(S3Object(bucket["name"], unquote_plus(key), size, name))
    return out


def as_json(data: bytes, where: str) -> dict[str, Any]:
    """A JSON object from an object's bytes, or Malformed naming `where`."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as e:
        raise Malformed(f"{where}: not JSON: {e}") from None
    if not isinstance(doc, dict):
        raise Malformed(f"{where}: not a JSON object")
    return doc
