"""Following the cameras' frame rings directly: Capture announces each camera's ring (frame-rings/1.0) and one
thread here looks at each ring's newest frame when the next one is due, instead of a frame/1.0 descriptor per frame
travelling Capture -> runtime -> Inference over IPC.

Per look, one ring costs one `FrameRing.latest()`: the `written` word, then the newest slot's generation and
fields under the seqlock check (ring.py), never the pixels. A new sequence becomes an ordinary FrameDescriptor
handed to `offer` (the workers read the pixels as for a published descriptor: view + unchanged). The thread
sleeps until the earliest ring is due: a camera's next frame is expected one detect period (1/fps) after the last
one was seen; looking starts at LOOK_EARLY of the period after it and repeats every LOOK_EVERY of the period
until the frame is there. So a frame that comes on time is seen at most LOOK_EVERY of a period late (10 ms at
5 fps), one that comes early by more than that at most LOOK_EARLY of a period late; a camera whose frames stop
is looked at once per second. Between two looks the camera's newest frame wins (a latest-frame consumer: the
batcher would have replaced the older one anyway); a frame skipped so is counted in the ring's `skipped`.

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
from dataclasses import dataclass, field

from ..framebus import FrameDescriptor, FrameRing
from ..framebus.announce import RingInfo

log = logging.getLogger("ggvision.inference")

LOOK_EARLY = 0.8  # first look at this share of a period after the last frame was seen
LOOK_EVERY = 0.05  # then every this share of a period until the next frame is there
MIN_LOOK_S = 0.002  # never closer together than this (a camera at a very high rate)
STALLED_S = 1.0  # a camera without a new frame this long: looked at once a second, and its ring checked
RETRY_ATTACH_S = 1.0


@dataclass
class Followed:
    info: RingInfo
    ring: FrameRing | None = None
    last: int = -1  # the newest sequence handed on
    seen_at: float = 0.0  # monotonic: when that frame was seen
    due: float = 0.0  # monotonic: when to look next
    stats: dict[str, int] = field(default_factory=dict)


class RingFollower:
    """One thread following every announced ring of the cameras `wanted` says yes to."""

    def __init__(self, offer: Callable[[FrameDescriptor], None],
                 wanted: Callable[[str], bool] = lambda camera: True) -> None:
        self._offer = offer
        self._wanted = wanted
        self._cams: dict[str, Followed] = {}
        self._component: dict[str, str] = {}  # camera -> the component that announced it
        self._cond = threading.Condition()
        self._stop = False
        self.followed_frames = 0  # frames handed on
        self.looks = 0  # ring headers looked at (the cost: a few per frame)
        self.replaced = 0
        self._thread = threading.Thread(target=self._run, name="inference-rings", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cameras(self) -> set[str]:
        """The cameras read from their rings now (their descriptors are not needed)."""
        with self._cond:
            return set(self._cams)

    def follows(self, camera: str) -> bool:
        return camera in self._cams  # a dict lookup: called for every descriptor that still arrives

    def announce(self, component: str, rings: dict[str, RingInfo]) -> None:
        """A validated frame-rings announcement: the whole set of `component`'s rings."""
        now = time.monotonic()
        with self._cond:
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
            self._cond.notify()

    def rewant(self) -> None:
        """The configuration changed what `wanted` says: let go of the cameras it no longer wants (the next
        announcement brings back those it wants again)."""
        with self._cond:
            for cam in [c for c in self._cams if not self._wanted(c)]:
                self._let_go(cam, "not read from frames topics")

    def _let_go(self, cam: str, why: str) -> None:
        f = self._cams.pop(cam, None)
        self._component.pop(cam, None)
        if f is not None:
            self._close(f)
            log.info("camera %s: no longer following ring %s (%s)", cam, f.info.ring, why)

    @staticmethod
    def _close(f: Followed) -> None:
        if f.ring is not None:
            f.ring.close()
            f.ring = None

    def stats(self) -> dict[str, dict[str, int]]:
        """Camera -> its ring reader's counters (skipped: frames newer ones replaced between two looks)."""
        with self._cond:
            return {cam: (f.ring.stats() if f.ring is not None else f.stats) for cam, f in self._cams.items()}

    # -- the thread --------------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    if self._stop:
                        return
                    now = time.monotonic()
                    due = min((f.due for f in self._cams.values()), default=now + 1.0)
                    if due > now:
                        self._cond.wait(due - now)
                        continue
                    ready = [(cam, f) for cam, f in self._cams.items() if f.due <= now]
                    found = [d for cam, f in ready if (d := self._look(cam, f, now)) is not None]
                for desc in found:  # outside the lock: offering takes the batcher's
                    self._offer(desc)
        except Exception:
            log.exception("following the frame rings stopped by an unexpected error")

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
            f.last, f.seen_at = desc.sequence, now
            f.due = now + max(MIN_LOOK_S, period * LOOK_EARLY)
            self.followed_frames += 1
            return desc
        quiet = now - f.seen_at
        if quiet >= max(STALLED_S, 2 * period):
            if f.ring.replaced() or not f.ring.writer_alive():  # re-attach on the next look
                f.stats = f.ring.stats()
                self._close(f)
                f.last = -1
            f.due = now + STALLED_S
        else:
            f.due = now + max(MIN_LOOK_S, period * LOOK_EVERY)
        return None

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(5)
        with self._cond:
            for f in self._cams.values():
                self._close(f)
            self._cams.clear()
