"""Health's own cost: CPU and RSS of com.ggvision.Health collecting every 5 s under the local runtime.

    .venv/bin/python bench/health_cost.py [--seconds 60] [--cameras 4] [--period 5] [--json [PATH]]

Runs `ggvision nucleus` with the synthetic capture (N cameras, 1280x720 at 10 fps, decoded at 5 fps), the
Health dev component (the product recipe run from the development venv; Prometheus on a free port, scraped
every 15 s like a default Prometheus, the IoT Core summary every 60 s when mosquitto is installed), and
the Capture dev component. After a warm-up it reads the Health processes' CPU time and RSS (psutil) for
`--seconds`; CPU is user+system of the Health process tree divided by wall time (100% = one core).

A second part times one collection in-process (the same collectors, a fake IPC client) to show where
a tick's time goes.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import socket
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # the runtime harness and the dev recipes

from capture_dev import NAME as CAPTURE  # noqa: E402
from capture_dev import capture_dev_recipe  # noqa: E402
from harness import Runtime  # noqa: E402
from health_dev import NAME as HEALTH  # noqa: E402
from health_dev import health_dev_recipe  # noqa: E402

from ggvision.health.collectors import SOCKET_ENV  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_procs(rt: Runtime) -> list[psutil.Process]:
    sock, work = str(rt.root.resolve() / "ipc.socket"), rt.root.resolve() / "work" / HEALTH
    out = []
    for p in psutil.process_iter():
        try:
            if p.environ().get(SOCKET_ENV) == sock and Path(p.cwd()) == work:
                out.append(p)
        except psutil.Error:
            continue
    return out


def cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def rss(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def under_runtime(seconds: float, cameras: int, period: float, warmup: float) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="health-bench-"))
    iot = shutil.which("mosquitto") is not None or Path("/usr/sbin/mosquitto").exists()
    port = free_port()
    rt = Runtime(tmp, [], iot=iot)
    synth = {"source": {"type": "synthetic", "width": 1280, "height": 720, "fps": 10, "seed": 1}, "detectFps": 5}
    capture_dev_recipe(rt.recipes, cameras={f"cam-{i}": synth for i in range(cameras)})
    health_dev_recipe(rt.recipes, promPort=port, periodS=period)
    try:
        rt.start(wait_for={CAPTURE: ("RUNNING",), HEALTH: ("RUNNING",)})
        time.sleep(warmup)  # imports done, first collections, rings filled
        procs = health_procs(rt)
        c0, w0 = cpu_s(procs), time.monotonic()
        rss_samples, scrape_ms, next_scrape = [], [], w0
        while (now := time.monotonic()) < w0 + seconds:
            rss_samples.append(rss(procs))
            if now >= next_scrape:  # what a Prometheus server would do
                t = time.perf_counter()
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                scrape_ms.append((time.perf_counter() - t) * 1000)
                next_scrape += 15
            time.sleep(1.0)
        c1, w1 = cpu_s(procs), time.monotonic()
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        cam_fps = sum(1 for line in body.decode().splitlines() if line.startswith("ggvision_camera_decoded_fps{"))
        return {"cameras": cameras, "period_s": period, "seconds": round(w1 - w0, 1), "iot": iot,
                "health_processes": len(procs),
                "cpu_percent_of_one_core": round((c1 - c0) / (w1 - w0) * 100, 2),
                "rss_mib_min": round(min(rss_samples) / 2**20, 1), "rss_mib_max": round(max(rss_samples) / 2**20, 1),
                "scrape_ms_median": round(statistics.median(scrape_ms), 1), "exposition_bytes": len(body),
                "cameras_on_metrics": cam_fps,
                "machine_cpu_percent": psutil.cpu_percent(interval=None)}
    finally:
        rt.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def in_process(iterations: int) -> dict[str, Any]:
    """Time the parts of one collection with the real collectors (host, disk, processes) and a fake client."""
    from types import SimpleNamespace

    from ggvision.component import ComponentApp
    from ggvision.config.base import validator
    from ggvision.config.health import HealthConfig
    from ggvision.health.collectors import ProcessCollector
    from ggvision.health.component import HealthComponent
    from ggvision.health.exporter import HealthCollector, encode_summary, summary

    class Client:
        def list_components(self) -> Any:
            return SimpleNamespace(components=[SimpleNamespace(component_name=f"c{i}", version="1", state="RUNNING")
                                               for i in range(8)])

    procs = ProcessCollector("/nonexistent.socket", Path("/nonexistent"))  # scans every process, matches none
    comp = HealthComponent(ComponentApp("bench", validator(HealthConfig), client=Client()), HealthConfig(data_path="/"),
                           gpu=None, procs=procs)
    capture = {"schema": "capture-metrics/1.1", "cameras": {
        f"cam-{i}": {"status": "connected", "input_fps": 25.0, "decoded_fps": 5.0, "frames_published": 100,
                     "last_frame_age_s": 0.1} for i in range(32)}}
    comp.state.on_message("ggvision/v1/metrics/capture", capture)
    comp.state.on_message("ggvision/v1/metrics/inference", {
        "schema": "inference-metrics/1.1", "model": "m", "timestamp": time.time(),
        "cameras": {f"cam-{i}": {"detection_msgs": 1, "last_age_s": 0.1} for i in range(32)}})
    parts: dict[str, list[float]] = {"collect": [], "exposition": [], "summary": []}
    col = HealthCollector()
    for _ in range(iterations):
        t = time.perf_counter()
        c, _, _ = comp.collect()
        parts["collect"].append(time.perf_counter() - t)
        t = time.perf_counter()
        col.update(c)
        list(col.collect())
        parts["exposition"].append(time.perf_counter() - t)
        t = time.perf_counter()
        encode_summary(summary(c, "thing", 60))
        parts["summary"].append(time.perf_counter() - t)
    t = time.perf_counter()
    for _ in range(1000):  # Health reads no frame descriptor: a camera's frames come in Capture's metrics
        comp.state.on_message("ggvision/v1/metrics/capture", capture)
    per_message_us = (time.perf_counter() - t) / 1000 * 1e6
    comp.close()
    return {k: round(statistics.median(v) * 1000, 3) for k, v in parts.items()} | {
        "capture_metrics_32_cameras_us": round(per_message_us, 1), "processes_on_machine": len(psutil.pids())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--cameras", type=int, default=4)
    ap.add_argument("--period", type=float, default=5)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--json", nargs="?", const="-", metavar="PATH", help="write JSON results (to stdout with no PATH)")
    args = ap.parse_args()
    machine = {"cpus": psutil.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    out = {"machine": machine,
           "in_process": in_process(args.iterations),
           "under_runtime": under_runtime(args.seconds, args.cameras, args.period, args.warmup)}
    text = json.dumps(out, indent=1)
    if args.json and args.json != "-":
        Path(args.json).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
