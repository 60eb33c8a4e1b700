"""Frame handoff bench: 1080p BGR frames from a writer process (capture) to a reader process (inference).

    .venv/bin/python bench/framebus.py                   # about 20 s on 2 vCPUs
    .venv/bin/python bench/framebus.py --quick           # fewer frames, shorter throughput runs
    .venv/bin/python bench/framebus.py --json out.json   # also write machine-readable results
    .venv/bin/python bench/framebus.py --frames 300 --seconds 5

Modes (each a fresh writer and reader process, spawn start method):
- ring: FrameRing.write() into shared memory, then a frame/1.0 descriptor as JSON bytes through a
  multiprocessing Pipe; the reader validates it (FrameDescriptor.from_message), attaches once and
  FrameRing.read()s into a reused buffer.
- ring, new array: the same, but read() allocates a fresh array per frame (a reader that keeps frames).
- jpeg q90: baseline — cv2.imencode(".jpg", quality 90) in the writer, the bytes through the same Pipe,
  cv2.imdecode in the reader.
The Pipe stands in for Greengrass IPC (the real path adds a hop through the nucleus, which costs the
large JPEG messages more than the ~250-byte descriptors: the Pipe flatters the baseline).

Phases per mode:
- latency: ping-pong, one frame in flight; latency = reader done (frame in its memory) minus writer start
  (before write/encode), both time.perf_counter_ns (CLOCK_MONOTONIC, system-wide on Linux). CPU per frame
  is the process CPU time (user+sys, time.process_time) of writer and reader over this phase / frames.
- throughput: the writer sends as fast as it can for --seconds; frames/s = frames the reader got intact /
  (reader's last frame - writer's first send). A ring reader that falls behind loses frames (latest-frame
  semantics: counted as dropped); the JPEG writer is held back by the Pipe instead.
Source frames: 8 frames of ../shared/data/video/vtest.avi resized to 1920x1080 (JPEG cost depends on
content), or synthetic ones if the file is absent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import statistics
import struct
import sys
import time
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ggvision.framebus import FENCE_KIND, FrameDescriptor, FrameRing  # noqa: E402

VIDEO = REPO.parent / "shared" / "data" / "video" / "vtest.avi"
H, W, C = 1080, 1920, 3
N_SOURCE = 8
WARMUP = 10
JPEG_QUALITY = 90
MODES = {
    "ring": "ring + descriptor",
    "ring_alloc": "ring + descriptor, new array",
    "jpeg": f"JPEG q{JPEG_QUALITY} bytes (baseline)",
}
LAT, TPUT, END = b"L", b"T", b"E"
_T0 = struct.Struct("<q")

from machine import cpu_model  # noqa: E402 - bench/ is the script's folder


def source_frames() -> tuple[list[np.ndarray], str]:
    frames: list[np.ndarray] = []
    if VIDEO.exists():
        cap = cv2.VideoCapture(str(VIDEO))
        step = 40  # spread over the clip: different people, different JPEG sizes
        i = 0
        while len(frames) < N_SOURCE:
            ok, img = cap.read()
            if not ok:
                break
            if i % step == 0:
                frames.append(cv2.resize(img, (W, H), interpolation=cv2.INTER_LINEAR))
            i += 1
        cap.release()
        if frames:
            return frames, f"{VIDEO.name} resized to {W}x{H}"
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:H, 0:W]
    for k in range(N_SOURCE):
        img = np.stack([(xx + 7 * k) % 256, (yy + 3 * k) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        cv2.rectangle(img, (100 + 50 * k, 200), (600 + 50 * k, 900), (30, 200, 90), -1)
        img = cv2.add(img, rng.integers(0, 12, img.shape, dtype=np.uint8))
        frames.append(img)
    return frames, f"synthetic {W}x{H} (gradients, shapes, noise)"


# --- processes -----------------------------------------------------------------------------------------


def writer_main(mode: str, ctrl: Connection, chan: Connection, n_lat: int, seconds: float) -> None:
    frames, _ = source_frames()
    ring = FrameRing.create(f"bench/framebus {os.getpid()}", slots=8) if mode != "jpeg" else None
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    msg_bytes: list[int] = []

    def send(kind: bytes, i: int) -> None:
        frame = frames[i % len(frames)]
        t0 = time.perf_counter_ns()
        if ring is not None:
            desc = ring.write(frame, time.time())
            payload = kind + json.dumps({"t0": t0, "desc": desc.to_message()}, separators=(",", ":")).encode()
        else:
            ok, jpg = cv2.imencode(".jpg", frame, params)
            assert ok
            payload = kind + _T0.pack(t0) + jpg.tobytes()
        chan.send_bytes(payload)
        if len(msg_bytes) < 64:
            msg_bytes.append(len(payload) - 1)

    ctrl.send("ready")
    ctrl.recv()
    cpu0 = 0.0
    for i in range(WARMUP + n_lat):
        if i == WARMUP:
            cpu0 = time.process_time()
        send(LAT, i)
        chan.recv_bytes()  # ack: the reader has the frame
    cpu_lat = time.process_time() - cpu0

    cpu0 = time.process_time()
    t_start = time.perf_counter_ns()
    deadline = t_start + int(seconds * 1e9)
    sent = 0
    while time.perf_counter_ns() < deadline:
        send(TPUT, sent)
        sent += 1
    cpu_tp = time.process_time() - cpu0
    chan.send_bytes(END)
    chan.recv_bytes()  # the reader is done with the ring before we unlink it
    ctrl.send({"cpu_lat": cpu_lat, "cpu_tp": cpu_tp, "sent": sent, "t_start": t_start,
               "msg_bytes": statistics.median(msg_bytes),
               "ring_stats": ring.stats() if ring is not None else None})
    if ring is not None:
        ring.close()


def reader_main(mode: str, ctrl: Connection, chan: Connection) -> None:
    rings: dict[str, FrameRing] = {}
    out = np.empty((H, W, C), np.uint8)
    lat_ns: list[int] = []
    got_tp = lost_tp = skipped_tp = 0
    t_last = 0
    n_lat_seen = 0
    cpu_mark: float | None = None
    pending: bytes | None = None

    def take(payload: bytes) -> tuple[int, np.ndarray | None]:
        if mode == "jpeg":
            (t0,) = _T0.unpack_from(payload, 1)
            img = cv2.imdecode(np.frombuffer(payload, np.uint8, offset=1 + _T0.size), cv2.IMREAD_COLOR)
            return t0, img
        obj = json.loads(payload[1:])
        desc = FrameDescriptor.from_message(obj["desc"])
        ring = rings.get(desc.ring)
        if ring is None:
            ring = rings[desc.ring] = FrameRing.attach(desc.ring)
        return obj["t0"], ring.read(desc, out if mode == "ring" else None)

    ctrl.send("ready")
    payload = chan.recv_bytes()
    while payload[:1] == LAT:
        if n_lat_seen == WARMUP:
            cpu_mark = time.process_time()
        t0, img = take(payload)
        t1 = time.perf_counter_ns()
        assert img is not None and img.shape == (H, W, C)
        if n_lat_seen >= WARMUP:
            lat_ns.append(t1 - t0)
        n_lat_seen += 1
        chan.send_bytes(b"a")
        payload = chan.recv_bytes()  # blocking: idle time costs no CPU
    cpu_lat = time.process_time() - (cpu_mark or time.process_time())

    cpu_mark = time.process_time()
    while payload[:1] == TPUT:
        if mode != "jpeg":
            # Latest-frame policy of a ring reader: skip to the newest descriptor already queued.
            while chan.poll() and payload[:1] == TPUT:
                newer = chan.recv_bytes()
                if newer[:1] == TPUT:
                    skipped_tp += 1
                payload = newer if newer[:1] == TPUT else payload
                if newer[:1] != TPUT:
                    pending = newer
                    break
        _, img = take(payload)
        if img is None:
            lost_tp += 1
        else:
            got_tp += 1
            t_last = time.perf_counter_ns()
        if pending is not None:
            payload, pending = pending, None
        else:
            payload = chan.recv_bytes()
    cpu_tp = time.process_time() - cpu_mark
    stats = {name: r.stats() for name, r in rings.items()}
    for r in rings.values():
        r.close()
    chan.send_bytes(b"done")
    ctrl.send({"lat_ns": lat_ns, "cpu_lat": cpu_lat, "cpu_tp": cpu_tp, "got": got_tp, "lost": lost_tp,
               "skipped": skipped_tp, "t_last": t_last, "ring_stats": stats})


def run_mode(mode: str, n_lat: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    w_ctrl, w_ctrl_child = ctx.Pipe()
    r_ctrl, r_ctrl_child = ctx.Pipe()
    chan_w, chan_r = ctx.Pipe()  # duplex socketpair: frames/descriptors one way, acks back
    writer = ctx.Process(target=writer_main, args=(mode, w_ctrl_child, chan_w, n_lat, seconds))
    reader = ctx.Process(target=reader_main, args=(mode, r_ctrl_child, chan_r))
    reader.start()
    writer.start()
    assert w_ctrl.recv() == "ready" and r_ctrl.recv() == "ready"
    w_ctrl.send("go")
    w = w_ctrl.recv()
    r = r_ctrl.recv()
    writer.join(30)
    reader.join(30)
    lat_ms = sorted(x / 1e6 for x in r["lat_ns"])
    window_s = (r["t_last"] - w["t_start"]) / 1e9 if r["got"] else float("nan")
    n = len(lat_ms)
    return {
        "mode": mode,
        "title": MODES[mode],
        "msg_bytes": w["msg_bytes"],
        "latency_frames": n,
        "latency_p50_ms": statistics.median(lat_ms),
        "latency_p99_ms": lat_ms[min(n - 1, int(round(0.99 * (n - 1))))],
        "latency_mean_ms": statistics.fmean(lat_ms),
        "cpu_writer_ms_per_frame": w["cpu_lat"] / n * 1e3,
        "cpu_reader_ms_per_frame": r["cpu_lat"] / n * 1e3,
        "throughput_fps": r["got"] / window_s if r["got"] else 0.0,
        "throughput_sent": w["sent"],
        "throughput_received": r["got"],
        "throughput_dropped": w["sent"] - r["got"],
        "throughput_skipped_descriptors": r["skipped"],
        "throughput_overwritten": r["lost"],
        "throughput_cpu_ms_per_frame": (w["cpu_tp"] + r["cpu_tp"]) / max(r["got"], 1) * 1e3,
        "ring_stats_writer": w["ring_stats"],
        "ring_stats_reader": next(iter(r["ring_stats"].values()), None),
    }


def machine_facts() -> dict[str, Any]:
    model = cpu_model()
    jpeg_lib = next((ln.split(":", 1)[1].strip() for ln in cv2.getBuildInformation().splitlines()
                     if ln.strip().startswith("JPEG:")), "unknown")
    shm = shutil.disk_usage("/dev/shm") if os.path.isdir("/dev/shm") else None
    mem_total = None
    try:
        import psutil

        mem_total = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return {"cpu_count": os.cpu_count(), "cpu_model": model, "memory_gib": mem_total,
            "platform": platform.platform(), "machine": platform.machine(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__, "opencv_jpeg": jpeg_lib,
            "ggvision": _version("ggvision"), "fence": FENCE_KIND,
            "dev_shm_gib": round(shm.total / 2**30, 1) if shm else None,
            "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def render(results: list[dict[str, Any]], machine: dict[str, Any], source: str, console: Console) -> None:
    table = Table(title=f"ggvision frame bus — 1080p handoff, {machine['cpu_count']} CPU {machine['cpu_model']}, "
                        f"Python {machine['python']}, OpenCV {machine['opencv']}")
    for col in ("Mode", "Bytes/msg", "p50 ms", "p99 ms", "Writer CPU ms/f", "Reader CPU ms/f", "Frames/s",
                "Got/sent", "CPU ms/f @max"):
        table.add_column(col, justify="left" if col == "Mode" else "right")
    for r in results:
        table.add_row(r["title"], f"{r['msg_bytes']:,.0f}", f"{r['latency_p50_ms']:.2f}", f"{r['latency_p99_ms']:.2f}",
                      f"{r['cpu_writer_ms_per_frame']:.2f}", f"{r['cpu_reader_ms_per_frame']:.2f}",
                      f"{r['throughput_fps']:,.0f}", f"{r['throughput_received']:,}/{r['throughput_sent']:,}",
                      f"{r['throughput_cpu_ms_per_frame']:.2f}")
    console.print(table)
    by = {r["mode"]: r for r in results}
    if "ring" in by and "jpeg" in by:
        ring, jpeg = by["ring"], by["jpeg"]
        cpu_ring = ring["cpu_writer_ms_per_frame"] + ring["cpu_reader_ms_per_frame"]
        cpu_jpeg = jpeg["cpu_writer_ms_per_frame"] + jpeg["cpu_reader_ms_per_frame"]
        console.print(f"ring vs JPEG baseline: p50 latency {jpeg['latency_p50_ms'] / ring['latency_p50_ms']:.1f}× "
                      f"lower, throughput {ring['throughput_fps'] / max(jpeg['throughput_fps'], 1e-9):.1f}× higher, "
                      f"CPU per frame {cpu_jpeg / cpu_ring:.1f}× lower (and lossless).")
    console.print(f"Source: {source}. Latency: ping-pong, one frame in flight, {results[0]['latency_frames']} frames "
                  "after warm-up. CPU ms/f: process CPU (user+sys) per frame in that phase. Frames/s: writer flat "
                  "out; Got/sent < 1 for the ring means the reader fell behind and skipped overwritten frames "
                  "(latest-frame semantics); CPU ms/f @max: writer+reader CPU per frame received at that rate. "
                  f"Descriptor channel: multiprocessing Pipe (stand-in for IPC). Fence: {machine['fence']}.")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=200, help="latency frames per mode after warm-up (default 200)")
    ap.add_argument("--seconds", type=float, default=3.0, help="throughput run per mode (default 3 s)")
    ap.add_argument("--quick", action="store_true", help="60 frames and 1 s per mode")
    ap.add_argument("--only", nargs="+", choices=list(MODES), help="run only these modes")
    ap.add_argument("--json", type=Path, help="also write machine-readable results here")
    args = ap.parse_args(argv)
    n_lat, seconds = (60, 1.0) if args.quick else (args.frames, args.seconds)

    console = Console(width=None if sys.stdout.isatty() else 150)
    machine = machine_facts()
    _, source = source_frames()
    results = []
    for mode in args.only or list(MODES):
        console.print(f"[dim]running {MODES[mode]} …[/dim]")
        results.append(run_mode(mode, n_lat, seconds))
    render(results, machine, source, console)
    if args.json:
        args.json.write_text(json.dumps({"bench": "framebus", "machine": machine, "source": source,
                                         "config": {"latency_frames": n_lat, "throughput_seconds": seconds,
                                                    "warmup": WARMUP, "jpeg_quality": JPEG_QUALITY,
                                                    "shape": [H, W, C], "channel": "multiprocessing.Pipe"},
                                         "results": results}, indent=2))
        console.print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
