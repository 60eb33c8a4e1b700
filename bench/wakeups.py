"""Inference's per-frame thread wake-ups at many cameras: the ring follower and the batcher's taker.

    .venv/bin/python bench/wakeups.py [--cameras 32] [--fps 5] [--seconds 15] [--json [PATH]]

Follower: another process writes N real `FrameRing`s (320x180 BGR) at `--fps` each, the cameras' phases spread at
random and each frame ±10 ms late or early; the real `RingFollower` here follows them. Two runs in the same
invocation: as shipped (wake-ups shared once the cameras bring more than 1/COALESCE_S frames a second) and the
baseline with COALESCE_S = 0 (a wake-up for every camera's predicted look, the behaviour before). Per run: the
follower thread's CPU per frame handed on (from /proc/self/task/<tid>/schedstat), wake-ups and header looks, and
the delay from a frame's write to its hand-on (p50/p95).

Batcher: frames of N cameras offered evenly at N × fps a second to the real `Batcher`, a thread taking batches of
8 with a 15 ms deadline (Inference's worker loop without the model); as shipped against a batcher that wakes its
taker at every offer (the behaviour before). Per run: the taker's CPU per frame taken.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ggvision.inference.rings as rings  # noqa: E402
from bench.machine import cpu_model  # noqa: E402
from ggvision.framebus import FrameRing  # noqa: E402
from ggvision.framebus.announce import RingInfo  # noqa: E402
from ggvision.inference.batcher import Batcher  # noqa: E402


def _thread_cpu_s(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def _writer(n: int, fps: float, q: Any, stop: Any) -> None:
    rs = [FrameRing.create(f"wake-{i}", slots=4, max_frame_bytes=320 * 180 * 3) for i in range(n)]
    q.put([(r.name, r.created) for r in rs])
    frame = np.zeros((180, 320, 3), np.uint8)
    rnd = random.Random(1)
    due = [time.monotonic() + rnd.random() / fps for _ in rs]
    while not stop.is_set():
        i = min(range(n), key=due.__getitem__)
        wait = due[i] - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        rs[i].write(frame, time.time())
        due[i] += 1 / fps + rnd.uniform(-0.01, 0.01)
    for r in rs:
        r.close()


def follower_run(n: int, fps: float, seconds: float, coalesce: bool) -> dict[str, Any]:
    saved = rings.COALESCE_S
    if not coalesce:
        rings.COALESCE_S = 0.0  # read when the follower paces itself (at each announcement)
    q: Any = mp.Queue()
    stop = mp.Event()
    proc = mp.Process(target=_writer, args=(n, fps, q, stop), daemon=True)
    proc.start()
    got: list[tuple[float, float]] = []
    f = rings.RingFollower(lambda d: got.append((time.time(), d.timestamp)))
    try:
        names = q.get(timeout=30)
        f.start()
        f.announce("bench", {f"wake-{i}": RingInfo(name, created, fps) for i, (name, created) in enumerate(names)})
        time.sleep(3)  # the follower finds the cameras' phases
        tid = f._thread.native_id
        assert tid is not None
        c0, n0, w0, l0 = _thread_cpu_s(tid), len(got), f.wakes, f.looks
        time.sleep(seconds)
        c1, n1, w1, l1 = _thread_cpu_s(tid), len(got), f.wakes, f.looks
    finally:
        f.close()
        stop.set()
        proc.join(10)
        rings.COALESCE_S = saved
    frames = n1 - n0
    delays = sorted(at - ts for at, ts in got[n0:n1])
    return {"coalesce": coalesce, "frames": frames, "of_asked": frames / (n * fps * seconds),
            "us_per_frame": (c1 - c0) / frames * 1e6, "wakes_per_s": (w1 - w0) / seconds,
            "looks_per_frame": (l1 - l0) / frames, "skipped": f.skipped_frames,
            "delay_p50_ms": delays[len(delays) // 2] * 1e3, "delay_p95_ms": delays[int(len(delays) * 0.95)] * 1e3}


class _EveryOffer(Batcher):
    """The batcher before: its taker woken at every frame offered."""

    def offer(self, key: Any, item: Any, now: float | None = None) -> list[Any]:
        gone = super().offer(key, item, now)
        with self._cond:
            self._cond.notify()
        return gone


def batcher_run(n: int, fps: float, seconds: float, shipped: bool) -> dict[str, Any]:
    b = Batcher(hold_s=0.1) if shipped else _EveryOffer(hold_s=0.1)
    stop = threading.Event()
    taken = [0]
    tid: list[int] = []

    def taker() -> None:
        tid.append(threading.get_native_id())
        while not stop.is_set():
            taken[0] += len(b.take(8, 0.015, timeout=0.1))

    t = threading.Thread(target=taker, daemon=True)
    t.start()
    while not tid:
        time.sleep(0.001)
    c0, t0, i = _thread_cpu_s(tid[0]), time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        b.offer(i % n, i)
        i += 1
        time.sleep(max(0.0, t0 + i / (n * fps) - time.monotonic()))
    c1 = _thread_cpu_s(tid[0])
    stop.set()
    b.close()
    t.join(5)
    return {"shipped": shipped, "frames": taken[0], "us_per_frame": (c1 - c0) / max(1, taken[0]) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cameras", type=int, default=32)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--json", nargs="?", const="-", default=None)
    a = ap.parse_args()
    fol = [follower_run(a.cameras, a.fps, a.seconds, c) for c in (False, True)]
    bat = [batcher_run(a.cameras, a.fps, min(a.seconds, 8.0), s) for s in (False, True)]
    print(f"{cpu_model()} x{os.cpu_count()}, Python {platform.python_version()}, "
          f"{a.cameras} cameras x {a.fps:g} fps, {a.seconds:g} s")
    print("| ring follower | frames (of asked) | thread CPU us/frame | wake-ups/s | looks/frame | skipped | "
          "write -> hand-on p50/p95 ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in fol:
        name = "wake-ups shared (shipped)" if r["coalesce"] else "a wake-up per look (baseline)"
        print(f"| {name} | {r['frames']} ({r['of_asked']:.3f}) | {r['us_per_frame']:.0f} | {r['wakes_per_s']:.0f} | "
              f"{r['looks_per_frame']:.2f} | {r['skipped']} | {r['delay_p50_ms']:.1f}/{r['delay_p95_ms']:.1f} |")
    print(f"ratio thread CPU shipped / baseline: {fol[1]['us_per_frame'] / fol[0]['us_per_frame']:.2f}")
    print("| batcher taker | frames | taker CPU us/frame |")
    print("| --- | --- | --- |")
    for r in bat:
        name = "woken for a first frame or a full batch (shipped)" if r["shipped"] else "woken at every offer"
        print(f"| {name} | {r['frames']} | {r['us_per_frame']:.1f} |")
    print(f"ratio taker CPU shipped / baseline: {bat[1]['us_per_frame'] / bat[0]['us_per_frame']:.2f}")
    if a.json is not None:
        out = json.dumps({"args": vars(a), "follower": fol, "batcher": bat}, indent=1)
        if a.json == "-":
            print(out)
        else:
            Path(a.json).write_text(out)


if __name__ == "__main__":
    main()
