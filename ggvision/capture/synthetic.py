"""The synthetic camera source: a SyntheticScene (ggvision.sim.scenes) paced in real time, optionally
H.264-encoded so it can be recorded like a real camera."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction

import av
import numpy as np

from ..config.capture import SyntheticSource as SyntheticConfig
from ..sim.scenes import ObjectBox, SyntheticScene
from .sources import SourceFrame

H264_ENCODERS = ("libx264", "libopenh264")  # software encoders a PyAV wheel may bundle
BITRATE = 3_000_000  # bit/s of a synthetic camera's H.264 stream


def scene_of(cfg: SyntheticConfig) -> SyntheticScene:
    """The scene a synthetic camera's configuration describes."""
    return SyntheticScene(cfg.width, cfg.height, cfg.fps, cfg.seed, cfg.objects, cfg.classes)


class SyntheticSource:
    """Paces a SyntheticScene in real time; skips ahead (counting drops) when the consumer falls behind."""

    def __init__(self, cfg: SyntheticConfig) -> None:
        self.scene = scene_of(cfg)
        self.period = 1.0 / cfg.fps
        self.dropped = 0

    def frames(self, stop: threading.Event) -> Iterator[SourceFrame]:
        # Paced by the monotonic clock, stamped by the stream clock mapped to the wall clock at the start (as a
        # camera's stream is, worker.py): a step of the wall clock neither stops the camera (a step back would
        # make it wait an hour) nor makes it drop an hour of frames.
        epoch0, mono0 = time.time(), time.monotonic()
        index = 0
        while not stop.is_set():
            delay = mono0 + index * self.period - time.monotonic()
            if delay > 0:
                if stop.wait(delay):
                    return
            elif -delay > 2 * self.period:
                behind = int(-delay / self.period)
                self.dropped += behind
                index += behind
            yield SourceFrame(epoch0 + index * self.period, index, self._loader(index))
            index += 1

    def _loader(self, index: int) -> Callable[[], tuple[np.ndarray, list[ObjectBox]]]:
        return lambda: self.scene.render(index)


def h264_encoder_name() -> str | None:
    """The first software H.264 encoder this PyAV build has, or None (then synthetic cameras do not record)."""
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except Exception:
            continue
        return name
    return None


class H264Encoder:
    """Encodes synthetic frames so a synthetic camera exercises the recorder like a real camera does."""

    TIME_BASE = Fraction(1, 90000)

    def __init__(self, width: int, height: int, fps: float, gop_s: float = 2.0) -> None:
        name = h264_encoder_name()
        if name is None:
            raise RuntimeError("this PyAV build has no H.264 encoder (libx264/libopenh264)")
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
        ctx.time_base = self.TIME_BASE
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.gop_size = max(1, round(fps * gop_s))
        ctx.max_b_frames = 0
        ctx.thread_count = 1
        # A real camera's rate (2-5 Mbit/s): unbounded quality would spend ~10 Mbit/s on the simulated noise.
        ctx.bit_rate = BITRATE
        if name == "libx264":
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
        self.ctx = ctx
        self.fps = fps
        self.template: av.video.stream.VideoStream | None = None
        self._probe: av.container.InputContainer | None = None

    def encode(self, bgr: np.ndarray, index: int) -> list[av.Packet]:
        frame = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        frame.pts = round(index * 90000 / self.fps)
        frame.time_base = self.TIME_BASE
        packets = self.ctx.encode(frame)
        for p in packets:
            p.time_base = self.TIME_BASE
        if self.template is None and packets and packets[0].is_keyframe:
            # The recorder copies stream parameters from a demuxed stream; parsing our own first
            # keyframe (SPS/PPS are in-band) gives one without opening an extra encoder per segment.
            self._probe = av.open(io.BytesIO(bytes(packets[0])), format="h264")
            self.template = self._probe.streams.video[0]
        return packets

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
