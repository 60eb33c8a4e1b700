"""A small IoU tracker with constant-velocity prediction, per label, plus stationary-object handling.

Why not norfair: see docs/filter.md (its 2.3.0 release pins numpy<2 and rich<14 and pulls filterpy →
matplotlib; on our detect rate and scenes this tracker measured as well). Matching is greedy by overlap
between each track's predicted box and the detections of the same label (the classic IoU tracker; at the
few-per-camera object counts here greedy equals optimal assignment almost always). At a low detect rate a
small fast object may not overlap its previous box, so the prediction moves the box by the track's
velocity first (the last box is tried as well, for sudden stops and turns), and a detection whose centre is
within half a box of either still matches.

Doubtful detections (ByteTrack's two-stage idea, with "doubtful" instead of "low score"): a detector's box
that is mostly covered (tracker.cover) by two other boxes of its label with higher scores is most likely one box over
a pair or group of people, not a person of its own (the demo detector draws one between two people walking
side by side; real ones do in crowds). Tracks take the other detections first; a doubtful one may continue a
track that found nothing else (the person behind two others), but never starts a track: a track born on
such a box followed the pair and counted its crossing a third time (docs/filter.md has the figures).

Stationary objects: a track whose box keeps overlapping its anchor box (IoU >= move_iou) for after_s is
stationary; it then lives through missed detections for stationary max_age_s instead of max_age_s. When a
stationary track ends its box is remembered for remember_s: a new track of the same label on that spot is
"suppressed" (it is the same parked car, flickering detections or an occlusion) until it moves away.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..config.filter import StationaryConfig, TrackerConfig
from .messages import Detection
from .rules import Box, iou


@dataclass
class Track:
    track_id: int
    label: str
    box: Box
    score: float
    first_t: float
    last_t: float
    hits: int = 1
    vx: float = 0.0  # box centre velocity, pixels per second (smoothed)
    vy: float = 0.0
    anchor: Box = (0.0, 0.0, 0.0, 0.0)
    anchor_t: float = 0.0
    stationary: bool = False
    suppressed: bool = False  # the spot of a remembered stationary object: makes no event until it moves
    detection: Detection | None = None  # this frame's detection (None when missed)
    data: dict = field(default_factory=dict)  # the event layer's per-track state

    def predicted(self, t: float) -> Box:
        dt = t - self.last_t
        dx, dy = self.vx * dt, self.vy * dt
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2, (b[1] + b[3]) / 2


def _similarity(pred: Box, det: Box, min_iou: float) -> float:
    o = iou(pred, det)
    if o >= min_iou:
        return o
    (px, py), (dx, dy) = _centre(pred), _centre(det)
    w = max(pred[2] - pred[0], det[2] - det[0], 1.0)
    h = max(pred[3] - pred[1], det[3] - det[1], 1.0)
    d = ((px - dx) / w) ** 2 + ((py - dy) / h) ** 2
    return 0.01 * (1 - 4 * d) if d < 0.25 else 0.0  # within half a box: a weak match, below any overlap


def _similarities(a: np.ndarray, b: np.ndarray, min_iou: float) -> np.ndarray:
    """_similarity of every row of `a` [T, 4] with every row of `b` [D, 4]: [T, D], the same arithmetic in the
    same order (float64), so the same values."""
    a0, a1, a2, a3 = (a[:, k, None] for k in range(4))
    b0, b1, b2, b3 = (b[None, :, k] for k in range(4))
    ix = np.minimum(a2, b2) - np.maximum(a0, b0)
    iy = np.minimum(a3, b3) - np.maximum(a1, b1)
    inter = ix * iy
    union = (a2 - a0) * (a3 - a1) + (b2 - b0) * (b3 - b1) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        o = np.where((ix > 0) & (iy > 0) & (union > 0), inter / np.where(union > 0, union, 1.0), 0.0)
    w = np.maximum(np.maximum(a2 - a0, b2 - b0), 1.0)
    h = np.maximum(np.maximum(a3 - a1, b3 - b1), 1.0)
    d = (((a0 + a2) / 2 - (b0 + b2) / 2) / w) ** 2 + (((a1 + a3) / 2 - (b1 + b3) / 2) / h) ** 2
    return np.where(o >= min_iou, o, np.where(d < 0.25, 0.01 * (1 - 4 * d), 0.0))


VECTOR_PAIRS = 32  # from this many (track, detection) pairs on, the matrix in numpy is cheaper than the loop


def _doubtful(dets: list[Detection], cover: float) -> list[bool]:
    """Per detection: is at least `cover` (tracker.cover) of its box covered by the union of two other
    detections of its label with higher scores? In a crowd the neighbours (overlapping, better, same label)
    and the rows that can reach `cover` at all are found in numpy, with the same float operations as the loop:
    the same answer."""
    n = len(dets)
    out = [False] * n
    if n < 3:
        return out
    if n * n < 6 * VECTOR_PAIRS:  # the loop is cheaper up to ~13 detections (numpy's fixed cost is ~30 us)
        near = {i: [j for j, e in enumerate(dets) if j != i and e.label == d.label and e.score > d.score
                    and min(d.box[2], e.box[2]) - max(d.box[0], e.box[0]) > 0
                    and min(d.box[3], e.box[3]) - max(d.box[1], e.box[1]) > 0] for i, d in enumerate(dets)}
    else:
        b = np.array([d.box for d in dets], np.float64)
        sc = np.array([d.score for d in dets], np.float64)
        ids: dict[str, int] = {}
        lab = np.array([ids.setdefault(d.label, len(ids)) for d in dets])
        iw = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        ih = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        ok = (iw > 0) & (ih > 0) & (sc[None, :] > sc[:, None]) & (lab[:, None] == lab[None, :])  # never i, i
        # two overlaps cover at most their sum: only rows whose two largest reach `cover` can be doubtful (the
        # same float sums as the exact test below, so no row the loop would mark is skipped)
        top2 = np.sort(np.where(ok, iw * ih, 0.0), axis=1)[:, -2:].sum(axis=1)
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        near = {i: np.flatnonzero(ok[i]).tolist() for i in np.flatnonzero(top2 >= cover * areas).tolist()}
    for i, js in near.items():
        if len(js) < 2:
            continue
        x0, y0, x1, y1 = dets[i].box
        area = (x1 - x0) * (y1 - y0)
        if area <= 0:
            continue
        parts = [(max(x0, e[0]), max(y0, e[1]), min(x1, e[2]), min(y1, e[3])) for e in (dets[j].box for j in js)]
        for a in range(len(parts)):
            p = parts[a]
            for q in parts[a + 1:]:
                both = max(0.0, min(p[2], q[2]) - max(p[0], q[0])) * max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
                if (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - both >= cover * area:
                    out[i] = True
                    break
            if out[i]:
                break
    return out


@dataclass
class Update:
    """What one frame did to the tracks."""

    started: list[Track]
    updated: list[Track]  # matched this frame (started ones excluded)
    ended: list[Track]


class IouTracker:
    def __init__(self, cfg: TrackerConfig, stationary: StationaryConfig) -> None:
        self.cfg, self.st = cfg, stationary
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        self._remembered: list[tuple[str, Box, float]] = []  # (label, box, until t)

    def update(self, dets: list[Detection], t: float) -> Update:
        ended = self.expire(t)
        for tr in self.tracks:
            tr.detection = None
        doubtful = _doubtful(dets, self.cfg.cover)
        used_t: set[int] = set()
        used_d: set[int] = set()
        updated = []
        for stage in (False, True):  # the sure detections first, then the doubtful ones for the tracks left
            ds = [di for di, x in enumerate(doubtful) if x is stage]
            ts = [ti for ti in range(len(self.tracks)) if ti not in used_t]
            if not ds or not ts:
                continue
            for _, a, b in self._pairs([self.tracks[ti] for ti in ts], [dets[di] for di in ds], t):
                ti, di = ts[a], ds[b]
                if ti in used_t or di in used_d:
                    continue
                used_t.add(ti)
                used_d.add(di)
                tr = self.tracks[ti]
                self._move(tr, dets[di], t)
                updated.append(tr)
        started = []
        for di, d in enumerate(dets):
            if di in used_d or doubtful[di]:
                continue
            tr = Track(next(self._ids), d.label, d.box, d.score, t, t, anchor=d.box, anchor_t=t, detection=d)
            tr.suppressed = tr.stationary = self._remembers(tr.label, tr.box, t)
            self.tracks.append(tr)
            started.append(tr)
        return Update(started, updated, ended)

    def _pairs(self, tracks: list[Track], dets: list[Detection], t: float) -> list[tuple[float, int, int]]:
        """(similarity > 0, track index, detection index) of same-label pairs, best first (ties: higher indices
        first). A crowd (vtest: ~35 people) made the pure-Python loop most of the Filter's CPU per frame."""
        if len(tracks) * len(dets) < VECTOR_PAIRS:
            pairs = []
            for ti, tr in enumerate(tracks):
                pred = tr.predicted(t)
                for di, d in enumerate(dets):
                    if d.label == tr.label:
                        # the last box too: a sudden stop or turn must not break the track
                        s = max(_similarity(pred, d.box, self.cfg.iou), _similarity(tr.box, d.box, self.cfg.iou))
                        if s > 0:
                            pairs.append((s, ti, di))
            pairs.sort(reverse=True)
            return pairs
        boxes = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
        preds = np.array([tr.predicted(t) for tr in tracks], np.float64).reshape(-1, 4)
        last = np.array([tr.box for tr in tracks], np.float64).reshape(-1, 4)
        sim = np.maximum(_similarities(preds, boxes, self.cfg.iou), _similarities(last, boxes, self.cfg.iou))
        labels = {lbl: k for k, lbl in enumerate({d.label for d in dets} | {tr.label for tr in tracks})}
        same = (np.array([labels[tr.label] for tr in tracks])[:, None]
                == np.array([labels[d.label] for d in dets])[None, :])
        ti, di = np.nonzero(same & (sim > 0))
        sv = sim[ti, di]
        order = np.lexsort((di, ti, sv))[::-1]
        return list(zip(sv[order].tolist(), ti[order].tolist(), di[order].tolist(), strict=True))

    def _move(self, tr: Track, d: Detection, t: float) -> None:
        dt = t - tr.last_t
        if dt > 0:
            (ox, oy), (nx, ny) = _centre(tr.box), _centre(d.box)
            a = 0.5 if tr.hits > 1 else 1.0
            tr.vx = (1 - a) * tr.vx + a * (nx - ox) / dt
            tr.vy = (1 - a) * tr.vy + a * (ny - oy) / dt
        tr.box, tr.score, tr.last_t, tr.detection = d.box, d.score, t, d
        tr.hits += 1
        if iou(tr.anchor, d.box) >= self.st.move_iou:
            if not tr.stationary and t - tr.anchor_t >= self.st.after_s:
                tr.stationary = True
        else:  # it moved: a new anchor, and a suppressed object that drives off becomes an event after all
            tr.anchor, tr.anchor_t = d.box, t
            tr.stationary = tr.suppressed = False
        if tr.stationary:
            tr.vx = tr.vy = 0.0

    def _remembers(self, label: str, box: Box, t: float) -> bool:
        self._remembered = [r for r in self._remembered if r[2] >= t]
        return any(lbl == label and iou(b, box) >= self.st.move_iou for lbl, b, _ in self._remembered)

    def expire(self, t: float) -> list[Track]:
        """End the tracks not seen for their max age at time t."""
        ended, kept = [], []
        for tr in self.tracks:
            age = self.st.max_age_s if tr.stationary else self.cfg.max_age_s
            (ended if t - tr.last_t > age else kept).append(tr)
        self.tracks = kept
        for tr in ended:
            if tr.stationary and self.st.remember_s > 0:
                self._remembered.append((tr.label, tr.anchor, tr.last_t + self.st.remember_s))
        return ended

    def end_all(self) -> list[Track]:
        ended, self.tracks = self.tracks, []
        return ended
