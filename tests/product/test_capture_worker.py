"""Capture workers against real sources: an RTSP server on loopback (GStreamer's gst-rtsp-server serving
../shared/data/video/vtest.avi without re-encoding), the file itself, an image folder and the synthetic scene.

Needs Debian's ffmpeg (ffprobe), python3-gi, gir1.2-gst-rtsp-server-1.0 and GStreamer's base/good/bad plugins;
tests that need them skip with the reason when they are missing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ggvision.capture import CameraConfig, CameraStatus, CameraWorker, SegmentInfo, redact_url
from ggvision.capture.sources import Redactor
from ggvision.capture.urls import parse_credentials, with_credentials
from ggvision.sim.scenes import SyntheticScene

REPO = Path(__file__).resolve().parents[2]
VTEST = REPO.parent / "shared" / "data" / "video" / "vtest.avi"
SERVER_SCRIPT = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
VTEST_GOP_S = 5.12  # vtest.avi: 25 fps, a keyframe every 128 frames
FRAME_S = 0.04


# --------------------------------------------------------------------------- prerequisites


def _need_vtest() -> Path:
    if not VTEST.is_file():
        pytest.skip(f"test video {VTEST} is absent (it lives in ../shared, outside the project)")
    return VTEST


def _need_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian package ffmpeg)")


@pytest.fixture(scope="session")
def gst_rtsp() -> None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path(SYSTEM_PYTHON).exists():
        pytest.skip(f"{SYSTEM_PYTHON} is absent: the RTSP test server runs on Debian's Python with gi")
    r = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip("GstRtspServer is unavailable (Debian packages python3-gi gir1.2-gst-rtsp-server-1.0)")


@pytest.fixture(scope="session")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi (13.6 s) repeated 6 times, remuxed without re-encoding, so a stream outlasts each test."""
    src = _need_vtest()
    _need_tools("ffmpeg", "ffprobe")
    out = tmp_path_factory.mktemp("video") / "vtest-x6.mkv"
    cmd = ["ffmpeg", "-v", "error", "-fflags", "+genpts", "-stream_loop", "5", "-i", str(src)]
    subprocess.run([*cmd, "-map", "0:v", "-c", "copy", str(out)], check=True, timeout=60)
    return out


class RtspServer:
    def __init__(self, video: Path, user: str | None = None, password: str | None = None) -> None:
        self.video, self.user, self.password = video, user, password
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> None:
        cmd = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--file", str(self.video), "--port", str(self.port)]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password or ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda p=self.proc: [lines.put(x) for x in p.stdout], daemon=True).start()  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line.startswith("READY"):
                self.port = int(line.split()[1])
                return
        self.kill()
        raise RuntimeError("the RTSP test server did not become ready")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot die
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def rtsp_server(gst_rtsp: None, long_video: Path) -> Iterator[RtspServer]:
    server = RtspServer(long_video)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# --------------------------------------------------------------------------- callbacks that tests wait on


class Sink:
    """Collects a worker's frames, segments and statuses; tests wait on conditions, never sleep."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.frames: list[tuple[tuple[int, ...], float, float]] = []  # (shape, timestamp, wall time)
        self.segments: list[SegmentInfo] = []
        self.statuses: list[CameraStatus] = []

    def on_frame(self, frame: np.ndarray, ts: float) -> None:
        with self.cond:
            self.frames.append((frame.shape, ts, time.time()))
            self.cond.notify_all()

    def on_segment(self, info: SegmentInfo) -> None:
        with self.cond:
            self.segments.append(info)
            self.cond.notify_all()

    def on_status(self, status: CameraStatus) -> None:
        with self.cond:
            self.statuses.append(status)
            self.cond.notify_all()

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        with self.cond:
            if not self.cond.wait_for(predicate, timeout):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}; statuses: {self.statuses}")
            return predicate()

    def wait_frames(self, n: int, timeout: float) -> None:
        self.wait(lambda: len(self.frames) >= n, timeout, f"{n} frames")

    def wait_state(self, state: str, timeout: float, after: int = 0) -> CameraStatus:
        def found() -> CameraStatus | None:
            return next((s for s in self.statuses[after:] if s.state == state), None)

        return self.wait(found, timeout, f"state {state}")


def make_worker(
    camera_id: str, settings: dict[str, Any], sink: Sink, secret_lookup: Callable[[str], str] | None = None
) -> CameraWorker:
    cfg = CameraConfig.from_dict(camera_id, settings)
    return CameraWorker(cfg, sink.on_frame, sink.on_segment, sink.on_status, secret_lookup)


@pytest.fixture
def workers() -> Iterator[list[CameraWorker]]:
    started: list[CameraWorker] = []
    yield started
    for w in started:
        w.stop(timeout=10)


def start(workers: list[CameraWorker], w: CameraWorker) -> CameraWorker:
    workers.append(w)
    w.start()
    return w


def rtsp_camera(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "source": {"type": "rtsp", "url": url, "transport": extra.pop("transport", "tcp")},
        "backoffMinS": 0.2,
        "backoffMaxS": 1,
        **extra,
    }


# --------------------------------------------------------------------------- segment checks


def ffprobe_duration(path: Path) -> float:
    r = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration:stream=codec_name", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    info = json.loads(r.stdout)
    assert info["streams"][0]["codec_name"] == "h264"
    return float(info["format"]["duration"])


def check_segments(
    segments: list[SegmentInfo], out_dir: Path, seconds: float, gop_s: float, frame_s: float, file_ends: bool = False
) -> None:
    """ffprobe reads each; durations within [seconds, seconds + GOP] but the last (or any at the end of a
    looping file's pass if `file_ends`); contiguous; hashes match; no temp files left."""
    assert segments, "no segment was announced"
    for i, seg in enumerate(segments):
        assert seg.path.parent == out_dir and seg.path.suffix == ".ts" and seg.keyframe_start
        data = seg.path.read_bytes()
        assert len(data) == seg.size
        assert hashlib.sha256(data).hexdigest() == seg.sha256
        probed = ffprobe_duration(seg.path)
        assert abs(probed - seg.duration) <= frame_s + 0.01, (seg, probed)
        if i < len(segments) - 1:
            assert (0 if file_ends else seconds - 0.01) <= seg.duration <= seconds + gop_s + 0.01, seg
            nxt = segments[i + 1]
            assert abs(nxt.start - seg.end) <= frame_s, (seg, nxt)  # no gap, no overlap
            assert nxt.start >= seg.start
    assert not [p.name for p in out_dir.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- configuration and redaction


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": {"type": "rtsp", "url": "http://cam/x"}}, "cameras.door.source.url: must start with rtsp://"),
        ({"source": {"type": "rtsp", "url": "rtsp://h/x", "transport": "sctp"}}, "cameras.door.source.transport:"),
        ({"source": {"type": "rtsp", "url": "rtsp://h/x", "port": 1}}, "cameras.door.source: unknown keys port"),
        ({"source": {"type": "rtsp", "url": "rtsp://u:p@h/x", "credentialsSecret": "s"}},
         "cameras.door.source.credentialsSecret: the url already carries a password"),
        ({"source": {"type": "file"}}, "cameras.door.source.path: required"),
        ({"source": {"path": "/x.mp4"}}, "cameras.door.source.type: required"),
        ({"source": {"type": "webcam"}}, "cameras.door.source.type: must be one of"),
        ({"source": {"type": "usb", "device": "video0"}}, "cameras.door.source.device:"),
        ({"source": {"type": "usb", "width": 640}}, "cameras.door.source.height:"),
        ({"source": {"type": "synthetic", "classes": []}}, "cameras.door.source.classes:"),
        ({"source": {"type": "images", "dir": "/x", "loop": "yes"}},
         "cameras.door.source.loop: expected true or false"),
        ({"source": {"type": "images", "dir": "/x"}, "record": {"enabled": True, "dir": "/r"}},
         "cameras.door.record.enabled: an images source has no video stream"),
        ({"source": {"type": "synthetic"}, "detectFps": 0}, "cameras.door.detectFps: must be greater than 0"),
        ({"source": {"type": "synthetic"}, "detectFPS": 5}, "cameras.door: unknown keys detectFPS"),
        ({"source": {"type": "synthetic"}, "maxWidth": 640.5}, "cameras.door.maxWidth: expected a whole number"),
        ({"source": {"type": "synthetic"}, "backoffMinS": 5, "backoffMaxS": 2}, "cameras.door.backoffMaxS:"),
        ({"source": {"type": "synthetic"}, "record": {"enabled": True}}, "cameras.door.record.dir: is required"),
        ({"source": {"type": "synthetic"}, "record": {"segmentSecs": 3}},
         "cameras.door.record: unknown keys segmentSecs"),
        ({"detectFps": 5}, "cameras.door.source: required"),
        ({"source": "rtsp://h/x"}, "cameras.door.source: must be an object"),
    ],
)
def test_config_errors_name_camera_and_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        CameraConfig.from_dict("door", settings)
    assert str(err.value).startswith(message), str(err.value)


def test_config_defaults_and_secret_url_never_in_errors() -> None:
    cfg = CameraConfig.from_dict("door", {"source": {"type": "rtsp", "url": "rtsp://10.0.0.5/s1"}})
    assert (cfg.detect_fps, cfg.stall_timeout_s, cfg.backoff_min_s, cfg.backoff_max_s) == (5.0, 10.0, 1.0, 30.0)
    assert cfg.source.transport == "tcp" and cfg.max_width is None
    assert (cfg.record.enabled, cfg.record.segment_seconds) == (False, 10.0)
    # Greengrass recipes often carry numbers as strings.
    cfg = CameraConfig.from_dict("door", {"source": {"type": "synthetic", "seed": "7"}, "detectFps": "2.5"})
    assert cfg.detect_fps == 2.5 and cfg.source.seed == 7
    with pytest.raises(ValueError) as err:
        CameraConfig.from_dict("door", {"source": {"type": "rtsp", "url": "rtspx://admin:hunter22@h/x"}})
    assert "hunter22" not in str(err.value) and "admin:***@h" in str(err.value)
    cfg = CameraConfig.from_dict("door", {"source": {"type": "rtsp", "url": "rtsp://admin:hunter22@h/x"}})
    assert "hunter22" not in repr(cfg)  # configs get logged
    with pytest.raises(ValueError, match="cameras.bad id: camera id must match"):
        CameraConfig.from_dict("bad id", {"source": {"type": "synthetic"}})


def test_whole_configuration_model() -> None:
    """The recipe's DefaultConfiguration is valid and agrees with the model's defaults; ids are checked and
    known to each entry; null removes an entry; sensors are checked with their key paths."""
    import yaml

    from ggvision.config.base import json_schema, parse, validator
    from ggvision.config.capture import CAMERA_ID_RE, CaptureConfig

    recipe = yaml.safe_load((REPO / "components" / "com.ggvision.Capture" / "recipe.yaml").read_text())
    default = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    cfg = parse(CaptureConfig, default)
    assert (cfg.ring_slots, cfg.metrics_period_s) == (default["ringSlots"], default["metricsPeriodS"])
    assert (CaptureConfig().ring_slots, CaptureConfig().metrics_period_s) == (8, 5.0)
    assert cfg.cameras["synthetic-1"].camera_id == "synthetic-1" and cfg.cameras["synthetic-1"].record.enabled
    assert cfg.sensors["thermal-1"].sensor_id == "thermal-1" and cfg.sensors["thermal-1"].scenario == "normal"
    assert list(parse(CaptureConfig, {**default, "cameras": {"synthetic-1": None}}).cameras) == []
    validate = validator(CaptureConfig)
    for bad, message in [
        ({"cameras": {"bad id": {"source": {"type": "synthetic"}}}}, "cameras.bad id: camera id must match"),
        ({"cameras": ["door"]}, "cameras: expected an object of camera id -> settings"),
        ({"cameras": {"door": "rtsp://h/x"}}, "cameras.door: must be an object"),
        ({"sensors": {"t": {"type": "thermal"}}}, "sensors.t.type: must be 'thermal-sim', got 'thermal'"),
        ({"sensors": {"t": {"type": "thermal-sim", "scenario": "x"}}}, "sensors.t.scenario: must be one of normal,"),
        ({"sensors": {"t": {"type": "thermal-sim", "fps": 0}}}, "sensors.t.fps: expected a number from 0.1 to 30"),
        ({"sensors": {"t": {"type": "thermal-sim", "rate": 1}}}, "sensors.t: unknown keys rate"),
        ({"cameras": {"t": {"source": {"type": "synthetic"}}}, "sensors": {"t": {"type": "thermal-sim"}}},
         "sensors.t: the id is also a camera id"),
        ({"ringSlots": 1}, "ringSlots: expected a number from 2 to 64"),
        ({"camera": {}}, "unknown configuration keys: camera"),
    ]:
        reason = validate(bad)
        assert reason is not None and reason.startswith(message), (bad, reason)
    assert list(json_schema(CaptureConfig)["properties"]["cameras"]["patternProperties"]) == [CAMERA_ID_RE.pattern]


def test_redact_url() -> None:
    assert redact_url("rtsp://admin:p%40ss@10.0.0.5:554/live?ch=1") == "rtsp://admin:***@10.0.0.5:554/live?ch=1"
    assert redact_url("rtsp://10.0.0.5/cam/realmonitor?user=admin&password=xyz") == (
        "rtsp://10.0.0.5/cam/realmonitor?user=admin&password=***"
    )
    assert redact_url("rtsp://viewer@h/x") == "rtsp://viewer@h/x"
    r = Redactor()
    r.add("Pa55:w@rd!")
    text = "Connection refused: 'rtsp://viewer:Pa55%3Aw%40rd%21@127.0.0.1:1/cam' (Pa55:w@rd!)"
    assert r(text) == "Connection refused: 'rtsp://viewer:***@127.0.0.1:1/cam' (***)"


@given(user=st.text(min_size=1, max_size=12), password=st.text(min_size=1, max_size=24))
@settings(max_examples=100, deadline=None)
def test_injected_credentials_round_trip_and_redact(user: str, password: str) -> None:
    url = with_credentials("rtsp://10.1.2.3:554/Streaming/Channels/101?transport=tcp", user, password)
    parts = urlsplit(url)
    assert (unquote(parts.username or ""), unquote(parts.password or "")) == (user, password)
    assert parts.hostname == "10.1.2.3" and parts.port == 554
    redacted = urlsplit(redact_url(url))
    assert redacted.password == "***" and redacted.hostname == "10.1.2.3"
    assert parse_credentials(json.dumps({"username": user, "password": password})) == (user, password)


def test_parse_credentials_forms() -> None:
    assert parse_credentials("admin:pa:ss word\n") == ("admin", "pa:ss word")  # a trailing newline is not part of it
    assert parse_credentials('{"username": "admin", "password": "x"}') == ("admin", "x")
    for bad in ("no-colon", ":nouser", '{"user": "a"}', "{broken"):
        with pytest.raises(ValueError) as err:
            parse_credentials(bad)
        assert bad not in str(err.value)  # the message never quotes the secret


# --------------------------------------------------------------------------- synthetic scene


def test_synthetic_scene_is_deterministic_by_seed() -> None:
    a, b, c = (SyntheticScene(320, 180, 10, seed, objects=5) for seed in (3, 3, 4))
    for i in (0, 7, 123):
        fa, ta = a.render(i)
        fb, tb = b.render(i)
        assert np.array_equal(fa, fb) and ta == tb
        assert fa.shape == (180, 320, 3) and fa.dtype == np.uint8
        for box in ta:
            x1, y1, x2, y2 = box.box
            assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 180
            assert box.label in ("person", "car", "bicycle")
    assert not np.array_equal(a.render(5)[0], c.render(5)[0])
    assert [t.box for t in a.render(0)[1]] != [t.box for t in a.render(10)[1]]  # objects move
    # lighting changes over time: mean brightness differs a quarter light period apart
    assert abs(float(a.render(0)[0].mean()) - float(a.render(50)[0].mean())) > 3


def test_synthetic_worker_truth_callback_errors_and_recording(tmp_path: Path, workers: list[CameraWorker]) -> None:
    from ggvision.capture.synthetic import h264_encoder_name

    sink = Sink()
    fails = {"n": 0}

    def flaky(frame: np.ndarray, ts: float) -> None:
        sink.on_frame(frame, ts)
        fails["n"] += 1
        if fails["n"] % 2:
            raise RuntimeError("a bug in the consumer")

    settings = {
        "source": {"type": "synthetic", "width": 320, "height": 180, "fps": 20, "seed": 1, "objects": 3},
        "detectFps": 10,
        "maxWidth": 160,
        "record": {"enabled": True, "segmentSeconds": 1, "dir": str(tmp_path)},
    }
    w = CameraWorker(CameraConfig.from_dict("synth", settings), flaky, sink.on_segment, sink.on_status)
    start(workers, w)
    recording = h264_encoder_name() is not None
    sink.wait(lambda: len(sink.frames) >= 6 and (not recording or len(sink.segments) >= 2), 10, "frames+segments")
    shape, ts, _ = sink.frames[-1]
    assert shape == (90, 160, 3)
    truth = w.ground_truth(ts)
    assert truth is not None and len(truth) == 3
    assert all(0 <= b.box[0] < b.box[2] <= 160 for b in truth)
    stats = w.stats()
    assert stats["callback_errors"] >= 3 and w.status().state == "connected"  # the worker survived them
    assert w.stop(timeout=5)
    if recording:
        check_segments(sink.segments, tmp_path, 1.0, 1.0, 0.05)


# --------------------------------------------------------------------------- files and image folders


def test_file_recording_non_realtime(tmp_path: Path, workers: list[CameraWorker]) -> None:
    video = _need_vtest()
    _need_tools("ffprobe")
    sink = Sink()
    settings = {
        "source": {"type": "file", "path": str(video), "realtime": False},
        "detectFps": 5,
        "maxWidth": 640,
        "record": {"enabled": True, "segmentSeconds": 4, "dir": str(tmp_path)},
    }
    w = start(workers, make_worker("lobby", settings, sink))
    assert sink.wait_state("stopped", 30).reason == "end of file"
    assert not w.is_alive() or w.stop(5)
    assert abs(len(sink.frames) - 13.64 * 5) <= 3
    assert {s for s, _, _ in sink.frames} == {(360, 640, 3)}
    timestamps = [t for _, t, _ in sink.frames]
    assert all(b > a for a, b in zip(timestamps, timestamps[1:], strict=False))
    assert len(sink.segments) == 3  # keyframes at 0, 5.12 and 10.24 s
    check_segments(sink.segments, tmp_path, 4.0, VTEST_GOP_S, FRAME_S)
    assert abs(sum(s.duration for s in sink.segments) - 13.64) < 0.05
    assert w.stats()["segment_bytes"] == sum(s.size for s in sink.segments)


def test_recording_failure_never_stops_frames(tmp_path: Path, workers: list[CameraWorker]) -> None:
    video = _need_vtest()
    (tmp_path / "not-a-dir").write_text("")
    sink = Sink()
    settings = {
        "source": {"type": "file", "path": str(video), "realtime": False},
        "record": {"enabled": True, "dir": str(tmp_path / "not-a-dir" / "segments")},
    }
    w = start(workers, make_worker("diskless", settings, sink))
    assert sink.wait_state("stopped", 30).reason == "end of file"
    assert len(sink.frames) >= 60 and w.stats()["record_errors"] >= 1 and not sink.segments


def test_looping_file_keeps_segments_contiguous(tmp_path: Path, workers: list[CameraWorker]) -> None:
    video = _need_vtest()
    _need_tools("ffprobe")
    sink = Sink()
    settings = {
        "source": {"type": "file", "path": str(video), "realtime": False, "loop": True},
        "record": {"enabled": True, "segmentSeconds": 5, "dir": str(tmp_path)},
    }
    w = start(workers, make_worker("loop", settings, sink))
    sink.wait(lambda: len(sink.segments) >= 5, 30, "5 segments across two passes")
    assert w.stop(5)
    check_segments(sink.segments, tmp_path, 5.0, VTEST_GOP_S, FRAME_S, file_ends=True)
    # the first pass is cut at its keyframes and at the end of the file; the second starts where it ended
    assert [s.duration for s in sink.segments[:3]] == pytest.approx([5.12, 5.12, 3.4], abs=2 * FRAME_S)


def test_image_folder_then_new_uploads(tmp_path: Path, workers: list[CameraWorker]) -> None:
    old = time.time() - 60

    def put(name: str, value: int) -> None:
        path = tmp_path / name
        cv2.imwrite(str(path), np.full((48, 64, 3), value, np.uint8))
        os.utime(path, (old, old))  # as if the upload finished a while ago

    for i in range(3):
        put(f"img{i}.png", 40 * i)
    (tmp_path / ".partial.png.tmp").write_bytes(b"not yet")
    sink = Sink()
    start(
        workers,
        make_worker("upload", {"source": {"type": "images", "dir": str(tmp_path), "fps": 20}, "detectFps": 10}, sink),
    )
    sink.wait_frames(3, 10)
    put("img3.png", 200)
    sink.wait_frames(4, 10)
    assert len(sink.frames) == 4 and sink.frames[0][0] == (48, 64, 3)


def test_missing_file_fails_missing_device_retries(tmp_path: Path, workers: list[CameraWorker]) -> None:
    gone, unplugged = Sink(), Sink()
    start(workers, make_worker("gone", {"source": {"type": "file", "path": str(tmp_path / "nope.mp4")}}, gone))
    usb = {"source": {"type": "usb", "device": "/dev/video-ggvision-test-absent"}, "backoffMinS": 30, "backoffMaxS": 60}
    w = start(workers, make_worker("unplugged", usb, unplugged))
    assert "no such file" in gone.wait_state("failed", 10).reason  # retrying cannot fix a wrong path
    assert "no such device" in unplugged.wait_state("reconnecting", 10).reason  # it may be plugged back in
    t = time.monotonic()
    assert w.stop(timeout=5) and time.monotonic() - t < 1  # stop interrupts the backoff wait
    assert unplugged.statuses[-1].state == "stopped"


# --------------------------------------------------------------------------- RTSP


def test_rtsp_tcp_frames_at_detect_fps_downscaled_and_recorded(
    tmp_path: Path, rtsp_server: RtspServer, workers: list[CameraWorker]
) -> None:
    sink = Sink()
    settings = rtsp_camera(
        rtsp_server.url, maxWidth=640, record={"enabled": True, "segmentSeconds": 4, "dir": str(tmp_path)}
    )
    w = start(workers, make_worker("door", settings, sink))
    sink.wait(lambda: len(sink.segments) >= 2, 30, "two RTSP segments")
    stats = w.stats()
    frames = list(sink.frames)
    assert {s for s, _, _ in frames} == {(360, 640, 3)}
    (_, t0, _), (_, t1, _) = frames[1], frames[-1]
    fps = (len(frames) - 2) / (t1 - t0)
    assert 4.5 <= fps <= 5.5, fps
    lag = [wall - ts for _, ts, wall in frames[5:]]
    assert -0.1 <= float(np.median(lag)) <= 1.5, "frame timestamps are mapped to the wall clock"
    assert 20 <= stats["input_fps"] <= 30 and stats["decoded_fps"] < 20  # non-reference frames skipped
    assert stats["bitrate_kbps"] > 100 and stats["segment_bytes"] > 0 and stats["reconnects"] == 0
    t = time.monotonic()
    assert w.stop(timeout=5) and time.monotonic() - t < 2
    assert sink.statuses[-1].state == "stopped"
    # stop() finished the open segment too: all of them check out
    check_segments(sink.segments, tmp_path, 4.0, VTEST_GOP_S, FRAME_S)


def test_rtsp_udp_transport(rtsp_server: RtspServer, workers: list[CameraWorker]) -> None:
    sink = Sink()
    start(workers, make_worker("yard", rtsp_camera(rtsp_server.url, transport="udp"), sink))
    sink.wait_frames(5, 15)
    assert sink.frames[0][0] == (720, 1280, 3)


def test_rtsp_reconnects_while_other_camera_keeps_going(rtsp_server: RtspServer, workers: list[CameraWorker]) -> None:
    video = _need_vtest()
    cam, other = Sink(), Sink()
    w = start(workers, make_worker("gate", rtsp_camera(rtsp_server.url, stallTimeoutS=3), cam))
    start(workers, make_worker("hall", {"source": {"type": "file", "path": str(video), "loop": True}}, other))
    cam.wait_frames(3, 15)
    other.wait_frames(3, 15)

    rtsp_server.kill()
    down = len(cam.statuses)
    reconnecting = cam.wait_state("reconnecting", 8, after=down)
    assert reconnecting.reason
    n_other = len(other.frames)
    other.wait_frames(n_other + 5, 5)  # isolation: the file camera kept delivering during the outage

    rtsp_server.start()  # same port
    n = len(cam.frames)
    cam.wait_frames(n + 3, 20)
    assert cam.wait_state("connected", 1, after=down)
    assert w.stats()["reconnects"] >= 1


def test_stall_watchdog_reconnects(rtsp_server: RtspServer, workers: list[CameraWorker]) -> None:
    sink = Sink()
    w = start(workers, make_worker("dock", rtsp_camera(rtsp_server.url, stallTimeoutS=2), sink))
    sink.wait_frames(3, 15)
    before = len(sink.statuses)
    rtsp_server.signal(signal.SIGSTOP)  # the server keeps its sockets open but sends nothing
    try:
        t = time.monotonic()
        status = sink.wait_state("reconnecting", 2 + 3, after=before)
        assert "stalled" in status.reason and time.monotonic() - t <= 2 + 3
    finally:
        rtsp_server.signal(signal.SIGCONT)
    n = len(sink.frames)
    sink.wait_frames(n + 3, 20)
    assert w.stats()["reconnects"] >= 1


def test_credentials_from_secret_are_used_and_never_shown(
    gst_rtsp: None,
    long_video: Path,
    workers: list[CameraWorker],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    password = "Pa55:w@rd!-xyzzy"
    server = RtspServer(long_video, user="viewer", password=password)
    server.start()
    caplog.set_level(logging.DEBUG, logger="ggvision.capture")
    try:
        lookups: list[str] = []

        def secret_lookup(secret_id: str) -> str:
            lookups.append(secret_id)
            return {"good": f"viewer:{password}", "json": json.dumps({"username": "viewer", "password": password})}[
                secret_id
            ]

        good, denied, refused = Sink(), Sink(), Sink()
        cam = rtsp_camera(server.url)
        cam["source"]["credentialsSecret"] = "good"
        w = start(workers, make_worker("auth", cam, good, secret_lookup))
        # the server requires the password: frames prove the secret was injected
        start(workers, make_worker("noauth", rtsp_camera(server.url), denied))
        cam = rtsp_camera("rtsp://127.0.0.1:9/cam")  # nothing listens on port 9 (discard)
        cam["source"]["credentialsSecret"] = "json"
        start(workers, make_worker("refused", cam, refused, secret_lookup))

        good.wait_frames(2, 15)
        assert "401" in denied.wait_state("reconnecting", 15).reason
        status = refused.wait_state("reconnecting", 15)
        assert "127.0.0.1:9" in status.reason
        assert lookups.count("good") >= 1 and lookups.count("json") >= 1
        shown = [
            caplog.text,
            *capfd.readouterr(),
            *(repr(s) for sink in (good, denied, refused) for s in sink.statuses),
            repr(w.stats()),
            repr(w.config),
        ]
        for text in shown:
            assert password not in text and "Pa55%3Aw%40rd" not in text
    finally:
        server.kill()


def test_local_segments_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    """Recording must not fill the disk: a camera keeps `retainS` of segments; others' files are left alone."""
    import os

    from ggvision.capture.recorder import prune_segments
    from ggvision.config.capture import CameraConfig

    now = 1_800_000_000.0
    for name, age in (("door-old.ts", 7200), ("door-new.ts", 60), ("yard-old.ts", 7200), (".door-open.ts.tmp", 7200)):
        (tmp_path / name).write_bytes(b"ts")
        os.utime(tmp_path / name, (now - age, now - age))
    assert prune_segments(tmp_path, "door", 3600, now=now) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".door-open.ts.tmp", "door-new.ts", "yard-old.ts"]
    cfg = CameraConfig.from_dict("door", {"source": {"type": "synthetic"},
                                          "record": {"enabled": True, "dir": str(tmp_path), "retainS": 600}})
    assert cfg.record.retain_s == 600
    with pytest.raises(ValueError, match="cameras.door.record.retainS: must be at least segmentSeconds"):
        CameraConfig.from_dict("door", {"source": {"type": "synthetic"}, "record": {
            "enabled": True, "dir": str(tmp_path), "segmentSeconds": 10, "retainS": 5}})


def test_synthetic_camera_keeps_its_pace_when_the_wall_clock_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wall clock stepped back an hour (NTP, an operator) must not stop the synthetic camera for an hour, nor
    a step forward make it drop an hour of frames: it is paced by the monotonic clock, stamped by its stream."""
    from ggvision.capture.synthetic import SyntheticSource
    from ggvision.config.capture import SyntheticSource as SyntheticConfig

    offset = [0.0]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])
    src = SyntheticSource(SyntheticConfig(type="synthetic", width=64, height=36, fps=20))
    frames = src.frames(threading.Event())
    stamps = [next(frames).timestamp for _ in range(3)]
    offset[0] = -3600.0
    t0 = time.monotonic()
    stamps += [next(frames).timestamp for _ in range(3)]
    offset[0] = 3600.0
    stamps += [next(frames).timestamp for _ in range(3)]
    assert time.monotonic() - t0 < 2  # six frames at 20 fps: no wait for the hour to pass again
    assert src.dropped == 0
    steps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(abs(s - 0.05) < 1e-6 for s in steps), steps  # the stream's own clock: 1/fps apart, no jump
