"""Which detections matter: class allow-list, per-class score and area limits, zones; and which events are
alerts (a rule engine of simple conditions: class, zone, score, dwell time)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ..config.filter import AlertRule, CameraConfig, Polygon
from .messages import Detection

Box = tuple[float, float, float, float]


def iou(a: Box, b: Box) -> float:
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def point_in_polygon(x: float, y: float, poly: Polygon) -> bool:
    """Even-odd ray casting; x, y in the polygon's (normalised) coordinates."""
    inside = False
    j = len(poly) - 1
    for i in range(len(poly)):
        xi, yi = poly[i]
        xj, yj = poly[j]
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            inside = not inside
        j = i
    return inside


def anchor(box: Box, size: tuple[int, int], where: str = "bottom") -> tuple[float, float]:
    """The point of a box that decides its zone, normalised: bottom centre (where an object stands) or centre."""
    w, h = size
    x = (box[0] + box[2]) / 2 / w
    y = (box[3] if where == "bottom" else (box[1] + box[3]) / 2) / h
    return min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)


def zones_of(box: Box, size: tuple[int, int], zones: Mapping[str, Polygon], where: str = "bottom") -> frozenset[str]:
    if not zones:
        return frozenset()
    x, y = anchor(box, size, where)
    return frozenset(name for name, poly in zones.items() if point_in_polygon(x, y, poly))


@dataclass
class FilterStats:
    seen: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)  # by reason: class, score, area, zone


def select(dets: Iterable[Detection], cfg: CameraConfig, size: tuple[int, int], stats: FilterStats) -> list[Detection]:
    """The detections worth tracking, in order; each drop is counted by its reason."""
    frame_area = float(size[0] * size[1]) or 1.0
    out = []
    for d in dets:
        stats.seen += 1
        rule = cfg.classes.get(d.label)
        if cfg.classes and rule is None:
            stats.dropped["class"] += 1
            continue
        if d.score < (rule.min_score if rule else cfg.min_score):
            stats.dropped["score"] += 1
            continue
        if rule is not None and not rule.min_area <= d.area / frame_area <= rule.max_area:
            stats.dropped["area"] += 1
            continue
        if cfg.zones_only and cfg.zones and not zones_of(d.box, size, cfg.zones, cfg.zone_anchor):
            stats.dropped["zone"] += 1
            continue
        stats.kept += 1
        out.append(d)
    return out


@dataclass
class TrackFacts:
    """What the alert rules look at for one tracked object right now."""

    label: str
    score: float  # best score so far
    zones: frozenset[str]
    seen_s: float  # since the track started
    zone_since: Mapping[str, float]  # zone -> seconds inside, for the zones it is in now


def matches(rule: AlertRule, f: TrackFacts) -> bool:
    if rule.classes and f.label not in rule.classes:
        return False
    if f.score < rule.min_score:
        return False
    if rule.zones:
        return any(z in f.zones and f.zone_since.get(z, 0.0) >= rule.min_dwell_s for z in rule.zones)
    return f.seen_s >= rule.min_dwell_s


def fired(rules: Iterable[AlertRule], f: TrackFacts, already: set[str]) -> list[AlertRule]:
    """Rules that hold now and have not fired for this track yet (one alert per rule per event)."""
    return [r for r in rules if r.name not in already and matches(r, f)]
