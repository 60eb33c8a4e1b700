"""AWS event-stream framing: the binary envelope of Greengrass IPC messages.

A message is: prelude (total length, headers length, CRC32 of those 8 bytes), headers,
payload, and a CRC32 trailer over everything before it. All integers are big-endian.
awscrt implements this in C but exposes no standalone encoder, so the server carries its own.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

PRELUDE_LEN = 12
TRAILER_LEN = 4
# The awscrt client refuses anything bigger; the server refuses it too, both ways.
MAX_MESSAGE_LEN = 24 * 1024 * 1024
MAX_HEADERS_LEN = 128 * 1024

_PRELUDE = struct.Struct(">III")
_U32 = struct.Struct(">I")


class HeaderType(IntEnum):
    BOOL_TRUE = 0
    BOOL_FALSE = 1
    BYTE = 2
    INT16 = 3
    INT32 = 4
    INT64 = 5
    BYTES = 6
    STRING = 7
    TIMESTAMP = 8
    UUID = 9


class ProtocolError(Exception):
    """The peer sent bytes that are not a valid event-stream message."""


HeaderValue = bool | int | bytes | str | uuid.UUID


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: HeaderValue
    type: HeaderType


@dataclass(slots=True)
class Message:
    headers: dict[str, Header]  # keyed by lower-case name: RPC header names are case-insensitive
    payload: bytes

    def get(self, name: str, default: HeaderValue | None = None) -> HeaderValue | None:
        h = self.headers.get(name.lower())
        return default if h is None else h.value


def int32(name: str, value: int) -> Header:
    return Header(name, value, HeaderType.INT32)


def string(name: str, value: str) -> Header:
    return Header(name, value, HeaderType.STRING)


def _encode_header(h: Header) -> bytes:
    name = h.name.encode()
    if not 0 < len(name) <= 255:
        raise ValueError(f"header name length {len(name)} out of range")
    t = h.type
    head = bytes([len(name)]) + name + bytes([t])
    v = h.value
    if t in (HeaderType.BOOL_TRUE, HeaderType.BOOL_FALSE):
        return head
    if t == HeaderType.BYTE:
        return head + struct.pack(">b", v)
    if t == HeaderType.INT16:
        return head + struct.pack(">h", v)
    if t == HeaderType.INT32:
        return head + struct.pack(">i", v)
    if t in (HeaderType.INT64, HeaderType.TIMESTAMP):
        return head + struct.pack(">q", v)
    if t in (HeaderType.BYTES, HeaderType.STRING):
        data = v.encode() if isinstance(v, str) else bytes(v)  # type: ignore[arg-type]
        if len(data) > 32767:
            raise ValueError(f"header {h.name!r} value too long ({len(data)} bytes)")
        return head + struct.pack(">H", len(data)) + data
    if t == HeaderType.UUID:
        return head + v.bytes  # type: ignore[union-attr]
    raise ValueError(f"unknown header type {t}")


def encode_headers(headers: list[Header]) -> bytes:
    return b"".join(_encode_header(h) for h in headers)


def encode_message(headers: list[Header] | bytes, payload: bytes = b"") -> bytes:
    """Frame one message. `headers` may be pre-encoded bytes (hot paths reuse them)."""
    hbytes = headers if isinstance(headers, bytes) else encode_headers(headers)
    total = PRELUDE_LEN + len(hbytes) + len(payload) + TRAILER_LEN
    if total > MAX_MESSAGE_LEN:
        raise ValueError(f"message of {total} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")
    prelude8 = struct.pack(">II", total, len(hbytes))
    prelude_crc = zlib.crc32(prelude8)
    head = prelude8 + _U32.pack(prelude_crc) + hbytes
    # The message CRC chains over the prelude CRC, headers and payload without copying the payload.
    crc = zlib.crc32(payload, zlib.crc32(head))
    return b"".join((head, payload, _U32.pack(crc)))


_FIXED = {  # header type -> (struct, size) for fixed-size values
    HeaderType.BYTE: (struct.Struct(">b"), 1),
    HeaderType.INT16: (struct.Struct(">h"), 2),
    HeaderType.INT32: (struct.Struct(">i"), 4),
    HeaderType.INT64: (struct.Struct(">q"), 8),
    HeaderType.TIMESTAMP: (struct.Struct(">q"), 8),
}
_U16 = struct.Struct(">H")
_TYPES = {int(t): t for t in HeaderType}


def _decode_headers(buf: bytes) -> dict[str, Header]:
    # Hot path (every request): plain indexing; a short buffer surfaces as IndexError/struct.error.
    headers: dict[str, Header] = {}
    i, n = 0, len(buf)
    try:
        while i < n:
            nlen = buf[i]
            if nlen == 0:
                raise ProtocolError("empty header name")
            name = buf[i + 1 : i + 1 + nlen].decode()
            i += 1 + nlen
            t = _TYPES.get(buf[i])
            if t is None:
                raise ProtocolError(f"header {name!r} has unknown type {buf[i]}")
            i += 1
            value: HeaderValue
            if t == HeaderType.STRING or t == HeaderType.BYTES:
                (vlen,) = _U16.unpack_from(buf, i)
                i += 2
                if i + vlen > n:
                    raise ProtocolError("truncated header block")
                raw = buf[i : i + vlen]
                i += vlen
                value = raw.decode() if t == HeaderType.STRING else raw
            elif t in _FIXED:
                st, size = _FIXED[t]
                (value,) = st.unpack_from(buf, i)
                i += size
            elif t == HeaderType.BOOL_TRUE or t == HeaderType.BOOL_FALSE:
                value = t == HeaderType.BOOL_TRUE
            else:  # UUID
                if i + 16 > n:
                    raise ProtocolError("truncated header block")
                value = uuid.UUID(bytes=buf[i : i + 16])
                i += 16
            headers[name.lower()] = Header(name, value, t)
    except (IndexError, struct.error):
        raise ProtocolError("truncated header block") from None
    except UnicodeDecodeError:
        raise ProtocolError("header name or string value is not UTF-8") from None
    if i != n:
        raise ProtocolError("truncated header block")
    return headers


class FrameDecoder:
    """Incremental decoder: feed bytes as they arrive, iterate complete messages.

    Any framing error raises ProtocolError; the caller then drops the connection, because
    after a bad length or CRC nothing later in the byte stream can be trusted.
    """

    def __init__(self, max_message_len: int = MAX_MESSAGE_LEN) -> None:
        self._buf = bytearray()
        self._max = max_message_len

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Message]:
        self._buf += data
        while len(self._buf) >= PRELUDE_LEN:
            total, hlen, pcrc = _PRELUDE.unpack_from(self._buf, 0)
            if zlib.crc32(memoryview(self._buf)[:8]) != pcrc:
                raise ProtocolError("prelude CRC mismatch")
            if total > self._max:
                raise ProtocolError(f"message length {total} exceeds limit {self._max}")
            if total < PRELUDE_LEN + TRAILER_LEN + hlen or hlen > MAX_HEADERS_LEN:
                raise ProtocolError(f"inconsistent lengths: total={total} headers={hlen}")
            if len(self._buf) < total:
                return
            view = memoryview(self._buf)
            (crc,) = _U32.unpack_from(view, total - TRAILER_LEN)
            ok = zlib.crc32(view[: total - TRAILER_LEN]) == crc
            view.release()
            if not ok:
                raise ProtocolError("message CRC mismatch")
            headers = _decode_headers(bytes(self._buf[PRELUDE_LEN : PRELUDE_LEN + hlen]))
            payload = bytes(self._buf[PRELUDE_LEN + hlen : total - TRAILER_LEN])
            del self._buf[:total]
            yield Message(headers, payload)
