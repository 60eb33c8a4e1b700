"""Cross-camera batching with a latest-frame policy.

Each camera has at most one pending frame: a newer frame replaces the pending one (the replaced frame is
counted as dropped), so a model that falls behind skips frames instead of queueing without bound, and works on
the freshest picture. `take` gathers up to `max_size` frames, or what is there when the oldest pending frame
has waited `deadline_s`, and serves cameras round-robin: the cameras left out of a full batch are first in the
next one, and a camera contributes at most one frame per batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class Pending:
    key: Hashable  # the camera
    item: Any  # what the caller queued (a frame descriptor)
    arrived: float  # time.monotonic() when offered (its queue time starts here)
    since: float = 0.0  # since when the camera has had a pending frame (the batch deadline counts from here)


class Batcher:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: dict[Hashable, Pending] = {}
        self._order: deque[Hashable] = deque()  # round-robin order of every camera seen
        self._closed = False
        self._woken = False
        self.offered = 0
        self.dropped = 0  # replaced by a newer frame of the same camera before being taken
        self.taken = 0

    def offer(self, key: Hashable, item: Any, now: float | None = None) -> Pending | None:
        """Queue `item` as `key`'s latest frame; returns the pending frame it replaced (dropped), if any."""
        t = time.monotonic() if now is None else now
        p = Pending(key, item, t, t)
        with self._cond:
            self.offered += 1
            old = self._pending.get(key)
            if old is not None:
                self.dropped += 1
                p.since = old.since
            elif key not in self._order:
                self._order.append(key)
            self._pending[key] = p
            self._cond.notify()
        return old

    def take(self, max_size: int, deadline_s: float, timeout: float | None = None) -> list[Pending]:
        """Block until frames are pending (or `timeout`: []), gather until `max_size` cameras are pending or the
        oldest has waited `deadline_s`, then return up to `max_size` of them in round-robin order."""
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, got {max_size}")
        with self._cond:
            self._cond.wait_for(lambda: self._pending or self._closed or self._woken, timeout)
            self._woken = False
            if not self._pending:
                return []
            due = min(p.since for p in self._pending.values()) + deadline_s
            while not self._closed and len(self._pending) < max_size:
                left = due - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch: list[Pending] = []
            for key in self._order:
                p = self._pending.pop(key, None)
                if p is not None:
                    batch.append(p)
                    if len(batch) == max_size:
                        break
            for p in batch:  # served cameras go to the back of the line
                self._order.remove(p.key)
                self._order.append(p.key)
            self.taken += len(batch)
            return batch

    def forget(self, key: Hashable) -> Pending | None:
        """Stop serving `key` (camera removed or moved to another model); returns its dropped pending frame."""
        with self._cond:
            p = self._pending.pop(key, None)
            if p is not None:
                self.dropped += 1
            if key in self._order:
                self._order.remove(key)
            return p

    @property
    def depth(self) -> int:
        """Cameras with a pending frame."""
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
