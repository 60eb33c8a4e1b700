"""Upload policies per camera and the per-camera bandwidth budget.

Policies (what is selected for upload):
- continuous: every segment (priority video; segments that cover an event go as clips), snapshots,
  event results and alerts;
- events: segments covering events ([start − preRollS, end + postRollS]) as clips — for every event or
  only those that raised an alert (clipsFor: all | alerts | none) — plus snapshots, results and alerts;
- metadata: event results and alerts only (no pixels leave the device).

Budget: a token bucket over the bytes selected (rate budgetKbps, depth burstS seconds of it). What is
dropped first when over budget: video, then clips, then snapshots — each class may only spend the bucket
down to its reserve (video 50 %, clips 20 %, snapshots 5 % of the depth), so under pressure the cheaper,
more valuable items still fit. Event results and alerts are never dropped by the budget (they are small
and they are the point); they are debited too (the bucket may go into debt), which pushes the pixels
out. An item bigger than the bucket allows is never selected: with a budget, segments longer than the
budget's burst cannot go.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from .messages import Segment

KINDS = ("alert", "result", "snapshot", "clip", "video")
PRIORITY = {"alert": "alerts", "result": "results", "snapshot": "clips", "clip": "clips", "video": "video"}
RESERVE = {"alert": None, "result": None, "snapshot": 0.05, "clip": 0.2, "video": 0.5}


class Budget:
    def __init__(self, kbps: float, burst_s: float) -> None:
        self.rate = kbps * 1000 / 8  # bytes per second; 0: unlimited
        self.depth = self.rate * burst_s
        self.tokens = self.depth
        self._t: float | None = None
        self.selected: Counter[str] = Counter()  # bytes by kind
        self.selected_items: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()  # bytes by kind
        self.dropped_items: Counter[str] = Counter()

    def _refill(self, now: float) -> None:
        if self._t is not None and now > self._t:
            self.tokens = min(self.depth, self.tokens + (now - self._t) * self.rate)
        self._t = now if self._t is None else max(self._t, now)

    def admit(self, kind: str, nbytes: int, now: float | None = None) -> bool:
        """Whether an item of `kind` and size fits now; if so it is debited and counted."""
        ok = True
        if self.rate > 0:
            self._refill(time.monotonic() if now is None else now)
            reserve = RESERVE[kind]
            ok = reserve is None or self.tokens - nbytes >= reserve * self.depth
            if ok:
                self.tokens -= nbytes
        if ok:
            self.selected[kind] += nbytes
            self.selected_items[kind] += 1
        else:
            self.dropped[kind] += nbytes
            self.dropped_items[kind] += 1
        return ok


class SegmentLog:
    """The camera's recent segments (for pre-roll look-back) and which went up already."""

    def __init__(self, keep_s: float = 900.0) -> None:
        self.keep_s = keep_s
        self.recent: deque[Segment] = deque()
        self.gaps: OrderedDict[float, Segment] = OrderedDict()  # recording gaps by start (Capture's `missing`)
        self.sent: OrderedDict[str, None] = OrderedDict()
        self.bytes_in = 0
        self.count = 0

    def add(self, seg: Segment) -> None:
        self.recent.append(seg)
        self.bytes_in += seg.size
        self.count += 1
        while self.recent and self.recent[0].end < seg.end - self.keep_s:
            self.recent.popleft()

    def covering(self, t0: float, t1: float) -> list[Segment]:
        return [s for s in self.recent if s.end > t0 and s.start < t1]

    def gap(self, seg: Segment) -> None:
        """A recording gap; told again with the same start as it grows (the latest end wins)."""
        key = round(seg.start, 3)
        old = self.gaps.get(key)
        if old is None or seg.end >= old.end:
            self.gaps[key] = seg
        while self.gaps and next(iter(self.gaps.values())).end < seg.end - self.keep_s:
            self.gaps.popitem(last=False)

    def gaps_covering(self, t0: float, t1: float) -> list[Segment]:
        return [g for g in self.gaps.values() if g.end >= t0 and g.start <= t1]

    def mark_sent(self, seg: Segment) -> bool:
        """True the first time a segment is marked."""
        if seg.path in self.sent:
            return False
        self.sent[seg.path] = None
        while len(self.sent) > 10_000:
            self.sent.popitem(last=False)
        return True


@dataclass
class Pending:
    camera: str
    kind: str
    size: int
    own_file: str | None  # a file the Filter wrote (deleted if the Uplink refuses it)
    events: tuple[str, ...] = ()  # media: the events it shows (told when the Uplink refuses it)


class Ledger:
    """Items handed to the Uplink, waiting for its ack (bounded: the oldest are forgotten)."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self.items: OrderedDict[str, Pending] = OrderedDict()
        self.persisted: Counter[str] = Counter()  # bytes by camera
        self.persisted_items: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()  # items by camera
        self.refusals: deque[str] = deque(maxlen=5)

    def add(self, item_id: str, p: Pending) -> None:
        self.items[item_id] = p
        while len(self.items) > self.limit:
            self.items.popitem(last=False)

    def ack(self, item_id: str, status: str, reason: str) -> Pending | None:
        p = self.items.pop(item_id, None)
        if p is None:
            return None
        if status == "persisted":
            self.persisted[p.camera] += p.size
            self.persisted_items[p.camera] += 1
        else:
            self.refused[p.camera] += 1
            self.refusals.append(f"{item_id}: {reason}"[:300])
        return p

    def waiting(self, cameras: Iterable[str]) -> dict[str, int]:
        c = Counter(p.camera for p in self.items.values())
        return {cam: c.get(cam, 0) for cam in cameras}
