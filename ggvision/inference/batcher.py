"""Cross-camera batching with a latest-frame policy that lets a burst through.

A newer frame of a camera replaces its pending one (the replaced frame is counted as dropped), so a model that
falls behind skips frames instead of queueing without bound, and works on the freshest picture — unless the
pending frame has waited less than `hold_s` when the next one comes: then the two came in a burst (a network or
decoder hiccup delivered them close together, or the ring follower found two new frames at one look), not
because the model is behind, and both are kept and analysed in order. A camera has at most MAX_PER_CAMERA frames
pending. With `hold_s` 0 it is the plain latest-frame policy.

`take` gathers up to `max_size` frames, or what is there when the oldest pending frame has waited `deadline_s`,
and serves cameras round-robin: each camera's oldest pending frame first, the cameras left out of a full batch
first in the next one; a camera's second frame joins a batch only where the first frames of all the cameras
pending left room.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

MAX_PER_CAMERA = 2  # a burst keeps one more frame; a longer one gives up the oldest


@dataclass
class Pending:
    key: Hashable  # the camera
    item: Any  # what the caller queued (a frame descriptor)
    arrived: float  # time.monotonic() when offered (its queue time starts here)
    since: float = 0.0  # since when the camera has had a pending frame (the batch deadline counts from here)


class Batcher:
    def __init__(self, hold_s: float = 0.0) -> None:
        self.hold_s = hold_s
        self._cond = threading.Condition()
        self._pending: dict[Hashable, list[Pending]] = {}  # per camera, oldest first
        self._frames = 0  # frames pending, all cameras
        self._order: deque[Hashable] = deque()  # round-robin order of every camera seen
        self._closed = False
        self._woken = False
        self._want = 1  # pending frames that complete the batch `take` is gathering (1: none being gathered)
        self.offered = 0
        self.dropped = 0  # replaced by a newer frame of the same camera before being taken
        self.held = 0  # frames kept next to a newer one (a burst)
        self.taken = 0

    def offer(self, key: Hashable, item: Any, now: float | None = None) -> list[Pending]:
        """Queue `item` as `key`'s newest frame; returns the pending frames it replaced (dropped), if any."""
        t = time.monotonic() if now is None else now
        p = Pending(key, item, t, t)
        with self._cond:
            self.offered += 1
            was_empty = not self._pending
            queue = self._pending.get(key)
            gone: list[Pending] = []
            if queue:
                p.since = queue[0].since
                # stale frames (the model is behind) go; a fresh one stays next to the new one, within the bound
                while queue and (t - queue[0].arrived >= self.hold_s or len(queue) >= MAX_PER_CAMERA):
                    gone.append(queue.pop(0))
                self.held += len(queue)
                queue.append(p)
            else:
                self._pending[key] = [p]
                if key not in self._order:
                    self._order.append(key)
            self.dropped += len(gone)
            self._frames += 1 - len(gone)
            # Wake the taker only when it has something to do: the first frame, or a full batch (before the
            # deadline it would only count and sleep again; a wake-up per frame cost more than the count).
            if was_empty or self._frames >= self._want:
                self._cond.notify()
        return gone

    def take(self, max_size: int, deadline_s: float, timeout: float | None = None) -> list[Pending]:
        """Block until frames are pending (or `timeout`: []), gather until `max_size` frames are pending or the
        oldest has waited `deadline_s`, then return up to `max_size` of them in round-robin order (each camera's
        oldest first; a camera's frames in the order they came)."""
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed or self._woken, timeout)
            self._woken = False
            if not self._pending:
                return []
            due = min(q[0].since for q in self._pending.values()) + deadline_s
            self._want = max_size
            try:
                while not self._closed and self._frames < max_size:
                    left = due - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                self._want = 1
            batch: list[Pending] = []
            served: list[Hashable] = []
            # first frames of every camera, then second ones where room is left: a camera's frames stay in order
            for rank in range(MAX_PER_CAMERA):
                for key in self._order:
                    queue = self._pending.get(key)
                    if queue is None or len(batch) == max_size:
                        continue
                    if rank == 0:
                        batch.append(queue.pop(0))
                        served.append(key)
                    elif queue:
                        batch.append(queue.pop(0))
                    if not queue:
                        del self._pending[key]
            for key in served:  # served cameras go to the back of the line
                self._order.remove(key)
                self._order.append(key)
            self._frames -= len(batch)
            self.taken += len(batch)
            return batch

    def forget(self, key: Hashable) -> list[Pending]:
        """Stop serving `key` (camera removed or moved to another model); returns its dropped pending frames."""
        with self._cond:
            gone = self._pending.pop(key, [])
            self.dropped += len(gone)
            self._frames -= len(gone)
            if key in self._order:
                self._order.remove(key)
            return gone

    @property
    def depth(self) -> int:
        """Cameras with a frame pending."""
        with self._cond:
            return len(self._pending)

    def wake(self) -> None:
        """Make a waiting `take` look again (e.g. a model was staged); it returns [] if nothing is pending."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
