"""Probing an RTSP camera before it joins a site: open the stream with PyAV (RTSP DESCRIBE, SETUP, PLAY), decode
its first frames and say what it sends — codec, resolution, the frame rate it announces and the one measured over
those frames — with the first frame as a JPEG snapshot.

`probe(url, user, password)` gives a ProbeResult or a ProbeError whose message names the URL without credentials
and says what went wrong: unreachable, refused, 401 (bad credentials), 404, no video stream, no answer in time.
The password is injected into the URL only for the connection and never appears in a message or a log record.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import av
import cv2

from ggvision.config.capture import redact_url

log = logging.getLogger(__name__)


class ProbeError(Exception):
    """The camera could not be probed; the message names the URL (credentials never) and the reason."""


@dataclass(frozen=True)
class ProbeResult:
    url: str  # without credentials
    codec: str
    profile: str | None
    width: int
    height: int
    announced_fps: float | None  # what the stream description says (None when it says nothing)
    measured_fps: float | None  # from the timestamps of the frames decoded (None with fewer than two)
    frames: int  # decoded
    seconds: float  # the whole probe, connection included
    snapshot: bytes  # the first frame, JPEG

    @property
    def fps(self) -> float | None:
        """The best figure for the camera's frame rate: measured where it could be, else announced."""
        return self.measured_fps or self.announced_fps


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """(url without user info, user, password) of a URL that may carry `user:password@`.

    A password typed raw (`rtsp://admin:pa/ss#1@host/path`, not percent-encoded) ends the URL's authority early;
    the user info then runs to the last `@`, so such a password is still split off and never shown.
    """
    scheme, sep, rest = url.partition("://")
    netloc = urlsplit(url).netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        hostpath = hostport + rest[len(netloc):]
    elif sep and "@" in rest and ":" in rest.rpartition("@")[0]:
        userinfo, _, hostpath = rest.rpartition("@")
    else:
        return url, None, None
    user, colon, password = userinfo.partition(":")
    return f"{scheme}://{hostpath}", unquote(user) or None, unquote(password) if colon else None


def with_credentials(url: str, user: str, password: str) -> str:
    """`url` with percent-encoded credentials (as Capture injects them at connect)."""
    parts = urlsplit(url)
    hostport = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _reason(e: Exception, elapsed: float, timeout: float, user: str | None) -> str:
    """Why the open failed, in words; never from str(e), which quotes the URL with its password."""
    if isinstance(e, av.error.HTTPUnauthorizedError):
        return ("401 Unauthorized: the camera refused the credentials" if user else
                "401 Unauthorized: the camera wants credentials (give --user and --password-stdin)")
    if isinstance(e, av.error.HTTPForbiddenError):
        return "403 Forbidden: this user may not read this stream"
    if isinstance(e, av.error.HTTPNotFoundError):
        return "404 Not Found: the camera has no stream at this path"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused: nothing listens at this host and port"
    if isinstance(e, (av.error.ExitError, TimeoutError)) or elapsed >= timeout * 0.95:
        return f"no answer within {timeout:g} s (unreachable, or not an RTSP server)"
    code = getattr(e, "errno", None)
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return f"unreachable: {getattr(e, 'strerror', None) or 'no route to host'}"
    return f"cannot open the stream: {getattr(e, 'strerror', None) or type(e).__name__}"


def probe(url: str, user: str | None = None, password: str | None = None, *, timeout: float = 10.0,
          frames: int = 25, transport: str = "tcp") -> ProbeResult:
    """Open `url` (credentials, if any, given apart), decode up to `frames` frames within `timeout` seconds."""
    bare, in_user, in_password = split_credentials(url)
    user, password = user or in_user, password if password is not None else in_password
    shown = redact_url(bare)
    if urlsplit(bare).scheme not in ("rtsp", "rtsps") or not urlsplit(bare).hostname:
        raise ProbeError(f"{shown}: not an RTSP URL (rtsp://host[:port]/path)")
    try:  # FFmpeg says only "Input/output error" for a name that does not resolve
        socket.getaddrinfo(urlsplit(bare).hostname, None)
    except OSError:
        raise ProbeError(f"{shown}: unknown host {urlsplit(bare).hostname!r} (the name does not resolve)") from None
    target = with_credentials(bare, user, password or "") if user else bare
    options = {"rtsp_transport": transport, "timeout": str(int(timeout * 1_000_000)),
               "allowed_media_types": "video"}
    log.info("probing %s", shown)
    start = time.monotonic()
    try:
        container = av.open(target, options=options, timeout=(timeout, timeout))
    except Exception as e:  # noqa: BLE001 - every failure becomes a reason in words
        raise ProbeError(f"{shown}: {_reason(e, time.monotonic() - start, timeout, user)}") from None
    try:
        if not container.streams.video:
            kinds = ", ".join(s.type for s in container.streams) or "none"
            raise ProbeError(f"{shown}: no video stream (the camera offers: {kinds})")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = stream.average_rate or stream.guessed_rate
        snapshot = b""
        pts: list[float] = []
        n = 0
        try:
            for frame in container.decode(stream):
                n += 1
                if not snapshot:
                    ok, jpeg = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"))
                    snapshot = jpeg.tobytes() if ok else b""
                if frame.pts is not None:
                    pts.append(float(frame.pts * stream.time_base))
                if n >= frames or time.monotonic() - start > timeout:
                    break
        except Exception as e:  # noqa: BLE001
            if not n:
                raise ProbeError(f"{shown}: {_reason(e, time.monotonic() - start, timeout, user)} "
                                 "(while reading the first frame)") from None
        if not n:
            raise ProbeError(f"{shown}: the stream ended before its first frame")
        # 1 / the typical frame interval: over the sorted set, because RTSP frames may come out of order by pts
        # (B-frames, a frame still in the decoder leaves a gap); timestamps that do not advance: not measured
        span = sorted(set(pts))
        steps = sorted(b - a for a, b in zip(span, span[1:], strict=False))
        measured = 1 / steps[len(steps) // 2] if steps else None
        return ProbeResult(
            url=bare, codec=ctx.name, profile=ctx.profile, width=ctx.width or frame.width,
            height=ctx.height or frame.height, announced_fps=float(rate) if rate else None,
            measured_fps=round(measured, 2) if measured else None, frames=n,
            seconds=round(time.monotonic() - start, 2), snapshot=snapshot)
    finally:
        container.close()
