"""Opening camera sources.

Two families:
- PyAV containers (rtsp, file, usb/v4l2): `open_container` returns an InputContainer that the worker
  demuxes packet by packet, so one connection feeds both decoding and the recorder.
- Frame sources (image folder here, synthetic scene in `synthetic.py`): iterate `SourceFrame`s paced in
  real time, whose pixels are loaded lazily so frames analytics does not want are never read/rendered.

Blocking reads are bounded by PyAV's interrupt callback: `timeout=(open_timeout, read_poll)`. A read
that waits longer than `read_poll` raises av.ExitError; the worker then checks stop/stall and simply
resumes demuxing (measured: resuming after such an interrupt is clean for RTSP over TCP and UDP).

Hardware decoding (a camera's `hwDecode`: off | auto | cuda): `hw_decoder` gives av.open an
av.codec.hwaccel.HWAccel for NVDEC (FFmpeg's CUDA hwaccel, PyAV >= 14: `av.open(..., hwaccel=HWAccel(
device_type="cuda"))`, as PyAV's examples/basics/hw_decode.py does). PyAV then downloads each decoded surface to
system memory inside `decode()` (av_hwframe_transfer_data, NV12: av/video/codeccontext.pyx `_transfer_hwframe`),
so the worker's frames are ordinary VideoFrames and `to_ndarray(format="bgr24")` gives the same BGR array as on
the CPU. Whether a CUDA device opens is probed once per process (`cuda_decode_probe`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import av
import cv2
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available
from av.container import InputContainer

from ..config.capture import FileSource, ImagesSource, RtspSource, UsbSource
from .urls import redact_url

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# An uploaded image younger than this may still be being written; uploaders should write `.name.tmp`
# and rename, but many FTP-style cameras do not.
UPLOAD_SETTLE_S = 0.5
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


class PermanentError(Exception):
    """A failure that retrying cannot fix (missing file, no video stream, misconfiguration)."""


class HwDecodeUnavailable(Exception):
    """`hwDecode: cuda` and no CUDA device opens: the worker retries with backoff (a driver may come up later)."""


HW_DEVICE = "cuda"
# All cameras of a process share the CUDA primary context instead of one context each (hundreds of MiB of GPU
# memory apiece): FFmpeg's libavutil/hwcontext_cuda.c reads the device option `primary_ctx` (flag
# AV_CUDA_USE_PRIMARY_CONTEXT). An option, not HWAccel(flags=): PyAV 15's HWAccel.create() passes options on
# to the per-stream device context but drops flags.
CUDA_DEVICE_OPTIONS = {"primary_ctx": "1"}
# What PyAV's download of an NVDEC surface gives (av_hwframe_transfer_data picks the CUDA frames' sw_format):
# NV12 for 8-bit 4:2:0, P010/P016 for more bits, planar 4:4:4. FFmpeg's software H.264/HEVC decoders never output
# the semi-planar ones, so a 4:2:0 frame in another format came from the CPU decoder.
NVDEC_FORMATS = frozenset({"nv12", "p010le", "p016le", "yuv444p", "yuv444p16le"})
# NVDEC lives in the driver's libnvcuvid; libcuda alone opens a device that cannot decode (a container started
# without the `video` driver capability), and FFmpeg would then quietly decode on the CPU.
NVDEC_LIBRARY = "libnvcuvid.so.1"
_probe_lock = threading.Lock()
_probe: tuple[bool, str] | None = None  # (a CUDA device opened, why not)
_fallback_logged = False


def cuda_decode_probe(retry_failed: bool = False) -> tuple[bool, str]:
    """Whether FFmpeg opens a CUDA device for NVDEC in this process, and why not; once per process (a failure is
    tried again only when `retry_failed`)."""
    global _probe
    with _probe_lock:
        if _probe is None or (retry_failed and not _probe[0]):
            if HW_DEVICE not in hwdevices_available():
                _probe = (False, "this FFmpeg build has no cuda hwaccel")
            else:
                try:  # av_hwdevice_ctx_create for the H.264 decoder's CUDA config; freed when dropped
                    HWAccel(HW_DEVICE, options=CUDA_DEVICE_OPTIONS).create(av.Codec("h264", "r"))
                    missing = _missing_library(NVDEC_LIBRARY)
                    _probe = (False, missing) if missing else (True, "")
                except Exception as e:  # no driver/device: FFmpeg reports e.g. EPERM from cuInit
                    _probe = (False, f"no CUDA device opens ({type(e).__name__}: {e})")
        return _probe


def _missing_library(name: str) -> str | None:
    try:
        ctypes.CDLL(name)
    except OSError as e:
        return f"{name} does not load ({e}); NVDEC needs the driver's video decode library"
    return None


def decoded_on_gpu(frame: av.VideoFrame) -> bool:
    """Whether a frame from a codec context with a hwaccel came from NVDEC, not from FFmpeg's software fallback
    (a profile NVDEC refuses, a decoder that failed to start): by its pixel format, NVDEC_FORMATS."""
    return frame.format.name in NVDEC_FORMATS


def hw_decoder(mode: str) -> HWAccel | None:
    """The `hwaccel` for av.open under hwDecode `mode`; None = decode on the CPU.

    off: None. auto: NVDEC when a CUDA device opens, else None (logged once per process); a stream whose codec
    NVDEC cannot decode falls back to the CPU inside PyAV (allow_software_fallback). cuda: NVDEC or
    HwDecodeUnavailable (no device) / PermanentError from open_container (no NVDEC decoder for the codec).
    """
    global _fallback_logged
    if mode == "off":
        return None
    ok, why = cuda_decode_probe(retry_failed=mode == "cuda")
    if ok:
        return HWAccel(HW_DEVICE, allow_software_fallback=mode != "cuda", options=CUDA_DEVICE_OPTIONS)
    if mode == "cuda":
        raise HwDecodeUnavailable(f"hwDecode is cuda but NVDEC is unavailable: {why}; "
                                  "set hwDecode to auto to decode on the CPU instead")
    if not _fallback_logged:
        _fallback_logged = True
        log.warning("hwDecode auto: NVDEC unavailable (%s); these cameras decode on the CPU", why)
    return None


class Redactor:
    """Masks a camera's credentials in free text: FFmpeg error messages quote the URL they failed on."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, *secrets: str) -> None:
        for s in secrets:
            # Very short strings would mask unrelated text; URLs are redacted structurally anyway.
            if len(s) >= 4:
                self._secrets.update({s, quote(s, safe="")})

    def __call__(self, text: str) -> str:
        text = _URL_RE.sub(lambda m: redact_url(m.group(0)), text)
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return text


def open_container(
    source: RtspSource | FileSource | UsbSource,
    url: str | None,
    *,
    open_timeout: float,
    read_poll: float,
    stall_timeout: float,
    hwaccel: HWAccel | None = None,
) -> InputContainer:
    """Open one connection. `url` is the RTSP URL with credentials already injected (never stored).
    `hwaccel` (hw_decoder): decode on the GPU; the stream's `codec_context.is_hwaccel` says whether it does."""
    try:
        return _open(source, url, open_timeout, read_poll, stall_timeout, hwaccel)
    except RuntimeError as e:  # PyAV: hwaccel without software fallback and no stream NVDEC can decode
        if hwaccel is None or isinstance(e, av.error.FFmpegError):
            raise
        raise PermanentError(f"hwDecode is cuda but NVDEC cannot decode this stream ({e}); "
                             "set hwDecode to auto or off") from None


def _open(source: RtspSource | FileSource | UsbSource, url: str | None, open_timeout: float, read_poll: float,
          stall_timeout: float, hwaccel: HWAccel | None) -> InputContainer:
    timeout = (open_timeout, read_poll)
    if isinstance(source, RtspSource):
        options = {
            "rtsp_transport": source.transport,
            # Socket-level backstop for the stall watchdog (FFmpeg >= 5 calls it `timeout`, in µs).
            "timeout": str(int(stall_timeout * 1_000_000)),
            # Do not set up audio/metadata RTP sessions we would only throw away.
            "allowed_media_types": "video",
        }
        return av.open(url, options=options, timeout=timeout, hwaccel=hwaccel)
    if isinstance(source, FileSource):
        if not os.path.isfile(source.path):
            raise PermanentError(f"no such file: {source.path}")
        return av.open(source.path, timeout=timeout, hwaccel=hwaccel)
    if isinstance(source, UsbSource):
        if not os.path.exists(source.device):
            raise FileNotFoundError(f"no such device: {source.device}")  # may be replugged: retry
        options: dict[str, str] = {}
        if source.width and source.height:
            options["video_size"] = f"{source.width}x{source.height}"
        if source.fps:
            options["framerate"] = f"{source.fps:g}"
        if source.input_format:
            options["input_format"] = source.input_format
        # v4l2 reads are blocking ioctls that the interrupt callback cannot cut short; frames pace them.
        return av.open(source.device, format="v4l2", options=options, timeout=(open_timeout, None),
                       hwaccel=hwaccel)
    raise TypeError(f"not a container source: {source!r}")


class PtsGuesser:
    """FFmpeg's guess_correct_pts: trust frame pts unless it goes backwards more often than dts.

    AVI (and some cameras) carry decode-order timestamps as pts; with B-frames the decoded frames
    then come out with non-monotonic pts while their packet dts is monotonic.
    """

    def __init__(self) -> None:
        self.faulty_pts = self.faulty_dts = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if dts is not None:
            if self.last_dts is not None and dts <= self.last_dts:
                self.faulty_dts += 1
            self.last_dts = dts
        if pts is not None:
            if self.last_pts is not None and pts <= self.last_pts:
                self.faulty_pts += 1
            self.last_pts = pts
        if pts is not None and (self.faulty_pts <= self.faulty_dts or dts is None):
            return pts
        return dts


@dataclass
class SourceFrame:
    """One frame of a frame source. `load` returns (BGR image or None if unreadable, ground truth or None)."""

    timestamp: float  # epoch seconds
    index: int
    load: Callable[[], tuple[np.ndarray | None, list | None]]


class ImageDirSource:
    """A folder of images: each image once in name order, then new uploads as they arrive; or looped.

    Paced at `fps` (the worker passes min(fps, detectFps): no uploaded image is skipped); timestamps are
    the wall-clock time each image is taken.
    """

    def __init__(self, cfg: ImagesSource, fps: float | None = None) -> None:
        self.dir = Path(cfg.dir)
        self.period = 1.0 / (fps or cfg.fps)
        self.loop = cfg.loop
        self.dropped = 0

    def _listing(self) -> list[str]:
        now = time.time()
        names = []
        with os.scandir(self.dir) as it:  # FileNotFoundError: the worker retries with backoff
            for e in it:
                if e.name.startswith(".") or Path(e.name).suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                try:
                    if e.is_file() and now - e.stat().st_mtime >= UPLOAD_SETTLE_S:
                        names.append(e.name)
                except FileNotFoundError:
                    continue  # removed while listing
        return sorted(names)

    def frames(self, stop: threading.Event) -> Iterator[SourceFrame]:
        done: set[str] = set()
        next_t = time.time()
        index = 0
        while not stop.is_set():
            names = self._listing()
            todo = [n for n in names if n not in done]
            if not todo and self.loop and names:
                done.clear()
                todo = names
            if not todo:
                if stop.wait(min(1.0, max(self.period, 0.1))):
                    return
                continue
            for name in todo:
                delay = next_t - time.time()
                if delay > 0 and stop.wait(delay):
                    return
                now = time.time()
                next_t = max(next_t + self.period, now)  # a slow consumer never causes a burst later
                done.add(name)
                path = str(self.dir / name)
                yield SourceFrame(now, index, lambda p=path: (cv2.imread(p, cv2.IMREAD_COLOR), None))
                index += 1
