"""Cameras per box: the whole suite against a bare decode + inference loop on the same RTSP streams, ramping N.

    .venv/bin/python bench/suite.py [--cameras 1 2 4 6 8] [--warmup 10] [--window 30] [--model yolox|null]
                                    [--video 720p|low] [--only suite|bare] [--json [PATH]]
                                    [--provider cpu|auto|tensorrt|cuda] [--hwdecode off|auto|cuda] [--trt-cache DIR]
    .venv/bin/python bench/suite.py --quick             # cameras 1 2 4, warm-up 6 s, window 12 s

--provider is ONNX Runtime's execution provider on both sides (the suite's Inference `provider`, the bare loop's
load_model); --hwdecode is Capture's `hwDecode` on every camera and the bare loop's PyAV decoding
(ggvision.capture.sources.hw_decoder, the same code path). Both are recorded per side and N: the provider the
session registered (inference-metrics `provider`, LoadedModel.provider) and the decoders the cameras got
(capture-metrics `cameras.<id>.decoder`, the bare readers' codec contexts), so a fallback shows. TensorRT engines
are cached in --trt-cache (default: one folder for the whole run), built once, not once per N.

Streams: ../shared/data/video/vtest.avi (1280x720 H.264, 25 fps) looped without re-encoding, served by ONE
GStreamer RTSP server process on loopback (tests/rtsp_server.py --paths N: /cam0 .. /cam{N-1}; every
connection starts the file from its beginning, in real time; `--servers K` spreads them over K processes).
`--video low` serves a clearly labelled 320x180 10 fps re-encode instead, so 32 cameras' decoding fits a small
box (the plumbing measurement).

Per N, in the same run, alternated:
- suite: `ggvision nucleus` with the real components (dev recipes = product code: Capture (RTSP, detect 5 fps,
  recording on; the N cameras only: the recipe's demo thermal sensor is left out, the bare loop has none),
  Inference (batch.maxSize 8), Filter (events policy), Uplink (S3 sink on moto's server on loopback), Health
  (on, Prometheus)) and the test agent as the observer. The agent subscribes to the events and the detections
  of the first `--sample` cameras (latency samples; until 2026-12-06 every camera's events, which on vtest with
  YOLOX kept the observer at 0.6 ms CPU per frame, 0.25-0.28 since, the runtime ~1.6-1.8 either way); analysed
  frames come from inference-metrics' `cameras` block (per camera, detections messages and the last one's frame
  timestamp), dropped frames from capture-, inference-metrics.
- bare: one process, no IPC: a PyAV reader thread per stream doing the worker's frame skipping
  (ggvision.capture.worker._Sampler, skip_frame NONREF) and BGR conversion into Inference's own batcher
  (ggvision.inference.batcher: the same latest-frame policy, burst hold and deadline), and one loop calling
  `LoadedModel.infer` on its batches of up to 8.

Figures per N: analysed frames / asked (per camera, 5 fps over the span of the frame timestamps it was analysed up
to at the window's start and end, so neither end cuts a batch in two: exact to the frame; a camera whose last
analysed frame is over LAG_S old at the end counts the frames since as asked), frame-to-detection and frame-to-event
latency (receive time - the frame's timestamp, both wall clock) p50/p95, CPU per camera per component (% of one
core) and the runtime's, RSS, dropped frames by place. Capacity = the largest N with >= 99 % analysed and event p95
<= 2 s (detection p95 where no event happened; the bare loop: detection p95). Plumbing = (suite CPU - bare CPU) per
analysed frame: the same decoding and the same model work cancel out (use --model null, a constant ONNX graph on a
32x32 input, so that both are small). The RTSP server, moto and the observer are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from bench.machine import cpu_model  # noqa: E402

SHARED = REPO.parent / "shared"
VIDEO = SHARED / "data" / "video" / "vtest.avi"
YOLOX = SHARED / "models" / "yolox_nano.onnx"
COCO = SHARED / "models" / "coco_classes.txt"
SERVER = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
AGENT = "com.ggvision.test.Agent"
DETECT_FPS = 5.0
LAG_S = 2.0  # a camera's last analysed frame older than this at the window's end: the frames since count as asked
BATCH = 8
ROLES = {"ggvision.capture": "capture", "ggvision.inference": "inference", "ggvision.filter": "filter",
         "ggvision.uplink": "uplink", "ggvision.health": "health", "agent.py": "observer", "gglocal.cli": "runtime"}
PARTS = ("capture", "inference", "filter", "uplink", "health", "runtime")


# --------------------------------------------------------------------------- inputs


def prepare_video(tmp: Path, kind: str, loops: int) -> Path:
    src = VIDEO
    if kind == "low":  # labelled variant: 320x180, 10 fps, same GOP structure as a camera (B-frames)
        src = tmp / "vtest-320x180-10fps.mkv"
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(VIDEO), "-vf", "scale=320:180,fps=10", "-c:v",
                        "libx264", "-preset", "veryfast", "-g", "50", "-bf", "2", "-an", str(src)],
                       check=True, timeout=120)
    out = tmp / f"{kind}-x{loops}.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-fflags", "+genpts", "-stream_loop", str(loops - 1), "-i",
                    str(src), "-map", "0:v", "-c", "copy", str(out)], check=True, timeout=120)
    return out


def model_dir(tmp: Path, kind: str) -> Path:
    from ggvision.model.loader import write_model_dir

    if kind == "null":  # near-zero cost: letterbox to 32x32 and a constant output (no detections)
        from onnx_graphs import constant_model, model_manifest

        anchors = sum((32 // s) ** 2 for s in (8, 16, 32))
        graph = constant_model((-1, 3, 32, 32), {"output": np.zeros((anchors, 85), np.float32)})
        spec = {"name": "images", "shape": [-1, 3, 32, 32], "dtype": "float32", "layout": "NCHW", "color": "BGR",
                "resize": "letterbox", "pad_value": 114}
        labels = [ln.strip() for ln in COCO.read_text().splitlines() if ln.strip()]
        man = model_manifest("yolox", labels, spec, decoder={"strides": [8, 16, 32], "objectness": True})
        return write_model_dir(tmp / "null-model", graph, man)
    from inference import dynamic_batch  # bench/inference.py: YOLOX-Nano with a dynamic batch

    labels = [ln.strip() for ln in COCO.read_text().splitlines() if ln.strip()]
    man = {"schema": "model-manifest/1.0", "name": "yolox-nano", "version": "1.0.0", "family": "yolox",
           "task": "detection", "labels": labels,
           "input": {"name": "images", "shape": [-1, 3, 416, 416], "dtype": "float32", "layout": "NCHW",
                     "color": "BGR", "resize": "letterbox", "pad_value": 114},
           "thresholds": {"score": 0.3, "nms_iou": 0.45, "max_detections": 100},
           "decoder": {"strides": [8, 16, 32], "objectness": True}, "created_by": "bench/suite.py"}
    return write_model_dir(tmp / "yolox-dynamic", dynamic_batch(YOLOX), man)


class RtspServer:
    """tests/rtsp_server.py serving `video` on /cam0 .. /cam{paths-1}, one process."""

    def __init__(self, video: Path, paths: int) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--file", str(video), "--port", "0", "--paths",
                                      str(paths)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(x) for x in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        line = lines.get(timeout=30)
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server: {line}")
        self.port = int(line.split()[1])

    def url(self, k: int) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam{k}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class RtspServers:
    """N paths spread over `count` server processes (--servers): camera k is /cam{k // count} on server
    k % count, so each process serves ceil(N / count) streams."""

    def __init__(self, video: Path, paths: int, count: int = 1) -> None:
        count = max(1, min(count, paths))
        self.servers: list[RtspServer] = []
        try:
            for i in range(count):
                self.servers.append(RtspServer(video, len(range(i, paths, count))))
        except BaseException:
            self.stop()
            raise

    def url(self, k: int) -> str:
        return self.servers[k % len(self.servers)].url(k // len(self.servers))

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def place(pid: int, cpus: set[int]) -> None:
    """Every thread of `pid` and of its descendants on `cpus` (--model-cpu: what is not part of the edge box — the
    camera streams' server, moto, the test agent — kept off the model's CPU)."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return
    for p in procs:
        try:
            for t in p.threads():
                os.sched_setaffinity(t.id, cpus)
        except (psutil.Error, OSError):
            continue


# --------------------------------------------------------------------------- measuring


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def role_of(p: psutil.Process, root_pid: int) -> str:
    """The component a process belongs to: the nearest ancestor (itself included) whose command line names one."""
    q: psutil.Process | None = p
    while q is not None:
        try:
            cmd = " ".join(q.cmdline())
        except psutil.Error:
            return "other"
        for key, role in ROLES.items():
            if key in cmd:
                return role
        if q.pid == root_pid:
            return "runtime"
        q = q.parent()
    return "other"


def cpu_snapshot(root: psutil.Process) -> dict[int, tuple[str, float, int]]:
    """pid -> (role, user+system seconds, rss) for the runtime and every descendant."""
    out = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            out[p.pid] = (role_of(p, root.pid), t.user + t.system, p.memory_info().rss)
        except psutil.Error:
            continue
    return out


def thread_snapshot(root: psutil.Process) -> dict[tuple[int, int], tuple[str, str, float, float]]:
    """(pid, tid) -> (role, thread name (comm), user+system seconds, seconds runnable but waiting for a CPU (the
    run queue, /proc schedstat)) for the runtime and its descendants."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for p in [root, *root.children(recursive=True)]:
        try:
            role = role_of(p, root.pid)
            for task in Path(f"/proc/{p.pid}/task").iterdir():
                stat = (task / "stat").read_text()
                name = stat[stat.index("(") + 1 : stat.rindex(")")]
                f = stat[stat.rindex(")") + 2 :].split()
                waited = int((task / "schedstat").read_text().split()[1]) / 1e9
                out[(p.pid, int(task.name))] = (role, name, (int(f[11]) + int(f[12])) / tick, waited)
        except (psutil.Error, OSError, ValueError):
            continue
    return out


def thread_report(a: dict[tuple[int, int], tuple[str, str, float, float]],
                  b: dict[tuple[int, int], tuple[str, str, float, float]], frames: float) -> list[str]:
    """CPU ms per analysed frame by (role, thread name), largest first, and how long the thread waited for a CPU
    while runnable; each thread's own line."""
    rows = []
    n = max(frames, 1.0)
    for key, (role, name, t1, w1) in b.items():
        _, _, t0, w0 = a.get(key, (role, name, 0.0, 0.0))
        if t1 - t0 > 0:
            rows.append((1000 * (t1 - t0) / n, 1000 * (w1 - w0) / n, f"{role}:{name}:{key[1]}"))
    return [f"{ms:7.3f} ms/frame (waited for a CPU {w:6.3f})  {what}" for ms, w, what in sorted(rows, reverse=True)]


def cpu_delta(a: dict[int, tuple[str, float, int]], b: dict[int, tuple[str, float, int]]) -> tuple[
        dict[str, float], dict[str, int]]:
    cpu: dict[str, float] = {}
    rss: dict[str, int] = {}
    for pid, (role, t1, r) in b.items():
        t0 = a.get(pid, (role, t1, 0))[1] if pid in a else 0.0  # a process started in the window: all its time
        cpu[role] = cpu.get(role, 0.0) + max(0.0, t1 - t0)
        rss[role] = rss.get(role, 0) + r
    return cpu, rss


# --------------------------------------------------------------------------- bare loop


def bare(urls: list[str], model_path: Path, threads: int, warmup: float, window: float, provider: str = "cpu",
         hwdecode: str = "off", trt_cache: Path | None = None, model_cpu: int | None = None) -> dict[str, Any]:
    """PyAV decode with the worker's frame skipping + LoadedModel.infer batched, one process, no IPC (with
    `model_cpu`, the model loop on that CPU and the readers on the rest, as the suite's threads are placed)."""
    import av

    from ggvision.capture.sources import decoded_on_gpu, hw_decoder
    from ggvision.capture.worker import _Sampler
    from ggvision.inference.batcher import Batcher
    from ggvision.inference.worker import BatchSettings
    from ggvision.model.loader import load_model

    model = load_model(model_path, provider=provider, threads=threads, trt_cache_dir=trt_cache)
    decoders: dict[int, str] = {}
    settings = BatchSettings(max_size=BATCH)  # Inference's defaults: the same deadline and burst hold
    batcher = Batcher(hold_s=settings.burst_s)  # the same latest-frame policy as Inference's
    stop = threading.Event()
    decoded = [0] * len(urls)

    everywhere = set(os.sched_getaffinity(0))
    rest = everywhere - {model_cpu} if model_cpu is not None else everywhere

    def reader(k: int, url: str) -> None:
        os.sched_setaffinity(0, rest)  # this thread only (Linux)
        try:
            opened = time.time()
            with av.open(url, options={"rtsp_transport": "tcp"}, timeout=10, hwaccel=hw_decoder(hwdecode)) as c:
                st = c.streams.video[0]
                ctx = st.codec_context
                decoders[k] = "cuda" if ctx.is_hwaccel else "cpu"
                ctx.thread_count = 1
                ctx.thread_type = "SLICE"
                tb, epoch0, sampler, skip = st.time_base, None, _Sampler(DETECT_FPS), "DEFAULT"
                for packet in c.demux(st):
                    if stop.is_set() or packet.size == 0:
                        return
                    ts = packet.pts if packet.pts is not None else packet.dts
                    t = float(ts * tb) if ts is not None else None
                    if epoch0 is None:
                        epoch0 = opened - (t or 0.0)
                    want = "DEFAULT" if sampler.wants(t) else "NONREF"
                    if want != skip:
                        ctx.skip_frame = skip = want
                    for frame in ctx.decode(packet):
                        if decoded[k] == 0 and ctx.is_hwaccel and not decoded_on_gpu(frame):
                            decoders[k] = "cpu"  # FFmpeg's software fallback, as Capture reports it
                        decoded[k] += 1
                        ft = float(frame.pts * tb) if frame.pts is not None else (t or 0.0)
                        if not sampler.take(ft):
                            continue
                        batcher.offer(k, (epoch0 + ft, frame.to_ndarray(format="bgr24")))
        except Exception as e:  # noqa: BLE001 - a stream that fails shows as frames not analysed
            print(f"bare reader {k}: {e!r}", file=sys.stderr)

    ts_ = [threading.Thread(target=reader, args=(k, u), daemon=True) for k, u in enumerate(urls)]
    for t in ts_:
        t.start()
    lat: list[float] = []
    analysed = 0
    seen: dict[int, tuple[float, float | None]] = {}  # camera -> (frames analysed, the last one's timestamp)
    me = psutil.Process()
    if model_cpu is not None:
        os.sched_setaffinity(0, {model_cpu})  # the model loop (this thread) on its own CPU
    t_start = time.monotonic()
    t_win = t_start + warmup
    t_end = t_win + window
    cpu0 = None
    drop0 = 0
    loop0 = wait0 = 0.0
    seen0: dict[int, tuple[float, float | None]] = {}
    w0 = w1 = 0.0
    while True:
        now = time.monotonic()
        if cpu0 is None and now >= t_win:
            c = me.cpu_times()
            cpu0, drop0, loop0, wait0 = c.user + c.system, batcher.dropped, time.thread_time(), _runq_wait()
            seen0, w0 = dict(seen), time.time()
        if now >= t_end:
            break
        taken = batcher.take(settings.max_size, settings.deadline_s, timeout=0.1)
        if not taken:
            continue
        model.infer([p.item[1] for p in taken])
        done = time.time()
        for p in taken:
            seen[p.key] = (seen.get(p.key, (0, None))[0] + 1, p.item[0])
        if cpu0 is not None:
            analysed += len(taken)
            lat += [done - p.item[0] for p in taken]
    w1 = time.time()
    c = me.cpu_times()
    cpu = c.user + c.system - (cpu0 or 0.0)
    loop_cpu = time.thread_time() - loop0 if cpu0 is not None else 0.0
    loop_wait = _runq_wait() - wait0 if cpu0 is not None else 0.0
    os.sched_setaffinity(0, everywhere)
    stop.set()
    for t in ts_:
        t.join(15)
    provider_used = model.provider
    model.close()
    wall_ratio = analysed / (len(urls) * DETECT_FPS * window)
    analysed, asked = frame_counts(seen0, seen, list(range(len(urls))), w0, w1)
    return {"provider": provider_used, "decoders": _count(decoders.values()),
            "analysed": analysed, "asked": asked, "ratio": analysed / asked if asked else 0.0,
            "ratio_wall": wall_ratio, "det_p50": pct(lat, 0.5),
            "det_p95": pct(lat, 0.95), "cpu_s": cpu,
            "ms_per_frame": 1000 * cpu / analysed if analysed else None, "cpu": {"bare": cpu},
            "model_thread_ms": 1000 * loop_cpu / analysed if analysed else None,
            "model_thread_waited_ms": 1000 * loop_wait / analysed if analysed else None,
            "rss": {"bare": me.memory_info().rss},
            "dropped": {"replaced in the slot": batcher.dropped - drop0}}


def _runq_wait() -> float:
    """Seconds the calling thread has been runnable but waiting for a CPU (Linux schedstat; 0 where absent)."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return 0.0


def frame_counts(before: dict[Any, tuple[float, float | None]], after: dict[Any, tuple[float, float | None]],
                 cams: list[Any], start_t: float, end_t: float) -> tuple[float, float]:
    """(analysed, asked) over a window from each camera's (frames analysed so far, the last one's frame timestamp)
    at its start and end (wall-clock times start_t, end_t). Asked is the detect rate over the frame timestamps'
    span: a batch in flight at either end moves both figures alike, which a wall-clock span (N x 5 fps x window
    against a counter that steps by a batch) cannot do."""
    analysed = asked = 0.0
    for c in cams:
        n0, t0 = before.get(c, (0, None))
        n1, t1 = after.get(c, (n0, None))
        first = t0 if t0 is not None else start_t
        last = max(t1 if t1 is not None else first, end_t - LAG_S)  # a camera fallen behind or stopped misses those
        analysed += n1 - n0
        asked += DETECT_FPS * max(0.0, last - first)
    return analysed, asked


def _count(names: Any) -> dict[str, int]:
    """{"cpu": 3, "cuda": 1}: how many cameras got each decoder (None: not connected yet)."""
    out: dict[str, int] = {}
    for n in names:
        out[str(n)] = out.get(str(n), 0) + 1
    return out


# --------------------------------------------------------------------------- the suite


def suite(tmp: Path, urls: list[str], model_path: Path, threads: int, moto_url: str, warmup: float, window: float,
          sample: int, provider: str = "cpu", hwdecode: str = "off", trt_cache: Path | None = None,
          model_cpu: int | None = None) -> dict[str, Any]:
    from capture_dev import NAME as CAPTURE
    from capture_dev import capture_dev_recipe
    from filter_dev import NAME as FILTER
    from filter_dev import filter_dev_recipe
    from harness import Runtime
    from health_dev import NAME as HEALTH
    from health_dev import health_dev_recipe
    from inference_dev import NAME as INFERENCE
    from inference_dev import inference_dev_recipe
    from uplink_dev import NAME as UPLINK
    from uplink_dev import free_port, uplink_dev_recipe

    cams = [f"cam{k}" for k in range(len(urls))]
    # --model-cpu K: Inference's model threads on CPU K, every component's other threads on the other CPUs (the
    # components' `cpus` and Inference's `modelCpus`, docs/inference.md "CPUs"); the runtime is left alone
    pin: dict[str, Any] = {}
    model_pin: dict[str, Any] = {}
    if model_cpu is not None:
        rest = sorted(set(os.sched_getaffinity(0)) - {model_cpu})
        pin, model_pin = {"cpus": rest}, {"modelCpus": [model_cpu]}
    acl = {"aws.greengrass.ipc.pubsub": {f"{AGENT}:pubsub:1": {
        "operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["ggvision/v1/*"]}}}
    rt = Runtime(tmp, [AGENT], config={AGENT: {"accessControl": acl}})
    capture_dev_recipe(rt.recipes, cameras={c: {
        "source": {"type": "rtsp", "url": u, "transport": "tcp"}, "detectFps": DETECT_FPS, "hwDecode": hwdecode,
        "record": {"enabled": True, "segmentSeconds": 4, "retainS": 60, "dir": "segments"}}
        for c, u in zip(cams, urls, strict=True)}, sensors={}, metricsPeriodS=1, **pin)  # no demo thermal sensor
    inference_dev_recipe(rt.recipes, models={"detector": {"path": str(model_path), "cameras": ["*"]}},
                         provider=provider, threads=threads, metricsPeriodS=1, batch={"maxSize": BATCH},
                         **({"trtCacheDir": str(trt_cache)} if trt_cache else {}), **pin, **model_pin)
    filter_dev_recipe(rt.recipes, cameras={c: {"policy": "events"} for c in cams}, metricsPeriodS=5, **pin)
    uplink_dev_recipe(rt.recipes, iot={"enabled": False}, metricsPeriodS=5, sink={
        "type": "s3", "bucket": "ggv-suite", "region": "us-east-1", "endpointUrl": moto_url, "timeoutS": 5}, **pin)
    health_dev_recipe(rt.recipes, promPort=free_port(), promBind="127.0.0.1", periodS=5, summaryPeriodS=3600,
                      hungAfterS=600, inferenceComponent=INFERENCE, **pin)
    names = (CAPTURE, INFERENCE, FILTER, UPLINK, HEALTH)
    try:
        rt.start(wait_for={AGENT: ("RUNNING",)}, timeout=90)
        for n in names:
            rt.wait_state(n, ("RUNNING",), 90)
        a = rt.agent()
        for c in cams[:sample]:  # a sample, as for detections: the observer's own load is not the suite's
            a.call("subscribe", id=f"ev-{c}", topic=f"ggvision/v1/events/{c}")
        a.call("subscribe", id="inf", topic="ggvision/v1/metrics/inference")
        a.call("subscribe", id="cap", topic="ggvision/v1/metrics/capture")
        for c in cams[:sample]:
            a.call("subscribe", id=f"det-{c}", topic=f"ggvision/v1/detections/{c}")
        # a model served (a TensorRT engine may be built on a cold cache: minutes), then the warm-up in wall time
        deadline, seen = time.monotonic() + 600, 0
        while time.monotonic() < deadline:
            got = a.call("events", id="inf", count=seen + 1, timeout=2.0)
            if any(e.get("json", {}).get("frames") for e in got):
                break
            seen = len(got)
        time.sleep(warmup)  # the streams play in real time: a warm-up is wall time, there is nothing to await
        root = psutil.Process(rt.proc.pid)  # type: ignore[union-attr]
        if model_cpu is not None:  # the test agent is not part of the box
            for p in root.children(recursive=True):
                if role_of(p, root.pid) == "observer":
                    place(p.pid, set(os.sched_getaffinity(0)) - {model_cpu})
        inf_before = [e["json"] for e in a.call("events", id="inf", timeout=0.01) if "json" in e]
        cap_before = [e["json"] for e in a.call("events", id="cap", timeout=0.01) if "json" in e]
        # the agent keeps every event since its subscription: only those after these counts are the window's
        n0 = {sub: len(a.call("events", id=sub, timeout=0.01))
              for sub in (*(f"ev-{c}" for c in cams[:sample]), *(f"det-{c}" for c in cams[:sample]))}
        th0, snap0, t0 = thread_snapshot(root), cpu_snapshot(root), time.time()
        time.sleep(window)
        th1, snap1, t1 = thread_snapshot(root), cpu_snapshot(root), time.time()
        # the counters' span: from the last metrics message before the window to the last one in it
        inf = inf_before[-1:] + [e["json"] for e in a.call("events", id="inf", timeout=0.01) if "json" in e]
        cap = cap_before[-1:] + [e["json"] for e in a.call("events", id="cap", timeout=0.01) if "json" in e]
        evs = [e for c in cams[:sample] for e in a.call("events", id=f"ev-{c}", timeout=0.01)[n0[f"ev-{c}"]:]]
        det_lat: list[float] = []
        per_cam: dict[str, int] = {}
        for c in cams[:sample]:
            got = [e for e in a.call("events", id=f"det-{c}", timeout=0.01)[n0[f"det-{c}"]:] if "json" in e]
            det_lat += [e["rx"] - e["json"]["timestamp"] for e in got]
            per_cam[c] = len(got)
    finally:
        rt.cleanup()
    cpu, rss = cpu_delta(snap0, snap1)
    wall = t1 - t0
    prim = [m for m in inf if m.get("role", "primary") == "primary"]
    analysed = asked = dropped_inf = span = frames = 0.0
    if len(prim) >= 2:  # cumulative counters between two metrics messages
        span = prim[-1]["timestamp"] - prim[0]["timestamp"]
        frames = prim[-1]["frames"] - prim[0]["frames"]
        dropped_inf = prim[-1]["dropped_frames"] - prim[0]["dropped_frames"]

        def counts_of(m: dict[str, Any]) -> dict[Any, tuple[float, float | None]]:
            return {c: (v.get("detection_msgs", 0), v.get("last_frame_ts"))
                    for c, v in (m.get("cameras") or {}).items()}

        analysed, asked = frame_counts(counts_of(prim[0]), counts_of(prim[-1]), cams, prim[0]["timestamp"],
                                       prim[-1]["timestamp"])
    # of those, the frames Inference's ring follower passed over (a newer one in the ring at its look)
    follower = [(m.get("rings") or {}).get("skipped", 0) for m in inf if "rings" in m]
    passed_over = follower[-1] - follower[0] if len(follower) >= 2 else 0
    cap_drop = ring_drop = 0
    if len(cap) >= 2:
        for c in cams:
            a0, a1 = cap[0]["cameras"].get(c, {}), cap[-1]["cameras"].get(c, {})
            cap_drop += a1.get("dropped_frames", 0) - a0.get("dropped_frames", 0)
            ring_drop += (a1.get("ring") or {}).get("dropped", 0) - (a0.get("ring") or {}).get("dropped", 0)
    ev_lat = [e["rx"] - e["json"]["boxes"][-1][0] for e in evs
              if "json" in e and e["json"].get("kind") in ("new", "update") and e["json"].get("boxes")]
    counted = sum(v for k, v in cpu.items() if k in PARTS)
    threads = thread_report(th0, th1, frames * wall / span if span else 0.0)
    return {"provider": prim[-1].get("provider") if prim else None,
            "decoders": _count((cap[-1]["cameras"].get(c) or {}).get("decoder") for c in cams) if cap else {},
            "analysed": analysed, "asked": asked, "ratio": analysed / asked if asked else 0.0,
            "ratio_wall": frames / (len(urls) * DETECT_FPS * span) if span else 0.0,
            "det_p50": pct(det_lat, 0.5), "det_p95": pct(det_lat, 0.95), "ev_p50": pct(ev_lat, 0.5),
            "ev_p95": pct(ev_lat, 0.95), "events": len(ev_lat), "cpu_s": counted * window / wall,
            "ms_per_frame": 1000 * counted / (frames * wall / span) if frames and span else None,
            "cpu": {k: v * window / wall for k, v in cpu.items()}, "rss": rss, "sampled_per_cam": per_cam,
            "threads": threads,
            "dropped": {"capture (decode errors)": cap_drop, "ring (overwritten before read)": ring_drop,
                        "inference (latest-frame + ring)": dropped_inf},
            "passed_over": passed_over}


def ok(r: dict[str, Any]) -> bool:
    p95 = r.get("ev_p95") if r.get("ev_p95") is not None else r.get("det_p95")
    return r["ratio"] >= 0.99 and p95 is not None and p95 <= 2.0


# --------------------------------------------------------------------------- main


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "–" if x is None else format(x, spec)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4, 6, 8])
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds after start before the window")
    ap.add_argument("--window", type=float, default=30.0, help="measured seconds per run")
    ap.add_argument("--model", choices=["yolox", "null"], default="yolox")
    ap.add_argument("--video", choices=["720p", "low"], default="720p",
                    help="low: a 320x180 10 fps re-encode (labelled in the output), for many cameras on 2 cores")
    ap.add_argument("--servers", type=int, default=1,
                    help="RTSP server processes the N streams are spread over (default one, as in the tables)")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads, suite and bare alike")
    ap.add_argument("--sample", type=int, default=2, help="cameras whose detections the observer receives")
    ap.add_argument("--only", choices=["suite", "bare"], help="run one side only")
    ap.add_argument("--per-thread", action="store_true", help="print the suite's CPU per thread per analysed frame")
    ap.add_argument("--stop", action="store_true", help="stop the ramp after the first N that fails both sides")
    ap.add_argument("--quick", action="store_true", help="cameras 1 2 4, warm-up 6 s, window 12 s")
    ap.add_argument("--provider", choices=["cpu", "auto", "tensorrt", "cuda"], default="cpu",
                    help="ONNX Runtime execution provider, suite and bare alike")
    ap.add_argument("--model-cpu", type=int, default=None,
                    help="the model threads on this CPU, every other thread on the rest: the suite's through "
                         "Inference's modelCpus and the components' cpus (not the runtime), the bare loop's model "
                         "loop and readers alike; the RTSP servers, moto and the observer on the rest")
    ap.add_argument("--hwdecode", choices=["off", "auto", "cuda"], default="off",
                    help="Capture's hwDecode on every camera and the bare loop's decoding (NVDEC when cuda opens)")
    ap.add_argument("--trt-cache", type=Path, help="TensorRT engine cache folder (default: one for this run)")
    ap.add_argument("--json", nargs="?", const="-",
                    help="also write the results as JSON (to PATH, rewritten after each N, or stdout)")
    args = ap.parse_args()
    if args.quick:
        args.cameras, args.warmup, args.window = [1, 2, 4], 6.0, 12.0
    for p in (VIDEO, YOLOX, COCO, Path(SYSTEM_PYTHON)):
        if not p.exists():
            print(f"{p} not found: this benchmark needs ../shared and Debian's python3 with GstRtspServer",
                  file=sys.stderr)
            return 2
    from uplink_dev import MotoProcess, aws_test_env

    aws_test_env()
    tmp = Path(tempfile.mkdtemp(prefix="ggv-suite-bench-"))
    t_all = time.perf_counter()
    per_run = 60 + args.warmup + args.window
    loops = max(2, int(per_run / 13.6) + 2)
    video = prepare_video(tmp, args.video, loops)
    mdir = model_dir(tmp, args.model)
    moto = MotoProcess(tmp / "moto.log")
    moto.client().create_bucket(Bucket="ggv-suite")
    trt_cache = args.trt_cache or tmp / "trt-cache"
    rows: list[dict[str, Any]] = []
    try:
        for n in args.cameras:
            row: dict[str, Any] = {"n": n}
            for side in ("bare", "suite"):
                if args.only and side != args.only:
                    continue
                server = RtspServers(video, n, args.servers)
                if args.model_cpu is not None:  # the cameras and the cloud are not part of the box
                    for pid in [*(s.proc.pid for s in server.servers), moto.proc.pid]:
                        place(pid, set(os.sched_getaffinity(0)) - {args.model_cpu})
                try:
                    urls = [server.url(k) for k in range(n)]
                    if side == "bare":
                        row[side] = bare(urls, mdir, args.threads, args.warmup, args.window, args.provider,
                                         args.hwdecode, trt_cache, args.model_cpu)
                    else:
                        row[side] = suite(tmp / f"rt-{n}", urls, mdir, args.threads, moto.url, args.warmup,
                                          args.window, args.sample, args.provider, args.hwdecode, trt_cache,
                                          args.model_cpu)
                finally:
                    server.stop()
                r = row[side]
                print(f"N={n} {side} [{r['provider']}, decode {r['decoders']}]: "
                      f"analysed {r['analysed']:.0f}/{r['asked']:.0f} ({r['ratio']:.3f}), "
                      f"det p50/p95 {fmt(r['det_p50'])}/{fmt(r['det_p95'])} s"
                      + (f", event p50/p95 {fmt(r['ev_p50'])}/{fmt(r['ev_p95'])} s ({r['events']})"
                         if side == "suite" else "")
                      + f", CPU {100 * r['cpu_s'] / args.window:.0f}% "
                      f"({fmt(r['ms_per_frame'])} ms/frame"
                      + (f"; its model thread {fmt(r['model_thread_ms'])}, waited for a CPU "
                         f"{fmt(r['model_thread_waited_ms'])}" if r.get("model_thread_ms") else "")
                      + f"), dropped {r['dropped']}"
                      + (f" (of Inference's: {r['passed_over']} passed over by the ring follower)"
                         if r.get("passed_over") else ""),
                      flush=True)
                if args.per_thread and side == "suite":
                    print("\n".join(r["threads"][:25]))
            rows.append(row)
            if args.json and args.json != "-":  # a run cut short (a time budget: bench/gpu.py) keeps its rows
                write_json(rows, args, partial=True)
            if args.stop and all(not ok(row[s]) for s in ("bare", "suite") if s in row):
                break
    finally:
        moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(rows, args, time.perf_counter() - t_all)
    return 0


def report(rows: list[dict[str, Any]], args: argparse.Namespace, total: float) -> None:
    video = "vtest.avi 1280x720 25 fps" if args.video == "720p" else "LOW-RES VARIANT 320x180 10 fps"
    video += f", {args.servers} RTSP server processes" if args.servers > 1 else ", one RTSP server process"
    used = sorted({str(r[s].get("provider")) for r in rows for s in ("bare", "suite") if s in r})
    print(f"\n{cpu_model()} x{os.cpu_count()}, load {os.getloadavg()[0]:.1f}; model {args.model}, {video}, "
          f"detect {DETECT_FPS:g} fps, batch {BATCH}, {args.threads} ORT thread(s), window {args.window:g} s; "
          f"provider {args.provider} (used: {', '.join(used)}), hwdecode {args.hwdecode}"
          + (f"; model threads on CPU {args.model_cpu}, the other threads on the rest (--model-cpu)"
             if args.model_cpu is not None else ""))
    print("| N | bare analysed | suite analysed | det p50/p95 s (suite) | event p50/p95 s | suite CPU %/cam "
          "(cap/inf/fil/upl/hea/rt) | suite RSS MiB | bare ms CPU/frame | suite ms CPU/frame | plumbing ms/frame "
          "| suite dropped (cap/ring/inf) | provider, decoders (bare; suite) |")
    print("|" + " --- |" * 12)
    for row in rows:
        n, b, s = row["n"], row.get("bare"), row.get("suite")
        cells = [str(n), f"{b['ratio']:.3f}" + (" ✓" if ok(b) else " ✗") if b else "–"]
        if s:
            per = "/".join(f"{100 * s['cpu'].get(p, 0.0) / args.window / n:.1f}" for p in PARTS)
            bms = b["ms_per_frame"] if b else None
            sms = s["ms_per_frame"]
            d = list(s["dropped"].values())
            cells += [f"{s['ratio']:.3f}" + (" ✓" if ok(s) else " ✗"),
                      f"{fmt(s['det_p50'])}/{fmt(s['det_p95'])}", f"{fmt(s['ev_p50'])}/{fmt(s['ev_p95'])}",
                      per, f"{sum(v for k, v in s['rss'].items() if k in PARTS) / 2**20:.0f}", fmt(bms), fmt(sms),
                      fmt(sms - bms if bms is not None and sms is not None else None), "/".join(f"{x:.0f}" for x in d)]
        else:
            cells += ["–"] * 9
        cells.append("; ".join(f"{r['provider']}, {_decoders(r['decoders'])}" for r in (b, s) if r))
        print("| " + " | ".join(cells) + " |")
    cap_b = max([r["n"] for r in rows if "bare" in r and ok(r["bare"])], default=0)
    cap_s = max([r["n"] for r in rows if "suite" in r and ok(r["suite"])], default=0)
    print(f"\ncapacity: suite {cap_s}, bare {cap_b}, ratio {cap_s / cap_b if cap_b else float('nan'):.2f} "
          f"(of the N tried: {[r['n'] for r in rows]}); total {total:.0f} s")
    if args.json:
        write_json(rows, args)


def _decoders(counts: dict[str, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in sorted(counts.items())) or "–"


def write_json(rows: list[dict[str, Any]], args: argparse.Namespace, partial: bool = False) -> None:
    cap_b = max([r["n"] for r in rows if "bare" in r and ok(r["bare"])], default=0)
    cap_s = max([r["n"] for r in rows if "suite" in r and ok(r["suite"])], default=0)
    doc = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
                       "gpu": gpu_name()},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "rows": rows,
           "capacity": {"suite": cap_s, "bare": cap_b}, "partial": partial}
    text = json.dumps(doc, indent=2, default=str)
    if args.json == "-":
        print(text)
    else:
        tmp = Path(args.json + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.json)


def gpu_name() -> str | None:
    """The first NVIDIA GPU nvidia-smi names, or None (no driver, no GPU)."""
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else None


if __name__ == "__main__":
    raise SystemExit(main())
