"""Following the cameras' frame rings directly: Capture announces each camera's ring (frame-rings/1.0) and one
thread here looks at each ring's newest frame when the next one is due, instead of a frame/1.0 descriptor per frame
travelling Capture -> runtime -> Inference over IPC.

Per look, one ring costs one `FrameRing.latest()`: the `written` word, then the newest slot's generation and
fields under the seqlock check (ring.py), never the pixels. A new sequence becomes an ordinary FrameDescriptor
handed to `offer` (the workers read the pixels as for a published descriptor: view + unchanged).

When to look: the thread sleeps until the earliest camera is due. A camera's next frame is first looked for where
it is predicted: one detect period after the last look that missed (the frame came after it; plus
AFTER_MISS_S), or, when the first look found it, one period after that look less DRIFT_S (doubled while first looks
keep finding it), so the prediction keeps closing in on the frame's phase, and a steady camera costs about one and a
half looks per frame (1.4 measured with 4 cameras at 5 fps, 1.5 with ±20 ms jitter). The detect period, not one
measured from the looks: that one would feed the looks' own lag back into the prediction. A look that finds
nothing is followed by another LOOK_EVERY of the detect period later (10 ms at 5 fps), so a frame that comes later
than predicted is handed on at most that long after it was written (or COALESCE_S, below); one that comes earlier
than predicted waits for the predicted look (at most a period).

Each wake-up is the thread's main cost (~0.1 ms of CPU on a 2-vCPU VM, far more than a look's ~7 us), so when the
followed cameras together bring more than 1/COALESCE_S frames a second, the thread sleeps at least COALESCE_S and
then looks at every camera due by then: it wakes at most 50 times a second instead of about once per frame (32
cameras at 5 fps: 45 wakes a second instead of 205, 55 instead of 107 us of its CPU per frame, frames handed on
11.5/23.5 ms after they were written at p50/p95 instead of 6/15). Fewer cameras keep their looks where predicted
(a few wakes a second cost little; the latency would be all loss). A look that came late anchors the next
prediction at when it was due, not when it happened, so lateness does not pile up. A camera whose frames stop
is looked at once per second. When a look finds more than one new frame (they came in a burst, or late), the one
before the newest is handed on too while the ring still holds it, oldest first: the batcher keeps a burst when the
model is not behind (batcher.py); frames passed over beyond that count as skipped (the model's dropped frames).

A ring is re-attached when an announcement names another ring or a new `created` for the camera (a restarted
Capture, a camera restarted or grown out of its ring), and when a camera stalls and the file under the ring's
name changed or its writer died (`replaced()` is a stat: only on a stall). A camera missing from its Capture's
next announcement is let go.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..framebus import FrameDescriptor, FrameRing
from ..framebus.announce import RingInfo

log = logging.getLogger("ggvision.inference")

LOOK_EARLY = 0.9  # a camera's first frame: the next first looked for at this share of a period after it
LOOK_EVERY = 0.05  # after a look that found nothing, the next this share of a period later
AFTER_MISS_S = 0.002  # the next frame's first look: a period after the last look that missed, plus this
DRIFT_S = 0.001  # or, when the first look found the frame, a period after it less this, doubled each time in a row
# (the prediction closes in on a frame it found late within a few frames), at most LOOK_EVERY of a period
MIN_LOOK_S = 0.002  # never closer together than this (a camera at a very high rate)
MAX_SLEEP_S = 0.25  # an announcement's new camera is first looked at within this
STALLED_S = 1.0  # a camera without a new frame this long: looked at once a second, and its ring checked
RETRY_ATTACH_S = 1.0
COALESCE_S = 0.02  # above 1/this frames a second in all, the thread sleeps at least this long between wake-ups
BETWEEN = 1  # frames written between two looks handed on besides the newest (the batcher's burst: batcher.py)


@dataclass
class Followed:
    info: RingInfo
    ring: FrameRing | None = None
    last: int = -1  # the newest sequence handed on
    seen_at: float = 0.0  # monotonic: when that frame was seen
    due: float = 0.0  # monotonic: when to look next
    missed_at: float | None = None  # monotonic: the last look that found no new frame, in this frame's wait
    drift: float = DRIFT_S  # how much earlier than a period after a first look that found the frame to look next


class RingFollower:
    """One thread following every announced ring of the cameras `wanted` says yes to."""

    def __init__(self, offer: Callable[[FrameDescriptor], None],
                 wanted: Callable[[str], bool] = lambda camera: True,
                 skipped: Callable[[str, int], None] = lambda camera, n: None) -> None:
        self._offer = offer
        self._wanted = wanted
        self._skipped = skipped  # (camera, frames passed over between two looks): counted where the camera is served
        self._cams: dict[str, Followed] = {}
        self._component: dict[str, str] = {}  # camera -> the component that announced it
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.followed_frames = 0  # frames handed on
        self.skipped_frames = 0  # frames a newer one replaced between two looks
        self.looks = 0  # ring headers looked at (the cost: a few per frame)
        self.replaced = 0
        self.wakes = 0  # times the thread woke (bench/ and tests read it)
        self._min_sleep = 0.0  # COALESCE_S while the followed cameras bring more than 1/COALESCE_S frames a second
        self._thread = threading.Thread(target=self._run, name="inference-rings", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cameras(self) -> set[str]:
        """The cameras read from their rings now (their descriptors are not needed)."""
        with self._lock:
            return set(self._cams)

    def follows(self, camera: str) -> bool:
        return camera in self._cams  # a dict lookup: called for every descriptor that still arrives

    def announce(self, component: str, rings: dict[str, RingInfo]) -> None:
        """A validated frame-rings announcement: the whole set of `component`'s rings."""
        now = time.monotonic()
        with self._lock:
            for cam in [c for c, who in self._component.items() if who == component and c not in rings]:
                self._let_go(cam, "no longer announced")
            for cam, info in rings.items():
                if not self._wanted(cam):
                    if cam in self._cams:
                        self._let_go(cam, "not read from frames topics")
                    continue
                f = self._cams.get(cam)
                if f is not None and f.info.ring == info.ring and f.info.created == info.created:
                    f.info = info  # the rate may have changed
                    continue
                if f is not None:
                    self._close(f)
                    self.replaced += 1
                    log.info("camera %s: following its new ring %s", cam, info.ring)
                else:
                    log.info("camera %s: following ring %s (%.3g fps)", cam, info.ring, info.fps)
                self._cams[cam] = Followed(info, due=now)
                self._component[cam] = component
            self._pace()

    def _pace(self) -> None:
        rate = sum(f.info.fps for f in self._cams.values())
        self._min_sleep = COALESCE_S if rate * COALESCE_S > 1 else 0.0

    def rewant(self) -> None:
        """The configuration changed what `wanted` says: let go of the cameras it no longer wants (the next
        announcement brings back those it wants again)."""
        with self._lock:
            for cam in [c for c in self._cams if not self._wanted(c)]:
                self._let_go(cam, "not read from frames topics")

    def _let_go(self, cam: str, why: str) -> None:
        f = self._cams.pop(cam, None)
        self._component.pop(cam, None)
        if f is not None:
            self._close(f)
            self._pace()
            log.info("camera %s: no longer following ring %s (%s)", cam, f.info.ring, why)

    @staticmethod
    def _close(f: Followed) -> None:
        if f.ring is not None:
            f.ring.close()
            f.ring = None

    def summary(self) -> dict[str, int]:
        """inference-metrics' `rings` block: cameras followed now, frames handed on, header looks, rings replaced."""
        return {"cameras": len(self._cams), "frames": self.followed_frames, "skipped": self.skipped_frames,
                "looks": self.looks, "replaced": self.replaced}

    # -- the thread --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        # A plain sleep between looks, not a condition variable: each wake is the cost here (a few per frame), and a
        # new camera can wait MAX_SLEEP_S for its first look.
        try:
            while not self._stop.is_set():
                self.wakes += 1
                now = time.monotonic()
                found: list[tuple[list[FrameDescriptor], int]] = []
                due = now + MAX_SLEEP_S
                with self._lock:
                    for cam, f in self._cams.items():
                        if f.due <= now:
                            last = f.last
                            desc = self._look(cam, f, now)
                            if desc is not None:
                                found.append(self._with_between(f, last, desc))
                        due = min(due, f.due)
                for descs, passed in found:  # outside the lock: offering takes the batcher's
                    if passed > 0:
                        self.skipped_frames += passed
                        self._skipped(descs[-1].camera, passed)
                    for desc in descs:
                        self._offer(desc)
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(max(wait, self._min_sleep))
        except Exception:
            log.exception("following the frame rings stopped by an unexpected error")

    def _with_between(self, f: Followed, last: int, desc: FrameDescriptor) -> tuple[list[FrameDescriptor], int]:
        """The frames written since the last one handed on, oldest first, that the ring still holds (at most
        BETWEEN before the newest: the batcher keeps a burst, not a backlog), and how many were passed over."""
        if last < 0 or desc.sequence <= last + 1 or f.ring is None:
            return [desc], 0
        descs = [d for seq in range(max(last + 1, desc.sequence - BETWEEN), desc.sequence)
                 if (d := f.ring.at(seq)) is not None]
        self.followed_frames += len(descs)
        return [*descs, desc], desc.sequence - last - 1 - len(descs)

    def _look(self, cam: str, f: Followed, now: float) -> FrameDescriptor | None:
        period = 1.0 / f.info.fps
        if f.ring is None:
            try:
                f.ring = FrameRing.attach(f.info.ring)
            except (OSError, ValueError) as e:
                f.due = now + RETRY_ATTACH_S
                log.debug("camera %s: cannot attach ring %s yet: %s", cam, f.info.ring, e)
                return None
            if f.ring.created != f.info.created:  # an older file of that name (the announcement is newer)
                self._close(f)
                f.due = now + min(RETRY_ATTACH_S, period)
                return None
            f.seen_at = now
        self.looks += 1
        desc = f.ring.latest()
        if desc is not None and desc.sequence > f.last:
            first = f.last < 0
            f.last, f.seen_at = desc.sequence, now
            # The next frame's first look where it is predicted: a detect period after the last look that missed (the
            # frame came after it), or, when no look missed, a period after this one less a little, so the looks keep
            # finding the phase; about one look per frame on a steady camera, the next after a miss LOOK_EVERY later.
            # The nominal period, not one measured from these looks: a measured one would feed the looks' own lag back.
            if first:
                nxt = now + period * LOOK_EARLY
            elif f.missed_at is not None:
                nxt = f.missed_at + period + AFTER_MISS_S
                f.drift = DRIFT_S
            else:  # from when the look was due: one made late by COALESCE_S must not push the next one later
                nxt = min(now, f.due) + period - f.drift
                f.drift = min(2 * f.drift, max(DRIFT_S, period * LOOK_EVERY))
            f.due = max(nxt, now + MIN_LOOK_S)
            f.missed_at = None
            self.followed_frames += 1
            return desc
        f.missed_at = now
        quiet = now - f.seen_at
        if quiet >= max(STALLED_S, 2 * period):
            if f.ring.replaced() or not f.ring.writer_alive():  # re-attach on the next look
                self._close(f)
                f.last = -1
            f.due = now + STALLED_S
        else:
            f.due = now + max(MIN_LOOK_S, period * LOOK_EVERY)
        return None

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._lock:
            for f in self._cams.values():
                self._close(f)
            self._cams.clear()
