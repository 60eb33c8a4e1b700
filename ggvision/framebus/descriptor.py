"""The frame descriptor: the small JSON message published on `ggvision/v1/frames/{camera}`.

The pixels stay in the shared-memory ring (DESIGN.md: "Big pixels never travel through IPC"); the descriptor
says where to find them and which write of that slot they belong to. `from_message` validates every field
and raises ValueError naming the field, so a reader can count and drop a malformed message instead of
crashing on it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SCHEMA = "frame/1.0"
# Readers accept any 1.x minor version (added fields are ignored); a new major version is refused.
_SCHEMA_RE = re.compile(r"^frame/1\.\d{1,4}$")
# `ggv-<slug>-<pid>`; the slug alphabet has no "/" so a name can never leave the shm directory.
RING_NAME_RE = re.compile(r"^ggv-(?P<slug>[A-Za-z0-9_.-]{1,64})-(?P<pid>[0-9]{1,10})$")
MAX_CAMERA_LEN = 256
MAX_DIM = 65_535  # per-dimension bound; the ring checks the byte size against its slot size
MAX_CHANNELS = 4
MAX_SLOT = 4_095
_U63 = 2**63 - 1


# Pixel types a ring carries, with their sizes: BGR video is uint8; radiometric thermal frames are
# float32 degrees Celsius (uint16 for raw sensor counts).
DTYPES: dict[str, int] = {"uint8": 1, "uint16": 2, "float32": 4}

def _fail(field: str, why: str) -> ValueError:
    return ValueError(f"frame descriptor field {field!r}: {why}")


def _int(obj: Mapping[str, Any], field: str, lo: int, hi: int) -> int:
    if field not in obj:
        raise _fail(field, "missing")
    v = obj[field]
    # bool is an int subclass in Python; JSON true/false must not pass as 1/0.
    if isinstance(v, bool) or not isinstance(v, int):
        raise _fail(field, f"expected an integer, got {type(v).__name__}")
    if not lo <= v <= hi:
        raise _fail(field, f"{v} is outside [{lo}, {hi}]")
    return v


def _str(obj: Mapping[str, Any], field: str) -> str:
    if field not in obj:
        raise _fail(field, "missing")
    v = obj[field]
    if not isinstance(v, str):
        raise _fail(field, f"expected a string, got {type(v).__name__}")
    return v


@dataclass(frozen=True, slots=True)
class FrameDescriptor:
    """Where one frame lives: ring `ring`, slot `slot`, valid while the slot's generation is `generation`."""

    camera: str
    sequence: int  # per-ring frame counter, from 0; gaps seen by a reader are skipped frames
    slot: int
    generation: int  # even: the slot's stable generation right after this frame was written
    timestamp: float  # capture time, epoch seconds
    shape: tuple[int, int, int]  # (h, w, c), BGR when c == 3
    ring: str  # shared-memory name of the ring (FrameRing.attach(ring))
    dtype: str = "uint8"
    schema: str = SCHEMA

    @property
    def nbytes(self) -> int:
        h, w, c = self.shape
        return h * w * c * DTYPES[self.dtype]

    def to_message(self) -> dict[str, Any]:
        """A JSON-ready dict (json.dumps it for PublishToTopic's JSON or binary message)."""
        return {
            "schema": self.schema,
            "camera": self.camera,
            "sequence": self.sequence,
            "slot": self.slot,
            "generation": self.generation,
            "timestamp": self.timestamp,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "ring": self.ring,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_message(), separators=(",", ":")).encode()

    @classmethod
    def from_message(cls, obj: Mapping[str, Any] | str | bytes | bytearray) -> FrameDescriptor:
        """Validate a received message (a dict, or its JSON text/bytes). Raises ValueError naming the field."""
        if isinstance(obj, (str, bytes, bytearray)):
            try:
                obj = json.loads(obj)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"frame descriptor: not valid JSON ({e})") from None
        if not isinstance(obj, Mapping):
            raise ValueError(f"frame descriptor: expected a JSON object, got {type(obj).__name__}")

        schema = _str(obj, "schema")
        if not _SCHEMA_RE.match(schema):
            raise _fail("schema", f"{schema[:40]!r} is not {SCHEMA!r} (or a later 1.x)")
        camera = _str(obj, "camera")
        if not camera or len(camera) > MAX_CAMERA_LEN:
            raise _fail("camera", f"length must be 1..{MAX_CAMERA_LEN}")
        sequence = _int(obj, "sequence", 0, _U63)
        slot = _int(obj, "slot", 0, MAX_SLOT)
        generation = _int(obj, "generation", 2, _U63)
        if generation % 2:
            raise _fail("generation", f"{generation} is odd (a slot being written); descriptors carry even ones")

        if "timestamp" not in obj:
            raise _fail("timestamp", "missing")
        ts = obj["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise _fail("timestamp", f"expected a number (epoch seconds), got {type(ts).__name__}")
        if not math.isfinite(ts) or ts < 0:
            raise _fail("timestamp", f"{ts!r} is not a finite non-negative epoch time")

        if "shape" not in obj:
            raise _fail("shape", "missing")
        shape = obj["shape"]
        if not isinstance(shape, (list, tuple)) or len(shape) != 3:
            raise _fail("shape", "expected [h, w, c]")
        for i, (name, hi) in enumerate((("h", MAX_DIM), ("w", MAX_DIM), ("c", MAX_CHANNELS))):
            d = shape[i]
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= hi:
                raise _fail("shape", f"{name}={d!r} is not an integer in [1, {hi}]")

        dtype = _str(obj, "dtype")
        if dtype not in DTYPES:
            raise _fail("dtype", f"{dtype[:20]!r} is not supported (one of {', '.join(DTYPES)})")
        ring = _str(obj, "ring")
        if not RING_NAME_RE.match(ring):
            raise _fail("ring", f"{ring[:80]!r} is not a ring name (ggv-<slug>-<pid>)")

        return cls(
            camera=camera,
            sequence=sequence,
            slot=slot,
            generation=generation,
            timestamp=float(ts),
            shape=(shape[0], shape[1], shape[2]),
            ring=ring,
            dtype=dtype,
            schema=schema,
        )
