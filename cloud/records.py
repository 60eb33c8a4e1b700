"""What the edge uploads for an event, read from S3 as the ingest finds it (ggvision/contract/keys.py, cloud.py):

- the event record: the IoT rule's archive of a `ggvision/{thing}/results` message,
  `results/iot-rules/results/{thing}/YYYY/MM/DD/HH/{uuid}.json`, an `uplink-batch/1.0` document (plus the rule's
  `thing` and `received_at`) whose items carry `event/1.0` payloads; the `end` one is the event's record (label,
  best score and box, box history, the id of the best snapshot the Uplink sent);
- the snapshot: `images/{site}/{thing}/{camera}/YYYY/MM/DD/HH/{event_id}-{n}.jpg|webp`, with the Uplink's object
  metadata `id` (the Uplink item id the record names), `start` (when the picture was taken) and `event-ids`
  (a JSON list: one picture can show several events).

A malformed record or snapshot raises Malformed naming the key and the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ggvision.contract import cloud as names
from ggvision.contract.keys import IMAGES

from .s3events import Malformed, as_json

BATCH_SCHEMA = "uplink-batch/1.0"
EVENT_SCHEMA = "event/1.0"
END = "end"


@dataclass(frozen=True)
class EdgeEvent:
    """The edge's record of one ended event."""
    thing: str
    site: str | None  # the batch does not carry the site (yet): the snapshot's key supplies it
    camera: str
    event_id: str
    label: str
    start: float
    end: float
    score: float
    box: list[float]
    boxes: list[list[float]]
    snapshot_id: str | None  # the Uplink item id of the best snapshot, None when none went up
    model: dict[str, Any]
    item_id: str  # the Uplink item id of this record


@dataclass(frozen=True)
class Snapshot:
    site: str
    thing: str
    camera: str
    key: str
    item_id: str
    taken: float
    event_ids: tuple[str, ...]


def _num(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise Malformed(f"{where}: expected a number, got {v!r}")
    return float(v)


def _str(v: Any, where: str) -> str:
    if not isinstance(v, str) or not v or len(v) > 256:
        raise Malformed(f"{where}: expected a non-empty string of at most 256 characters, got {str(v)[:80]!r}")
    return v


def record_thing(key: str) -> str:
    """The thing of an archived results object: `results/iot-rules/results/{thing}/...`."""
    rest = key[len(names.RECORD_PREFIX):].split("/")
    if not key.startswith(names.RECORD_PREFIX) or len(rest) < 6 or not rest[0]:
        raise Malformed(f"{key}: not a results archive key ({names.RECORD_PREFIX}{{thing}}/YYYY/MM/DD/HH/{{id}})")
    return rest[0]


def parse_record(key: str, data: bytes) -> list[EdgeEvent]:
    """The ended events of an archived batch (new/update items are skipped: the end has everything)."""
    thing = record_thing(key)
    doc = as_json(data, key)
    if doc.get("schema") != BATCH_SCHEMA:
        raise Malformed(f"{key}: schema: expected {BATCH_SCHEMA}, got {doc.get('schema')!r}")
    if doc.get("thing") != thing:
        raise Malformed(f"{key}: thing: the key says {thing!r}, the document {doc.get('thing')!r}")
    site = doc.get("site") if isinstance(doc.get("site"), str) and doc.get("site") else None
    items = doc.get("items")
    if not isinstance(items, list):
        raise Malformed(f"{key}: items: expected a list")
    out = []
    for i, it in enumerate(items):
        where = f"{key}: items[{i}]"
        p = it.get("payload") if isinstance(it, dict) else None
        if not isinstance(p, dict):
            raise Malformed(f"{where}: payload: expected an object")
        if p.get("schema") != EVENT_SCHEMA or p.get("kind") != END:
            continue
        best = p.get("best")
        if not isinstance(best, dict):
            raise Malformed(f"{where}: payload.best: expected an object")
        box = best.get("box")
        boxes = p.get("boxes", [])
        if not isinstance(box, list) or len(box) != 4 or not isinstance(boxes, list):
            raise Malformed(f"{where}: payload.best.box / payload.boxes: expected [x1, y1, x2, y2] and a list")
        snap = best.get("snapshot")
        if snap is not None:
            _str(snap, f"{where}: payload.best.snapshot")
        model = p.get("model") if isinstance(p.get("model"), dict) else {}
        out.append(EdgeEvent(
            thing=thing, site=site, camera=_str(p.get("camera"), f"{where}: payload.camera"),
            event_id=_str(p.get("event_id"), f"{where}: payload.event_id"),
            label=_str(p.get("label"), f"{where}: payload.label"),
            start=_num(p.get("start"), f"{where}: payload.start"), end=_num(p.get("end"), f"{where}: payload.end"),
            score=_num(best.get("score"), f"{where}: payload.best.score"),
            box=[_num(v, f"{where}: payload.best.box") for v in box],
            boxes=[[_num(v, f"{where}: payload.boxes") for v in b] for b in boxes if isinstance(b, list)],
            snapshot_id=snap, model={k: str(v) for k, v in model.items()},
            item_id=str(it.get("id", ""))))
    return out


def snapshot_slots(key: str) -> tuple[str, str, str]:
    """(site, thing, camera) of `images/{site}/{thing}/{camera}/YYYY/MM/DD/HH/{name}`."""
    parts = key.split("/")
    if parts[0] != IMAGES or len(parts) != 9 or not all(parts[1:4]):
        raise Malformed(f"{key}: not an images key ({IMAGES}/{{site}}/{{thing}}/{{camera}}/YYYY/MM/DD/HH/{{name}})")
    return parts[1], parts[2], parts[3]


def parse_snapshot(key: str, metadata: dict[str, str]) -> Snapshot:
    """The snapshot's slots and the events it shows, from its key and its S3 user metadata."""
    site, thing, camera = snapshot_slots(key)
    raw = metadata.get("event-ids")
    try:
        ids = json.loads(raw) if raw is not None else None
    except ValueError:
        ids = None
    if not isinstance(ids, list) or not ids or not all(isinstance(x, str) and x for x in ids):
        raise Malformed(f"{key}: metadata event-ids: expected a JSON list of event ids (a Filter snapshot), "
                        f"got {raw!r}")
    try:
        taken = float(metadata.get("start", ""))
    except ValueError:
        raise Malformed(f"{key}: metadata start: expected epoch seconds, got {metadata.get('start')!r}") from None
    item_id = _str(metadata.get("id"), f"{key}: metadata id")
    return Snapshot(site, thing, camera, key, item_id, taken, tuple(ids))
