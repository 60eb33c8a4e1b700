"""Clip playback: the Uplink's MPEG-TS clips remuxed to MP4 that a browser's <video> plays, without re-encoding.

`clip_to_mp4(ts)` gives the same H.264 packets in an MP4 with the index (moov) before the media (faststart), so
Chromium knows the duration and starts playing from the first bytes it gets; timestamps are shifted so that
decoding starts at zero (presentation order, B-frames included, is kept). Only the video stream is kept (the
Capture records video only). No frame is decoded: a 5 s 720p clip (1.1 MB) takes about 20 ms on one core.

Capture records whatever the camera sends (H.264, HEVC, MPEG-2, MPEG-4 Part 2: ggvision/capture/worker.py).
Chromium plays H.264 in MP4 everywhere, HEVC only where the platform has a hardware decoder, the others never,
so anything but H.264 is refused with a ValueError that names the codec, as are empty, unreadable or
videoless input: a caller shows the message instead of a broken player.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import av

PLAYABLE = "h264"


def clip_to_mp4(ts: bytes) -> bytes:
    """An MPEG-TS clip (H.264 video) as a faststart MP4 holding the very same compressed packets."""
    if not isinstance(ts, (bytes, bytearray, memoryview)):
        raise TypeError(f"clip_to_mp4 takes the clip's bytes, not {type(ts).__name__}")
    if len(ts) == 0:
        raise ValueError("clip is empty (0 bytes): expected an MPEG-TS clip")
    try:
        src = av.open(io.BytesIO(bytes(ts)), format="mpegts")
    except av.FFmpegError as e:
        raise ValueError(f"clip ({len(ts)} bytes) is not readable MPEG-TS: {e}") from None
    with src:
        if not src.streams.video:
            raise ValueError(f"clip ({len(ts)} bytes) has no video stream: is it MPEG-TS from the Capture?")
        video = src.streams.video[0]
        codec = video.codec_context.name
        if codec != PLAYABLE:
            raise ValueError(
                f"clip's video is {codec}, not H.264: browsers play only H.264 in MP4 without re-encoding "
                "(set the camera's stream to H.264 to review its clips in the dashboard)"
            )
        # faststart moves the index to the front in a second pass that reopens the output by name, which an
        # in-memory output does not have: write a temporary file.
        with tempfile.TemporaryDirectory(prefix="ggvision-clip-") as tmp:
            path = Path(tmp) / "clip.mp4"
            count = _remux(src, video, path)
            if count == 0:
                raise ValueError(f"clip ({len(ts)} bytes) holds no H.264 keyframe to start playing from")
            return path.read_bytes()


def _remux(src: av.container.InputContainer, video: av.video.stream.VideoStream, path: Path) -> int:
    """Copy the video packets from the first keyframe on into `path`; returns how many were written."""
    out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    count = 0
    try:
        # opaque=True: copy the stream's parameters, no encoder is opened (nothing is re-encoded).
        stream = out.add_stream_from_template(video, opaque=True)
        origin: int | None = None
        try:
            for packet in src.demux(video):
                if packet.size == 0 or (packet.dts is None and packet.pts is None):
                    continue  # the demuxer's final flush packet, or one with no time to place it at
                if origin is None:
                    if not packet.is_keyframe:
                        continue  # frames before the first keyframe cannot be decoded on their own
                    origin = packet.dts if packet.dts is not None else packet.pts
                dts = packet.dts if packet.dts is not None else packet.pts
                packet.dts = dts - origin
                packet.pts = (packet.pts if packet.pts is not None else dts) - origin
                packet.stream = stream
                out.mux(packet)
                count += 1
        except av.FFmpegError as e:
            raise ValueError(f"clip is damaged: {e}") from None
    finally:
        try:
            out.close()
        except av.FFmpegError as e:
            if count:  # an empty output failing to close is already reported by the caller
                raise ValueError(f"could not write the MP4: {e}") from None
    return count
