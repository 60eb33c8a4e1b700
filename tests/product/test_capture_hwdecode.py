"""Capture's hardware decoding (`hwDecode`: off | auto | cuda; ggvision/capture/sources.py `hw_decoder`).

NVDEC goes through FFmpeg's CUDA hwaccel as PyAV >= 14 exposes it (`av.open(..., hwaccel=HWAccel(device_type=
"cuda"))`, PyAV's examples/basics/hw_decode.py; the device comes from libavutil's av_hwdevice_ctx_create). On a
machine without a CUDA device (CI, this project's VMs) these tests hold the fallback rule: `auto` decodes on the
CPU and says so (`decoder: "cpu"` in the camera's stats and capture-metrics), `cuda` delivers no frames and the
camera's status names the setting. Where a device opens, the same tests expect `decoder: "cuda"` and BGR frames
equal to the CPU decoder's within rounding (NV12 vs YUV420P into swscale).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import test_capture_worker as capture_tests
from test_capture_worker import RtspServer, Sink, make_worker, rtsp_camera, start

from ggvision.capture import CameraConfig, CameraWorker
from ggvision.capture.sources import HwDecodeUnavailable, cuda_decode_probe, decoded_on_gpu, hw_decoder

# the RTSP server, the looped test video and the workers' clean-up, as the worker's own tests have them
gst_rtsp, long_video = capture_tests.gst_rtsp, capture_tests.long_video
rtsp_server, workers = capture_tests.rtsp_server, capture_tests.workers

HAVE_CUDA, WHY_NOT = cuda_decode_probe()
EXPECTED = "cuda" if HAVE_CUDA else "cpu"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"source": {"type": "rtsp", "url": "rtsp://h/x"}, "hwDecode": "gpu"},
         "cameras.door.hwDecode: must be one of off, auto, cuda, got 'gpu'"),
        ({"source": {"type": "rtsp", "url": "rtsp://h/x"}, "hwDecode": True},
         "cameras.door.hwDecode: must be one of off, auto, cuda, got True"),
        ({"source": {"type": "synthetic"}, "hwDecode": "cuda"},
         "cameras.door.hwDecode: cuda needs a video stream to decode; a synthetic source has none"),
        ({"source": {"type": "images", "dir": "/x"}, "hwDecode": "cuda"},
         "cameras.door.hwDecode: cuda needs a video stream to decode; a images source has none"),
    ],
)
def test_bad_hw_decode_setting_names_the_field(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as err:
        CameraConfig.from_dict("door", settings)
    assert str(err.value).startswith(message), str(err.value)


def test_hw_decode_default_is_off_and_auto_is_allowed_everywhere() -> None:
    assert CameraConfig.from_dict("door", {"source": {"type": "rtsp", "url": "rtsp://h/x"}}).hw_decode == "off"
    assert CameraConfig.from_dict("door", {"source": {"type": "synthetic"}, "hwDecode": "auto"}).hw_decode == "auto"


def test_hw_decoder_by_mode() -> None:
    assert hw_decoder("off") is None
    auto = hw_decoder("auto")
    assert (auto is not None) == HAVE_CUDA
    if HAVE_CUDA:
        assert hw_decoder("cuda") is not None
    else:
        assert WHY_NOT
        with pytest.raises(HwDecodeUnavailable, match="hwDecode is cuda but NVDEC is unavailable: .*set hwDecode "
                                                       "to auto"):
            hw_decoder("cuda")


def test_frames_from_the_software_fallback_are_told_apart() -> None:
    """PyAV downloads an NVDEC surface as NV12 (P010 for 10 bits); FFmpeg's software decoders give YUV420P for the
    same streams: a hwaccel context whose frames come as YUV420P fell back to the CPU (stats say "cpu")."""
    import av

    for fmt, gpu in (("nv12", True), ("p010le", True), ("yuv420p", False), ("yuvj420p", False)):
        assert decoded_on_gpu(av.VideoFrame(64, 32, fmt)) is gpu, fmt


def test_nv12_frames_convert_to_the_same_bgr(long_video: Path) -> None:
    """The conversion half of the NVDEC path on any machine: a decoded picture as NVDEC's download gives it (NV12)
    through the worker's one-pass convert + downscale equals the CPU decoder's YUV420P picture within rounding."""
    import av

    with av.open(str(long_video)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            nv12 = frame.reformat(format="nv12")
            assert decoded_on_gpu(nv12) and not decoded_on_gpu(frame)
            for size in ({}, {"width": 640, "height": 360}):
                want = frame.to_ndarray(format="bgr24", **size)
                got = nv12.to_ndarray(format="bgr24", **size)
                assert got.shape == want.shape and got.dtype == np.uint8
                assert float(np.abs(got.astype(np.int16) - want).mean()) < 0.5  # measured: 0.04 (0 downscaled)
            if i == 5:
                break


def _first_frames(video: Path, mode: str, n: int) -> tuple[list[np.ndarray], str | None]:
    got: list[np.ndarray] = []
    done = Sink()

    def on_frame(img: np.ndarray, ts: float) -> None:
        if len(got) < n:
            got.append(img.copy())
        if len(got) == n:
            done.on_frame(img, ts)

    cfg = CameraConfig.from_dict("door", {"source": {"type": "file", "path": str(video), "realtime": False},
                                          "hwDecode": mode})
    w = CameraWorker(cfg, on_frame)
    w.start()
    try:
        done.wait_frames(1, 60)
    finally:
        w.stop(timeout=10)
    return got, w.stats()["decoder"]


def test_auto_gives_the_same_bgr_frames_as_the_cpu(long_video: Path) -> None:
    cpu, dec_cpu = _first_frames(long_video, "off", 8)
    auto, dec_auto = _first_frames(long_video, "auto", 8)
    assert (dec_cpu, dec_auto) == ("cpu", EXPECTED)
    assert [f.shape for f in auto] == [f.shape for f in cpu] == [(720, 1280, 3)] * 8
    assert all(f.dtype == np.uint8 for f in auto)
    for a, c in zip(auto, cpu, strict=True):
        diff = np.abs(a.astype(np.int16) - c.astype(np.int16))
        if dec_auto == "cpu":
            assert not diff.any()  # the very same decoder
        else:
            assert float(diff.mean()) < 2.0, float(diff.mean())  # NVDEC: same pictures, chroma rounding apart


def test_rtsp_auto_decodes_and_says_which_decoder(rtsp_server: RtspServer, workers: list[CameraWorker]) -> None:
    sink = Sink()
    w = start(workers, make_worker("door", rtsp_camera(rtsp_server.url, hwDecode="auto", maxWidth=640), sink))
    sink.wait_frames(12, 20)
    assert sink.frames[0][0] == (360, 640, 3)
    stats = w.stats()
    assert stats["decoder"] == EXPECTED
    # non-reference frames skipped by the decoder whichever decodes (FFmpeg drops them before the hwaccel sees
    # them): fewer frames decoded than packets received (vtest: 127 of 341 at 5 fps, bench/capture.py)
    assert 0 < stats["decoded_fps"] < 0.8 * stats["input_fps"], stats
    connected = next(s for s in sink.statuses if s.state == "connected")
    assert connected.reason.endswith("(NVDEC)") == HAVE_CUDA, connected.reason


def test_rtsp_cuda_without_a_device_retries_and_names_the_setting(
    rtsp_server: RtspServer, workers: list[CameraWorker]
) -> None:
    sink = Sink()
    w = start(workers, make_worker("door", rtsp_camera(rtsp_server.url, hwDecode="cuda"), sink))
    if HAVE_CUDA:
        sink.wait_frames(3, 20)
        assert w.stats()["decoder"] == "cuda"
        return
    status = sink.wait_state("reconnecting", 10)
    assert "hwDecode is cuda but NVDEC is unavailable" in status.reason
    assert "set hwDecode to auto" in status.reason
    deadline = time.monotonic() + 10
    while w.reconnects < 1 and time.monotonic() < deadline:  # retried with backoff: a driver may come up later
        time.sleep(0.05)
    assert w.reconnects >= 1
    assert not sink.frames and w.stats()["decoder"] is None
