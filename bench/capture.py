"""Capture CPU bench: CPU time per second of video for one camera, on a real H.264 file.

    .venv/bin/python bench/capture.py [--video PATH] [--passes 3] [--json [PATH]]

Scenarios (the video is read as fast as possible, realtime=False; decoding single-threaded unless noted):
- worker rows run the real CameraWorker on a file source, i.e. the exact code path of a camera
  (demux, skip_frame=NONREF for packets not due, convert/scale only due frames, optional recording);
- baseline rows are plain PyAV loops, to show what the worker's choices save.

CPU is this process's user+system time (psutil), all threads, divided by the seconds of video processed:
0.05 means one camera at the video's frame rate costs 5% of one core. Default video: ../shared/data/video/vtest.avi
(1280x720 H.264 High, 25 fps, B-frames, a keyframe every 5.12 s).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import av
import psutil
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ggvision.capture import CameraConfig, CameraWorker, SegmentRecorder  # noqa: E402

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "video" / "vtest.avi"


@dataclass
class Result:
    key: str
    title: str
    passes: int
    video_s: float  # per pass
    cpu_s: float  # per pass
    wall_s: float  # per pass
    decoded: int  # frames decoded per pass
    delivered: int  # frames converted/delivered per pass
    segment_bytes: int = 0

    @property
    def cpu_per_video_s(self) -> float:
        return self.cpu_s / self.video_s

    def row(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_per_video_s"] = round(self.cpu_per_video_s, 4)
        d["speed_x_realtime"] = round(self.video_s / self.wall_s, 1)
        return d


def cpu_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def video_seconds(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for p in c.demux(s) if p.size)
        return n / float(s.guessed_rate or s.average_rate)


def measure(fn: Callable[[], tuple[int, int, int]], passes: int) -> tuple[float, float, int, int, int]:
    fn()  # warm-up: imports, codec tables, page cache
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    totals = [0, 0, 0]
    for _ in range(passes):
        for i, v in enumerate(fn()):
            totals[i] += v
    cpu, wall = cpu_seconds() - cpu0, time.perf_counter() - wall0
    return cpu / passes, wall / passes, totals[0] // passes, totals[1] // passes, totals[2] // passes


# --------------------------------------------------------------------------- scenarios


def worker_pass(video: Path, **settings: Any) -> Callable[[], tuple[int, int, int]]:
    def run() -> tuple[int, int, int]:
        with tempfile.TemporaryDirectory() as tmp:
            extra = dict(settings)
            if "record" in extra:
                extra["record"] = {**extra["record"], "dir": tmp}
            cfg = CameraConfig.from_dict(
                "bench", {"source": {"type": "file", "path": str(video), "realtime": False}, **extra}
            )
            done = threading.Event()
            w = CameraWorker(
                cfg, on_frame=lambda f, t: None, on_status=lambda s: s.state in ("stopped", "failed") and done.set()
            )
            w.start()
            if not done.wait(300):
                raise RuntimeError("worker did not finish")
            w.join(10)
            st = w.stats()
            if w.status().state != "stopped":
                raise RuntimeError(f"worker ended {w.status()}")
            return st["frames_decoded"], st["frames_out"], st["segment_bytes"]

    return run


def pyav_pass(video: Path, convert_fps: float | None) -> Callable[[], tuple[int, int, int]]:
    """Naive loop: decode every frame; convert to BGR every frame (convert_fps None) or at convert_fps."""

    def run() -> tuple[int, int, int]:
        decoded = converted = 0
        next_t = 0.0
        with av.open(str(video)) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            for frame in c.decode(s):
                decoded += 1
                t = decoded / float(s.guessed_rate)
                if convert_fps is None or t >= next_t:
                    frame.to_ndarray(format="bgr24")
                    converted += 1
                    next_t = t + 1 / convert_fps if convert_fps else 0
        return decoded, converted, 0

    return run


def decode_only_pass(video: Path) -> Callable[[], tuple[int, int, int]]:
    def run() -> tuple[int, int, int]:
        with av.open(str(video)) as c:
            s = c.streams.video[0]
            s.codec_context.thread_count = 1
            return sum(1 for _ in c.decode(s)), 0, 0

    return run


def remux_pass(video: Path, segment_s: float) -> Callable[[], tuple[int, int, int]]:
    """Recording alone: demux and remux into MPEG-TS segments, nothing decoded."""

    def run() -> tuple[int, int, int]:
        with tempfile.TemporaryDirectory() as tmp, av.open(str(video)) as c:
            s = c.streams.video[0]
            rec = SegmentRecorder("bench", tmp, segment_s, s, on_segment=lambda info: None)
            for p in c.demux(s):
                rec.mux(p)
            rec.close()
            return 0, 0, rec.bytes_written

    return run


def scenarios(video: Path) -> list[tuple[str, str, Callable[[], tuple[int, int, int]]]]:
    return [
        ("worker_5fps", "worker: detect 5 fps, BGR 1280x720", worker_pass(video, detectFps=5)),
        (
            "worker_5fps_640",
            "worker: detect 5 fps, BGR 640x360 (maxWidth)",
            worker_pass(video, detectFps=5, maxWidth=640),
        ),
        (
            "worker_5fps_rec",
            "worker: detect 5 fps + recording 10 s segments",
            worker_pass(video, detectFps=5, record={"enabled": True, "segmentSeconds": 10}),
        ),
        (
            "worker_5fps_autothreads",
            "worker: detect 5 fps, decodeThreads 0 (auto)",
            worker_pass(video, detectFps=5, decodeThreads=0),
        ),
        ("worker_all", "worker: detect 25 fps (every frame), BGR 1280x720", worker_pass(video, detectFps=25)),
        ("naive_5fps", "baseline: decode all, convert 5 fps (no skip_frame)", pyav_pass(video, 5.0)),
        ("decode_all", "baseline: decode all frames, no conversion", decode_only_pass(video)),
        ("decode_convert_all", "baseline: decode + convert all frames", pyav_pass(video, None)),
        ("remux_only", "recording only: remux to MPEG-TS, no decoding", remux_pass(video, 10.0)),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--only", nargs="*", help="scenario keys")
    ap.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write JSON results (to stdout with no PATH)")
    args = ap.parse_args()
    if not args.video.is_file():
        sys.exit(f"video {args.video} not found (pass --video)")

    video_s = video_seconds(args.video)
    results: list[Result] = []
    console = Console(stderr=args.json == "-", width=None if sys.stdout.isatty() else 150)
    for key, title, fn in scenarios(args.video):
        if args.only and key not in args.only:
            continue
        console.print(f"[dim]{key}…[/dim]")
        cpu, wall, decoded, delivered, seg_bytes = measure(fn, args.passes)
        results.append(Result(key, title, args.passes, video_s, cpu, wall, decoded, delivered, seg_bytes))

    table = Table(title=f"Capture CPU per camera — {args.video.name}, {video_s:.2f} s of video, {args.passes} passes")
    for col in ("scenario", "decoded", "delivered", "CPU s / video s", "% of a core @ real time", "speed", "MB out"):
        table.add_column(col, justify="left" if col == "scenario" else "right")
    for r in results:
        table.add_row(
            r.title,
            str(r.decoded),
            str(r.delivered),
            f"{r.cpu_per_video_s:.4f}",
            f"{100 * r.cpu_per_video_s:.1f}%",
            f"{r.video_s / r.wall_s:.0f}×",
            f"{r.segment_bytes / 1e6:.2f}" if r.segment_bytes else "",
        )
    console.print(table)
    info = {
        "video": str(args.video),
        "video_s": video_s,
        "cpu": platform.processor() or platform.machine(),
        "cpus": psutil.cpu_count(),
        "pyav": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "results": [r.row() for r in results],
    }
    if args.json == "-":
        print(json.dumps(info, indent=2))
    elif args.json:
        Path(args.json).write_text(json.dumps(info, indent=2))


if __name__ == "__main__":
    main()
