"""Greengrass IPC server: event-stream RPC over a Unix socket, wire-compatible with awsiotsdk.

One `Connection` per client socket. Framing errors, a missing CONNECT or an oversize frame close
that connection only. Each connection bounds what it buffers for subscription events: when a
client reads too slowly its events are dropped (and counted) instead of stalling publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import IpcError, ServiceError
from .eventstream import FrameDecoder, Message, ProtocolError, encode_headers, encode_message, int32
from .rpc import (
    FLAG_TERMINATE_STREAM,
    SERVICE_PREFIX,
    MessageType,
    connect_ack,
    frame,
    protocol_error,
)

log = logging.getLogger("gglocal.ipc")

Handler = Callable[["CallContext", dict[str, Any]], dict[str, Any] | Awaitable[dict[str, Any]]]

_TOKEN_RE = re.compile(rb'"authToken"\s*:\s*"([^"]*)"')


@dataclass
class ServerLimits:
    connect_timeout_s: float = 5.0
    # Subscription events are dropped while a client's unsent bytes exceed this (room for a burst
    # of 1 MB messages; one message up to the 24 MiB frame limit always fits into an empty buffer).
    max_event_backlog_bytes: int = 32 * 1024 * 1024
    # Reading a client's requests pauses while its unsent responses exceed this.
    write_high_water: int = 4 * 1024 * 1024


@dataclass
class ConnectionStats:
    component: str
    events_sent: int = 0
    events_dropped: int = 0
    requests: int = 0


class Stream:
    """One RPC stream (an operation call). Streaming operations keep it open for events."""

    __slots__ = ("conn", "stream_id", "operation", "open", "on_close", "dropped")

    def __init__(self, conn: Connection, stream_id: int, operation: str) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.operation = operation
        self.open = True
        self.on_close: list[Callable[[], None]] = []
        self.dropped = 0

    @property
    def component(self) -> str:
        return self.conn.component or ""

    def send_event(self, model_type: str, payload: bytes, droppable: bool = True) -> bool:
        """Send one event on this stream; False when dropped (closed stream or slow client)."""
        if not self.open:
            return False
        return self.conn.send_event(self, model_type, payload, droppable)

    def send_event_obj(self, model_type: str, obj: dict[str, Any], droppable: bool = True) -> bool:
        return self.send_event(model_type, json.dumps(obj).encode(), droppable)

    def close(self) -> None:
        """Server-side close: tell the client the stream ended, then forget it."""
        if not self.open:
            return
        self.conn.write(frame(MessageType.APPLICATION_MESSAGE, FLAG_TERMINATE_STREAM, self.stream_id, None, b""))
        self.conn.forget(self)

    def _closed(self) -> None:
        self.open = False
        callbacks, self.on_close = self.on_close, []
        for cb in callbacks:
            try:
                cb()
            except Exception:  # a bad callback must not break connection teardown
                log.exception("stream close callback failed")


@dataclass
class CallContext:
    conn: Connection
    stream: Stream
    operation: str
    streaming: bool = field(default=False)

    @property
    def component(self) -> str:
        return self.conn.component or ""

    def keep_open(self) -> None:
        """Mark the call as a subscription: the response does not terminate the stream."""
        self.streaming = True


class Connection(asyncio.Protocol):
    def __init__(self, server: IpcServer) -> None:
        self.server = server
        self.decoder = FrameDecoder()
        self.transport: asyncio.Transport | None = None
        self.component: str | None = None
        self.streams: dict[int, Stream] = {}
        self.stats = ConnectionStats(component="")
        self._connect_timer: asyncio.TimerHandle | None = None
        self._ordered: asyncio.Queue[tuple[CallContext, Awaitable[dict[str, Any]]]] | None = None
        self._ordered_task: asyncio.Task[None] | None = None
        self.closed = False

    # -- transport callbacks ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=self.server.limits.write_high_water)
        loop = asyncio.get_running_loop()
        self._connect_timer = loop.call_later(self.server.limits.connect_timeout_s, self._connect_timeout)
        self.server.connections.add(self)

    def _connect_timeout(self) -> None:
        if self.component is None:
            log.warning("IPC client sent no CONNECT within %.1fs; closing it", self.server.limits.connect_timeout_s)
            self.abort()

    def data_received(self, data: bytes) -> None:
        try:
            for msg in self.decoder.feed(data):
                self._on_message(msg)
        except ProtocolError as e:
            self._protocol_failure(str(e))
        except Exception:
            log.exception("IPC: unexpected failure handling a message from %s", self.component or "?")
            self._protocol_failure("internal error")

    def pause_writing(self) -> None:
        # The client is not reading its responses: stop reading its requests until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._connect_timer:
            self._connect_timer.cancel()
        for stream in list(self.streams.values()):
            stream._closed()
        self.streams.clear()
        if self._ordered_task:
            self._ordered_task.cancel()
        self.server.connections.discard(self)
        self.server.on_disconnect(self)

    # -- output -------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def send_event(self, stream: Stream, model_type: str, payload: bytes, droppable: bool) -> bool:
        t = self.transport
        if t is None or self.closed:
            return False
        if droppable and t.get_write_buffer_size() > self.server.limits.max_event_backlog_bytes:
            stream.dropped += 1
            self.stats.events_dropped += 1
            self.server.on_drop(self, stream)
            return False
        try:
            t.write(frame(MessageType.APPLICATION_MESSAGE, 0, stream.stream_id, SERVICE_PREFIX + model_type, payload))
        except ValueError as e:  # too large to frame
            log.warning("IPC: event for %s not sent: %s", self.component, e)
            return False
        self.stats.events_sent += 1
        return True

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _protocol_failure(self, reason: str) -> None:
        log.warning("IPC protocol error from %s: %s; closing that connection",
                    self.component or "unknown client", reason)
        try:
            self.write(protocol_error(reason))
        finally:
            if self.transport is not None:
                self.transport.close()
            self.closed = True

    def forget(self, stream: Stream) -> None:
        if self.streams.get(stream.stream_id) is stream:
            del self.streams[stream.stream_id]
        stream._closed()

    # -- input --------------------------------------------------------------------------
    def _on_message(self, msg: Message) -> None:
        if self.closed:
            return
        mtype = msg.get(":message-type")
        flags = msg.get(":message-flags")
        sid = msg.get(":stream-id")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (mtype, flags, sid)):
            raise ProtocolError("missing or non-integer :message-type/:message-flags/:stream-id header")
        assert isinstance(mtype, int) and isinstance(flags, int) and isinstance(sid, int)
        if self.component is None:
            if mtype != MessageType.CONNECT:
                raise ProtocolError("first message must be CONNECT")
            self._on_connect(msg)
            return
        if mtype == MessageType.PING:
            echo = [h for n, h in msg.headers.items() if not n.startswith(":")]
            headers = [int32(":message-type", MessageType.PING_RESPONSE), int32(":message-flags", 0),
                       int32(":stream-id", 0)]
            try:
                pong = encode_message(encode_headers(headers + echo), msg.payload)
            except ValueError as e:  # e.g. a header value over the protocol's 32767 bytes: not echoable
                raise ProtocolError(f"PING cannot be echoed: {e}") from None
            self.write(pong)
            return
        if mtype not in (MessageType.APPLICATION_MESSAGE, MessageType.APPLICATION_ERROR):
            raise ProtocolError(f"unexpected message type {mtype} after CONNECT")
        if sid <= 0:
            raise ProtocolError("application message on stream 0")
        stream = self.streams.get(sid)
        if stream is not None:
            if flags & FLAG_TERMINATE_STREAM:  # the client closed its subscription
                self.forget(stream)
            return
        op = msg.get("operation")
        if op is None:
            # A late close for a stream we already terminated: harmless.
            return
        if not isinstance(op, str):
            raise ProtocolError("operation header is not a string")
        self._dispatch(sid, op, msg.payload)

    def _on_connect(self, msg: Message) -> None:
        if self._connect_timer:
            self._connect_timer.cancel()
        token: str | None = None
        try:
            obj = json.loads(msg.payload or b"{}")
            if isinstance(obj, dict) and isinstance(obj.get("authToken"), str):
                token = obj["authToken"]
        except (ValueError, UnicodeDecodeError, RecursionError):
            # The client formats the payload with %s, so a token with quotes is not valid JSON.
            m = _TOKEN_RE.search(msg.payload)
            token = m.group(1).decode(errors="replace") if m else None
        component = self.server.authenticate(token) if token is not None else None
        if component is None:
            log.warning("IPC CONNECT refused: unknown auth token")
            self.write(connect_ack(False))
            if self.transport is not None:
                self.transport.close()
            self.closed = True
            return
        self.component = component
        self.stats.component = component
        self.write(connect_ack(True))
        self.server.on_connect(self)

    def _dispatch(self, sid: int, op: str, payload: bytes) -> None:
        stream = Stream(self, sid, op)
        self.streams[sid] = stream
        self.stats.requests += 1
        short = op[len(SERVICE_PREFIX):] if op.startswith(SERVICE_PREFIX) else op
        ctx = CallContext(self, stream, short)
        handler = self.server.operations.get(op)
        if handler is None:
            self._fail(ctx, ServiceError(f"Unsupported operation {op}"))
            return
        try:
            request = json.loads(payload) if payload else {}
            if not isinstance(request, dict):
                raise ValueError("request is not a JSON object")
        except (ValueError, UnicodeDecodeError, RecursionError) as e:  # RecursionError: JSON nested too deeply
            from .errors import InvalidArgumentsError

            self._fail(ctx, InvalidArgumentsError(f"{short}: malformed request payload: {e}"))
            return
        try:
            result = handler(ctx, request)
        except IpcError as e:
            self._fail(ctx, e)
            return
        except Exception as e:
            log.exception("IPC %s from %s failed", short, self.component)
            self._fail(ctx, ServiceError(f"{short} failed: {e}"))
            return
        if isinstance(result, dict):
            self._respond(ctx, result)
        elif short in self.server.ordered_operations:
            if self._ordered is None:
                self._ordered = asyncio.Queue()
                self._ordered_task = asyncio.get_running_loop().create_task(self._run_ordered())
            self._ordered.put_nowait((ctx, result))
        else:
            asyncio.get_running_loop().create_task(self._finish(ctx, result))

    async def _run_ordered(self) -> None:
        # Operations whose effects must keep the caller's order (PublishToIoTCore) run one at a time.
        assert self._ordered is not None
        while True:
            ctx, aw = await self._ordered.get()
            await self._finish(ctx, aw)

    async def _finish(self, ctx: CallContext, aw: Awaitable[dict[str, Any]]) -> None:
        try:
            result = await aw
        except IpcError as e:
            self._fail(ctx, e)
            return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.exception("IPC %s from %s failed", ctx.operation, self.component)
            self._fail(ctx, ServiceError(f"{ctx.operation} failed: {e}"))
            return
        self._respond(ctx, result)

    def _respond(self, ctx: CallContext, result: dict[str, Any]) -> None:
        stream = ctx.stream
        if not stream.open:
            return
        flags = 0 if ctx.streaming else FLAG_TERMINATE_STREAM
        self.write(frame(MessageType.APPLICATION_MESSAGE, flags, stream.stream_id,
                         f"{SERVICE_PREFIX}{ctx.operation}Response", json.dumps(result).encode()))
        if not ctx.streaming:
            self.forget(stream)

    def _fail(self, ctx: CallContext, err: IpcError) -> None:
        stream = ctx.stream
        if not stream.open:
            return
        self.write(frame(MessageType.APPLICATION_ERROR, FLAG_TERMINATE_STREAM, stream.stream_id,
                         SERVICE_PREFIX + err.shape, json.dumps(err.payload()).encode()))
        self.forget(stream)


class IpcServer:
    """Owns the socket and the connections; `services` supplies authentication and operations."""

    def __init__(
        self,
        socket_path: Path,
        operations: dict[str, Handler],
        authenticate: Callable[[str], str | None],
        limits: ServerLimits | None = None,
        ordered_operations: frozenset[str] = frozenset({"PublishToIoTCore"}),
    ) -> None:
        if len(str(socket_path).encode()) > 107:
            raise ValueError(f"IPC socket path {socket_path} is longer than the 107 bytes a Unix socket allows")
        self.socket_path = socket_path
        self.operations = {k if k.startswith(SERVICE_PREFIX) else SERVICE_PREFIX + k: v for k, v in operations.items()}
        self.authenticate = authenticate
        self.limits = limits or ServerLimits()
        self.ordered_operations = ordered_operations
        self.connections: set[Connection] = set()
        self._server: asyncio.AbstractServer | None = None
        self.disconnect_listeners: list[Callable[[Connection], None]] = []
        self.drop_listeners: list[Callable[[Connection, Stream], None]] = []

    async def start(self) -> None:
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: Connection(self), path=str(self.socket_path))
        # Every component runs as this user; nobody else should reach the socket.
        os.chmod(self.socket_path, 0o600)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for c in list(self.connections):
                c.abort()
            await self._server.wait_closed()
            self._server = None
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        except OSError as e:  # a read-only or forbidden root must not fail the shutdown; start() replaces the file
            log.warning("IPC socket %s left in place: %s", self.socket_path, e)

    def on_connect(self, conn: Connection) -> None:
        log.debug("IPC client connected: %s", conn.component)

    def on_disconnect(self, conn: Connection) -> None:
        for cb in self.disconnect_listeners:
            cb(conn)

    def on_drop(self, conn: Connection, stream: Stream) -> None:
        for cb in self.drop_listeners:
            cb(conn, stream)

    def stats(self) -> list[ConnectionStats]:
        return [c.stats for c in self.connections if c.component]
