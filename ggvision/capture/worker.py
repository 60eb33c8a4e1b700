"""CameraWorker: one thread per camera, isolated from the others.

Connect → demux → decode only what analytics needs → `on_frame(bgr, epoch_ts)` → remux into segments.
Errors end the connection, never the thread: it reconnects with exponential backoff and jitter, a
stall watchdog reconnects when no packet arrived for `stallTimeoutS`, and callback exceptions are
logged and counted.

Decoding at the detect rate (H.264/H.265): reference frames must always be decoded, but a packet
whose time is before the next frame due at `detectFps` is sent with `skip_frame=NONREF`, so the
decoder drops it outright if nothing references it (B-frames). Frames that come out of the decoder
but are not due are never converted or scaled; due frames are converted to BGR and downscaled to
`maxWidth` in one swscale pass (`to_ndarray(width=, height=)`). Decoding is single-threaded by
default (`decodeThreads: 1`): per camera that costs least CPU, and cameras run in parallel anyway;
frame threading would also delay every frame by one frame per thread. See bench/capture.py.

Hardware decoding (`hwDecode`, sources.hw_decoder): with NVDEC the same skipping applies (FFmpeg's H.264/HEVC
decoders honour skip_frame with a hwaccel too) and PyAV hands back frames already downloaded to system memory.
Those carry pts but no dts (PyAV copies only pts), so PtsGuesser follows pts: right for RTSP and MP4/MKV, not
for AVI files whose pts are in decode order. `stats()["decoder"]` says which decoder a connection got.

Timestamps given to `on_frame` and in SegmentInfo are epoch seconds: the stream clock of each
connection is mapped to the wall clock at its first packet (a looping file continues exactly where
the previous pass ended). Within a connection they follow the camera's own clock, so segments are
contiguous and frames line up with segments.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

import av
import cv2
import numpy as np

from ..component.storage import StorageFaults, condition_of
from ..config.capture import CameraConfig, FileSource, RtspSource, SourceConfig, UsbSource
from ..sim.scenes import ObjectBox
from .recorder import RecordError, SegmentInfo, SegmentRecorder
from .sources import (
    ImageDirSource,
    PermanentError,
    PtsGuesser,
    Redactor,
    decoded_on_gpu,
    hw_decoder,
    open_container,
)
from .synthetic import H264Encoder, SyntheticSource, h264_encoder_name
from .urls import parse_credentials, redact_url, with_credentials

log = logging.getLogger(__name__)

READ_POLL_S = 0.5  # longest a blocking read runs before the worker checks stop/stall
STATS_WINDOW_S = 5.0
TRUTH_KEEP = 256  # ground-truth entries kept for the synthetic side channel
RECORDABLE_CODECS = {"h264", "hevc", "mpeg2video", "mpeg4"}  # what MPEG-TS carries without re-encoding
# A session that stayed up this long resets the backoff; a flapping camera keeps backing off.
HEALTHY_SESSION_S = 10.0

State = Literal["starting", "connected", "reconnecting", "failed", "stopped"]


@dataclass(frozen=True)
class CameraStatus:
    camera: str
    state: State
    reason: str = ""
    since: float = field(default_factory=time.time)  # epoch seconds of the last state change

    def to_dict(self) -> dict[str, Any]:
        return {"camera": self.camera, "state": self.state, "reason": self.reason, "since": self.since}


class StallError(Exception):
    pass


class _Window:
    """Thread-safe sliding window of (time, value) events for rates and averages."""

    def __init__(self, span: float = STATS_WINDOW_S) -> None:
        self.span = span
        self._ev: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()
        self._first: float | None = None

    def add(self, value: float = 1.0) -> None:
        now = time.monotonic()
        with self._lock:
            if self._first is None:
                self._first = now
            self._ev.append((now, value))
            self._trim(now)

    def _trim(self, now: float) -> None:
        cut = now - self.span
        while self._ev and self._ev[0][0] < cut:
            self._ev.popleft()

    def total(self) -> float:
        with self._lock:
            self._trim(time.monotonic())
            return sum(v for _, v in self._ev)

    def rate(self) -> float:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            if self._first is None or now - self._first < 1.0:
                return 0.0  # too early to say
            return sum(v for _, v in self._ev) / min(self.span, now - self._first)


class _Sampler:
    """Picks frames at the detect rate on a fixed grid of stream time (so 25→10 fps alternates 2 and 3)."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self.tol = self.period / 4  # absorbs timestamp jitter
        self.next_due: float | None = None

    def wants(self, t: float | None, tol: float = 0.001) -> bool:
        """Whether a frame at stream time t may be due. Packets ask strictly, so fewer are decoded."""
        if t is None or self.next_due is None:
            return True
        if self.next_due - t > max(1.0, 3 * self.period):
            self.next_due = None  # the clock jumped back (camera restart, wrap): restart the grid
            return True
        return t >= self.next_due - tol

    def take(self, t: float) -> bool:
        """Whether a decoded frame is delivered; advances the grid if so."""
        if not self.wants(t, self.tol):
            return False
        if self.next_due is None or t - self.next_due > self.period:
            self.next_due = t + self.period  # first frame, or after a gap: restart the grid here
        else:
            self.next_due += self.period
        return True


@dataclass
class _Conn:
    """State of one container connection."""

    time_base: Fraction
    sampler: _Sampler
    anchor: float | None = None  # wall time of the first packet, if known better than its arrival
    guess: PtsGuesser = field(default_factory=PtsGuesser)
    epoch0: float | None = None  # epoch = epoch0 + stream seconds
    skip: str = "DEFAULT"
    last_t: float = 0.0
    last_dts: int | None = None
    frame_s: float = 0.0
    end_t: float = 0.0  # end of the last frame, stream seconds
    recorder: SegmentRecorder | None = None
    hw_unchecked: bool = False  # NVDEC set up; the first decoded frame says whether it really decodes


def _describe(src: SourceConfig) -> str:
    if isinstance(src, RtspSource):
        return f"{redact_url(src.url)} ({src.transport})"
    if isinstance(src, FileSource):
        return src.path
    if isinstance(src, UsbSource):
        return src.device
    return src.kind


class CameraWorker(threading.Thread):
    def __init__(
        self,
        config: CameraConfig,
        on_frame: Callable[[np.ndarray, float], None],
        on_segment: Callable[[SegmentInfo], None] | None = None,
        on_status: Callable[[CameraStatus], None] | None = None,
        secret_lookup: Callable[..., str] | None = None,
        faults: StorageFaults | None = None,
        on_gap: Callable[[float, float, str], None] | None = None,
    ) -> None:
        super().__init__(name=f"capture-{config.camera_id}", daemon=True)
        self.config = config
        self.faults = faults or StorageFaults("com.ggvision.Capture", log)  # shared by the component's cameras
        self.camera_id = config.camera_id
        self._on_frame = on_frame
        self._on_segment = on_segment
        self._on_gap = on_gap  # (start, end, reason): time recording could not keep (recorder.py)
        self._on_status = on_status
        # secret_lookup(secret_id) -> value; secret_lookup(secret_id, True) asks for the latest value (rotation)
        self._secret_lookup = secret_lookup
        self._refresh_secret = False  # the camera refused the credentials: fetch them anew before reconnecting
        self._stopping = threading.Event()
        self._status_lock = threading.Lock()
        self._status = CameraStatus(config.camera_id, "starting", "", time.time())
        self._redact = Redactor()
        if isinstance(config.source, RtspSource):
            from urllib.parse import unquote, urlsplit

            pw = urlsplit(config.source.url).password
            if pw:
                self._redact.add(pw, unquote(pw))
        self._resume_at: float | None = None  # epoch where the next pass of a looping file starts
        self._record_off: str | None = None  # why recording is unavailable for this camera, once known
        self._truth: OrderedDict[float, list[ObjectBox]] = OrderedDict()
        self._truth_lock = threading.Lock()
        # metrics
        self._in = _Window()
        self._bits = _Window()
        self._decoded = _Window()
        self._decode_s = _Window()
        self._converted = _Window()
        self._convert_s = _Window()
        self.reconnects = 0
        self.dropped_frames = 0
        self.frames_out = 0
        self.frames_decoded = 0
        self.callback_errors = 0
        self.record_errors = 0
        self.segments = 0
        self.segment_bytes = 0
        # which decoder the current (last) connection uses: "cuda" (NVDEC) or "cpu"; None before the first
        self.decoder: str | None = None

    # ------------------------------------------------------------------ public API

    def status(self) -> CameraStatus:
        with self._status_lock:
            return self._status

    def stats(self) -> dict[str, Any]:
        """Metrics; rates and averages over the last STATS_WINDOW_S seconds, counters since start.

        input_fps: video packets (frame sources: frames produced) per second; decoded_fps: frames out of
        the decoder (frame sources: rendered/read); decode_ms: decoder wall time per decoded frame;
        convert_ms: BGR conversion + scaling per delivered frame; dropped_frames: corrupt packets,
        unreadable images, frames a slow consumer made the synthetic source skip; bitrate_kbps: the
        compressed stream's bitrate; segment_bytes: bytes of announced segments; decoder: "cuda" (NVDEC) or
        "cpu" for the current (last) connection, None before the first (hwDecode; frame sources: "cpu").
        """
        decoded, converted = self._decoded.total(), self._converted.total()
        return {
            "camera": self.camera_id,
            "state": self.status().state,
            "input_fps": round(self._in.rate(), 2),
            "decoded_fps": round(self._decoded.rate(), 2),
            "decode_ms": round(1000 * self._decode_s.total() / decoded, 3) if decoded else 0.0,
            "convert_ms": round(1000 * self._convert_s.total() / converted, 3) if converted else 0.0,
            "reconnects": self.reconnects,
            "dropped_frames": self.dropped_frames,
            "frames_out": self.frames_out,
            "frames_decoded": self.frames_decoded,
            "callback_errors": self.callback_errors,
            "segments": self.segments,
            "segment_bytes": self.segment_bytes,
            "record_errors": self.record_errors,
            "bitrate_kbps": round(self._bits.rate() / 1000, 1),
            "decoder": self.decoder,
        }

    def ground_truth(self, timestamp: float) -> list[ObjectBox] | None:
        """Synthetic cameras: the true object boxes (in delivered-frame pixels) of a recent delivered frame."""
        with self._truth_lock:
            return self._truth.get(timestamp)

    def stop(self, timeout: float = 5.0) -> bool:
        """Ask the worker to stop and wait up to `timeout`; True if it has ended.

        Blocking reads are cut within READ_POLL_S; only an RTSP handshake in progress can take up to
        stallTimeoutS, after which the (daemon) thread ends by itself.
        """
        self._stopping.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)
        if self.ident is None:  # never started
            self._set_status("stopped", "stopped")
        return not self.is_alive()

    # ------------------------------------------------------------------ main loop

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            began = time.monotonic()
            try:
                ended = self._session()
            except PermanentError as e:
                reason = self._redact(str(e))
                log.error("camera %s failed: %s", self.camera_id, reason)
                self._set_status("failed", reason)
                return
            except Exception as e:
                if self._stopping.is_set():
                    break
                if time.monotonic() - began >= HEALTHY_SESSION_S:
                    failures = 0
                delay = self._backoff(failures)
                failures += 1
                reason = self._reason(e)
                if isinstance(e, av.error.HTTPUnauthorizedError) and self._credentialed():
                    # a rotated password: the camera has the new one, this worker the old; ask for the latest
                    self._refresh_secret = True
                    reason += " (credentials refused: the next try fetches the secret's latest value)"
                log.warning("camera %s: %s; reconnecting in %.1fs", self.camera_id, reason, delay)
                self._set_status("reconnecting", reason)
                if self._stopping.wait(delay):
                    break
                self.reconnects += 1
                continue
            if ended is not None and not self._stopping.is_set():
                self._set_status("stopped", ended)
                return
        self._set_status("stopped", "stopped")

    def _backoff(self, failures: int) -> float:
        """Exponential backoff with jitter, within [backoffMinS, backoffMaxS].

        Attempt n waits uniform(c/2, c) with c = min(max, min * 2**(n+1)): cameras that failed together
        (a switch reboot) do not all retry at the same instant.
        """
        cfg = self.config
        ceiling = min(cfg.backoff_max_s, cfg.backoff_min_s * 2 ** (failures + 1))
        return random.uniform(max(cfg.backoff_min_s, ceiling / 2), ceiling)

    def _reason(self, e: BaseException) -> str:
        text = str(e) or type(e).__name__
        if isinstance(e, av.error.FFmpegError) or not isinstance(e, (StallError, RecordError, ConnectionError)):
            text = f"{type(e).__name__}: {text}"
        return self._redact(text)

    def _set_status(self, state: State, reason: str = "") -> None:
        with self._status_lock:
            if self._status.state == state and self._status.reason == reason:
                return
            self._status = status = CameraStatus(self.camera_id, state, reason, time.time())
        log.info("camera %s %s%s", self.camera_id, state, f": {reason}" if reason else "")
        if self._on_status is not None:
            try:
                self._on_status(status)
            except Exception:
                self.callback_errors += 1
                log.exception("camera %s: on_status callback failed", self.camera_id)

    def _session(self) -> str | None:
        """Run one connection. Returns why the source ended for good, or None to open it again."""
        if self.config.source.kind in ("rtsp", "file", "usb"):
            return self._container_session()
        return self._frame_session()

    # ------------------------------------------------------------------ PyAV containers

    def _credentialed(self) -> bool:
        return isinstance(self.config.source, RtspSource) and bool(self.config.source.credentials_secret)

    def _connect_url(self, src: RtspSource) -> str:
        if not src.credentials_secret:
            return src.url
        if self._secret_lookup is None:
            raise PermanentError("credentialsSecret is set but no secret lookup was given to the worker")
        if self._refresh_secret:  # may fail transiently: retried, still refreshing
            value = self._secret_lookup(src.credentials_secret, True)
            self._refresh_secret = False
        else:
            value = self._secret_lookup(src.credentials_secret)
        self._redact.add(value)
        user, password = parse_credentials(value)
        self._redact.add(password)
        return with_credentials(src.url, user, password)

    def _container_session(self) -> str | None:
        cfg = self.config
        src = cfg.source
        hwaccel = hw_decoder(cfg.hw_decode)  # before connecting: cuda without a device is retried, not opened
        url = self._connect_url(src) if isinstance(src, RtspSource) else None
        opened_at = time.time()
        container = open_container(
            src,  # type: ignore[arg-type]
            url,
            open_timeout=cfg.stall_timeout_s,
            read_poll=READ_POLL_S,
            stall_timeout=cfg.stall_timeout_s,
            hwaccel=hwaccel,
        )
        del url  # the credentialed URL lives only inside the container
        conn: _Conn | None = None
        try:
            if not container.streams.video:
                raise PermanentError("the source has no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            ctx.thread_count = cfg.decode_threads
            ctx.thread_type = "SLICE" if cfg.decode_threads == 1 else "AUTO"
            self.decoder = "cuda" if ctx.is_hwaccel else "cpu"
            # A live stream's first packet was sent when we asked for it (RTSP PLAY), not when PyAV's
            # probing handed it to us up to a second later: anchor its clock at the connect time.
            conn = _Conn(stream.time_base, _Sampler(cfg.detect_fps), anchor=opened_at if cfg.is_live else None,
                         hw_unchecked=ctx.is_hwaccel)
            self._set_status("connected", f"{_describe(src)} {ctx.name} {ctx.width}x{ctx.height}"
                                          + (" (NVDEC)" if ctx.is_hwaccel else ""))
            self._check_recordable(ctx.name)
            pace = isinstance(src, FileSource) and src.realtime
            last_packet = time.monotonic()
            while True:
                try:
                    for packet in container.demux(stream):
                        if self._stopping.is_set():
                            return None
                        if packet.size == 0:  # the flush packet PyAV yields at end of stream
                            break
                        last_packet = time.monotonic()
                        self._packet(packet, stream, conn, pace)
                except av.error.ExitError:  # a read waited READ_POLL_S: check stop/stall, then resume
                    if self._stopping.is_set():
                        return None
                    if time.monotonic() - last_packet > cfg.stall_timeout_s:
                        raise StallError(f"stalled: no data for {cfg.stall_timeout_s:g}s") from None
                    continue
                if self._stopping.is_set():
                    return None
                if cfg.is_live:
                    raise ConnectionError("the stream ended")
                for frame in self._decode(ctx, None):
                    self._frame(frame, conn)
                if isinstance(src, FileSource) and src.loop:
                    self._resume_at = (conn.epoch0 or time.time()) + conn.end_t
                    return None
                return "end of file"
        finally:
            if conn is not None and conn.recorder is not None:
                self._close_recorder(conn.recorder, conn.end_t)
            container.close()

    def _check_recordable(self, codec: str) -> None:
        if self.config.record.enabled and codec not in RECORDABLE_CODECS and self._record_off is None:
            self._record_off = f"codec {codec} cannot be remuxed into MPEG-TS"
            log.warning("camera %s: recording disabled: %s", self.camera_id, self._record_off)

    def _packet(self, packet: av.Packet, stream: av.video.stream.VideoStream, conn: _Conn, pace: bool) -> None:
        self._in.add()
        self._bits.add(packet.size * 8)
        tb = conn.time_base
        ts = packet.pts if packet.pts is not None else packet.dts
        t = float(ts * tb) if ts is not None else None
        if conn.epoch0 is None:
            conn.epoch0 = (self._resume_at or conn.anchor or time.time()) - (t or 0.0)
            self._resume_at = None
        if packet.dts is not None:
            if conn.last_dts is not None and packet.dts > conn.last_dts:
                conn.frame_s = float((packet.dts - conn.last_dts) * tb)
            conn.last_dts = packet.dts
            if pace:  # real-time file playback: dts is monotonic even when pts is not
                delay = conn.epoch0 + float(packet.dts * tb) - time.time()
                if delay > 0 and self._stopping.wait(delay):
                    return
        if t is not None:
            conn.end_t = max(conn.end_t, t + conn.frame_s)

        skip = "DEFAULT" if conn.sampler.wants(t) else "NONREF"
        if skip != conn.skip:
            stream.codec_context.skip_frame = skip
            conn.skip = skip
        for frame in self._decode(stream.codec_context, packet):
            self._frame(frame, conn)
        if self.config.record.enabled and self._record_off is None:
            self._record(packet, stream, conn)

    def _decode(self, ctx: av.codec.context.CodecContext, packet: av.Packet | None) -> list[av.VideoFrame]:
        t0 = time.perf_counter()
        try:
            frames = ctx.decode(packet)
        except av.error.FFmpegError as e:  # a corrupt packet (e.g. UDP loss) costs a frame, not the camera
            self.dropped_frames += 1
            log.debug("camera %s: decode error: %s", self.camera_id, e)
            return []
        if frames:
            self._decode_s.add(time.perf_counter() - t0)
            self._decoded.add(len(frames))
            self.frames_decoded += len(frames)
        return frames

    def _frame(self, frame: av.VideoFrame, conn: _Conn) -> None:
        if conn.hw_unchecked:
            conn.hw_unchecked = False
            if not decoded_on_gpu(frame):  # FFmpeg fell back to its software decoder: say so
                self.decoder = "cpu"
                log.warning("camera %s: NVDEC was set up but frames come from the CPU decoder (%s); decoding on "
                            "the CPU", self.camera_id, frame.format.name)
        ts = conn.guess(frame.pts, frame.dts)
        t = float(ts * conn.time_base) if ts is not None else conn.last_t
        conn.last_t = t
        if not conn.sampler.take(t):
            return  # decoded (maybe as a reference) but not wanted: no conversion, no scaling
        t0 = time.perf_counter()
        img = frame.to_ndarray(format="bgr24", **self._target_size(frame.width, frame.height))
        self._convert_s.add(time.perf_counter() - t0)
        self._converted.add()
        self._deliver(img, (conn.epoch0 or 0.0) + t)

    def _target_size(self, width: int, height: int) -> dict[str, int]:
        mw = self.config.max_width
        if not mw or width <= mw:
            return {}
        return {"width": mw, "height": max(2, round(height * mw / width / 2) * 2)}

    # ------------------------------------------------------------------ recording

    def _new_recorder(self, template: av.stream.Stream, time_offset: float) -> SegmentRecorder | None:
        rec = self.config.record
        try:
            return SegmentRecorder(
                self.camera_id,
                rec.dir,
                rec.segment_seconds,
                template,
                self._segment_done,
                time_offset,  # type: ignore[arg-type]
                retain_s=rec.retain_s,
                min_free_bytes=rec.min_free_bytes,
                on_gap=self._gap,
            )
        except OSError as e:  # e.g. the recording volume is not mounted yet: frames keep flowing
            self._record_error(f"cannot record into {rec.dir}: {e}", e)
            return None

    def _record(self, packet: av.Packet, stream: av.stream.Stream, conn: _Conn) -> None:
        if conn.recorder is None:
            if not packet.is_keyframe:
                return  # a segment could only start at a keyframe anyway; retry a failed start there
            conn.recorder = self._new_recorder(stream, conn.epoch0 or 0.0)
            if conn.recorder is None:
                return
        try:
            conn.recorder.mux(packet)
        except RecordError as e:
            self._record_error(str(e), e)

    def _close_recorder(self, recorder: SegmentRecorder, end_t: float | None = None) -> None:
        try:
            recorder.close(end_t)
        except RecordError as e:
            self._record_error(str(e), e)

    def _record_error(self, message: str, exc: BaseException | None = None) -> None:
        """Recording failures never stop frame delivery. A storage condition (full disk, read-only, permission
        denied, less free than record.minFreeBytes) is counted and logged once for the whole component; other
        failures are logged on the first and every 100th."""
        self.record_errors += 1
        if exc is not None and condition_of(exc) is not None:
            self.faults.failed("segment", exc, "frames and detections go on; segments are given up (and events "
                                               "name the missing time) until it can write again")
            self.faults.count("segment")
            return
        if self.record_errors == 1 or self.record_errors % 100 == 0:
            log.warning(
                "camera %s: recording: %s (%d errors)", self.camera_id, self._redact(message), self.record_errors
            )

    def _gap(self, start: float, end: float, reason: str) -> None:
        if self._on_gap is not None:
            try:
                self._on_gap(start, end, self._redact(reason))
            except Exception:
                self.callback_errors += 1
                log.exception("camera %s: on_gap callback failed", self.camera_id)

    def _segment_done(self, info: SegmentInfo) -> None:
        self.faults.ok("segment")
        self.segments += 1
        self.segment_bytes += info.size
        if self._on_segment is not None:
            try:
                self._on_segment(info)
            except Exception:
                self.callback_errors += 1
                log.exception("camera %s: on_segment callback failed", self.camera_id)

    # ------------------------------------------------------------------ image folders and synthetic scenes

    def _frame_session(self) -> str | None:
        cfg = self.config
        src = cfg.source
        if src.kind == "images":
            source: ImageDirSource | SyntheticSource = ImageDirSource(src, min(src.fps, cfg.detect_fps))
        else:
            source = SyntheticSource(src)  # type: ignore[arg-type]
        encoder = self._synthetic_encoder()
        recorder: SegmentRecorder | None = None
        sampler = _Sampler(cfg.detect_fps)
        drops_seen = 0
        self.decoder = "cpu"  # rendered or read by OpenCV
        self._set_status("connected", src.kind)
        try:
            for item in source.frames(self._stopping):
                self._in.add()
                self.dropped_frames += source.dropped - drops_seen
                drops_seen = source.dropped
                due = src.kind == "images" or sampler.take(item.timestamp)
                if not due and encoder is None:
                    continue  # never rendered or read
                t0 = time.perf_counter()
                img, truth = item.load()
                self._decode_s.add(time.perf_counter() - t0)
                if img is None:
                    self.dropped_frames += 1
                    log.warning("camera %s: unreadable image skipped", self.camera_id)
                    continue
                self._decoded.add()
                self.frames_decoded += 1
                if encoder is not None:
                    packets = encoder.encode(img, item.index)
                    if recorder is None and encoder.template is not None and packets and packets[0].is_keyframe:
                        offset = item.timestamp - item.index / src.fps  # type: ignore[union-attr]
                        recorder = self._new_recorder(encoder.template, offset)
                    for p in packets:
                        self._bits.add(p.size * 8)
                        if recorder is not None:
                            try:
                                recorder.mux(p)
                            except RecordError as e:
                                self._record_error(str(e), e)
                if due:
                    self._deliver_scaled(img, item.timestamp, truth)
        finally:
            if recorder is not None:
                self._close_recorder(recorder)
            if encoder is not None:
                encoder.close()
        return None

    def _synthetic_encoder(self) -> H264Encoder | None:
        src = self.config.source
        if src.kind != "synthetic" or not self.config.record.enabled:
            return None
        if h264_encoder_name() is None:
            if self._record_off is None:
                self._record_off = "no H.264 encoder in this PyAV build"
                log.warning("camera %s: recording disabled: %s", self.camera_id, self._record_off)
            return None
        # Keyframes at least every segment so short test segments still cut where asked.
        gop_s = min(2.0, self.config.record.segment_seconds)
        return H264Encoder(src.width, src.height, src.fps, gop_s)  # type: ignore[union-attr]

    def _deliver_scaled(self, img: np.ndarray, ts: float, truth: list[ObjectBox] | None) -> None:
        size = self._target_size(img.shape[1], img.shape[0])
        if size:
            t0 = time.perf_counter()
            scale = size["width"] / img.shape[1]
            img = cv2.resize(img, (size["width"], size["height"]), interpolation=cv2.INTER_AREA)
            self._convert_s.add(time.perf_counter() - t0)
            self._converted.add()
            if truth is not None:
                truth = [b.scaled(scale) for b in truth]
        if truth is not None:
            with self._truth_lock:
                self._truth[ts] = truth
                while len(self._truth) > TRUTH_KEEP:
                    self._truth.popitem(last=False)
        self._deliver(img, ts)

    # ------------------------------------------------------------------ delivery

    def _deliver(self, img: np.ndarray, ts: float) -> None:
        self.frames_out += 1
        try:
            self._on_frame(img, ts)
        except Exception:
            self.callback_errors += 1
            if self.callback_errors == 1 or self.callback_errors % 100 == 0:
                log.exception("camera %s: on_frame callback failed (%d so far)", self.camera_id, self.callback_errors)
