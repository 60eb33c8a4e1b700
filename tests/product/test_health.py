"""com.ggvision.Health: collectors against known load, fake NVML, watchdog rules, the summary's size limit,
the Prometheus exposition; then the component under the local runtime with the synthetic capture, a fake
inference that hangs, and the IoT Core stand-in."""

from __future__ import annotations

import base64
import datetime
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psutil
import pytest
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from harness import Runtime, wait_until
from health_dev import NAME as HEALTH
from health_dev import health_dev_recipe
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ggvision.component import ComponentApp
from ggvision.config.base import parse, validator
from ggvision.config.health import HealthConfig
from ggvision.contract.metrics import CLOUDWATCH
from ggvision.health.collectors import SOCKET_ENV, DiskCollector, DiskSample, HostSample, ProcessCollector
from ggvision.health.component import HealthComponent
from ggvision.health.exporter import IOT_MAX_BYTES, METRICS, Collected, HealthCollector, encode_summary, summary
from ggvision.health.gpu import NvmlGpuSource
from ggvision.health.state import AppState, Malformed, parse_capture, parse_inference
from ggvision.health.watchdog import Watchdogs

FAKE_INFERENCE = "com.ggvision.test.FakeInference"
CLOUDWATCH_COMPONENT = "aws.greengrass.Cloudwatch"
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
AGENT = "com.ggvision.test.Agent"
ALL_NAMES = {n + ("_total" if kind == "counter" else "") for n, (kind, _, _) in METRICS.items()}
SYNTH = {"source": {"type": "synthetic", "width": 320, "height": 240, "fps": 10, "seed": 1}, "detectFps": 5}
validate = validator(HealthConfig)  # what the component gives ComponentApp


def capture_msg(*cameras: str, status: str = "connected",
                frames: dict[str, tuple[int, float]] | None = None) -> dict[str, Any]:
    """capture-metrics/1.1; frames: camera -> (frames published, seconds since the last one)."""
    frames = frames or {}
    return {"schema": "capture-metrics/1.1", "component": "com.ggvision.Capture", "timestamp": 1795000000.0,
            "cameras": {c: {"status": status, "reason": "", "input_fps": 10.0, "decoded_fps": 5.0,
                            "frames_published": frames.get(c, (0, 0.0))[0],
                            "last_frame_age_s": frames[c][1] if c in frames else None, "decoder": "cpu"}
                        for c in cameras}}


def inference_msg(errors: int, runs: int, model: str = "yolox", timestamp: float = 1795000000.0,
                  detections: dict[str, tuple[int, float]] | None = None) -> dict[str, Any]:
    """inference-metrics/1.1; detections: camera -> (detections messages published, seconds since the last)."""
    return {"schema": "inference-metrics/1.1", "model": model, "version": "3", "provider": "CPUExecutionProvider",
            "latency_ms": {"p50": 10.0, "p95": 20.0, "p99": 40.0}, "batches_per_s": 4.5, "load_ms": 800.0,
            "errors": errors, "runs": runs, "score_mean": 0.61, "timestamp": timestamp,
            "cameras": {c: {"detection_msgs": n, "last_age_s": age} for c, (n, age) in (detections or {}).items()}}


class Producers:
    """Capture and Inference as Health sees them: frames and detections counted by the producer, reported in its
    metrics (each camera's count and the age of its last one when the metrics are made)."""

    def __init__(self, st: AppState) -> None:
        self.st = st
        self.frames: dict[str, tuple[int, float]] = {}  # camera -> (count, time of the last)
        self.detections: dict[str, tuple[int, float]] = {}

    def frame(self, cam: str, now: float) -> None:
        self.frames[cam] = (self.frames.get(cam, (0, 0.0))[0] + 1, now)

    def detection(self, cam: str, now: float) -> None:
        self.detections[cam] = (self.detections.get(cam, (0, 0.0))[0] + 1, now)

    def capture_metrics(self, now: float, *cameras: str) -> None:
        self.st.on_message("ggvision/v1/metrics/capture", capture_msg(
            *(cameras or self.frames), frames={c: (n, now - t) for c, (n, t) in self.frames.items()}), now=now)

    def inference_metrics(self, now: float) -> None:
        self.st.on_message("ggvision/v1/metrics/inference", inference_msg(0, 1, timestamp=1795000000.0 + now,
                           detections={c: (n, now - t) for c, (n, t) in self.detections.items()}), now=now)


# -- configuration ------------------------------------------------------------------------------------
def test_configuration_defaults_ranges_and_unknown_keys() -> None:
    assert parse(HealthConfig, {}) == HealthConfig()
    cfg = parse(HealthConfig, {"periodS": "2.5", "probes": ["example.com:443", "[::1]:9"], "restartInference": "false"})
    assert cfg.period_s == 2.5 and cfg.probes == ("example.com:443", "[::1]:9") and not cfg.restart_inference
    for bad, key in (({"bogus": 1}, "bogus"), ({"periodS": 0}, "periodS"), ({"promPort": 70000}, "promPort"),
                     ({"probes": ["nohost"]}, "probes[0]"), ({"diskMinFreeRatio": 1.5}, "diskMinFreeRatio"),
                     ({"promBind": "localhost"}, "promBind"), ({"dataPath": "relative"}, "dataPath"),
                     ({"leakWindow": 2.5}, "leakWindow"), ({"gpu": "maybe"}, "gpu")):
        reason = validate(bad)
        assert reason and key in reason, (bad, reason)


# -- collectors against known load -------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import sys, time
    step, steps, period = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    held = [b"\\x01" * (20 << 20)]  # a steady base so both children start alike
    print("ready", flush=True)
    for i in range(steps):
        time.sleep(period)  # the load generator's own pace (the test follows its lines)
        if step:
            held.append(b"\\x01" * step)  # written, so resident
        print(i, flush=True)
    sys.stdin.read()  # stay until the test closes stdin
""")


def _child(tmp: Path, sock: str, name: str, step: int, steps: int, period: float) -> subprocess.Popen[str]:
    cwd = tmp / "work" / name
    cwd.mkdir(parents=True, exist_ok=True)
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(step), str(steps), str(period)], cwd=cwd, text=True,
                         env={**os.environ, SOCKET_ENV: sock}, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def test_rss_leak_slope_for_a_growing_and_a_steady_process(tmp_path: Path) -> None:
    sock = f"/tmp/fake-{uuid.uuid4().hex}.socket"  # only the children's environment names it
    step, steps, period = 1 << 20, 24, 0.1  # 1 MiB per 0.1 s = 10 MiB/s
    leaker = _child(tmp_path, sock, "leaker", step, steps, period)
    steady = _child(tmp_path, sock, "steady", 0, steps, period)
    procs = ProcessCollector(sock, tmp_path / "work", window=100)
    try:
        assert leaker.stdout is not None
        for _ in range(steps):
            assert leaker.stdout.readline()  # one growth step done
            found = procs.sample(time.monotonic())
        assert set(found) == {"leaker", "steady"}  # nothing else on the machine matches
        expected = step / period * 3600
        grow, flat = found["leaker"].growth_per_hour, found["steady"].growth_per_hour
        assert grow is not None and flat is not None
        assert 0.6 * expected < grow < 1.4 * expected, (grow / 2**30, expected / 2**30)
        assert abs(flat) < 0.05 * expected, flat / 2**30
        assert found["leaker"].rss > found["steady"].rss + 10 * step
        # a new process generation in the same work folder is a restart, and its leak window starts afresh
        steady.stdin.close()  # type: ignore[union-attr]
        steady.wait(10)
        procs.sample()
        steady = _child(tmp_path, sock, "steady", 0, 1, 0)
        found = procs.sample()
        assert procs.restarts == {"steady": 1} and found["steady"].growth_per_hour is None
    finally:
        for p in (leaker, steady):
            p.kill()
            p.wait()


def test_disk_write_rate_and_latency_from_a_throttled_writer(tmp_path: Path) -> None:
    if psutil.disk_io_counters() is None:
        pytest.skip("no disk I/O counters here (/proc/diskstats)")
    fs = max((p for p in psutil.disk_partitions(all=True) if str(tmp_path).startswith(p.mountpoint)),
             key=lambda p: len(p.mountpoint), default=None)
    if fs is not None and fs.fstype in ("tmpfs", "ramfs"):
        pytest.skip(f"{tmp_path} is on {fs.fstype}: writes never reach a disk")
    disk = DiskCollector(str(tmp_path))
    first = disk.sample()
    assert first.write_bytes_per_s is None and first.total > first.free > 0
    chunk, n = os.urandom(1 << 20), 8
    t0 = time.monotonic()
    with open(tmp_path / "blob", "wb") as f:
        for i in range(n):  # 8 MiB, fsync after each MiB, at about 40 MiB/s
            f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
            time.sleep(max(0.0, t0 + (i + 1) * 0.025 - time.monotonic()))  # the writer's throttle
    s = disk.sample()
    assert s.write_bytes_per_s is not None and s.write_latency_s is not None
    assert s.write_bytes_per_s >= 0.8 * n * len(chunk) / (time.monotonic() - t0 + 0.5)
    assert 0 < s.write_latency_s < 5


class FakeNvml:
    """The slice of pynvml that NvmlGpuSource uses; GPU 1 has no encoder (NVML_ERROR_NOT_SUPPORTED)."""

    NVML_TEMPERATURE_GPU = 0

    class NotSupported(Exception):
        pass

    def __init__(self) -> None:
        self.shut = False

    def nvmlInit(self) -> None:  # noqa: N802
        pass

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802
        return 2

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:  # noqa: N802
        return b"Tesla T4"

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:  # noqa: N802
        return SimpleNamespace(gpu=40 + h, memory=10)

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:  # noqa: N802
        return SimpleNamespace(used=(1 + h) << 30, total=16 << 30, free=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:  # noqa: N802
        return 55 + h

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:  # noqa: N802
        return 31500  # mW

    def nvmlDeviceGetEncoderUtilization(self, h: int) -> list[int]:  # noqa: N802
        if h == 1:
            raise self.NotSupported("Not Supported")
        return [12, 167000]

    def nvmlDeviceGetDecoderUtilization(self, h: int) -> list[int]:  # noqa: N802
        return [30 + h, 167000]


def test_fake_nvml_gives_gpu_metrics_with_labels() -> None:
    nvml = FakeNvml()
    src = NvmlGpuSource.open(nvml)
    assert src is not None
    gpus = src.sample()
    text = _exposition(Collected(timestamp=time.time(), uptime_s=1.0, gpus=gpus))
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    rows = {(s.name, s.labels.get("gpu")): s.value for f in fams.values() for s in f.samples}
    assert rows[("ggvision_gpu_utilization_ratio", "0")] == 0.40
    assert rows[("ggvision_gpu_utilization_ratio", "1")] == 0.41
    assert rows[("ggvision_gpu_memory_used_bytes", "1")] == 2 << 30
    assert rows[("ggvision_gpu_memory_total_bytes", "0")] == 16 << 30
    assert rows[("ggvision_gpu_temperature_celsius", "1")] == 56
    assert rows[("ggvision_gpu_power_watts", "0")] == 31.5
    assert rows[("ggvision_gpu_encoder_utilization_ratio", "0")] == 0.12
    assert ("ggvision_gpu_encoder_utilization_ratio", "1") not in rows  # not supported there: left out
    assert rows[("ggvision_gpu_decoder_utilization_ratio", "1")] == 0.31
    src.close()
    assert nvml.shut


def test_no_nvml_library_means_no_gpu_source() -> None:
    class Missing(FakeNvml):
        def nvmlInit(self) -> None:  # noqa: N802
            raise OSError("NVML Shared Library Not Found")

    assert NvmlGpuSource.open(Missing()) is None


def _exposition(c: Collected) -> str:
    col = HealthCollector()
    col.update(c)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(col)
    return generate_latest(reg).decode()


# -- the whole component with fakes around it ----------------------------------------------------------
class FakeClient:
    """What HealthComponent calls on GreengrassCoreIPCClientV2, recorded."""

    def __init__(self, components: dict[str, str]) -> None:
        self.components = components
        self.restarts: list[str] = []
        self.metrics: list[Any] = []
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.iot: list[tuple[str, bytes]] = []

    def list_components(self) -> Any:
        return SimpleNamespace(components=[SimpleNamespace(component_name=n, version="1.0.0", state=s)
                                           for n, s in self.components.items()])

    def restart_component(self, component_name: str) -> Any:
        self.restarts.append(component_name)
        return SimpleNamespace(restart_status="SUCCEEDED", message="")

    def put_component_metric(self, metrics: list[Any]) -> None:
        self.metrics.append(metrics)

    def publish_to_topic(self, topic: str, publish_message: Any) -> None:
        self.published.append((topic, publish_message.json_message.message))

    def publish_to_iot_core_async(self, topic_name: str, qos: Any, payload: bytes) -> Any:
        from concurrent.futures import Future

        self.iot.append((topic_name, payload))
        f: Future[None] = Future()
        f.set_result(None)
        return f


@pytest.fixture
def listener() -> Iterator[str]:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield f"127.0.0.1:{srv.getsockname()[1]}"
    srv.close()


def test_prometheus_text_has_every_metric_name(tmp_path: Path, listener: str) -> None:
    sock = f"/tmp/fake-{uuid.uuid4().hex}.socket"
    child = _child(tmp_path, sock, "com.ggvision.Capture", 0, 0, 0)
    client = FakeClient({"com.ggvision.Capture": "RUNNING", "com.ggvision.Inference": "RUNNING"})
    cfg = HealthConfig(probes=(listener, "127.0.0.1:1"), data_path=str(tmp_path), probe_timeout_s=0.5)
    comp = HealthComponent(ComponentApp("com.ggvision.Health", validate, client=client), cfg, gpu=NvmlGpuSource(
        FakeNvml()), procs=ProcessCollector(sock, tmp_path / "work", cfg.leak_window), thing="thing-1")
    try:
        st = comp.state
        st.on_message("ggvision/v1/metrics/capture", capture_msg("door", frames={"door": (1, 0.1)}))
        st.on_message("ggvision/v1/metrics/inference", inference_msg(errors=1, runs=100, detections={"door": (1, 0)}))
        st.on_message("ggvision/v1/metrics/inference", inference_msg(errors=3, runs=200, detections={"door": (1, 0)}))
        st.on_message("ggvision/v1/metrics/inference", {  # a model with an A/B candidate: the ggvision_ab_* families
            **inference_msg(errors=0, runs=10, model="det"), "id": "det", "arm": "a", "score_hist": [0] * 9 + [4],
            "detections_per_frame": {"person": 1.0}, "ab": {"mode": "shadow", "b_skipped": 2, "b_failed": 1,
                                                           "agreement": {"by_label": {"matched": {"person": 3}}}}})
        st.on_message("ggvision/v1/metrics/uplink", {"backlog_bytes": {"high": 10, "low": 2048}, "disk": {
            "held": {"video": 100, "records": 5}, "evicted": {"video": 7}}, "storage": {
            "errors": {"disk-full": 2}, "active": {"disk-full": {"since": 1.0, "error": "queue: ENOSPC"}}}})
        st.on_message("ggvision/v1/metrics/inference", {"schema": "inference-metrics/1.1", "model": 7})
        st.on_message("ggvision/v1/metrics/filter", {"schema": "filter-metrics/1.0", "cameras": {"door": {
            "analytics": {"crossings": {"gate": {"in": {"person": 3}, "out": {}}}, "occupancy": {"queue": 2},
                          "hits": {"loitering": 1}}}}})
        st.on_message("ggvision/v1/metrics/inference", inference_msg(3, 200) | {  # a malformed per-camera count
            "cameras": {"door": {"detection_msgs": -1, "last_age_s": 0}}})
        for _ in range(3):  # the leak slope needs three samples
            c, _, _ = comp.collect()
        text = _exposition(c)
    finally:
        comp.close()
        child.kill()
        child.wait()
    fams = list(text_string_to_metric_families(text))
    names = {s.name for f in fams for s in f.samples}
    absent_source = set() if psutil.sensors_temperatures() else {"ggvision_temperature_celsius"}
    assert ALL_NAMES - absent_source <= names, sorted(ALL_NAMES - absent_source - names)
    rows = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams for s in f.samples}
    assert rows[("ggvision_storage_degraded", (("component", "uplink"), ("condition", "disk-full")))] == 1
    assert rows[("ggvision_camera_decoder_info", (("camera", "door"), ("decoder", "cpu")))] == 1
    assert rows[("ggvision_storage_errors_total", (("component", "uplink"), ("condition", "disk-full")))] == 2
    assert rows[("ggvision_inference_errors_total", (("model", "yolox"),))] == 3
    assert rows[("ggvision_line_crossings_total", (("camera", "door"), ("direction", "in"), ("label", "person"),
                                                   ("line", "gate")))] == 3
    assert rows[("ggvision_zone_occupancy", (("camera", "door"), ("zone", "queue")))] == 2
    assert rows[("ggvision_inference_error_ratio", (("model", "yolox"),))] == pytest.approx(0.02)  # 2 of 100
    assert rows[("ggvision_inference_latency_seconds", (("model", "yolox"), ("quantile", "0.95")))] == 0.02
    assert rows[("ggvision_inference_provider_info", (("model", "yolox"), ("provider", "CPUExecutionProvider"),
                                                      ("version", "3")))] == 1
    assert rows[("ggvision_health_malformed_messages_total", (("topic", "ggvision/v1/metrics/inference"),))] == 2
    assert rows[("ggvision_endpoint_up", (("endpoint", listener),))] == 1
    assert rows[("ggvision_endpoint_up", (("endpoint", "127.0.0.1:1"),))] == 0
    assert rows[("ggvision_endpoint_loss_ratio", (("endpoint", "127.0.0.1:1"),))] == 1
    assert rows[("ggvision_camera_up", (("camera", "door"),))] == 1
    assert rows[("ggvision_component_state", (("component", "com.ggvision.Capture"), ("state", "RUNNING")))] == 1
    assert rows[("ggvision_component_rss_bytes", (("component", "com.ggvision.Capture"),))] > 20 << 20
    assert rows[("ggvision_uplink_backlog_bytes", (("priority", "low"),))] == 2048
    assert rows[("ggvision_cpu_usage_ratio", (("cpu", "all"),))] <= 1
    # the summary and telemetry the same tick would send
    data = comp.publish_summary(c)
    doc = json.loads(data)
    assert client.iot[-1][0] == "ggvision/thing-1/metrics" and doc["schema"] == "health-summary/1.0"
    assert doc["inference_p95_ms"] == 20.0 and doc["inference_error_ratio"] == pytest.approx(0.02)
    assert doc["cameras"]["door"]["up"] and doc["components"]["com.ggvision.Capture"]["state"] == "RUNNING"
    assert not doc["truncated"]
    # CloudWatch metrics: one documented request per value on cloudwatch/metric/put (developer guide "CloudWatch
    # metrics", Input data), never PutComponentMetric (the nucleus refuses it to non-aws.* components)
    assert client.metrics == []
    requests = [m["request"] for t, m in client.published if t == "cloudwatch/metric/put"]
    data = {r["metricData"]["metricName"]: r["metricData"] for r in requests}
    assert {r["namespace"] for r in requests} == {"ggvision"} and set(data) == set(CLOUDWATCH)
    assert {n: d["unit"] for n, d in data.items()} == CLOUDWATCH
    assert data["InferenceLatencyP95"]["value"] == 20.0 and data["InferenceErrorRate"]["value"] == pytest.approx(2.0)
    assert data["CamerasUp"]["value"] == 1 and data["CpuUsage"]["timestamp"] == c.timestamp
    assert all(set(d) == {"metricName", "value", "unit", "timestamp"} for d in data.values())
    comp.reconfigure({"cloudwatch": {"enabled": False}})
    comp.tick()  # applies the new configuration (and collects once)
    before = len(client.published)
    comp.publish_summary(c)
    assert [t for t, _ in client.published[before:]] == []  # summary to IoT Core only


def test_restarts_count_errors_and_new_processes_once_each() -> None:
    client = FakeClient({"x": "RUNNING"})
    procs = SimpleNamespace(restarts={}, window=60, sample=lambda now=None: {})
    comp = HealthComponent(ComponentApp("h", validate, client=client), HealthConfig(prom_port=0), gpu=None,
                           procs=procs)  # type: ignore[arg-type]

    def step(state: str, proc_restarts: int) -> int:
        client.components["x"] = state
        procs.restarts = {"x": proc_restarts} if proc_restarts else {}
        c, _, _ = comp.collect()
        return c.components["x"].restarts

    assert step("RUNNING", 0) == 0
    assert step("ERRORED", 0) == 1  # seen erroring...
    assert step("RUNNING", 1) == 1  # ...and its new process is that same restart
    assert step("RUNNING", 2) == 2  # a restart too quick to see a state change
    assert step("ERRORED", 3) == 3  # both at once: one restart
    assert step("RUNNING", 3) == 3
    assert step("BROKEN", 3) == 4 and step("BROKEN", 3) == 4
    comp.close()


def test_summary_over_128kb_is_trimmed_and_says_so() -> None:
    st = AppState()
    cams = [f"site-17-building-b-floor-3-parking-entrance-camera-{i:05d}" for i in range(1000)]  # 1000 tracked
    st.on_message("ggvision/v1/metrics/capture", capture_msg(*cams), now=0.0)
    st.on_message("ggvision/v1/metrics/capture", capture_msg(*cams, frames={c: (1, 0.0) for c in cams[:990]}), now=1.0)
    st.on_message("ggvision/v1/metrics/inference", inference_msg(0, 1, detections={c: (1, 0.0) for c in cams[:990]}),
                  now=1.0)
    c = Collected(timestamp=time.time(), uptime_s=5.0, app=st.view(30, now=2.0),
                  detection_fps={cam: 1.0 for cam in cams[:990]})
    doc = summary(c, "thing-1", 60)
    data = encode_summary(doc)
    assert len(json.dumps(doc)) > IOT_MAX_BYTES and len(data) <= IOT_MAX_BYTES
    out = json.loads(data)
    assert out["truncated"] is True and out["omitted"]["cameras"] > 0
    assert out["cameras_total"] == 1000 and out["detection_fps_total"] == 990
    assert set(cams[990:]) <= set(out["cameras"])  # cameras without detections are kept first
    small = json.loads(encode_summary(summary(Collected(timestamp=0.0, uptime_s=0.0), "t", 60)))
    assert small["truncated"] is False and "omitted" not in small


def test_a_shadow_model_is_kept_apart_from_its_primary() -> None:
    """A shadow (A/B candidate) of the same model must not reset the primary's counters or set its error ratio."""
    st = AppState()
    primary = inference_msg(errors=0, runs=1000) | {"shadow": {"model": "yolox", "version": "4", "frames": 90,
                                                              "matched_ratio": 0.97, "iou_mean": 0.88}}
    st.on_message("ggvision/v1/metrics/inference", primary, now=0.0)
    st.on_message("ggvision/v1/metrics/inference", inference_msg(errors=9, runs=10) | {"role": "shadow"}, now=0.5)
    st.on_message("ggvision/v1/metrics/inference", inference_msg(errors=0, runs=2000), now=1.0)
    doc = summary(Collected(timestamp=0.0, uptime_s=1.0, app=st.view(30, now=1.0)), "t", 60)
    assert doc["inference"]["yolox"]["error_ratio"] == 0.0 and doc["inference"]["yolox"]["role"] == "primary"
    assert doc["inference"]["yolox#shadow"]["error_ratio"] == 0.9
    assert doc["inference_error_ratio"] == 0.0  # the gate's worst model counts models that serve
    st.on_message("ggvision/v1/metrics/inference", primary, now=2.0)
    doc = summary(Collected(timestamp=0.0, uptime_s=1.0, app=st.view(30, now=2.0)), "t", 60)
    assert doc["inference"]["yolox"]["shadow"] == {"frames": 90, "matched_ratio": 0.97, "iou_mean": 0.88}
    with pytest.raises(Malformed, match="role"):
        parse_inference(inference_msg(0, 1) | {"role": "canary"})


def test_an_a_b_arm_carries_its_frames_and_is_dropped_when_a_reports_without_b() -> None:
    """The summary's arm figures say what detections_per_frame is over (the A/B report's per-interval rates); once
    A reports without an arm (B removed), B's entry leaves the summary instead of lingering until it is stale."""
    st = AppState()
    arm = {"id": "det", "detections_per_frame": {"person": 1.0}, "score_hist": [0] * 10}
    a = inference_msg(0, 10, model="det") | arm | {"arm": "a", "label_frames": 40, "ab": {"mode": "split"}}
    b = inference_msg(0, 10, model="det") | arm | {"arm": "b", "role": "split", "label_frames": 12,
                                                   "ab": {"mode": "split"}}
    st.on_message("ggvision/v1/metrics/inference", a, now=0.0)
    st.on_message("ggvision/v1/metrics/inference", b, now=0.0)
    doc = summary(Collected(timestamp=0.0, uptime_s=1.0, app=st.view(30, now=0.5)), "t", 60)
    assert (doc["inference"]["det"]["ab"]["frames"], doc["inference"]["det#split"]["ab"]["frames"]) == (40, 12)
    st.on_message("ggvision/v1/metrics/inference", inference_msg(0, 20, model="det") | {"id": "det"}, now=1.0)
    doc = summary(Collected(timestamp=1.0, uptime_s=2.0, app=st.view(30, now=1.0)), "t", 60)
    assert set(doc["inference"]) == {"det"} and "ab" not in doc["inference"]["det"]


# -- watchdog rules (explicit clock) ------------------------------------------------------------------
def _host(avail_ratio: float = 0.5) -> HostSample:
    return HostSample(0.1, [0.1], 0.2, {}, avail_ratio * 8e9, 8e9, 0.0)


def test_hung_inference_incident_restarts_once_and_resolves_when_detections_resume() -> None:
    cfg = HealthConfig(hung_after_s=3, camera_silent_s=10)
    st, wd = AppState(), Watchdogs(now=0.0)
    p = Producers(st)
    p.capture_metrics(0.0, "door", "yard")
    restarts, alerts = 0, []
    for tenth in range(0, 200):  # 20 s of frames at 10/s on both cameras, metrics every 0.5 s
        now = tenth / 10
        for cam in ("door", "yard"):
            p.frame(cam, now)
        if now < 2 or now >= 15:  # detections on door until 2 s, and again from 15 s
            p.detection("door", now)
        if tenth % 5 == 0:
            p.capture_metrics(now)
            p.inference_metrics(now)
            events, restart = wd.evaluate(cfg, st.view(cfg.camera_silent_s, now), _host(), None, True, now, 1000.0)
            restarts += restart
            alerts += [(now, e) for e in events]
            if restart:
                wd.inference_restarted(now)
    # yard never had detections while door did: not watched. door: last detection 1.9 s, hung from 4.9 s
    assert restarts == 1
    (t1, fired), (t2, resolved) = alerts
    assert fired["alert"] == "inference-hung" and fired["state"] == "firing" and fired["severity"] == "critical"
    assert fired["where"] == "com.ggvision.Inference" and fired["cameras"] == ["door"] and 4.9 <= t1 <= 5.5
    assert fired["since"] == pytest.approx(1001.9) and fired["schema"] == "alert/1.0"
    assert resolved["state"] == "resolved" and resolved["since"] == fired["since"] and t2 == 15.0
    assert wd.counts()["inference-hung"] == 0


def test_a_dead_inference_that_never_published_is_hung_too() -> None:
    cfg = HealthConfig(hung_after_s=3)
    st, wd = AppState(), Watchdogs(now=0.0)
    p, fired = Producers(st), []
    for tenth in range(0, 100):  # frames and capture metrics at 10/s
        now = tenth / 10
        p.frame("door", now)
        p.capture_metrics(now)
        events, restart = wd.evaluate(cfg, st.view(30, now), None, None, True, now, 0.0)
        fired += [(now, restart) for e in events if e["state"] == "firing"]
    assert fired == [(3.0, True)]  # once per incident
    # not while the inference component is not running (then it is down, not hung)
    wd2 = Watchdogs(now=0.0)
    assert wd2.evaluate(cfg, st.view(30, 9.9), None, None, False, 9.9, 0.0) == ([], False)


def test_detection_fps_and_frame_age_come_from_the_producers_metrics() -> None:
    """Health subscribes to no per-frame topic: a camera's detection fps is the change of Inference's per-camera count
    between its reports (the primaries' messages of one period carry the same block and count once), across an
    Inference restart (its counts start over) and to 0 once Inference stops reporting; frame age is Capture's."""
    st = AppState()
    st.on_message("ggvision/v1/metrics/capture", capture_msg("door", frames={"door": (50, 0.2)}), now=10.0)
    for t, n in ((10.0, 100), (10.0, 100), (15.0, 125), (20.0, 150), (20.0, 150)):  # 5/s, two models each period
        st.on_message("ggvision/v1/metrics/inference", inference_msg(0, 1, timestamp=t, detections={"door": (n, 0.1)}),
                      now=t)
    v = st.view(30, now=20.5).cameras["door"]
    assert v.detection_fps == pytest.approx(5.0) and v.detections == 150
    assert v.detection_last == pytest.approx(19.9) and v.frame_age_s == pytest.approx(10.7)
    st.on_message("ggvision/v1/metrics/inference", inference_msg(0, 1, timestamp=26.0, detections={"door": (10, 0.0)}),
                  now=26.0)  # Inference restarted: 10 new since its start
    v = st.view(30, now=26.0).cameras["door"]
    assert v.detections == 160 and v.detection_fps == pytest.approx(10 / 6)
    assert st.view(30, now=60.0).cameras["door"].detection_fps == 0.0  # no report for 34 s: not detecting
    with pytest.raises(Malformed, match=r"cameras\.door\.detection_msgs"):
        parse_inference(inference_msg(0, 1) | {"cameras": {"door": {"detection_msgs": "many"}}})


def test_capture_decoder_is_kept_and_a_bad_one_is_refused() -> None:
    """capture-metrics `decoder` becomes a Prometheus label value: anything but a short lowercase name is refused
    (the message counts as malformed and the last good capture view stays)."""
    st = AppState()
    st.on_message("ggvision/v1/metrics/capture", capture_msg("door"), now=1.0)
    assert st.view(30, now=1.0).cameras["door"].decoder == "cpu"
    bad = capture_msg("door")
    bad["cameras"]["door"]["decoder"] = 'cuda"} 1\nfake_metric{x="'
    st.on_message("ggvision/v1/metrics/capture", bad, now=2.0)
    assert st.malformed == {"ggvision/v1/metrics/capture": 1}
    assert st.view(30, now=2.0).cameras["door"].decoder == "cpu"
    with pytest.raises(Malformed, match=r"cameras\.door\.decoder"):
        parse_capture(bad)


def test_older_producers_without_the_per_camera_fields_still_work() -> None:
    """capture-metrics/1.0 and inference-metrics/1.0 (no frames_published/last_frame_age_s, no `cameras`): a frame is
    known when `frames_out` grew, and a model whose `frames` counter grows keeps every camera from looking hung."""
    cfg = HealthConfig(hung_after_s=3, camera_silent_s=5)
    st, wd = AppState(), Watchdogs(now=0.0)
    old_inference = {"schema": "inference-metrics/1.0", "model": "yolox", "errors": 0, "runs": 0, "frames": 0}
    fired = []
    for second in range(0, 12):
        now = float(second)
        door = 5 * second if second < 6 else 25  # door stops at 5 s, yard goes on
        st.on_message("ggvision/v1/metrics/capture", {"schema": "capture-metrics/1.0", "cameras": {
            "door": {"status": "connected", "frames_out": door},
            "yard": {"status": "connected", "frames_out": 5 * second}}}, now=now)
        st.on_message("ggvision/v1/metrics/inference", old_inference | {"runs": second, "frames": door + 5 * second},
                      now=now)
        events, _ = wd.evaluate(cfg, st.view(5, now), None, None, True, now, 0.0)
        fired += [(now, e["alert"], e["where"]) for e in events if e["state"] == "firing"]
    assert st.malformed == {}
    # door's last frame was seen at 5 s; no camera looks hung while the model makes progress
    assert fired == [(10.0, "camera-silent", "door")]


def test_camera_silent_disk_and_memory_alerts_fire_and_resolve(tmp_path: Path) -> None:
    cfg = HealthConfig(camera_silent_s=5)
    st, wd = AppState(), Watchdogs(now=0.0)
    p = Producers(st)
    p.frame("door", 0.0)
    p.capture_metrics(0.0)
    p.capture_metrics(4.0)  # Capture goes on reporting the camera; its last frame was at 0
    disk_ok, disk_low = DiskSample("/data", 50e9, 100e9, 0, 0), DiskSample("/data", 5e9, 100e9, 0, 0)
    ev, _ = wd.evaluate(cfg, st.view(5, 6.0), _host(0.05), disk_low, False, 6.0, 0.0)
    got = {(e["alert"], e["where"], e["state"]) for e in ev}
    assert got == {("camera-silent", "door", "firing"), ("disk-low", "/data", "firing"),
                   ("memory-low", "host", "firing")}
    silent = next(e for e in ev if e["alert"] == "camera-silent")
    assert silent["since"] == 0.0 and "door" in silent["message"]
    assert wd.counts() == {"inference-hung": 0, "camera-silent": 1, "disk-low": 1, "memory-low": 1}
    assert wd.evaluate(cfg, st.view(5, 7.0), _host(0.05), disk_low, False, 7.0, 0.0) == ([], False)  # no repeats
    p.frame("door", 7.5)
    p.capture_metrics(8.0)  # the frame at 7.5, known from the metrics at 8
    assert st.view(5, 8.0).cameras["door"].frame_age_s == pytest.approx(0.5)
    ev, _ = wd.evaluate(cfg, st.view(5, 8.0), _host(0.5), disk_ok, False, 8.0, 0.0)
    assert {(e["alert"], e["state"]) for e in ev} == {("camera-silent", "resolved"), ("disk-low", "resolved"),
                                                       ("memory-low", "resolved")}
    assert not wd.active


# -- under the local runtime --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest,
          moto_url: str) -> Iterator[tuple[Runtime, int]]:
    """Health with the synthetic capture, a fake inference, and the runtime's aws.greengrass.Cloudwatch stand-in
    sending to moto's CloudWatch (found through AWS_ENDPOINT_URL, as boto3 does)."""
    if not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    tmp = tmp_path_factory.mktemp("health")
    port = _free_port()
    rt = Runtime(tmp, [AGENT, FAKE_INFERENCE], iot=True, config={FAKE_INFERENCE: {"publishForS": 1}})
    capture_dev_recipe(rt.recipes, cameras={"synthetic-1": SYNTH}, metricsPeriodS=1)
    health_dev_recipe(rt.recipes, promPort=port, periodS=0.5, summaryPeriodS=1, hungAfterS=3, cameraSilentS=10,
                      inferenceComponent=FAKE_INFERENCE)
    try:
        with pytest.MonkeyPatch.context() as env:  # the runtime passes its environment on to components
            for k, v in {**MOTO_CREDENTIALS, "AWS_ENDPOINT_URL": moto_url}.items():
                env.setenv(k, v)
            rt.start(wait_for={n: ("RUNNING",) for n in (AGENT, FAKE_INFERENCE, CAPTURE, HEALTH)})
        # A deployment naming the AWS-provided component without a recipe: the runtime supplies its stand-in.
        d = rt.deploy(root_component_versions_to_add={CLOUDWATCH_COMPONENT: "3.2.0"},
                      component_to_configuration={CLOUDWATCH_COMPONENT: {"MERGE": {"PublishInterval": "1"}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        yield rt, port
    finally:
        rt.cleanup()


def test_prometheus_endpoint_serves_camera_fps_and_components(suite: tuple[Runtime, int]) -> None:
    rt, port = suite
    cam = (("camera", "synthetic-1"),)

    def ready() -> dict[Any, float] | None:
        m = scrape(port)
        return m if m.get(("ggvision_camera_decoded_fps", cam), 0) > 0 else None

    m = wait_until(ready, 20, interval=0.2, what="camera fps on /metrics")
    assert m[("ggvision_camera_input_fps", cam)] > 0 and m[("ggvision_camera_up", cam)] == 1
    assert m[("ggvision_camera_frame_age_seconds", cam)] < 5
    assert ("ggvision_camera_detection_fps", cam) in m
    assert m[("ggvision_component_up", (("component", CAPTURE),))] == 1
    assert m[("ggvision_component_info", (("component", CAPTURE), ("version", "0.1.0")))] == 1
    assert m[("ggvision_component_rss_bytes", (("component", CAPTURE),))] > 10 << 20
    assert m[("ggvision_component_rss_bytes", (("component", HEALTH),))] > 10 << 20  # itself too
    assert m[("ggvision_uptime_seconds", ())] > 0 and m[("ggvision_memory_available_bytes", ())] > 0
    assert ("ggvision_health_alerts_active", (("alert", "inference-hung"),)) in m
    assert "publish to cloudwatch/metric/put failed" not in rt.log(HEALTH)  # the pubsub:3 policy allows it


def test_hung_inference_is_restarted_and_alerted(suite: tuple[Runtime, int]) -> None:
    rt, port = suite
    a = rt.agent()
    a.call("subscribe", id="alerts", topic="ggvision/v1/alerts/health")
    a.call("subscribe_iot", id="iot-events", topic="ggvision/test-thing/events")
    # the fake publishes for 1 s after each start, then hangs: every hang is an incident and a restart
    firing = wait_until(lambda: [e["json"] for e in a.call("events", id="alerts", count=0, timeout=0)
                                 if e["json"]["alert"] == "inference-hung" and e["json"]["state"] == "firing"],
                        30, interval=0.2, what="inference-hung alert")[0]
    assert firing["where"] == FAKE_INFERENCE and firing["cameras"] == ["synthetic-1"]
    assert time.time() - 60 < firing["since"] < firing["timestamp"] - 2.5  # hung for hungAfterS (3 s) by then
    assert "synthetic-1" in firing["message"] and firing["schema"] == "alert/1.0"
    wait_until(lambda: rt.log(FAKE_INFERENCE).count("fake inference started") >= 2, 20, what="a second start")
    assert "RestartComponent(com.ggvision.test.FakeInference): SUCCEEDED" in rt.log(HEALTH)
    restarts = ("ggvision_component_restarts_total", (("component", FAKE_INFERENCE),))
    wait_until(lambda: scrape(port).get(restarts, 0) >= 1, 10, interval=0.2, what="the restart counted")
    iot = wait_until(lambda: [json.loads(base64.b64decode(e["b64"])) for e in
                              a.call("events", id="iot-events", count=0, timeout=0)], 20, what="alert on IoT Core")
    assert iot[0]["schema"] == "alert/1.0" and iot[0]["alert"] == "inference-hung"
    # the restarted fake publishes again: the incident resolves
    wait_until(lambda: any(e["json"]["alert"] == "inference-hung" and e["json"]["state"] == "resolved"
                           for e in a.call("events", id="alerts", count=0, timeout=0)), 20, what="resolved")


def test_health_summary_reaches_iot_core_within_128kb(suite: tuple[Runtime, int]) -> None:
    rt, _ = suite
    a = rt.agent()
    a.call("subscribe_iot", id="summary", topic="ggvision/test-thing/metrics")

    def with_camera() -> dict[str, Any] | None:
        for e in a.call("events", id="summary", count=0, timeout=0):
            raw = base64.b64decode(e["b64"])
            assert len(raw) <= IOT_MAX_BYTES
            doc = json.loads(raw)
            if doc.get("cameras", {}).get("synthetic-1", {}).get("decoded_fps"):
                return doc
        return None

    doc = wait_until(with_camera, 20, interval=0.2, what="a summary with the camera")
    assert doc["schema"] == "health-summary/1.0" and doc["thing"] == "test-thing" and doc["truncated"] is False
    assert doc["components"][CAPTURE]["state"] == "RUNNING" and doc["components"][CAPTURE]["rss_bytes"] > 0
    assert "detection_fps" in doc["cameras"]["synthetic-1"] and "inference_error_ratio" in doc


def test_health_metrics_reach_cloudwatch_through_the_cloudwatch_component(suite: tuple[Runtime, int],
                                                                         moto_url: str) -> None:
    """The real Health under the runtime sends its values as CloudWatch metric requests; the runtime's stand-in
    for aws.greengrass.Cloudwatch turns them into PutMetricData calls to moto's CloudWatch server, where boto3
    reads them back. The request shape, the `coreName` dimension and the batching are the component's (developer
    guide "CloudWatch metrics", Input data and Configuration: https://docs.aws.amazon.com/greengrass/v2/
    developerguide/cloudwatch-metrics-component.html; its source, aws-greengrass/aws-greengrass-cloudwatch-metrics
    v3.2.0, adds coreName). Fails when no metric arrives."""
    import boto3

    rt, _ = suite
    cw = boto3.client("cloudwatch", endpoint_url=moto_url, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    core = [{"Name": "coreName", "Value": "test-thing"}]

    def listed() -> list[dict[str, Any]] | None:
        metrics = cw.list_metrics(Namespace="ggvision")["Metrics"]
        names = {m["MetricName"] for m in metrics}
        return metrics if {"CpuUsage", "MemoryAvailable", "DiskFree", "CamerasUp", "DetectionFps",
                           "AlertsActive"} <= names else None

    metrics = wait_until(listed, 40, interval=0.5, what="Health's metrics in moto's CloudWatch")
    assert {m["MetricName"] for m in metrics} <= set(CLOUDWATCH)
    assert all(m["Dimensions"] == core for m in metrics), metrics

    def values(name: str, stat: str) -> list[float]:
        now = datetime.datetime.now(datetime.timezone.utc)
        out = cw.get_metric_data(MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": {
            "Namespace": "ggvision", "MetricName": name, "Dimensions": core}, "Period": 60, "Stat": stat}}],
            StartTime=now - datetime.timedelta(minutes=10), EndTime=now + datetime.timedelta(minutes=1))
        return out["MetricDataResults"][0]["Values"]

    assert values("CpuUsage", "Maximum") and all(0 <= v <= 100 for v in values("CpuUsage", "Maximum"))
    assert 0 < max(values("DiskFree", "Maximum")) <= 100
    assert max(values("MemoryAvailable", "Maximum")) > 1  # MB
    wait_until(lambda: max(values("CamerasUp", "Maximum"), default=0) >= 1, 30, interval=0.5,
               what="CamerasUp >= 1 (the synthetic camera is up)")
    assert "CloudWatch metric requests" not in rt.log(HEALTH)
    assert "refused a metric request" not in rt.log(CLOUDWATCH_COMPONENT)  # every request had the documented shape


def test_configuration_updates_are_validated_and_applied_live(suite: tuple[Runtime, int]) -> None:
    rt, port = suite
    d = rt.deploy(component_to_configuration={HEALTH: {"MERGE": {"hungAfterS": 0, "bogus": 1}}})
    assert d.status == "FAILED" and "bogus" in d.deployment_status_details.deployment_failure_cause
    assert rt.state(HEALTH) == "RUNNING"
    d = rt.deploy(component_to_configuration={HEALTH: {"MERGE": {"leakWindow": 30, "probes": ["127.0.0.1:1"]}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    probe = ("ggvision_endpoint_up", (("endpoint", "127.0.0.1:1"),))
    assert wait_until(lambda: probe in scrape(port), 10, interval=0.2, what="the new probe") and \
        scrape(port)[probe] == 0
