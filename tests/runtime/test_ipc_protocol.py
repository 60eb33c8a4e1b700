"""The IPC server at the wire level: raw event-stream clients against a real runtime subprocess.

Each test talks to `<root>/ipc.socket` with hand-built frames (no awscrt), so it can send what a
well-behaved client never would: messages before CONNECT, bad CRCs, oversize lengths, garbage,
fuzzed frames, and a subscriber that stops reading. Throughout, the agent components (real
GreengrassCoreIPCClientV2 clients) must keep working and fresh clients must still connect.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import time
import zlib
from collections import Counter, deque
from pathlib import Path
from typing import Any

import pytest
from harness import Runtime, wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gglocal.ipc.eventstream import (
    MAX_MESSAGE_LEN,
    FrameDecoder,
    Header,
    HeaderType,
    Message,
    ProtocolError,
    encode_headers,
    encode_message,
    int32,
    string,
)
from gglocal.ipc.rpc import FLAG_CONNECTION_ACCEPTED, FLAG_TERMINATE_STREAM, SERVICE_PREFIX, MessageType

AGENT = "com.ggvision.test.Agent"
PEER = "com.ggvision.test.Peer"
CONNECT_TIMEOUT_S = 5.0  # ServerLimits.connect_timeout_s (the runtime has no flag to change it yet)


# -- raw client helpers --------------------------------------------------------------------
def rpc_headers(mtype: int, flags: int = 0, sid: int = 0, extra: list[Header] | None = None) -> list[Header]:
    return [int32(":message-type", mtype), int32(":message-flags", flags), int32(":stream-id", sid), *(extra or [])]


def rpc_message(mtype: int, flags: int = 0, sid: int = 0, extra: list[Header] | None = None,
                payload: bytes = b"") -> bytes:
    return encode_message(rpc_headers(mtype, flags, sid, extra), payload)


def connect_frame(token: str) -> bytes:
    # Exactly what the awscrt client sends: :version 0.1.0 and a %s-formatted JSON payload.
    return rpc_message(MessageType.CONNECT, extra=[string(":version", "0.1.0")],
                       payload=b'{"authToken": "%s"}' % token.encode())


def request_frame(sid: int, op: str, payload: bytes = b"{}", model: str | None = None) -> bytes:
    extra = [string("operation", SERVICE_PREFIX + op), string(":content-type", "application/json"),
             string("service-model-type", model or f"{SERVICE_PREFIX}{op}Request")]
    return rpc_message(MessageType.APPLICATION_MESSAGE, 0, sid, extra, payload)


def mtype(m: Message) -> Any:
    return m.get(":message-type")


def flags(m: Message) -> Any:
    return m.get(":message-flags")


def sid(m: Message) -> Any:
    return m.get(":stream-id")


class RawClient:
    """A bare event-stream client on a Unix socket: bytes out, decoded frames in, reads bounded by timeouts."""

    def __init__(self, path: str, timeout: float = 5.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.decoder = FrameDecoder()
        self.frames: deque[Message] = deque()
        self.eof = False

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.settimeout(5.0)
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:  # already closed by the server
            pass

    def _fill(self, deadline: float) -> bool:
        """One recv into the decoder; False at EOF. Raises TimeoutError past the deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError:  # the server closed with our bytes unread: same as EOF here
            data = b""
        if not data:
            self.eof = True
            return False
        self.frames.extend(self.decoder.feed(data))  # a ProtocolError here means the server sent a bad frame
        return True

    def read(self, timeout: float = 5.0) -> Message | None:
        """The next frame, or None at EOF."""
        deadline = time.monotonic() + timeout
        while not self.frames:
            if self.eof or not self._fill(deadline):
                return None
        return self.frames.popleft()

    def read_until_eof(self, timeout: float = 5.0) -> list[Message]:
        """Every frame until the server closes; TimeoutError if it has not closed by then."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            self._fill(deadline)
        out = list(self.frames)
        self.frames.clear()
        return out

    def connect(self, token: str) -> Message:
        self.send(connect_frame(token))
        ack = self.read()
        assert ack is not None, "server closed the connection instead of answering CONNECT"
        return ack

    def call(self, sid_: int, op: str, payload: bytes = b"{}") -> Message:
        self.send(request_frame(sid_, op, payload))
        reply = self.read()
        assert reply is not None, f"server closed the connection instead of answering {op}"
        assert sid(reply) == sid_, f"reply on stream {sid(reply)}, expected {sid_}"
        return reply

    def ping(self, payload: bytes = b"ping") -> None:
        self.send(rpc_message(MessageType.PING, extra=[string("x-probe", "p")], payload=payload))
        pong = self.read()
        assert pong is not None and mtype(pong) == MessageType.PING_RESPONSE and pong.payload == payload


def ipc_path(rt: Runtime) -> str:
    return str(rt.root / "ipc.socket")


def cli_token(rt: Runtime) -> str:
    info = json.loads((rt.root / "cli_ipc_info" / "cli.json").read_text())
    assert info["socket"] == ipc_path(rt)
    return info["token"]


def connected(rt: Runtime) -> RawClient:
    c = RawClient(ipc_path(rt))
    ack = c.connect(cli_token(rt))
    assert (mtype(ack), flags(ack), sid(ack)) == (MessageType.CONNECT_ACK, FLAG_CONNECTION_ACCEPTED, 0)
    return c


def assert_fresh_client_connects(rt: Runtime) -> None:
    with connected(rt) as c:
        reply = c.call(1, "ListComponents")
        assert mtype(reply) == MessageType.APPLICATION_MESSAGE


_round = itertools.count()


def assert_agents_round_trip(rt: Runtime) -> None:
    """Agent publishes, Peer (subscribed first) receives: both real IPC clients still work."""
    n = next(_round)
    a, p = rt.agent(), rt.agent(PEER)
    try:
        topic, sub = f"test/rt{n}/data", f"rt{n}"
        p.call("subscribe", id=sub, topic=topic)
        a.call("publish_json", topic=topic, message={"n": n})
        assert [e["json"] for e in p.call("events", id=sub, count=1, timeout=10)] == [{"n": n}]
        p.call("unsubscribe", id=sub)
    finally:
        a.close()
        p.close()


def component_token(rt: Runtime, component: str) -> str:
    """The SVCUID the runtime gave a running component, read from that process's environment."""
    sock = ipc_path(rt)
    marker = f"/{component}/"

    def find() -> str | None:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "agent.py" not in cmdline or marker not in cmdline:
                    continue
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:  # gone, or not ours
                continue
            env = dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
            if env.get("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") == sock and env.get("SVCUID"):
                return env["SVCUID"]
        return None

    return wait_until(find, 10, what=f"{component} process")


# -- 1. handshake --------------------------------------------------------------------------
def test_connect_with_valid_token_is_accepted_and_ping_echoes(agents: Runtime) -> None:
    with RawClient(ipc_path(agents)) as c:
        ack = c.connect(cli_token(agents))
        assert (mtype(ack), flags(ack), sid(ack)) == (MessageType.CONNECT_ACK, FLAG_CONNECTION_ACCEPTED, 0)
        assert ack.payload == b""
        assert all(ack.headers[h].type == HeaderType.INT32 for h in (":message-type", ":message-flags", ":stream-id"))

        extra = [string("x-text", "hello"), int32("x-num", -7), Header("x-bytes", b"\x00\xff", HeaderType.BYTES),
                 Header("x-flag", True, HeaderType.BOOL_TRUE), string(":not-echoed", "internal")]
        c.send(rpc_message(MessageType.PING, extra=extra, payload=b"\x00ping\xff"))
        pong = c.read()
        assert pong is not None
        assert (mtype(pong), flags(pong), sid(pong)) == (MessageType.PING_RESPONSE, 0, 0)
        assert pong.payload == b"\x00ping\xff"
        echoed = {n: (h.value, h.type) for n, h in pong.headers.items() if not n.startswith(":")}
        assert echoed == {"x-text": ("hello", HeaderType.STRING), "x-num": (-7, HeaderType.INT32),
                          "x-bytes": (b"\x00\xff", HeaderType.BYTES), "x-flag": (True, HeaderType.BOOL_TRUE)}
        assert ":not-echoed" not in pong.headers
        # Still usable after the ping.
        assert mtype(c.call(1, "ListComponents")) == MessageType.APPLICATION_MESSAGE


def test_connect_with_bad_token_is_refused_then_closed(agents: Runtime) -> None:
    for token in ("not-the-token", "", cli_token(agents) + "x", 'a"b'):
        with RawClient(ipc_path(agents)) as c:
            ack = c.connect(token)
            assert (mtype(ack), flags(ack), sid(ack)) == (MessageType.CONNECT_ACK, 0, 0), token
            assert c.read_until_eof(timeout=3) == [], "nothing may follow a refused CONNECT_ACK"
    assert_fresh_client_connects(agents)


@pytest.mark.parametrize("first", [
    rpc_message(MessageType.PING, payload=b"early"),
    request_frame(1, "ListComponents"),
    rpc_message(MessageType.CONNECT_ACK, FLAG_CONNECTION_ACCEPTED),
    # a CONNECT without the required :message-flags / :stream-id headers
    encode_message([int32(":message-type", MessageType.CONNECT), string(":version", "0.1.0")], b'{"authToken": ""}'),
], ids=["ping", "request", "connect-ack", "connect-missing-headers"])
def test_message_before_connect_closes_the_connection(agents: Runtime, first: bytes) -> None:
    with RawClient(ipc_path(agents)) as c:
        c.send(first)
        frames = c.read_until_eof(timeout=3)
        assert [mtype(m) for m in frames] in ([], [MessageType.PROTOCOL_ERROR]), frames
    assert_fresh_client_connects(agents)


def test_second_connect_is_a_protocol_error(agents: Runtime) -> None:
    with connected(agents) as c:
        c.send(connect_frame(cli_token(agents)))
        assert [mtype(m) for m in c.read_until_eof(timeout=3)] in ([], [MessageType.PROTOCOL_ERROR])


# -- 2. operations over the raw wire -------------------------------------------------------
def test_raw_list_components_and_errors(agents: Runtime) -> None:
    with connected(agents) as c:
        reply = c.call(1, "ListComponents")
        assert (mtype(reply), flags(reply)) == (MessageType.APPLICATION_MESSAGE, FLAG_TERMINATE_STREAM)
        assert reply.get("service-model-type") == "aws.greengrass#ListComponentsResponse"
        assert reply.get(":content-type") == "application/json"
        names = {comp["componentName"] for comp in json.loads(reply.payload)["components"]}
        assert {AGENT, PEER} <= names

        err = c.call(3, "NoSuchOperation")
        assert (mtype(err), flags(err)) == (MessageType.APPLICATION_ERROR, FLAG_TERMINATE_STREAM)
        assert err.get("service-model-type") == "aws.greengrass#ServiceError"
        assert err.get(":content-type") == "application/json"
        assert "NoSuchOperation" in json.loads(err.payload)["message"]

        for i, bad in enumerate((b"{not json", b"[1, 2]", b"\xff\xfe", b'"just a string"')):
            err = c.call(5 + 2 * i, "ListComponents", bad)
            assert (mtype(err), flags(err)) == (MessageType.APPLICATION_ERROR, FLAG_TERMINATE_STREAM), bad
            assert err.get("service-model-type") == "aws.greengrass#InvalidArgumentsError", bad
            assert "message" in json.loads(err.payload)

        # The CLI identity may not use pub/sub: the token decides who the caller is.
        err = c.call(21, "PublishToTopic", json.dumps(
            {"topic": "test/x", "publishMessage": {"jsonMessage": {"message": 1}}}).encode())
        assert err.get("service-model-type") == "aws.greengrass#UnauthorizedError"

        # The connection is still fine, including pipelined calls answered on their own streams.
        c.send(request_frame(31, "ListComponents") + request_frame(33, "NoSuchOperation")
               + request_frame(35, "ListComponents"))
        replies = {sid(m): mtype(m) for m in (c.read(), c.read(), c.read()) if m is not None}
        assert replies == {31: MessageType.APPLICATION_MESSAGE, 33: MessageType.APPLICATION_ERROR,
                           35: MessageType.APPLICATION_MESSAGE}
        c.ping()


def test_deeply_nested_json_is_an_error_reply_not_a_server_failure(agents: Runtime) -> None:
    out_before = len(agents.output())
    with connected(agents) as c:
        for i, deep in enumerate((b"[" * 100_000, b'{"a": ' * 5000 + b"1" + b"}" * 5000)):
            err = c.call(1 + 2 * i, "ListComponents", deep)
            assert (mtype(err), flags(err)) == (MessageType.APPLICATION_ERROR, FLAG_TERMINATE_STREAM)
            assert err.get("service-model-type") == "aws.greengrass#InvalidArgumentsError"
        c.ping()
    with RawClient(ipc_path(agents)) as c:  # in a CONNECT: just an unusable token
        c.send(rpc_message(MessageType.CONNECT, extra=[string(":version", "0.1.0")], payload=b"[" * 100_000))
        frames = c.read_until_eof(timeout=3)
        assert [(mtype(m), flags(m)) for m in frames] == [(MessageType.CONNECT_ACK, 0)]
    assert "unexpected failure" not in agents.output()[out_before:]


def test_ping_that_cannot_be_echoed_closes_only_that_connection(agents: Runtime) -> None:
    # A 40000-byte BYTES header value: the u16 length field allows it, the protocol (and our encoder) do not.
    big = bytes([1]) + b"h" + bytes([HeaderType.BYTES]) + struct.pack(">H", 40_000) + b"a" * 40_000
    out_before = len(agents.output())
    with connected(agents) as bystander, connected(agents) as c:
        c.send(encode_message(encode_headers(rpc_headers(MessageType.PING)) + big, b""))
        assert [mtype(m) for m in c.read_until_eof(timeout=3)] in ([], [MessageType.PROTOCOL_ERROR])
        bystander.ping()
    wait_until(lambda: "PING cannot be echoed" in agents.output()[out_before:], 5, what="protocol error log")
    assert "unexpected failure" not in agents.output()[out_before:]


# -- 3. malformed input closes only that connection ----------------------------------------
def _ping() -> bytes:
    return rpc_message(MessageType.PING, payload=b"x" * 32)


def _bad_prelude_crc() -> bytes:
    f = bytearray(_ping())
    f[8] ^= 0x01
    return bytes(f)


def _bad_message_crc() -> bytes:
    f = bytearray(_ping())
    f[-1] ^= 0x01
    return bytes(f)


def _bad_payload_byte() -> bytes:
    f = bytearray(_ping())
    f[-10] ^= 0x40  # in the payload: the message CRC no longer matches
    return bytes(f)


def _oversize_prelude() -> bytes:
    # Only the prelude of a frame declaring 24 MiB + 1 bytes: the server must not wait for the rest.
    p8 = struct.pack(">II", MAX_MESSAGE_LEN + 1, 0)
    return p8 + struct.pack(">I", zlib.crc32(p8)) + b"\0" * 64


def _inconsistent_lengths() -> bytes:
    p8 = struct.pack(">II", 20, 100)  # a 100-byte header block cannot fit in a 20-byte frame
    return p8 + struct.pack(">I", zlib.crc32(p8)) + b"\0" * 8


def _bad_header_type() -> bytes:
    hdr = bytes([1]) + b"h" + bytes([42]) + b"\0\0\0\0"  # header type 42 does not exist
    return encode_message(hdr, b"")


BAD_INPUTS = {
    "garbage": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "bad-prelude-crc": _bad_prelude_crc(),
    "bad-message-crc": _bad_message_crc(),
    "corrupt-payload": _bad_payload_byte(),
    "oversize-24MiB+1": _oversize_prelude(),
    "inconsistent-lengths": _inconsistent_lengths(),
    "unknown-header-type": _bad_header_type(),
}


@pytest.mark.parametrize("after_connect", [False, True], ids=["before-connect", "after-connect"])
@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_malformed_frame_closes_only_that_connection(agents: Runtime, name: str, after_connect: bool) -> None:
    with connected(agents) as bystander, RawClient(ipc_path(agents)) as bad:
        if after_connect:
            assert flags(bad.connect(cli_token(agents))) == FLAG_CONNECTION_ACCEPTED
        t0 = time.monotonic()
        bad.send(BAD_INPUTS[name])
        frames = bad.read_until_eof(timeout=3)  # closed promptly, without our closing first
        assert time.monotonic() - t0 < 3
        assert [mtype(m) for m in frames] in ([], [MessageType.PROTOCOL_ERROR]), frames
        # The other connection on the same server is untouched.
        bystander.ping()
        assert mtype(bystander.call(1, "ListComponents")) == MessageType.APPLICATION_MESSAGE
    assert_agents_round_trip(agents)
    assert_fresh_client_connects(agents)


@pytest.mark.parametrize("after_connect", [False, True], ids=["before-connect", "after-connect"])
def test_truncated_frame_then_close(agents: Runtime, after_connect: bool) -> None:
    with connected(agents) as bystander, RawClient(ipc_path(agents)) as c:
        if after_connect:
            assert flags(c.connect(cli_token(agents))) == FLAG_CONNECTION_ACCEPTED
            frame = request_frame(1, "ListComponents")
        else:
            frame = connect_frame(cli_token(agents))
        c.send(frame[: len(frame) // 2])
        c.shutdown_write()
        # Half a frame is never acted on: no reply, no CONNECT_ACK; the server just closes.
        assert c.read_until_eof(timeout=3) == []
        bystander.ping()
    assert_agents_round_trip(agents)
    assert_fresh_client_connects(agents)


def test_client_that_never_connects_is_closed_after_the_timeout(agents: Runtime) -> None:
    path = ipc_path(agents)
    t0 = time.monotonic()
    with RawClient(path) as silent, RawClient(path) as stalled:
        half = connect_frame(cli_token(agents))
        stalled.send(half[:10])  # not even a whole prelude, then nothing
        # Meanwhile everyone else carries on.
        assert_agents_round_trip(agents)
        assert_fresh_client_connects(agents)
        with connected(agents) as other:
            other.ping()
            assert silent.read_until_eof(timeout=t0 + 2 * CONNECT_TIMEOUT_S - time.monotonic()) == []
            assert stalled.read_until_eof(timeout=t0 + 2 * CONNECT_TIMEOUT_S - time.monotonic()) == []
            elapsed = time.monotonic() - t0
            assert elapsed >= CONNECT_TIMEOUT_S * 0.8, f"closed after {elapsed:.2f}s, before the CONNECT timeout"
            # A connected client that is merely idle for as long is not affected.
            other.ping()
    assert_agents_round_trip(agents)


# -- 4. fuzzing ----------------------------------------------------------------------------
# Read-only (or denied) operations only: the CLI identity could otherwise restart or redeploy components.
SAFE_OPS = ["ListComponents", "GetComponentDetails", "ListLocalDeployments", "GetLocalDeploymentStatus",
            "GetConfiguration", "PublishToTopic", "NoSuchOperation"]
KNOWN_NAMES = [":message-type", ":message-flags", ":stream-id", ":content-type", ":version", "operation",
               "service-model-type", ":MESSAGE-TYPE", "x"]
_I32 = st.integers(-(2**31), 2**31 - 1)
_I64 = st.integers(-(2**63), 2**63 - 1)
_VALUES: dict[HeaderType, st.SearchStrategy[Any]] = {
    HeaderType.BOOL_TRUE: st.just(True),
    HeaderType.BOOL_FALSE: st.just(False),
    HeaderType.BYTE: st.integers(-128, 127),
    HeaderType.INT16: st.integers(-(2**15), 2**15 - 1),
    HeaderType.INT32: st.one_of(st.integers(-1, 9), _I32),
    HeaderType.INT64: _I64,
    HeaderType.BYTES: st.binary(max_size=40),
    HeaderType.STRING: st.one_of(st.sampled_from(["application/json", "0.1.0", SERVICE_PREFIX + "ListComponents"]),
                                 st.text(max_size=40)),
    HeaderType.TIMESTAMP: _I64,
    HeaderType.UUID: st.uuids(),
}
header_names = st.one_of(st.sampled_from(KNOWN_NAMES), st.text(min_size=1, max_size=30))
headers_st = st.tuples(header_names, st.sampled_from(list(HeaderType))).flatmap(
    lambda nt: _VALUES[nt[1]].map(lambda v: Header(nt[0], v, nt[1])))
json_st = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["componentName", "deploymentId", "topic", "keyPath", "publishMessage", "authToken"])
        | st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
payload_st = st.one_of(st.just(b""), st.just(b"{}"), json_st.map(lambda v: json.dumps(v).encode()),
                       st.binary(max_size=200),
                       st.integers(1, 5000).map(lambda k: b"[" * k),  # nested past Python's recursion limit
                       st.integers(1, 2000).map(lambda k: b'{"a": ' * k + b"1" + b"}" * k))


@st.composite
def plausible_frames(draw: st.DrawFn) -> bytes:
    """What a real client sends after CONNECT: requests (mostly well-formed) and pings."""
    if draw(st.integers(0, 3)) == 0:
        return rpc_message(MessageType.PING, extra=draw(st.lists(headers_st, max_size=3)), payload=draw(payload_st))
    op = draw(st.sampled_from(["ListComponents", "ListComponents", *SAFE_OPS]))
    args = st.dictionaries(st.sampled_from(["componentName", "deploymentId"]), st.text(max_size=30))
    payload = draw(st.one_of(st.just(b"{}"), args.map(lambda d: json.dumps(d).encode()), payload_st))
    return request_frame(draw(st.integers(1, 6)), op, payload)


@st.composite
def rpc_frames(draw: st.DrawFn) -> bytes:
    """Frames shaped like RPC messages, with wrong types, ids, flags and headers mixed in."""
    mt = draw(st.sampled_from([0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8, -1]))
    fl = draw(st.one_of(st.sampled_from([0, 0, 1, 2, 3]), _I32))
    sd = draw(st.one_of(st.integers(-1, 6), _I32))
    hs = rpc_headers(mt, fl, sd)
    change = draw(st.sampled_from(["none"] * 6 + ["drop", "retype", "upper"]))
    k = draw(st.integers(0, 2))
    if change == "drop":
        del hs[k]
    elif change == "retype":
        hs[k] = draw(headers_st.map(lambda h, n=hs[k].name: Header(n, h.value, h.type)))
    elif change == "upper":
        hs[k] = Header(hs[k].name.upper(), hs[k].value, hs[k].type)
    if draw(st.booleans()):
        op = draw(st.one_of(st.sampled_from(SAFE_OPS).map(lambda o: SERVICE_PREFIX + o), st.sampled_from(SAFE_OPS),
                            st.text(max_size=30)))
        hs.append(string("operation", op))
    if draw(st.booleans()):
        hs += [string(":content-type", "application/json"), string("service-model-type", "aws.greengrass#X")]
    hs += draw(st.lists(headers_st, max_size=3))
    return encode_message(hs, draw(payload_st))


random_frames = st.builds(encode_message, st.lists(headers_st, max_size=6), st.binary(max_size=100))
any_frame = st.one_of(rpc_frames(), random_frames)


@st.composite
def mutated_frames(draw: st.DrawFn) -> bytes:
    """A frame with a valid prelude and some later bytes flipped; optionally with both CRCs fixed up again."""
    f = bytearray(draw(any_frame))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(12, len(f) - 1))
        f[i] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        (hlen,) = struct.unpack_from(">I", f, 4)
        # Re-frame the damaged header block and payload so that both CRCs are right: the header parser sees it.
        return encode_message(bytes(f[12: 12 + hlen]), bytes(f[12 + hlen: -4]))
    return bytes(f)


@st.composite
def odd_preludes(draw: st.DrawFn) -> bytes:
    """A prelude with a correct CRC over arbitrary lengths, then a few bytes."""
    near = [0, 1, 12, 15, 16, 17, 100, MAX_MESSAGE_LEN, MAX_MESSAGE_LEN + 1, 2**31, 2**32 - 1]
    total = draw(st.one_of(st.sampled_from(near), st.integers(0, 2**32 - 1)))
    hlen = draw(st.one_of(st.sampled_from([0, 1, 4, 100, 128 * 1024, 128 * 1024 + 1, 2**32 - 1]),
                          st.integers(0, 2**32 - 1)))
    p8 = struct.pack(">II", total, hlen)
    return p8 + struct.pack(">I", zlib.crc32(p8)) + draw(st.binary(max_size=48))


chunks = st.one_of(
    plausible_frames(),
    plausible_frames(),
    plausible_frames(),
    rpc_frames(),
    rpc_frames(),
    random_frames,
    st.binary(min_size=1, max_size=100),
    mutated_frames(),
    odd_preludes(),
    any_frame.flatmap(lambda f: st.integers(1, len(f) - 1).map(lambda k: f[:k])),  # truncated
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[str], list[tuple[int, bytes, int]]]:
    n = draw(st.integers(1, 3))
    modes = draw(st.lists(st.sampled_from(["valid", "valid", "none", "bad-token"]), min_size=n, max_size=n))
    actions = draw(st.lists(st.tuples(st.integers(0, n - 1), chunks, st.integers(0, 64)), min_size=1, max_size=8))
    return modes, actions


def _client_model(sent: bytes) -> tuple[Counter[int], int]:
    """What the server could answer to these bytes: operation starts per stream id, and PINGs."""
    starts: Counter[int] = Counter()
    pings = 0
    try:
        for m in FrameDecoder().feed(sent):
            t = mtype(m)
            if isinstance(t, bool) or not isinstance(t, int):
                continue
            if t in (0, 1) and isinstance(m.get("operation"), str) and isinstance(sid(m), int):
                starts[sid(m)] += 1
            elif t == MessageType.PING:
                pings += 1
    except ProtocolError:  # the server stops reading here too
        pass
    return starts, pings


def _check_server_output(mode: str, frames: list[Message], sent: bytes) -> None:
    starts, pings = _client_model(sent)
    for m in frames:
        for h in (":message-type", ":message-flags", ":stream-id"):
            assert h in m.headers and m.headers[h].type == HeaderType.INT32, f"server frame lacks INT32 {h}: {m}"
        assert mtype(m) in (0, 1, 3, 5, 6), m
        if mtype(m) in (0, 1):
            assert sid(m) > 0 and m.get(":content-type") == "application/json", m
            assert str(m.get("service-model-type")).startswith(SERVICE_PREFIX), m
            assert flags(m) == FLAG_TERMINATE_STREAM, m  # only one-shot operations are fuzzed
        else:
            assert sid(m) == 0, m
    types = [mtype(m) for m in frames]
    acks = [m for m in frames if mtype(m) == MessageType.CONNECT_ACK]
    assert len(acks) <= 1 and (not acks or frames[0] is acks[0]), "CONNECT_ACK must come first, once"
    if mode == "valid":
        assert frames and mtype(frames[0]) == MessageType.CONNECT_ACK and flags(frames[0]) == FLAG_CONNECTION_ACCEPTED
    elif mode == "bad-token":
        assert types == [MessageType.CONNECT_ACK] and flags(frames[0]) == 0, types
    else:
        assert all(flags(a) == 0 for a in acks), "accepted without a valid token"
        if not acks:
            assert types in ([], [MessageType.PROTOCOL_ERROR]), "replied before CONNECT"
    if acks and flags(acks[0]) == 0:
        assert len(frames) == 1, "frames after a refused CONNECT"
    if MessageType.PROTOCOL_ERROR in types:
        assert types.index(MessageType.PROTOCOL_ERROR) == len(types) - 1, "frames after PROTOCOL_ERROR"
    replies = Counter(sid(m) for m in frames if mtype(m) in (0, 1))
    for s, n in replies.items():
        assert n <= starts[s], f"{n} replies on stream {s}, which the client opened {starts[s]} times"
    assert types.count(MessageType.PING_RESPONSE) <= pings


def _run_scenario(path: str, token: str, modes: list[str], actions: list[tuple[int, bytes, int]]) -> None:
    clients = [RawClient(path) for _ in modes]
    sent = [bytearray() for _ in modes]
    dead = [False] * len(modes)
    try:

        def send(i: int, data: bytes) -> None:
            sent[i] += data
            if dead[i]:
                return
            try:
                clients[i].send(data)
            except OSError:  # the server already closed it
                dead[i] = True

        for i, mode in enumerate(modes):
            if mode != "none":
                send(i, connect_frame(token if mode == "valid" else "fuzz-not-a-token"))
        for i, data, cut in actions:
            cut = min(cut, len(data))
            if 0 < cut < len(data):
                send(i, data[:cut])
                send(i, data[cut:])
            else:
                send(i, data)
        for c in clients:
            c.shutdown_write()
        for i, c in enumerate(clients):
            frames = c.read_until_eof(timeout=5)  # the server closes at our EOF, if not before
            _check_server_output(modes[i], frames, bytes(sent[i]))
    finally:
        for c in clients:
            c.close()
    # Quick check: the server still accepts a new client.
    with RawClient(path) as c:
        ack = c.connect(token)
        assert (mtype(ack), flags(ack)) == (MessageType.CONNECT_ACK, FLAG_CONNECTION_ACCEPTED)


def test_fuzzed_input_never_harms_the_server(agents: Runtime) -> None:
    path, token = ipc_path(agents), cli_token(agents)
    out_before = len(agents.output())

    @settings(max_examples=300, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scenarios())
    def fuzz(sc: tuple[list[str], list[tuple[int, bytes, int]]]) -> None:
        _run_scenario(path, token, *sc)

    fuzz()
    assert agents.proc is not None and agents.proc.poll() is None, "the runtime died"
    assert_agents_round_trip(agents)
    assert_fresh_client_connects(agents)
    new_output = agents.output()[out_before:]
    at = max(new_output.find("unexpected failure"), new_output.find("Traceback"))
    assert at < 0, f"the server hit an unexpected exception:\n{new_output[max(0, at - 500): at + 3000]}"


# -- 5. a slow subscriber never stalls anyone else -------------------------------------------
def test_slow_subscriber_drops_its_own_events_without_stalling_others(agents: Runtime) -> None:
    topic, n, pad = "test/slow/data", 800, "x" * (64 * 1024)
    a, p = agents.agent(), agents.agent(PEER)
    with RawClient(ipc_path(agents)) as slow:
        try:
            ack = slow.connect(component_token(agents, AGENT))
            assert flags(ack) == FLAG_CONNECTION_ACCEPTED
            sub = slow.call(1, "SubscribeToTopic", json.dumps({"topic": topic}).encode())
            assert (mtype(sub), flags(sub)) == (MessageType.APPLICATION_MESSAGE, 0)  # stream stays open
            assert sub.get("service-model-type") == "aws.greengrass#SubscribeToTopicResponse"
            p.call("subscribe", id="slow", topic=topic)
            # From here on `slow` reads nothing. 800 x 64 KiB is far beyond the 32 MiB event backlog.
            t0 = time.monotonic()
            for i in range(n):
                a.call("publish_json", topic=topic, message={"i": i, "pad": pad})
            published = time.monotonic() - t0
            got = p.call("events", id="slow", count=n, timeout=10)
            assert [e["json"]["i"] for e in got] == list(range(n)), "the peer missed or reordered events"
            assert all(e["json"]["pad"] == pad for e in got)
            received = time.monotonic() - t0
            assert published < 12 and received < 15, f"publishing took {published:.1f}s, delivery {received:.1f}s"
            wait_until(lambda: f"{AGENT} is not keeping up" in agents.output(), 10, what="drop warning")

            # The slow connection is still open and consistent: what it gets is an in-order subset
            # (some events dropped), then it answers a ping like any healthy connection.
            slow.send(rpc_message(MessageType.PING, payload=b"still-there"))
            seen: list[int] = []
            while True:
                m = slow.read(timeout=10)
                assert m is not None, "the server closed the slow subscriber's connection"
                if mtype(m) == MessageType.PING_RESPONSE:
                    assert m.payload == b"still-there"
                    break
                assert (mtype(m), sid(m)) == (MessageType.APPLICATION_MESSAGE, 1), m
                assert m.get("service-model-type") == "aws.greengrass#SubscriptionResponseMessage"
                seen.append(json.loads(m.payload)["jsonMessage"]["message"]["i"])
            assert seen and seen[0] == 0 and seen == sorted(set(seen)), "events to the slow client out of order"
            assert len(seen) < n, "nothing was dropped: the test did not exercise the backlog limit"
        finally:
            p.call("unsubscribe", id="slow")
            a.close()
            p.close()
    assert_agents_round_trip(agents)
