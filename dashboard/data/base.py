"""What the pages read: typed records and the one `DataSource` protocol both backends implement (cloud.py: DynamoDB
and S3; edge.py: the box's local store and frame rings). Pages never touch boto3 or files, only these.

Paging is by an opaque cursor: `events(query, cursor=None)` gives one page and the cursor of the next (None at the
end), newest first. A cursor is a string so a page can keep it in session state or a URL.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

PAGE_SIZE = 50


@dataclass(frozen=True)
class Box:
    """One tracked box of an event: when, and where in pixels of the event's frame size."""
    t: float
    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True)
class Event:
    """One edge event, with the cloud's verdict when the backend has it."""
    thing: str
    event_id: str
    site: str
    camera: str
    label: str
    start: float
    end: float
    edge_score: float
    boxes: tuple[Box, ...] = ()
    zones: tuple[str, ...] = ()
    frame_size: tuple[int, int] | None = None  # (width, height) the boxes are in
    verdict: str | None = None  # confirmed | disputed | unverified; None: not decided (or the edge backend)
    cloud_score: float | None = None
    snapshot: str | None = None  # backend-specific reference (an S3 key, a file path), for snapshot()/clip()

    @property
    def key(self) -> str:
        return f"{self.thing}#{self.event_id}"


@dataclass(frozen=True)
class EventQuery:
    """Filters of the Events page. `site` or `camera_key` (`{thing}/{camera}`) picks the index the query runs on."""
    site: str | None = None
    camera_key: str | None = None
    labels: tuple[str, ...] = ()
    zone: str | None = None
    verdict: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass
class EventPage:
    events: list[Event]
    cursor: str | None  # the next page's; None: this was the last


@dataclass(frozen=True)
class Device:
    """One core device as the fleet sees it."""
    thing: str
    site: str
    last_seen: float | None
    online: bool
    versions: dict[str, str] = field(default_factory=dict)  # component -> version
    backlog_items: int | None = None
    backlog_bytes: int | None = None
    link: str = "unknown"  # the Uplink's link state, as far as the backend knows it
    alerts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Camera:
    thing: str
    camera: str
    site: str
    status: str = "unknown"  # up | down | silent | unknown
    input_fps: float | None = None
    detection_fps: float | None = None
    last_seen: float | None = None
    zones: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # name -> polygon, 0..1 of the frame
    latest: Event | None = None  # the newest event with a snapshot

    @property
    def key(self) -> str:
        return f"{self.thing}/{self.camera}"


@dataclass(frozen=True)
class FireView:
    """A thermal sensor: its latest frame (°C), features, and risk probability over time (t, p)."""
    sensor: str
    frame: np.ndarray | None
    features: dict[str, float]
    history: list[tuple[float, float]]
    note: str = ""  # what is missing, said on the page


@dataclass(frozen=True)
class Counts:
    """One window of a camera's counting analytics (the Filter's counts/1.0): crossings per line, direction (in/out)
    and label; per zone the most objects at once and the entries; zone rule hits by kind (loitering,
    overcrowding). Edge: one counts message; cloud: the messages of one minute window, summed."""
    start: float
    end: float
    crossings: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    occupancy: dict[str, int] = field(default_factory=dict)  # zone -> max at once
    entered: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)


def counts_of(body: Any) -> Counts | None:
    """A counts/1.0 body as Counts; None for anything else (a foreign or malformed line is not shown)."""
    if not isinstance(body, dict) or body.get("schema") != "counts/1.0":
        return None
    try:
        lines = {str(ln): {str(d): {str(lb): int(n) for lb, n in (labels or {}).items()}
                           for d, labels in (dirs or {}).items() if d in ("in", "out")}
                 for ln, dirs in (body.get("lines") or {}).items()}
        zones = body.get("zones") or {}
        return Counts(float(body["start"]), float(body["end"]), lines,
                      {str(z): int(v.get("max") or 0) for z, v in zones.items()},
                      {str(z): int(v.get("entered") or 0) for z, v in zones.items()},
                      {str(k): int(n) for k, n in (body.get("hits") or {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def counts_table(rows: list[Counts]) -> list[dict[str, Any]]:
    """The range's totals, one row per line, direction and label, then per zone (most at once, entered) and rule
    hits: what the Site / camera page lists."""
    cross: dict[tuple[str, str, str], int] = {}
    occ: dict[str, int] = {}
    ent: dict[str, int] = {}
    hits: dict[str, int] = {}
    for r in rows:
        for ln, dirs in r.crossings.items():
            for d, labels in dirs.items():
                for lb, n in labels.items():
                    cross[(ln, d, lb)] = cross.get((ln, d, lb), 0) + n
        for z, n in r.occupancy.items():
            occ[z] = max(occ.get(z, 0), n)
        for z, n in r.entered.items():
            ent[z] = ent.get(z, 0) + n
        for k, n in r.hits.items():
            hits[k] = hits.get(k, 0) + n
    out = [{"what": f"line {ln}", "count": f"{d} · {lb}", "value": n} for (ln, d, lb), n in sorted(cross.items())]
    out += [{"what": f"zone {z}", "count": "most at once", "value": occ[z]} for z in sorted(occ)]
    out += [{"what": f"zone {z}", "count": "entered", "value": ent[z]} for z in sorted(ent)]
    out += [{"what": "rule hits", "count": k, "value": n} for k, n in sorted(hits.items())]
    return out


def counts_series(rows: list[Counts]) -> list[dict[str, Any]]:
    """Points over time: crossings per window by `line direction label`, and each zone's most at once."""
    out = []
    for r in rows:
        for ln, dirs in r.crossings.items():
            for d, labels in dirs.items():
                for lb, n in labels.items():
                    out.append({"t": r.start, "series": f"{ln} {d} {lb}", "value": n})
        for z, n in r.occupancy.items():
            out.append({"t": r.start, "series": f"zone {z} occupancy", "value": n})
    return out


class DataSource(Protocol):
    name: Literal["cloud", "edge"]

    def sites(self) -> list[str]: ...
    def devices(self) -> list[Device]: ...
    def cameras(self, site: str | None = None) -> list[Camera]: ...
    def labels(self) -> list[str]: ...
    def events(self, query: EventQuery, cursor: str | None = None, limit: int = PAGE_SIZE) -> EventPage: ...
    def snapshot(self, event: Event) -> bytes | None:
        """The event's best snapshot (JPEG/WebP bytes) for drawing its boxes on."""
        ...
    def snapshot_url(self, event: Event) -> str | None:
        """A URL the browser may open itself (cloud: presigned, short-lived); None where there is none."""
        ...
    def clip(self, event: Event) -> bytes | None:
        """The event's recording as MPEG-TS bytes (the page remuxes it to MP4), None when there is none."""
        ...
    def live_frame(self, camera_key: str) -> np.ndarray | None:
        """The newest frame of a camera (BGR), from the frame ring; None where the backend has no live view."""
        ...
    def fire(self) -> list[FireView]: ...
    def counts(self, camera_key: str, since: float, until: float) -> list[Counts]:
        """The camera's counting analytics of windows starting in [since, until], oldest first."""
        ...


def encode_cursor(key: dict[str, Any]) -> str:
    """An opaque, URL-safe cursor for a position (DynamoDB's LastEvaluatedKey, an offset)."""
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True, default=str).encode()).decode()


def decode_cursor(cursor: str) -> dict[str, Any]:
    try:
        doc = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"dashboard: not a page cursor: {cursor[:40]!r} ({e})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"dashboard: not a page cursor: {cursor[:40]!r}")
    return doc
