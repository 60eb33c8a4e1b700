"""Counting analytics for one camera: line crossings, zone occupancy, dwell, loitering and overcrowding, fed
with the tracker's output after each detections message (the camera's `analytics` settings,
ggvision/config/filter.py; docs/filter.md has the rules and the measured accuracy).

It gives `Analytics(cfg)`: `update(started, updated, ended, alive, t, size)` follows the tracks' anchor points
(the camera's `zoneAnchor`) and returns the rule `Hit`s of this message (loitering, overcrowding) for the
event layer to raise as alerts; `due(t)` returns the `counts/1.0` body of each interval that has closed by
message time t (with `final`, at shutdown: the interval so far, after `finish()` resolved what waits);
`totals()` the counts since start (metrics).

Crossings. The anchor's signed distance to a line (pixels; positive on the right of first -> second point as
the image shows it, y down) is followed per track. A track *commits* to a side when its anchor is beyond the
hysteresis band (`band` × frame height) on that side; a crossing counts when it commits to the other side
and its path crossed the segment itself (not the line's extension) — the path between successive anchors, so
a fast object that skips over the line between two 5 fps samples, or one that comes back from an occlusion
past it, still counts. Jitter inside the band counts nothing; crossing back counts the other direction.
A crossing is confirmed by the object's next sighting (or by its track ending for good): one that is back
beyond the band on the side it came from at once was one glitched box (a one-frame false detection the track
jumped to) and counts nothing. A track born inside the band has no side until it leaves the band: where it
came from is unknown, so its first exit counts nothing.

ID switches: a new track whose first anchor is near where a track of its label was last seen or is predicted
to be (the object's own velocity, kept across switches; near: 1.5 box heights at the next sample or the one
after, 0.75 later) continues that track's
analytics state — its committed sides, zone entry times and fired rules — when the other track was lost less
than `handoverS` ago (it ended, or it is alive but missed this frame; the nearest wins, each hands over once;
a lost track that handed over and is matched again later starts afresh, as if born). So a person the tracker
loses at the line and picks up as a new track on the far side counts once, and one picked up on the near
side after being counted does not count again. At 5 fps the tracker loses fast walkers often (a step of
more than half a box with no velocity yet): bench/analytics.py measures what this rule wins back.

Zones: a track is in a zone while its anchor is inside, with a 1 s grace for jitter at the edge (out for
longer: it left at its last time inside). Occupancy counts the confirmed objects (`tracker.minHits`
observations, across ID switches) in a zone, missed-but-alive ones included; dwell is the time from entering
to leaving, counted when an object leaves (or its track ends and no new one takes over).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..config.filter import AnalyticsConfig, Polygon
from .rules import anchor, point_in_polygon
from .tracker import Track

ZONE_GRACE_S = 1.0  # out of a zone for less than this (jitter at its edge) is still in it
REARM_S = 10.0  # overcrowding fires again only after the zone stayed at or under its limit this long
EDGE = 0.02  # a path through the line this close beyond an end (fraction of the segment) still crosses it
# How near (in box heights) a new track must start to a lost one's last or predicted anchor to continue it: an
# ID switch right after the last sighting is a fast object the tracker could not follow (a box height or more
# per 5 fps sample, before it has a velocity); one lost for longer reappears near where it was predicted.
HANDOVER_R_NEXT = 1.5
HANDOVER_R_LATER = 0.75
Pt = tuple[float, float]


@dataclass
class Hit:
    """A zone rule that fired: the event layer raises it as an alert on `track`'s event."""

    kind: str  # loitering | overcrowding
    zone: str
    track: Track
    dwell_s: float
    occupancy: int
    limit: float  # loiterS or maxOccupancy
    n: int  # the how-manieth hit of this kind in this zone (alert ids stay unique)


@dataclass
class _State:
    """One object's analytics state; moves to a new track on an ID switch."""

    track: Track
    last: Pt | None = None  # last anchor, pixels
    last_t: float = 0.0
    height: float = 0.0  # last box height, pixels
    hits: int = 0  # observations, across ID switches
    vx: float = 0.0  # anchor velocity, pixels per second (smoothed; across ID switches, unlike the tracker's)
    vy: float = 0.0
    side: dict[str, int] = field(default_factory=dict)  # line -> committed side (+1 right, -1 left)
    cross: dict[str, tuple[float, float] | None] = field(default_factory=dict)  # line -> where (0..1 along
    # it) and when the path last went through it
    dist: dict[str, float] = field(default_factory=dict)  # line -> the last anchor's signed distance, pixels
    pending: dict[str, tuple[str, str, float, float, int]] = field(default_factory=dict)  # line -> a crossing
    # waiting for the next sighting: (direction, label, t, where, the side it came from)
    zones: dict[str, list[float]] = field(default_factory=dict)  # zone -> [entered t, last t inside]
    fired: set[str] = field(default_factory=set)  # zones whose loitering alert was raised
    lost_t: float | None = None  # when its track ended (waiting for a handover)
    retired: bool = False
    serial: int = 0  # which object (across ID switches): the log's crossings name it (benches)


@dataclass
class _Interval:
    crossings: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # line -> in/out -> label -> n
    occupancy_max: Counter[str] = field(default_factory=Counter)
    entered: Counter[str] = field(default_factory=Counter)
    dwell: dict[str, list[float]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)


def _side_of(d: float) -> int:
    return 1 if d > 0 else -1


class Analytics:
    def __init__(self, cfg: AnalyticsConfig, zones: dict[str, Polygon], zone_anchor: str = "bottom",
                 min_hits: int = 1) -> None:
        self.cfg, self.where, self.min_hits = cfg, zone_anchor, min_hits
        self.zones = {z: zones[z] for z in cfg.zones if z in zones}  # the zones analytics names are counted
        self.states: dict[int, _State] = {}  # by track id
        self.lost: list[_State] = []
        self.occupancy: dict[str, int] = dict.fromkeys(self.zones, 0)
        self.total: dict[str, dict[str, Counter[str]]] = {ln: {"in": Counter(), "out": Counter()} for ln in cfg.lines}
        self.hit_totals: Counter[str] = Counter()
        self._iv = self._new_interval()
        self._start: float | None = None
        self._crowded: dict[str, float | None] = dict.fromkeys(self.zones)  # zone -> fired at (None: armed)
        self._calm_since: dict[str, float] = {}
        self._hit_n: Counter[str] = Counter()
        self.log: list[tuple[Any, ...]] | None = None  # a list: each crossing and dwell appended (benches)
        self._serial = 0

    @property
    def enabled(self) -> bool:
        return bool(self.cfg.lines or self.zones)

    def _new_interval(self) -> _Interval:
        return _Interval(crossings={ln: {"in": Counter(), "out": Counter()} for ln in self.cfg.lines},
                         dwell={z: [] for z in self.zones})

    # -- per detections message ---------------------------------------------------------------------
    def update(self, started: Iterable[Track], updated: Iterable[Track], ended: Iterable[Track],
               alive: Iterable[Track], t: float, size: tuple[int, int]) -> list[Hit]:
        if self._start is None:
            self._start = self._floor(t)
        if not self.enabled:
            return []
        for tr in ended:
            st = self.states.pop(tr.track_id, None)
            if st is not None and not st.retired:
                st.lost_t = tr.last_t
                self.lost.append(st)
        self._expire_lost(t)
        alive = list(alive)
        born = list(started)
        for tr in updated:
            st = self.states.get(tr.track_id)
            if st is None or st.retired:  # a track that handed its object over now follows another: a birth
                born.append(tr)
            else:
                self._move(st, tr, t, size)
        for tr in born:
            st = self._handover(tr, alive, t, size) or self._new_state(tr)
            st.track = tr
            self.states[tr.track_id] = st
            self._move(st, tr, t, size)
        return self._zone_rules(alive, t)

    def _new_state(self, tr: Track) -> _State:
        self._serial += 1
        return _State(tr, serial=self._serial)

    def _floor(self, t: float) -> float:
        iv = self.cfg.interval_s
        return math.floor(t / iv) * iv if iv > 0 else t

    def _anchor(self, tr: Track, size: tuple[int, int]) -> Pt:
        x, y = anchor(tr.box, size, self.where)
        return x * size[0], y * size[1]

    def _handover(self, tr: Track, alive: list[Track], t: float, size: tuple[int, int]) -> _State | None:
        """The lost state of the same object, if this new track is most likely an ID switch."""
        p = self._anchor(tr, size)
        h_new = tr.box[3] - tr.box[1]
        best: tuple[float, _State] | None = None
        missed = [self.states[o.track_id] for o in alive
                  if o.track_id in self.states and o.detection is None and o.track_id != tr.track_id]
        for st in (*self.lost, *missed):
            if st.retired or st.track.label != tr.label or st.last is None:
                continue
            gone = st.lost_t if st.lost_t is not None else st.last_t
            if t - gone > self.cfg.handover_s:
                continue
            dt = min(t - st.last_t, self.cfg.handover_s)
            pred = (st.last[0] + st.vx * dt, st.last[1] + st.vy * dt)
            d = min(math.dist(p, st.last), math.dist(p, pred))
            r = (HANDOVER_R_NEXT if dt <= 0.45 else HANDOVER_R_LATER) * max(st.height, h_new)
            if d <= r and (best is None or d < best[0]):
                best = (d, st)
        if best is None:
            return None
        st = best[1]
        if st in self.lost:
            self.lost.remove(st)
        else:  # the old track is alive but missed: it is this one now; if it comes back it counts nothing
            old = _State(st.track, retired=True)
            self.states[st.track.track_id] = old
        st.lost_t = None
        return st

    def _expire_lost(self, t: float) -> None:
        keep = []
        for st in self.lost:
            if t - (st.lost_t or 0.0) > self.cfg.handover_s:
                for name, pending in st.pending.items():  # not seen again: it did cross
                    self._count(name, *pending[:4], st.serial)
                for z, (t0, t1) in st.zones.items():
                    self._leave(z, t0, t1)
            else:
                keep.append(st)
        self.lost = keep

    def _move(self, st: _State, tr: Track, t: float, size: tuple[int, int]) -> None:
        p = self._anchor(tr, size)
        w, h = size
        for name, line in self.cfg.lines.items():
            if line.labels and tr.label not in line.labels:
                continue
            a = (line.points[0][0] * w, line.points[0][1] * h)
            b = (line.points[1][0] * w, line.points[1][1] * h)
            self._cross(st, name, a, b, p, line.band * h, line.in_side, tr.label, t)
        self._zones(st, tr, p, t, size)
        if st.last is not None and t > st.last_t:
            a = 0.5 if st.hits > 1 else 1.0
            st.vx = (1 - a) * st.vx + a * (p[0] - st.last[0]) / (t - st.last_t)
            st.vy = (1 - a) * st.vy + a * (p[1] - st.last[1]) / (t - st.last_t)
        st.last, st.last_t, st.height = p, t, tr.box[3] - tr.box[1]
        st.hits += 1

    def _cross(self, st: _State, name: str, a: Pt, b: Pt, p: Pt, band: float, in_side: str, label: str,
               t: float) -> None:
        ab = (b[0] - a[0], b[1] - a[1])
        length = math.hypot(*ab)

        def dist(q: Pt) -> float:  # signed, pixels: positive on the right of a -> b (image, y down)
            return (ab[0] * (q[1] - a[1]) - ab[1] * (q[0] - a[0])) / length

        d_p = st.dist[name] = dist(p)
        pending = st.pending.pop(name, None)
        if pending is not None:
            if abs(d_p) > band and _side_of(d_p) == pending[4]:
                # back beyond the band where it came from at once: one glitched box (a false detection the
                # track jumped to, or was handed over to) is no crossing
                st.side[name], st.cross[name] = pending[4], None
                return
            self._count(name, *pending[:4], st.serial)
        if st.last is not None:
            d_q = dist(st.last)
            if (d_q > 0) != (d_p > 0) and d_q != d_p:  # the path from the last anchor went through the line
                f = d_q / (d_q - d_p)
                c = (st.last[0] + f * (p[0] - st.last[0]), st.last[1] + f * (p[1] - st.last[1]))
                st.cross[name] = (((c[0] - a[0]) * ab[0] + (c[1] - a[1]) * ab[1]) / length**2,
                                  st.last_t + f * (t - st.last_t))
        if abs(d_p) <= band:
            return
        side, was = _side_of(d_p), st.side.get(name, 0)
        st.side[name] = side
        if was and side != was:
            crossed = st.cross.get(name)
            if crossed is not None and -EDGE <= crossed[0] <= 1 + EDGE:  # through the segment, not around its ends
                direction = "in" if side == (1 if in_side == "right" else -1) else "out"
                # counts with the next sighting (or the end); the log has when the path went through the line
                st.pending[name] = (direction, label, crossed[1], crossed[0], was)
        st.cross[name] = None

    def _count(self, name: str, direction: str, label: str, t: float, u: float, serial: int = 0) -> None:
        self._iv.crossings[name][direction][label] += 1
        self.total[name][direction][label] += 1
        if self.log is not None:
            self.log.append(("cross", name, direction, label, t, u, serial))

    def _zones(self, st: _State, tr: Track, p: Pt, t: float, size: tuple[int, int]) -> None:
        x, y = p[0] / size[0], p[1] / size[1]
        for z, poly in self.zones.items():
            rule = self.cfg.zones.get(z)
            if rule is not None and rule.labels and tr.label not in rule.labels:
                continue
            if point_in_polygon(x, y, poly):
                if z in st.zones:
                    st.zones[z][1] = t
                else:
                    st.zones[z] = [t, t]
                    self._iv.entered[z] += 1
            elif z in st.zones and t - st.zones[z][1] > ZONE_GRACE_S:
                self._leave(z, *st.zones.pop(z))

    def _leave(self, zone: str, t0: float, t1: float) -> None:
        if zone in self._iv.dwell:
            self._iv.dwell[zone].append(t1 - t0)
            if self.log is not None:
                self.log.append(("dwell", zone, t0, t1))

    def _zone_rules(self, alive: list[Track], t: float) -> list[Hit]:
        inside: dict[str, list[tuple[float, float, _State]]] = {z: [] for z in self.zones}
        for tr in alive:
            st = self.states.get(tr.track_id)
            if st is None or st.retired or st.hits < self.min_hits:
                continue
            for z, (t0, t1) in st.zones.items():
                inside[z].append((t0, t1, st))
        hits: list[Hit] = []
        for z, members in inside.items():
            n = self.occupancy[z] = len(members)
            self._iv.occupancy_max[z] = max(self._iv.occupancy_max[z], n)
            rule = self.cfg.zones.get(z)
            if rule is None:
                continue
            if rule.loiter_s > 0:
                for t0, t1, st in members:
                    if z not in st.fired and t1 - t0 > rule.loiter_s:  # seen inside that long (not: missed since)
                        st.fired.add(z)
                        hits.append(self._hit("loitering", z, st.track, t1 - t0, n, rule.loiter_s))
            if rule.max_occupancy > 0:
                if n > rule.max_occupancy:
                    self._calm_since.pop(z, None)
                    if self._crowded[z] is None:
                        self._crowded[z] = t
                        t0, t1, st = max(members, key=lambda m: m[0])  # the newest arrival tipped it over
                        hits.append(self._hit("overcrowding", z, st.track, t1 - t0, n, rule.max_occupancy))
                elif self._crowded[z] is not None:
                    since = self._calm_since.setdefault(z, t)
                    if t - since >= REARM_S:
                        self._crowded[z] = None
        return hits

    def _hit(self, kind: str, zone: str, tr: Track, dwell: float, n: int, limit: float) -> Hit:
        self._iv.hits[kind] += 1
        self.hit_totals[kind] += 1
        self._hit_n[f"{kind}:{zone}"] += 1
        return Hit(kind, zone, tr, dwell, n, limit, self._hit_n[f"{kind}:{zone}"])

    # -- intervals ------------------------------------------------------------------------------------
    def finish(self) -> None:
        """The observation stops (shutdown, a new configuration of the camera): nothing will be seen again, so
        what waits is resolved now, in the current interval. A crossing waiting for its confirming sighting
        counts (as when its track ends for good). A track whose path went through the line and whose last
        anchor is on the other side of it, but still inside the band, counts too: the band only guards against
        jitter, and no sighting will come to show it was any; one back on its own side, or that never went
        through the line, counts nothing. Lost tracks waiting for a handover have left their zones (their
        dwell counts); objects still in a zone have not left it, so no dwell is counted for them."""
        if not self.enabled:
            return
        live = [st for st in self.states.values() if not st.retired]
        for st in (*live, *self.lost):
            for name, pending in st.pending.items():
                self._count(name, *pending[:4], st.serial)
            st.pending.clear()
            for name, was in st.side.items():
                d, crossed, line = st.dist.get(name), st.cross.get(name), self.cfg.lines.get(name)
                if line is None or d is None or crossed is None or _side_of(d) == was or d == 0:
                    continue
                if -EDGE <= crossed[0] <= 1 + EDGE:
                    side = _side_of(d)
                    direction = "in" if side == (1 if line.in_side == "right" else -1) else "out"
                    self._count(name, direction, st.track.label, crossed[1], crossed[0], st.serial)
                st.cross[name] = None
        for st in self.lost:
            for z, (t0, t1) in st.zones.items():
                self._leave(z, t0, t1)
        self.lost = []
        for st in live:
            st.retired = True  # resolved: a later update (it should not come) starts afresh

    def due(self, t: float, final: bool = False) -> list[dict[str, Any]]:
        """counts/1.0 bodies (without camera and model) of the interval closed by time t (an idle camera's
        empty intervals in between are not sent); `final` (shutdown, a new configuration): what waits is
        resolved (`finish`) and the interval so far goes out, ending at t."""
        if final:
            self.finish()
        iv = self.cfg.interval_s
        if iv <= 0 or not self.enabled or self._start is None or (t < self._start + iv and not final):
            return []
        self._expire_lost(t)
        start = self._start
        body = self.counts(start, t if final and t < start + iv else start + iv)
        self._iv = self._new_interval()
        self._start = self._floor(t)
        return [body]

    def counts(self, start: float, end: float) -> dict[str, Any]:
        i = self._iv
        zones = {}
        for z in self.zones:
            dw = i.dwell[z]
            zones[z] = {"current": self.occupancy[z], "max": i.occupancy_max[z], "entered": i.entered[z],
                        "dwell": {"count": len(dw), "mean_s": round(sum(dw) / len(dw), 2) if dw else None,
                                  "max_s": round(max(dw), 2) if dw else None}}
        return {"schema": "counts/1.0", "start": round(start, 3), "end": round(end, 3),
                "lines": {ln: {d: dict(c) for d, c in dirs.items()} for ln, dirs in i.crossings.items()},
                "zones": zones, "hits": {k: i.hits[k] for k in ("loitering", "overcrowding")}}

    def totals(self) -> dict[str, Any]:
        """Since start: crossings per line, direction and label; occupancy now; rule hits (metrics)."""
        return {"crossings": {ln: {d: dict(c) for d, c in dirs.items()} for ln, dirs in self.total.items()},
                "occupancy": dict(self.occupancy), "hits": dict(self.hit_totals)}
