"""The messages the Filter reads, validated at the boundary (ValueError naming the field; the caller counts
and drops): detections/1.0, segment/1.0, uplink-ack/1.0. Readers accept any minor version of the major and
ignore unknown fields."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_DETECTIONS = 100_000  # a message carrying more is refused rather than tracked


def _schema(obj: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ValueError(f"{name}: expected a JSON object, got {type(obj).__name__}")
    s = obj.get("schema")
    if not isinstance(s, str) or not re.fullmatch(rf"{re.escape(name)}/1\.\d{{1,4}}", s):
        raise ValueError(f"{name} field 'schema': {str(s)[:40]!r} is not {name}/1.x")
    return obj


def _num(obj: Mapping[str, Any], key: str, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{what} field {key!r}: expected a number in [{lo}, {hi}], got {str(v)[:40]!r}")
    return float(v)


def _str(obj: Mapping[str, Any], key: str, what: str) -> str:
    v = obj.get(key)
    if not isinstance(v, str) or not v or len(v) > 1024:
        raise ValueError(f"{what} field {key!r}: expected a non-empty string")
    return v


@dataclass(frozen=True, slots=True)
class Detection:
    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the frame

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


@dataclass(frozen=True, slots=True)
class FrameRef:
    ring: str
    slot: int
    generation: int
    shape: tuple[int, int, int]


@dataclass(frozen=True)
class Detections:
    camera: str
    sequence: int
    timestamp: float
    frame: FrameRef | None
    model: dict[str, str]
    detections: tuple[Detection, ...]

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the frame the boxes are in, when the message says."""
        return (self.frame.shape[1], self.frame.shape[0]) if self.frame else None


def parse_detections(obj: Any) -> Detections:
    what = "detections"
    m = _schema(obj, what)
    camera = _str(m, "camera", what)
    seq = m.get("sequence", 0)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise ValueError(f"{what} field 'sequence': expected a non-negative integer")
    ts = _num(m, "timestamp", what, 0)
    frame = None
    f = m.get("frame")
    if f is not None:
        if not isinstance(f, Mapping):
            raise ValueError(f"{what} field 'frame': expected an object")
        shape = f.get("shape")
        if (not isinstance(shape, list) or len(shape) != 3
                or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 65535 for d in shape)):
            raise ValueError(f"{what} field 'frame.shape': expected [h, w, c]")
        slot, gen = f.get("slot"), f.get("generation")
        if isinstance(slot, bool) or not isinstance(slot, int) or isinstance(gen, bool) or not isinstance(gen, int):
            raise ValueError(f"{what} field 'frame.slot'/'frame.generation': expected integers")
        frame = FrameRef(_str(f, "ring", f"{what}.frame"), slot, gen, (shape[0], shape[1], shape[2]))
    model = m.get("model") or {}
    if not isinstance(model, Mapping):
        raise ValueError(f"{what} field 'model': expected an object")
    dets_raw = m.get("detections", [])
    if not isinstance(dets_raw, list):
        raise ValueError(f"{what} field 'detections': expected a list")
    if len(dets_raw) > MAX_DETECTIONS:
        raise ValueError(f"{what} field 'detections': {len(dets_raw)} items is more than {MAX_DETECTIONS}")
    dets = []
    for i, d in enumerate(dets_raw):
        w = f"{what}.detections[{i}]"
        if not isinstance(d, Mapping):
            raise ValueError(f"{w}: expected an object")
        box = d.get("box")
        if (not isinstance(box, list) or len(box) != 4
                or any(isinstance(c, bool) or not isinstance(c, int | float) or not math.isfinite(c) for c in box)):
            raise ValueError(f"{w} field 'box': expected [x1, y1, x2, y2]")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"{w} field 'box': x2 < x1 or y2 < y1")
        cid = d.get("class_id", -1)
        if isinstance(cid, bool) or not isinstance(cid, int):
            raise ValueError(f"{w} field 'class_id': expected an integer")
        dets.append(Detection(_str(d, "label", w), cid, _num(d, "score", w, 0, 1),
                              (float(box[0]), float(box[1]), float(box[2]), float(box[3]))))
    return Detections(camera, seq, ts, frame,
                      {"name": str(model.get("name", "")), "version": str(model.get("version", ""))}, tuple(dets))


@dataclass(frozen=True)
class Segment:
    camera: str
    path: str
    start: float
    end: float
    size: int
    sha256: str | None
    missing: str = ""  # Capture could not record [start, end]: why (no file then)

    @property
    def id(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def parse_segment(obj: Any) -> Segment:
    what = "segment"
    m = _schema(obj, what)
    start, end = _num(m, "start", what, 0), _num(m, "end", what, 0)
    if end < start:
        raise ValueError(f"{what} field 'end': before 'start'")
    missing = m.get("missing")
    if missing is not None:  # a gap in the recording: no file
        if not isinstance(missing, str) or not missing:
            raise ValueError(f"{what} field 'missing': expected the reason as a string")
        return Segment(_str(m, "camera", what), "", start, end, 0, None, missing[:300])
    path = _str(m, "path", what)
    if not path.startswith("/"):
        raise ValueError(f"{what} field 'path': expected an absolute path")
    sha = m.get("sha256")
    if sha is not None and (not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha)):
        raise ValueError(f"{what} field 'sha256': expected 64 hex digits")
    return Segment(_str(m, "camera", what), path, start, end, int(_num(m, "size", what, 0)), sha)


@dataclass(frozen=True)
class Ack:
    id: str
    status: str
    reason: str


def parse_ack(obj: Any) -> Ack:
    what = "uplink-ack"
    m = _schema(obj, what)
    status = m.get("status")
    if status not in ("persisted", "refused"):
        raise ValueError(f"{what} field 'status': expected persisted or refused, got {str(status)[:40]!r}")
    reason = m.get("reason", "")
    return Ack(_str(m, "id", what), status, reason if isinstance(reason, str) else "")
