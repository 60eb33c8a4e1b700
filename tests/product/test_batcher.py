"""The inference batcher in-process: latest-frame policy, the burst hold, round-robin fairness across cameras, the
deadline."""

from __future__ import annotations

import threading
import time

import pytest

from ggvision.inference.batcher import Batcher


def keys(batch) -> list:
    return [p.key for p in batch]


def test_latest_frame_replaces_pending_and_counts_the_drop() -> None:
    b = Batcher()
    assert b.offer("door", 1) == []
    assert [p.item for p in b.offer("door", 2)] == [1]
    assert [p.item for p in b.offer("door", 3)] == [2]
    assert b.depth == 1
    batch = b.take(8, 0.0)
    assert [(p.key, p.item) for p in batch] == [("door", 3)]
    assert (b.offered, b.dropped, b.taken, b.depth) == (3, 2, 1, 0)


def test_round_robin_across_cameras_one_frame_each() -> None:
    b = Batcher()
    cams = [f"cam{i}" for i in range(10)]
    for c in cams:
        b.offer(c, 0)
    assert keys(b.take(4, 0.0)) == cams[0:4]
    for c in cams:  # cam0-3 get a new frame; cam4-9 replace theirs (dropped)
        b.offer(c, 1)
    assert b.dropped == 6
    # The cameras left out of the last batch come first; each camera once per batch.
    assert keys(b.take(4, 0.0)) == cams[4:8]
    assert keys(b.take(4, 0.0)) == [*cams[8:10], *cams[0:2]]
    assert keys(b.take(4, 0.0)) == cams[2:4]
    assert b.depth == 0


def test_a_flooding_camera_gets_one_slot_per_batch() -> None:
    b = Batcher()
    served = {"busy": 0, "a": 0, "b": 0}
    for _ in range(20):
        for _ in range(10):
            b.offer("busy", "x")
        b.offer("a", "x")
        b.offer("b", "x")
        first, second = b.take(2, 0.0), b.take(2, 0.0)  # the second batch: whoever was left out
        assert len(set(keys(first))) == len(first) == 2 and len(second) == 1
        for k in keys(first) + keys(second):
            served[k] += 1
    # Everyone is served every round, however many frames "busy" sends.
    assert served == {"busy": 20, "a": 20, "b": 20}
    assert b.dropped == 20 * 9


def test_full_batch_does_not_wait_for_the_deadline() -> None:
    b = Batcher()
    for i in range(4):
        b.offer(i, i)
    t0 = time.monotonic()
    assert len(b.take(4, 10.0)) == 4
    assert time.monotonic() - t0 < 1.0


def test_partial_batch_leaves_at_the_deadline() -> None:
    b = Batcher()
    b.offer("door", 1)
    t0 = time.monotonic()
    batch = b.take(8, 0.08)
    waited = time.monotonic() - t0
    assert keys(batch) == ["door"]
    assert 0.06 <= waited < 2.0


def test_deadline_counts_from_the_oldest_pending_frame() -> None:
    b = Batcher()
    b.offer("door", 1, now=time.monotonic() - 5)  # pending for 5 s already (the worker was busy)
    b.offer("door", 2)  # replaced: the camera still waits since its first pending frame
    t0 = time.monotonic()
    assert [p.item for p in b.take(8, 1.0)] == [2]
    assert time.monotonic() - t0 < 0.5


def test_frames_arriving_during_the_gather_join_the_batch() -> None:
    b = Batcher()
    b.offer("a", 1)
    threading.Timer(0.05, lambda: b.offer("b", 1)).start()
    batch = b.take(2, 5.0)  # returns as soon as the second camera arrives
    assert sorted(keys(batch)) == ["a", "b"]


def test_timeout_wake_and_close() -> None:
    b = Batcher()
    assert b.take(4, 0.0, timeout=0.01) == []
    threading.Timer(0.05, b.wake).start()
    t0 = time.monotonic()
    assert b.take(4, 0.0, timeout=10) == []
    assert time.monotonic() - t0 < 5
    b.close()
    assert b.take(4, 0.0) == []
    with pytest.raises(ValueError):
        b.take(0, 0.0)


def test_forget_drops_the_pending_frame_of_a_removed_camera() -> None:
    b = Batcher()
    b.offer("a", 1)
    b.offer("b", 1)
    assert [p.item for p in b.forget("a")] == [1]
    assert keys(b.take(8, 0.0)) == ["b"]
    assert b.dropped == 1


def test_bounded_under_a_fast_producer_and_every_frame_accounted_for() -> None:
    b = Batcher()
    cams = [f"c{i}" for i in range(6)]
    stop = threading.Event()
    taken: list = []

    def consume() -> None:
        while not stop.is_set() or b.depth:
            batch = b.take(4, 0.001, timeout=0.05)
            assert len({p.key for p in batch}) == len(batch) <= 4
            taken.extend(batch)
            time.sleep(0.002)  # a slow model

    t = threading.Thread(target=consume)
    t.start()
    for i in range(3000):
        b.offer(cams[i % len(cams)], i)
        assert b.depth <= len(cams)
    stop.set()
    t.join(10)
    assert b.offered == 3000
    assert len(taken) + b.dropped == b.offered  # each frame either processed once or counted as dropped
    assert len({p.item for p in taken}) == len(taken)
    assert b.dropped > 0


def test_a_burst_is_kept_and_a_model_behind_gets_the_latest_frame() -> None:
    """Two frames of a camera close together (a network hiccup, or the ring follower finding two at one look) are
    both analysed, in order; a frame that waited `hold_s` before the next came means the model is behind: replaced."""
    b = Batcher(hold_s=0.1)
    t = 100.0
    assert b.offer("door", 1, now=t) == []
    assert b.offer("door", 2, now=t + 0.01) == []  # a burst: kept
    assert b.depth == 1 and b.held == 1  # one camera waiting, with two frames
    assert [p.item for p in b.offer("door", 3, now=t + 0.02)] == [1]  # at most two: the oldest goes
    assert [(p.key, p.item) for p in b.take(8, 0.0)] == [("door", 2), ("door", 3)]
    assert b.offer("door", 4, now=t + 1.0) == []
    assert [p.item for p in b.offer("door", 5, now=t + 1.2)] == [4]  # waited 0.2 s: the model is behind
    assert [p.item for p in b.take(8, 0.0)] == [5]
    assert (b.offered, b.dropped, b.taken, b.depth) == (5, 2, 3, 0)


def test_second_frames_only_where_the_first_frames_of_all_cameras_left_room() -> None:
    b = Batcher(hold_s=1.0)
    t = time.monotonic()
    for i, c in enumerate(["a", "b", "c"]):
        b.offer(c, 1, now=t + i * 0.001)
    b.offer("a", 2, now=t + 0.01)
    b.offer("b", 2, now=t + 0.011)
    assert [(p.key, p.item) for p in b.take(4, 0.0)] == [("a", 1), ("b", 1), ("c", 1), ("a", 2)]
    # b's second frame is first in the next batch, with the frames that came meanwhile
    b.offer("c", 2, now=t + 0.02)
    assert [(p.key, p.item) for p in b.take(4, 0.0)] == [("b", 2), ("c", 2)]
    assert b.depth == 0 and b.dropped == 0
