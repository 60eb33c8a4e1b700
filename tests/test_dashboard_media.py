"""The dashboard's clip playback: clips the Capture's recorder really writes, remuxed by dashboard/media.py, checked
packet by packet (no re-encoding) and played by Debian's headless chromium through a real `streamlit run`."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from browser_dev import Browser, StreamlitServer, browser_available

from dashboard.media import clip_to_mp4
from ggvision.capture.recorder import SegmentInfo, SegmentRecorder
from ggvision.capture.synthetic import H264Encoder, h264_encoder_name
from ggvision.sim.scenes import SyntheticScene

W, H, FPS = 320, 180, 10.0
SEGMENT_S = 3.0
EPOCH = 1_750_000_000.0  # the recorder maps stream time to epoch seconds: clips do not start at zero


def record(out_dir: Path, frames: int, encoder: H264Encoder) -> list[SegmentInfo]:
    """A synthetic camera recorded the way the Capture records one: its encoder's packets into SegmentRecorder."""
    scene = SyntheticScene(W, H, FPS, seed=3)
    segments: list[SegmentInfo] = []
    recorder: SegmentRecorder | None = None
    for i in range(frames):
        for packet in encoder.encode(scene.render(i)[0], i):
            if recorder is None:
                recorder = SegmentRecorder("cam1", out_dir, SEGMENT_S, encoder.template, segments.append, EPOCH)
            recorder.mux(packet)
    assert recorder is not None
    recorder.close()
    encoder.close()
    return segments


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[SegmentInfo]:
    if h264_encoder_name() is None:
        pytest.skip("this PyAV build has no H.264 encoder to make a camera's stream")
    segments = record(tmp_path_factory.mktemp("segments"), int(FPS * SEGMENT_S * 2 + 5), H264Encoder(W, H, FPS, 1.0))
    assert len(segments) == 3 and all(s.path.suffix == ".ts" for s in segments)
    return segments


VTEST = Path(__file__).resolve().parents[2] / "shared" / "data" / "video" / "vtest.avi"


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> list[SegmentInfo]:
    """Real camera footage (H.264 High, 1280x720, reordered frames: pts != dts) recorded the way the Capture
    records a file source: its demuxed packets into SegmentRecorder."""
    if not VTEST.is_file():
        pytest.skip(f"test video {VTEST} is absent (it lives in ../shared, outside the project)")
    segments: list[SegmentInfo] = []
    with av.open(str(VTEST)) as c:
        video = c.streams.video[0]
        recorder = SegmentRecorder("vtest", tmp_path_factory.mktemp("footage"), 4.0, video, segments.append, EPOCH)
        for packet in c.demux(video):
            if packet.size:
                recorder.mux(packet)
        recorder.close()
    assert len(segments) >= 2
    return segments


def nal_units_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B packet (start-code separated), as MPEG-TS carries H.264."""
    units, i, starts = [], 0, []
    while (i := data.find(b"\x00\x00\x01", i)) != -1:
        starts.append(i + 3)
        i += 3
    for k, s in enumerate(starts):
        end = starts[k + 1] - 3 if k + 1 < len(starts) else len(data)
        units.append(data[s:end].rstrip(b"\x00") if k + 1 < len(starts) else data[s:end])
    return units


def nal_units_avcc(data: bytes) -> list[bytes]:
    """The NAL units of a length-prefixed packet, as MP4 carries H.264 (4-byte lengths: FFmpeg's default)."""
    units, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        units.append(data[i + 4 : i + 4 + n])
        i += 4 + n
    return units


def slices(units: list[bytes]) -> list[bytes]:
    """Only the coded picture data (NAL types 1-5): parameter sets and delimiters are the container's business."""
    return [u for u in units if u and 1 <= (u[0] & 0x1F) <= 5]


def packets(data: bytes, fmt: str | None = None) -> list[av.Packet]:
    with av.open(io.BytesIO(data), format=fmt) as c:
        return [p for p in c.demux(c.streams.video[0]) if p.size]


@pytest.mark.parametrize("source", ["clips", "footage"])
def test_remux_keeps_every_compressed_picture_and_the_timing(source: str, request: pytest.FixtureRequest) -> None:
    segments: list[SegmentInfo] = request.getfixturevalue(source)
    for seg in segments:
        ts = seg.path.read_bytes()
        mp4 = clip_to_mp4(ts)
        assert mp4[4:8] == b"ftyp" and 0 < mp4.find(b"moov") < mp4.find(b"mdat"), "index first (faststart)"
        src, out = packets(ts, "mpegts"), packets(mp4)
        assert len(out) == len(src) and (source != "clips" or len(src) == round(seg.duration * FPS))
        # No re-encoding: each MP4 sample holds byte for byte the slices of the TS packet it came from.
        for a, b in zip(src, out, strict=True):
            assert slices(nal_units_avcc(bytes(b))) == slices(nal_units_annexb(bytes(a)))
            assert b.is_keyframe == a.is_keyframe
        # Same timing, shifted so that decoding starts at zero.
        t0 = src[0].dts * src[0].time_base
        assert [p.pts * p.time_base - t0 for p in src] == [p.pts * p.time_base for p in out]
        with av.open(io.BytesIO(mp4)) as c:
            assert c.duration / 1e6 == pytest.approx(seg.duration, abs=0.1)
            frame = next(c.decode(video=0))  # and it decodes from its first sample
            assert (frame.width, frame.height) == ((W, H) if source == "clips" else (1280, 720))


def test_b_frames_keep_their_order(tmp_path: Path) -> None:
    """Cameras send B-frames (pts != dts): the shift to zero keeps presentation after decoding order."""
    if h264_encoder_name() != "libx264":
        pytest.skip("libx264 is needed for B-frames")
    encoder = H264Encoder(W, H, FPS, 1.0)
    encoder.ctx.max_b_frames = 2  # the codec context opens at the first frame: still settable
    seg = record(tmp_path, int(FPS * SEGMENT_S) + 3, encoder)[0]
    src, out = packets(seg.path.read_bytes(), "mpegts"), packets(clip_to_mp4(seg.path.read_bytes()))
    assert any(p.pts != p.dts for p in src), "the encoder made no B-frames: the test would prove nothing"
    assert all(p.pts >= p.dts >= 0 for p in out)
    assert [(p.pts - p.dts) for p in out] == [(p.pts - p.dts) for p in src]


def hevc_clip(tmp_path: Path) -> bytes:
    """A camera that sends H.265: its packets remuxed into MPEG-TS, as the Capture records it."""
    scene = SyntheticScene(W, H, FPS, seed=3)
    out = av.open(str(tmp_path / "hevc.ts"), "w", format="mpegts")
    stream = out.add_stream("libx265", rate=int(FPS), options={"preset": "ultrafast", "x265-params": "log-level=error"})
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    for i in range(5):
        frame = av.VideoFrame.from_ndarray(scene.render(i)[0], format="bgr24")
        frame.pts = i
        for p in stream.encode(frame):
            out.mux(p)
    for p in stream.encode(None):
        out.mux(p)
    out.close()
    return (tmp_path / "hevc.ts").read_bytes()


def test_refuses_what_a_browser_cannot_play_with_the_reason(clips: list[SegmentInfo], tmp_path: Path) -> None:
    ts = clips[0].path.read_bytes()
    cases = {
        b"": "empty",
        os.urandom(4096): "not readable MPEG-TS",
        clip_to_mp4(ts): "not readable MPEG-TS",  # an MP4 is not a clip
        ts[:1000]: "no H.264 keyframe",  # cut before the first picture ends
    }
    for data, reason in cases.items():
        with pytest.raises(ValueError, match=reason):
            clip_to_mp4(data)
    with pytest.raises(ValueError, match="video is hevc, not H.264"):
        clip_to_mp4(hevc_clip(tmp_path))
    with pytest.raises(TypeError, match="not str"):
        clip_to_mp4(str(clips[0].path))  # type: ignore[arg-type]


def test_a_clip_that_starts_mid_gop_plays_from_its_first_keyframe(clips: list[SegmentInfo]) -> None:
    ts = clips[0].path.read_bytes()
    tail = ts[(len(ts) // 2) // 188 * 188 :]  # whole 188-byte TS packets from the middle on
    out = packets(clip_to_mp4(tail))
    assert out[0].is_keyframe and out[0].pts == 0


PLAYER = """\
import os
from pathlib import Path

import streamlit as st

from dashboard.media import clip_to_mp4

st.title("Clip")
st.video(clip_to_mp4(Path(os.environ["CLIP"]).read_bytes()), muted=True)
"""


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    reason = browser_available()
    if reason:
        pytest.skip(reason)
    with Browser(tmp_path / "shots") as b:
        yield b


@pytest.mark.parametrize("source", ["clips", "footage"])
def test_chromium_plays_the_remuxed_clip(source: str, request: pytest.FixtureRequest, browser: Browser,
                                         tmp_path: Path) -> None:  # fmt: skip
    clips: list[SegmentInfo] = request.getfixturevalue(source)
    size = (W, H) if source == "clips" else (1280, 720)
    script = tmp_path / "player.py"
    script.write_text(PLAYER)
    repo = Path(__file__).resolve().parents[1]
    env = {"CLIP": str(clips[1].path), "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    with StreamlitServer(script, env=env, log_path=tmp_path / "streamlit.log") as app:
        browser.open(app.url)
        played = browser.play_video("video", min_time=0.5)
        assert played["duration"] == pytest.approx(clips[1].duration, abs=0.1)
        assert (played["width"], played["height"]) == size
        assert "/media/" in played["src"]  # served by Streamlit's media endpoint, not inlined
        assert played["time"] >= 0.5 and played["frames"] > 0
        # why the remux: this chromium plays H.264 in MP4 but not the MPEG-TS the clips are
        can_play = "return document.createElement('video').canPlayType(arguments[0])"
        assert browser.driver.execute_script(can_play, 'video/mp4; codecs="avc1.640028"') == "probably"
        assert browser.driver.execute_script(can_play, 'video/mp2t; codecs="avc1.640028"') == ""
        if source == "clips":  # footage from ../shared stays out of the docs' pictures
            assert browser.screenshot("clip-player").stat().st_size > 5000
