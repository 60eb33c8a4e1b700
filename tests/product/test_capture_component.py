"""com.ggvision.Capture under the local runtime: rings announced over IPC (frame-rings/1.0), descriptors for the
cameras that ask for them, pixels from the shared-memory ring, cameras added/removed by configuration updates,
invalid configuration refused, metrics."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
from capture_dev import NAME, capture_dev_recipe
from harness import REPO, Runtime, wait_until

from ggvision.framebus import FrameDescriptor, FrameRing
from ggvision.framebus.announce import parse_rings
from ggvision.health.state import parse_capture

VIDEO = REPO.parent / "shared" / "data" / "video" / "vtest.avi"
SYNTH = {"source": {"type": "synthetic", "width": 320, "height": 240, "fps": 10, "seed": 1}, "detectFps": 5,
         "frameDescriptors": True}
QUIET = {"source": {"type": "synthetic", "width": 160, "height": 120, "fps": 10, "seed": 2}, "detectFps": 4}


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    tmp = tmp_path_factory.mktemp("cap")
    rt = Runtime(tmp, ["com.ggvision.test.Agent"])
    capture_dev_recipe(rt.recipes, cameras={"synthetic-1": SYNTH, "quiet-1": QUIET}, metricsPeriodS=1,
                       sensors={"thermal-1": {"type": "thermal-sim", "scenario": "fire", "seed": 2, "fps": 4}})
    try:
        rt.start(wait_for={"com.ggvision.test.Agent": ("RUNNING",), NAME: ("RUNNING",)})
        yield rt
    finally:
        rt.cleanup()


def _frames(rt: Runtime, sub: str, camera: str, count: int) -> list[FrameDescriptor]:
    a = rt.agent()
    got = a.call("events", id=sub, count=count, timeout=30)
    return [FrameDescriptor.from_message(e["json"]) for e in got if e["json"].get("camera") == camera]


def test_descriptors_over_ipc_and_pixels_from_the_ring(capture: Runtime) -> None:
    a = capture.agent()
    a.call("subscribe", id="frames", topic="ggvision/v1/frames/synthetic-1")
    descs = _frames(capture, "frames", "synthetic-1", 3)
    assert len(descs) >= 3 and [d.sequence for d in descs] == sorted(d.sequence for d in descs)
    last = descs[-1]
    assert last.shape == (240, 320, 3)
    ring = FrameRing.attach(last.ring)
    try:
        frame = ring.read(ring.latest())
        assert frame is not None and frame.shape == (240, 320, 3) and frame.dtype == np.uint8
        assert frame.std() > 0  # a real picture, not zeros
    finally:
        ring.close()


def test_rings_announced_and_descriptors_only_for_cameras_that_ask(capture: Runtime) -> None:
    """Every ring in each frame-rings/1.0, again every metricsPeriodS; frame/1.0 per frame only with frameDescriptors
    on (off by default), while the frames still count in the metrics Health reads."""
    a = capture.agent()
    a.call("subscribe", id="rings", topic="ggvision/v1/frame-rings")
    a.call("subscribe", id="quiet", topic="ggvision/v1/frames/quiet-1")
    got = [e["json"] for e in a.call("events", id="rings", count=3, timeout=20)]
    _, rings = parse_rings(got[-1])
    assert set(rings) == {"synthetic-1", "quiet-1"}  # sensors are not announced: their descriptors carry them
    quiet = rings["quiet-1"]
    assert quiet.fps == 4.0 and quiet.ring.startswith("ggv-quiet-1-")
    ring = FrameRing.attach(quiet.ring)
    try:
        assert ring.created == quiet.created
        desc = ring.latest()
        assert desc is not None and desc.shape == (120, 160, 3)
    finally:
        ring.close()
    assert a.call("events", id="quiet", count=0, timeout=0) == []
    a.call("subscribe", id="quiet-metrics", topic="ggvision/v1/metrics/capture")
    m = a.call("events", id="quiet-metrics", count=1, timeout=20)[0]["json"]
    assert m["cameras"]["quiet-1"]["frames_published"] > 0


def test_thermal_sensor_frames_in_celsius_and_gas_readings(capture: Runtime) -> None:
    a = capture.agent()
    a.call("subscribe", id="thermal", topic="ggvision/v1/frames/thermal-1")
    a.call("subscribe", id="gas", topic="ggvision/v1/sensors/thermal-1")
    desc = FrameDescriptor.from_message(a.call("events", id="thermal", count=1, timeout=20)[0]["json"])
    assert desc.shape == (120, 160, 1) and desc.dtype == "float32"
    ring = FrameRing.attach(desc.ring)
    try:
        frame = ring.read(ring.latest())
        assert frame is not None and 10 < float(np.median(frame)) < 30  # a room in °C
    finally:
        ring.close()
    gas = a.call("events", id="gas", count=1, timeout=20)[0]["json"]
    assert gas["schema"] == "gas/1.0" and gas["scenario"] == "fire" and gas["co2_ppm"] >= 400


def test_metrics_are_published(capture: Runtime) -> None:
    a = capture.agent()
    a.call("subscribe", id="metrics", topic="ggvision/v1/metrics/capture")
    m = a.call("events", id="metrics", count=1, timeout=20)[0]["json"]
    assert m["schema"] == "capture-metrics/1.1"
    cam = m["cameras"]["synthetic-1"]
    assert cam["status"] == "connected" and cam["decoded_fps"] >= 0 and "reconnects" in cam
    # what Health reads instead of the descriptors: frames published and the last one's age and timestamp
    m = wait_until(lambda: next((e["json"] for e in a.call("events", id="metrics", count=0, timeout=0)
                                 if e["json"]["cameras"]["synthetic-1"]["frames_published"] > 0), None),
                   20, interval=0.2, what="metrics after a frame")
    cam, sensor = m["cameras"]["synthetic-1"], m["sensors"]["thermal-1"]
    assert cam["frames_published"] >= cam["ring"]["written"] - 1 and 0 <= cam["last_frame_age_s"] < 2
    assert abs(cam["last_frame_timestamp"] - time.time()) < 30 and sensor["frames_published"] > 0
    cams, _ = parse_capture(m)  # as Health parses it
    assert cams["synthetic-1"].frames == cam["frames_published"]
    assert cams["synthetic-1"].last_frame_age_s == cam["last_frame_age_s"]


def test_cameras_added_and_removed_by_configuration(capture: Runtime, tmp_path: Path) -> None:
    if not VIDEO.exists():
        pytest.skip(f"{VIDEO} not found (../shared is absent)")
    a = capture.agent()
    a.call("subscribe", id="file-frames", topic="ggvision/v1/frames/file-1")
    starts = capture.log(NAME).count("run: starting")
    cams = {"file-1": {"source": {"type": "file", "path": str(VIDEO), "loop": True, "realtime": True},
                       "detectFps": 5, "maxWidth": 640, "frameDescriptors": True}}
    d = capture.deploy(component_to_configuration={NAME: {"MERGE": {"cameras": cams}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    got = a.call("events", id="file-frames", count=2, timeout=30)
    desc = FrameDescriptor.from_message(got[-1]["json"])
    assert desc.shape == (360, 640, 3)  # downscaled from 1280x720
    # remove the synthetic camera (null: a merge cannot delete keys): its ring goes away, no restart
    d = capture.deploy(component_to_configuration={NAME: {"MERGE": {"cameras": {"synthetic-1": None}}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    wait_until(lambda: not any(n.startswith("ggv-synthetic-1-") for n in os.listdir("/dev/shm")), 20,
               what="synthetic ring removed")
    assert capture.log(NAME).count("run: starting") == starts


def test_invalid_configuration_is_refused_with_the_reason(capture: Runtime) -> None:
    bad = {"cameras": {"cam-x": {"source": {"type": "rtsp", "url": "http://not-rtsp"}}}}
    d = capture.deploy(component_to_configuration={NAME: {"MERGE": bad}})
    assert d.status == "FAILED"
    details = d.deployment_status_details
    assert details.detailed_deployment_status == "FAILED_NO_STATE_CHANGE"
    assert "cam-x" in details.deployment_failure_cause and "url" in details.deployment_failure_cause
    assert capture.state(NAME) == "RUNNING"


def test_kill_9_restarts_and_leaves_no_stale_rings(capture: Runtime) -> None:
    sock = str(capture.root.resolve() / "ipc.socket")

    def capture_pids() -> list[int]:
        pids = []
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                if (p.info["name"] or "").startswith("python") and "ggvision.capture" in " ".join(
                        p.info["cmdline"] or []) and p.environ().get(
                        "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") == sock:
                    pids.append(p.pid)
            except psutil.Error:  # exited meanwhile
                continue
        return pids

    (pid,) = wait_until(capture_pids, 20, what="capture process")
    os.kill(pid, signal.SIGKILL)
    new = wait_until(lambda: [p for p in capture_pids() if p != pid], 30, what="capture restarted")
    capture.wait_state(NAME, "RUNNING")
    a = capture.agent()
    a.call("subscribe", id="after-kill", topic="ggvision/v1/frames/#")
    a.call("events", id="after-kill", count=2, timeout=30)
    rings = [n for n in os.listdir("/dev/shm") if n.startswith("ggv-")]
    assert not [n for n in rings if n.endswith(f"-{pid}")], rings  # the dead writer's rings are gone
    assert all(n.endswith(f"-{new[0]}") for n in rings if "file-1" in n or "synthetic-1" in n)


def test_metrics_name_each_cameras_decoder(capture: Runtime) -> None:
    """capture-metrics `cameras.<id>.decoder` (docs/messages.md): this runtime's cameras (the synthetic one is
    rendered; a file camera decodes with hwDecode off, the default) name the CPU; bench/suite.py reads the field to
    record the decode path."""
    a = capture.agent()
    a.call("subscribe", id="metrics-decoder", topic="ggvision/v1/metrics/capture")
    m = a.call("events", id="metrics-decoder", count=1, timeout=20)[0]["json"]
    assert m["cameras"] and {c["decoder"] for c in m["cameras"].values()} == {"cpu"}, m["cameras"]
    cams, _ = parse_capture(m)  # Health exports it (ggvision_camera_decoder_info, health-summary cameras.decoder)
    assert {cams[c].decoder for c in m["cameras"]} == {"cpu"}
