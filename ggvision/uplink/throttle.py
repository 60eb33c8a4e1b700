"""Bandwidth caps in kbit/s: one token bucket for the whole uplink and one per camera.

A sender takes tokens for each chunk before it goes out; when a bucket is short it runs into debt and the
sender sleeps the debt off, so over any window the bytes sent stay within rate × window + one burst. A rate of
0 means no cap. Rates change live (configuration updates)."""

from __future__ import annotations

import threading
import time
from typing import BinaryIO

CHUNK = 64 * 1024  # bytes per take: small enough for a smooth rate, large enough to be cheap


class TokenBucket:
    def __init__(self, kbps: float = 0.0, burst_s: float = 0.1) -> None:
        self._lock = threading.Lock()
        self.burst_s = burst_s
        self.rate = 0.0
        self.tokens = 0.0
        self.stamp = time.monotonic()
        self.set_rate(kbps)

    def set_rate(self, kbps: float) -> None:
        with self._lock:
            self.rate = kbps * 1000.0 / 8.0  # bytes per second
            self.tokens = min(self.tokens, self._burst())

    def _burst(self) -> float:
        return max(float(CHUNK), self.rate * self.burst_s)

    def reserve(self, n: int) -> float:
        """Take n bytes' worth of tokens; the seconds the caller must wait before sending them."""
        with self._lock:
            if self.rate <= 0:
                return 0.0
            now = time.monotonic()
            self.tokens = min(self._burst(), self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= n
            return -self.tokens / self.rate if self.tokens < 0 else 0.0


class Throttle:
    """The global cap plus per-camera caps (`cameras` overrides `default` for the cameras it names)."""

    def __init__(self, kbps: float = 0.0, cameras: dict[str, float] | None = None, default: float = 0.0,
                 stop: threading.Event | None = None) -> None:
        self.global_bucket = TokenBucket(kbps)
        self._cams: dict[str, TokenBucket] = {}
        self._caps: dict[str, float] = dict(cameras or {})
        self._default = default
        self._lock = threading.Lock()
        self.stop = stop or threading.Event()

    def configure(self, kbps: float, cameras: dict[str, float], default: float) -> None:
        self.global_bucket.set_rate(kbps)
        with self._lock:
            self._caps, self._default = dict(cameras), default
            for cam, bucket in self._cams.items():
                bucket.set_rate(self._caps.get(cam, default))

    def _bucket(self, camera: str) -> TokenBucket:
        with self._lock:
            b = self._cams.get(camera)
            if b is None:
                b = self._cams[camera] = TokenBucket(self._caps.get(camera, self._default))
            return b

    def take(self, camera: str, n: int) -> None:
        """Block until n bytes of `camera` may be sent (returns early when stopping)."""
        wait = max(self.global_bucket.reserve(n), self._bucket(camera).reserve(n))
        if wait > 0:
            self.stop.wait(wait)


class ThrottledSection:
    """A read-only, seekable window [offset, offset+length) of a file whose reads go through the throttle:
    what boto3 gets as a request body. Each byte is charged once, however often it is read: botocore reads a
    body more than once (the SigV4 signer hashes it before it is sent), which would otherwise halve the rate."""

    def __init__(self, f: BinaryIO, offset: int, length: int, throttle: Throttle, camera: str) -> None:
        self._f, self._off, self._len = f, offset, length
        self._pos = 0
        self._charged = 0  # bytes [0, _charged) are paid for
        self._throttle, self._camera = throttle, camera
        self.sent = 0

    def __len__(self) -> int:
        return self._len

    def read(self, n: int | None = -1) -> bytes:
        left = self._len - self._pos
        if n is None or n < 0:  # everything left, still paced chunk by chunk
            return b"".join(iter(lambda: self.read(CHUNK), b""))
        n = min(n, left, CHUNK)
        if n <= 0:
            return b""
        if self._pos + n > self._charged:
            self._throttle.take(self._camera, self._pos + n - self._charged)
            self._charged = self._pos + n
        self._f.seek(self._off + self._pos)
        data = self._f.read(n)
        self._pos += len(data)
        self.sent += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._len}[whence]
        self._pos = max(0, min(self._len, base + pos))
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True
