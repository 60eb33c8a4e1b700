"""Inference's ring follower (ggvision/inference/rings.py) on real shared-memory rings written in real time: each
frame handed on once and soon after it is written, a few header looks per frame (no busy polling), a ring
re-created under the same name followed after its announcement, a camera no longer announced let go, and the
announcement's validation (ggvision/framebus/announce.py)."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

from ggvision.framebus import FrameDescriptor, FrameRing
from ggvision.framebus.announce import RingInfo, parse_rings, rings_message
from ggvision.inference.rings import COALESCE_S, LOOK_EARLY, LOOK_EVERY, RingFollower

FPS = 5.0


class Writer:
    """A camera writing into its ring at FPS, noting when each sequence was written (monotonic)."""

    def __init__(self, camera: str, shape: tuple[int, int, int] = (48, 64, 3)) -> None:
        self.ring = FrameRing.create(camera, slots=4, max_frame_bytes=int(np.prod(shape)))
        self.shape = shape
        self.written: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def info(self) -> RingInfo:
        return RingInfo(self.ring.name, self.ring.created, FPS)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        start = time.monotonic()
        while not self._stop.is_set():
            frame = np.full(self.shape, n % 256, np.uint8)
            desc = self.ring.write(frame, time.time())
            self.written[desc.sequence] = time.monotonic()
            n += 1
            self._stop.wait(max(0.0, start + n / FPS - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.ring.close()


class Offers:
    def __init__(self) -> None:
        self.got: list[tuple[float, FrameDescriptor]] = []

    def __call__(self, desc: FrameDescriptor) -> None:
        self.got.append((time.monotonic(), desc))


@pytest.fixture
def follower() -> Iterator[tuple[RingFollower, Offers]]:
    offers = Offers()
    f = RingFollower(offers)
    f.start()
    yield f, offers
    f.close()


def test_each_frame_once_soon_after_it_is_written_with_a_few_looks(follower: tuple[RingFollower, Offers]) -> None:
    f, offers = follower
    w = Writer("follow-a").start()
    try:
        f.announce("cap", {"follow-a": w.info()})
        time.sleep(4.2)
    finally:
        w.stop()
    seqs = [d.sequence for _, d in offers.got]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 18, seqs
    assert seqs[-1] - seqs[0] + 1 == len(seqs), seqs  # none skipped: each frame handed on once
    delays = [at - w.written[d.sequence] for at, d in offers.got[2:]]  # after the follower found the phase
    bound = LOOK_EVERY / FPS  # 10 ms at 5 fps for a frame that comes on time
    assert statistics.median(delays) <= bound, delays
    assert max(delays) <= bound + 0.03, delays  # plus the scheduler's jitter on a busy box
    assert f.looks <= 2 * len(seqs) + 10, (f.looks, len(seqs))  # about one header read per frame, no busy loop
    for _, d in offers.got:
        assert d.ring == w.ring.name and d.shape == (48, 64, 3) and d.slot == d.sequence % 4


def test_many_cameras_share_wake_ups_and_every_frame_is_still_handed_on_soon(
        follower: tuple[RingFollower, Offers]) -> None:
    """32 cameras at 5 fps (160 frames a second, more than 1/COALESCE_S): the thread looks at the cameras due
    together, so it wakes at most 1/COALESCE_S times a second, not about once per frame; no frame is skipped, and a
    look made late by the coalescing does not push the next one later (the delay stays bounded, not drifting)."""
    f, offers = follower
    writers = [Writer(f"follow-m{i}") for i in range(32)]
    for w in writers:
        w.start()
        time.sleep(0.2 / FPS / len(writers))  # spread the cameras' phases over a period, as on a site
    try:
        f.announce("cap", {f"follow-m{i}": w.info() for i, w in enumerate(writers)})
        time.sleep(1.0)  # the follower finds each camera's phase
        wakes, t0, n0 = f.wakes, time.monotonic(), len(offers.got)
        time.sleep(4.0)
        wakes, span, got = f.wakes - wakes, time.monotonic() - t0, offers.got[n0:]
    finally:
        for w in writers:
            w.stop()
    assert wakes / span <= 1 / COALESCE_S + 5, (wakes, span)  # about once per frame (160/s) without coalescing
    assert len(got) >= 32 * FPS * span * 0.9, (len(got), span)
    assert f.summary()["skipped"] == 0
    delays = [at - writers[int(d.camera.removeprefix("follow-m"))].written[d.sequence] for at, d in got]
    assert statistics.median(delays) <= COALESCE_S + LOOK_EVERY / FPS, statistics.median(delays)
    late = sorted(delays)[int(len(delays) * 0.95)]
    assert late <= 2 * COALESCE_S + LOOK_EVERY / FPS + 0.03, late  # no lateness piling up frame after frame


def test_an_early_frame_waits_at_most_the_first_look(follower: tuple[RingFollower, Offers]) -> None:
    f, offers = follower
    ring = FrameRing.create("follow-e", slots=4, max_frame_bytes=48 * 64 * 3)
    try:
        f.announce("cap", {"follow-e": RingInfo(ring.name, ring.created, FPS)})
        ring.write(np.zeros((48, 64, 3), np.uint8), time.time())
        wait = time.monotonic()
        while not offers.got and time.monotonic() - wait < 2:
            time.sleep(0.001)
        time.sleep(0.3 / FPS)  # the next frame comes 70 % of a period early
        ring.write(np.ones((48, 64, 3), np.uint8), time.time())
        written = time.monotonic()
        while len(offers.got) < 2 and time.monotonic() - written < 2:
            time.sleep(0.001)
        assert [d.sequence for _, d in offers.got] == [0, 1]
        assert offers.got[1][0] - written <= LOOK_EARLY / FPS + 0.03  # handed on at the first look at the latest
    finally:
        ring.close()


def test_a_ring_recreated_under_its_name_is_followed_after_the_announcement(
        follower: tuple[RingFollower, Offers]) -> None:
    f, offers = follower
    w = Writer("follow-b").start()
    f.announce("cap", {"follow-b": w.info()})
    time.sleep(1.0)
    w.stop()
    before = len(offers.got)
    assert before >= 3
    w2 = Writer("follow-b", shape=(96, 128, 3)).start()  # same process, same camera: the same ring name
    try:
        assert w2.ring.name == w.ring.name
        f.announce("cap", {"follow-b": w2.info()})
        time.sleep(1.0)
    finally:
        w2.stop()
    new = [d for _, d in offers.got[before:]]
    assert new and all(d.shape == (96, 128, 3) for d in new)
    assert new[0].sequence <= 1 and f.replaced == 1  # its numbering starts again: not mistaken for old frames


def test_a_stalled_camera_whose_ring_was_replaced_waits_for_the_announcement(
        follower: tuple[RingFollower, Offers]) -> None:
    """A stall makes the follower check the file under the ring's name (a stat, once a second) and let the old
    mapping go; a file of that name that the last announcement did not describe (another `created`) is not read."""
    f, offers = follower
    w = Writer("follow-s").start()
    f.announce("cap", {"follow-s": w.info()})
    time.sleep(0.8)
    w.stop()
    w2 = Writer("follow-s", shape=(96, 128, 3)).start()  # re-created, not announced yet
    try:
        time.sleep(2.5)  # the stall is noticed, the old ring let go; the new one is refused (created differs)
        assert not [d for _, d in offers.got if d.shape == (96, 128, 3)]
        f.announce("cap", {"follow-s": w2.info()})
        time.sleep(1.0)
        assert [d for _, d in offers.got if d.shape == (96, 128, 3)]
    finally:
        w2.stop()


def test_frames_passed_over_between_two_looks_are_counted_for_the_camera() -> None:
    offers, passed = Offers(), []
    f = RingFollower(offers, skipped=lambda camera, n: passed.append((camera, n)))
    f.start()
    w = Writer("follow-k").start()  # 5 fps, announced as 1 fps: the follower looks about once a second
    try:
        f.announce("cap", {"follow-k": RingInfo(w.ring.name, w.ring.created, 1.0)})
        time.sleep(3.0)
    finally:
        w.stop()
        f.close()
    seqs = [d.sequence for _, d in offers.got]
    assert len(seqs) >= 2 and sum(n for _, n in passed) == seqs[-1] - seqs[0] + 1 - len(seqs) > 0
    assert {c for c, _ in passed} == {"follow-k"} and f.summary()["skipped"] == sum(n for _, n in passed)


def test_a_camera_left_out_of_its_components_announcement_is_let_go(follower: tuple[RingFollower, Offers]) -> None:
    f, offers = follower
    a, b = Writer("follow-c").start(), Writer("follow-d").start()
    try:
        f.announce("cap", {"follow-c": a.info(), "follow-d": b.info()})
        f.announce("other", {})  # another component's set says nothing about these
        assert f.cameras() == {"follow-c", "follow-d"}
        f.announce("cap", {"follow-c": a.info()})
        assert f.cameras() == {"follow-c"}
        time.sleep(0.6)
        n = len([d for _, d in offers.got if d.camera == "follow-d"])
        time.sleep(0.6)
        assert len([d for _, d in offers.got if d.camera == "follow-d"]) == n
    finally:
        a.stop()
        b.stop()


def test_announcements_round_trip_and_a_bad_one_names_the_field() -> None:
    info = RingInfo("ggv-door-4711", 1795000000.25, 5.0)
    msg = rings_message("com.ggvision.Capture", {"door": info}, 1795000001.0)
    assert parse_rings(msg) == ("com.ggvision.Capture", {"door": info})
    assert parse_rings(b'{"schema": "frame-rings/1.3", "component": "c", "rings": {}, "new": 1}') == ("c", {})
    for bad, why in [
        ({**msg, "schema": "frame-rings/2.0"}, "field 'schema': expected frame-rings/1.x"),
        ({**msg, "component": ""}, "field 'component'"),
        ({**msg, "rings": []}, "field 'rings': expected an object"),
        ({**msg, "rings": {"door": {**info.to_dict(), "ring": "../etc/passwd"}}},
         "field 'rings.door.ring': '../etc/passwd' is not a frame ring name"),
        ({**msg, "rings": {"door": {**info.to_dict(), "fps": 0}}}, "field 'rings.door.fps'"),
        ({**msg, "rings": {"door": {**info.to_dict(), "created": "yesterday"}}}, "field 'rings.door.created'"),
        (b"not json", "not JSON"),
    ]:
        with pytest.raises(ValueError, match=None) as e:
            parse_rings(bad)
        assert why in str(e.value), (why, str(e.value))


def test_two_new_frames_at_one_look_are_both_handed_on_oldest_first() -> None:
    """A burst (frames written close together, e.g. a stream catching up) found at one look: the frame before the
    newest is handed on too while the ring holds it (the batcher keeps a burst); older ones count as passed over."""
    got = threading.Condition()
    offers: list[int] = []
    passed: list[int] = []

    def offer(desc: FrameDescriptor) -> None:
        with got:
            offers.append(desc.sequence)
            got.notify_all()

    f = RingFollower(offer, skipped=lambda camera, n: passed.append(n))
    ring = FrameRing.create("follow-burst", slots=8, max_frame_bytes=48 * 64 * 3)
    frame = np.zeros((48, 64, 3), np.uint8)
    try:
        ring.write(frame, time.time())
        f.announce("cap", {"follow-burst": RingInfo(ring.name, ring.created, FPS)})
        f.start()
        with got:
            assert got.wait_for(lambda: offers == [0], 5)
        with f._lock:  # no look while the burst is written: four frames at once
            for _ in range(4):
                ring.write(frame, time.time())
        with got:
            assert got.wait_for(lambda: offers[-1:] == [4], 5)
    finally:
        f.close()
        ring.close()
    assert offers == [0, 3, 4] and passed == [2]
    assert f.summary()["skipped"] == 2 and f.summary()["frames"] == 3


def test_ring_at_gives_a_frame_still_in_its_slot_and_none_once_overwritten() -> None:
    ring = FrameRing.create("ring-at", slots=2, max_frame_bytes=16)
    reader = FrameRing.attach(ring.name)
    try:
        ring.write(np.full((4, 4, 1), 0, np.uint8), 1000.0)
        assert reader.latest().sequence == 0
        for k in range(1, 4):
            ring.write(np.full((4, 4, 1), k, np.uint8), 1000.0 + k)
        assert reader.latest().sequence == 3 and reader.stats()["skipped"] == 2
        two = reader.at(2)
        assert two is not None and two.timestamp == 1002.0 and int(reader.view(two)[0, 0, 0]) == 2
        assert reader.unchanged(two) and reader.stats()["skipped"] == 1  # got after all
        assert reader.at(1) is None  # its slot holds frame 3 now
        assert reader.at(4) is None and reader.at(-1) is None  # not written yet; no such frame
    finally:
        reader.close()
        ring.close()
