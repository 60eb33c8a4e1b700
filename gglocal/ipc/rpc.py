"""Event-stream RPC layer: message types, flags and fast frame builders for the server."""

from __future__ import annotations

import struct
from enum import IntEnum
from functools import lru_cache

from .eventstream import HeaderType, encode_headers, encode_message, int32, string

SERVICE_PREFIX = "aws.greengrass#"


class MessageType(IntEnum):
    APPLICATION_MESSAGE = 0
    APPLICATION_ERROR = 1
    PING = 2
    PING_RESPONSE = 3
    CONNECT = 4
    CONNECT_ACK = 5
    PROTOCOL_ERROR = 6
    INTERNAL_ERROR = 7


FLAG_CONNECTION_ACCEPTED = 0x1
FLAG_TERMINATE_STREAM = 0x2


@lru_cache(maxsize=256)
def _fixed_headers(msg_type: int, flags: int, model_type: str | None) -> tuple[bytes, bytes]:
    """Encoded headers before and after the stream id, cached per (type, flags, shape)."""
    before = encode_headers([int32(":message-type", msg_type), int32(":message-flags", flags)])
    after = b""
    if model_type is not None:
        after = encode_headers(
            [string(":content-type", "application/json"), string("service-model-type", model_type)]
        )
    return before, after


_STREAM_ID_PREFIX = bytes([len(":stream-id")]) + b":stream-id" + bytes([HeaderType.INT32])
_I32 = struct.Struct(">i")


def frame(msg_type: int, flags: int, stream_id: int, model_type: str | None, payload: bytes) -> bytes:
    before, after = _fixed_headers(msg_type, flags, model_type)
    headers = before + _STREAM_ID_PREFIX + _I32.pack(stream_id) + after
    return encode_message(headers, payload)


def connect_ack(accepted: bool) -> bytes:
    flags = FLAG_CONNECTION_ACCEPTED if accepted else 0
    return frame(MessageType.CONNECT_ACK, flags, 0, None, b"")


def protocol_error(reason: str) -> bytes:
    return encode_message(
        [
            int32(":message-type", MessageType.PROTOCOL_ERROR),
            int32(":message-flags", 0),
            int32(":stream-id", 0),
            string(":content-type", "application/json"),
        ],
        (f'{{"message": {_json_str(reason)}}}').encode(),
    )


def _json_str(s: str) -> str:
    import json

    return json.dumps(s)
