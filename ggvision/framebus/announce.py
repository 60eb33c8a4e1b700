"""frame-rings/1.0: which shared-memory ring holds each camera's frames, so a reader can follow the ring itself
instead of receiving one frame/1.0 descriptor per frame over IPC (docs/messages.md).

Capture publishes the whole set on `ggvision/v1/frame-rings` when a ring is created (a camera starts, or its
frames outgrow the ring) and every `metricsPeriodS`, so a reader that starts late learns it within one period.
`rings_message` builds it; `parse_rings` validates every field and raises ValueError naming it, so a reader can
count and drop a malformed announcement and keep the rings it knew.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .descriptor import MAX_CAMERA_LEN, RING_NAME_RE

SCHEMA = "frame-rings/1.0"
_SCHEMA_RE = re.compile(r"^frame-rings/1\.\d{1,4}$")  # any 1.x: added fields are ignored
MAX_RINGS = 1024


@dataclass(frozen=True, slots=True)
class RingInfo:
    """One camera's ring: its name, when it was created (the ring header's `created`: a ring re-created under
    the same name has a new one) and the camera's detect rate (when to look for its next frame)."""

    ring: str
    created: float
    fps: float

    def to_dict(self) -> dict[str, Any]:
        return {"ring": self.ring, "created": self.created, "fps": self.fps}


def rings_message(component: str, rings: Mapping[str, RingInfo], timestamp: float) -> dict[str, Any]:
    """The frame-rings/1.0 message listing every ring the component writes (camera id -> RingInfo)."""
    return {"schema": SCHEMA, "component": component, "timestamp": timestamp,
            "rings": {cam: info.to_dict() for cam, info in rings.items()}}


def _fail(where: str, why: str) -> ValueError:
    return ValueError(f"frame-rings field {where!r}: {why}")


def _number(v: Any, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise _fail(where, f"expected a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def parse_rings(msg: Any) -> tuple[str, dict[str, RingInfo]]:
    """(component, camera id -> RingInfo) of a frame-rings/1.x message (a dict, JSON text or bytes)."""
    if isinstance(msg, bytes | bytearray | str):
        try:
            msg = json.loads(msg)
        except ValueError as e:
            raise ValueError(f"frame-rings message is not JSON: {e}") from None
    if not isinstance(msg, Mapping):
        raise ValueError(f"frame-rings message must be a JSON object, got {type(msg).__name__}")
    schema = msg.get("schema")
    if not isinstance(schema, str) or not _SCHEMA_RE.match(schema):
        raise _fail("schema", f"expected frame-rings/1.x, got {schema!r}")
    component = msg.get("component")
    if not isinstance(component, str) or not component:
        raise _fail("component", f"expected the publishing component's name, got {component!r}")
    rings = msg.get("rings")
    if not isinstance(rings, Mapping):
        raise _fail("rings", f"expected an object of camera id -> ring, got {type(rings).__name__}")
    if len(rings) > MAX_RINGS:
        raise _fail("rings", f"{len(rings)} rings, at most {MAX_RINGS}")
    out: dict[str, RingInfo] = {}
    for cam, entry in rings.items():
        where = f"rings.{cam}"
        if not isinstance(cam, str) or not 0 < len(cam) <= MAX_CAMERA_LEN:
            raise _fail(where, f"a camera id must be 1..{MAX_CAMERA_LEN} characters")
        if not isinstance(entry, Mapping):
            raise _fail(where, f"expected an object, got {type(entry).__name__}")
        name = entry.get("ring")
        if not isinstance(name, str) or not RING_NAME_RE.match(name):
            raise _fail(f"{where}.ring", f"{name!r} is not a frame ring name (ggv-<slug>-<pid>)")
        out[cam] = RingInfo(name, _number(entry.get("created"), f"{where}.created", 0, 1e11),
                            _number(entry.get("fps"), f"{where}.fps", 0.01, 1000))
    return component, out
