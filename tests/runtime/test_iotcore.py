"""IoT Core stand-in: real mosquitto, real mutual TLS, real AWS CRT MQTT5 clients."""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from awscrt import io, mqtt5
from cryptography import x509
from cryptography.x509.oid import NameOID

from gglocal.iotcore import (
    BrokerError,
    DiskSpool,
    IoTCoreBridge,
    MessageTooLargeError,
    MosquittoBroker,
    Pki,
    SpoolFullError,
    ensure_pki,
    find_mosquitto,
)


def _have_mosquitto() -> bool:
    try:
        find_mosquitto()
    except BrokerError:
        return False
    return True


pytestmark = [
    pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto not installed (apt-get install mosquitto)"),
    pytest.mark.timeout(60),
]

THING = "ggvision-test-thing"
T = 15.0  # generous per-step timeout; steps normally take milliseconds


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return ensure_pki(tmp_path / "pki", THING)


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[MosquittoBroker]:
    b = MosquittoBroker(tmp_path / "broker", pki)
    b.start()
    yield b
    b.stop()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 50))


def make_bridge(port: int, pki: Pki, spool: DiskSpool, **kw: Any) -> IoTCoreBridge:
    # Short reconnect backoff so broker restarts are noticed quickly.
    kw.setdefault("reconnect_min_s", 0.05)
    kw.setdefault("reconnect_max_s", 0.5)
    return IoTCoreBridge("127.0.0.1", port, pki, "bridge-under-test", spool, **kw)


class Peer:
    """An independent CRT MQTT5 client (same PKI, other client id) that queues what it receives.

    Persistent session: across a broker restart, mosquitto keeps (and persists) its subscription
    and queues messages for it, so delivery does not depend on who reconnects first. REJOIN_ALWAYS
    because mosquitto only persists sessions whose latest CONNECT had clean_start=0.
    """

    def __init__(self, port: int, pki: Pki, client_id: str = "independent-peer", with_cert: bool = True):
        self.loop = asyncio.get_running_loop()
        self.messages: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self.connected: asyncio.Future[None] = self.loop.create_future()
        self.failed: asyncio.Future[str] = self.loop.create_future()
        if with_cert:
            tls = io.TlsContextOptions.create_client_with_mtls_from_path(str(pki.client_cert), str(pki.client_key))
        else:
            tls = io.TlsContextOptions()
        tls.override_default_trust_store_from_path(None, str(pki.ca_cert))
        self.client = mqtt5.Client(
            mqtt5.ClientOptions(
                host_name="127.0.0.1",
                port=port,
                tls_ctx=io.ClientTlsContext(tls),
                connect_options=mqtt5.ConnectPacket(client_id=client_id, session_expiry_interval_sec=600),
                session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
                min_reconnect_delay_ms=50,
                max_reconnect_delay_ms=500,
                disable_metrics=True,
                on_publish_callback_fn=self._on_publish,
                on_lifecycle_event_connection_success_fn=lambda _: self._settle(self.connected, None),
                on_lifecycle_event_connection_failure_fn=lambda d: self._settle(self.failed, str(d.exception)),
            )
        )

    def _settle(self, fut: asyncio.Future[Any], value: Any) -> None:  # CRT thread
        self.loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(value))

    def _on_publish(self, data: mqtt5.PublishReceivedData) -> None:  # CRT thread
        p = data.publish_packet
        self.loop.call_soon_threadsafe(self.messages.put_nowait, (p.topic, bytes(p.payload)))

    async def start(self) -> None:
        self.client.start()
        await asyncio.wait_for(asyncio.shield(self.connected), T)

    async def subscribe(self, topic_filter: str) -> None:
        packet = mqtt5.SubscribePacket([mqtt5.Subscription(topic_filter, mqtt5.QoS.AT_LEAST_ONCE)])
        suback = await _crt(self.client.subscribe(packet))
        assert suback.reason_codes == [mqtt5.SubackReasonCode.GRANTED_QOS_1]

    async def publish(self, topic: str, payload: bytes) -> None:
        await _crt(self.client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS(1))))

    async def next(self) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.messages.get(), T)

    def stop(self) -> None:
        self.client.stop()


async def _crt(fut: Future) -> Any:
    return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), T)


# ---------------------------------------------------------------------------- PKI and spool


def test_pki_generated_once_and_reused(tmp_path: Path) -> None:
    first = ensure_pki(tmp_path / "pki", THING)
    contents = {f: getattr(first, f).read_bytes() for f in first.__dataclass_fields__}
    second = ensure_pki(tmp_path / "pki", THING)
    assert {f: getattr(second, f).read_bytes() for f in second.__dataclass_fields__} == contents
    for key in (first.ca_key, first.server_key, first.client_key):
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(first.client_cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == THING
    # A new thing name re-issues only the client certificate, under the same CA.
    third = ensure_pki(tmp_path / "pki", "other-thing")
    assert third.ca_cert.read_bytes() == contents["ca_cert"]
    assert third.client_cert.read_bytes() != contents["client_cert"]


def test_spool_fifo_durable_and_bounded(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with DiskSpool(path, max_bytes=1000) as spool:
        ids = [spool.put(f"t/{i}", bytes([i]) * 100, user_properties=[("k", "v")]) for i in range(3)]
        used = spool.bytes_used
        with pytest.raises(SpoolFullError, match="spool is full"):
            spool.put("t/x", b"x" * 800)
        assert len(spool) == 3 and spool.bytes_used == used
        assert spool.remove(ids[0]) and not spool.remove(ids[0])
    with DiskSpool(path, max_bytes=1000) as spool:  # reopened: state came from disk
        msgs = spool.peek(10)
        assert [m.id for m in msgs] == ids[1:]
        assert msgs[0].payload == bytes([1]) * 100 and msgs[0].user_properties == [("k", "v")]
        assert spool.bytes_used == sum(m.size for m in msgs)


# ---------------------------------------------------------------------------- broker + bridge


def test_mtls_is_required(broker: MosquittoBroker, pki: Pki) -> None:
    async def scenario() -> None:
        anonymous = Peer(broker.port, pki, client_id="no-cert", with_cert=False)
        anonymous.client.start()
        try:
            reason = await asyncio.wait_for(asyncio.shield(anonymous.failed), T)
        finally:
            anonymous.stop()
        assert not anonymous.connected.done(), "a client without a certificate must not get in"
        assert reason, reason
        with_cert = Peer(broker.port, pki)  # same broker, same CA: a certificate is all it takes
        await with_cert.start()
        with_cert.stop()

    run(scenario)


def test_publish_and_subscribe_roundtrip(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    async def scenario() -> None:
        loop_thread = threading.get_ident()
        peer = Peer(broker.port, pki)
        await peer.start()
        await peer.subscribe("ggv/up/#")
        spool = DiskSpool(tmp_path / "spool.db", 1 << 20)
        bridge = make_bridge(broker.port, pki, spool)
        await bridge.start()
        await bridge.wait_connected(T)
        try:
            payload = bytes(range(256)) * 64  # every byte value, incl. NUL and invalid UTF-8
            await bridge.publish("ggv/up/frame", payload, qos=1, user_properties=[("camera", "cam-1")])
            assert await peer.next() == ("ggv/up/frame", payload)
            await bridge.publish("ggv/up/q0", b"\x00q0", qos=0)
            assert await peer.next() == ("ggv/up/q0", b"\x00q0")
            await bridge.wait_drained(T)

            # Two local subscribers share one broker subscription; callbacks run on the loop thread.
            got_a: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
            got_b: asyncio.Queue[tuple[str, bytes, int]] = asyncio.Queue()
            h_a = await bridge.subscribe("ggv/down/+", 1, lambda t, p: got_a.put_nowait((t, p, threading.get_ident())))
            await bridge.subscribe("ggv/down/+", 1, lambda t, p: got_b.put_nowait((t, p, threading.get_ident())))
            await peer.publish("ggv/down/cmd", b"\xffstart")
            for q in (got_a, got_b):
                assert await asyncio.wait_for(q.get(), T) == ("ggv/down/cmd", b"\xffstart", loop_thread)
            await bridge.unsubscribe(h_a)
            await peer.publish("ggv/down/cmd", b"second")
            assert (await asyncio.wait_for(got_b.get(), T))[1] == b"second"
            assert got_a.empty()  # b's copy arrived, so a's (if any had been sent) would have too

            stats = bridge.stats()
            assert stats["published"] == 2 and stats["spooled"] == 0 and stats["dropped_qos0"] == 0
        finally:
            await bridge.stop()
            spool.close()
            peer.stop()

    run(scenario)


def test_broker_outage_spools_then_delivers_in_order_once(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    n = 50

    async def scenario() -> None:
        peer = Peer(broker.port, pki)
        await peer.start()
        await peer.subscribe("ggv/outage/#")
        spool = DiskSpool(tmp_path / "spool.db", 1 << 20)
        bridge = make_bridge(broker.port, pki, spool)
        await bridge.start()
        await bridge.wait_connected(T)
        down: asyncio.Queue[bytes] = asyncio.Queue()
        await bridge.subscribe("ggv/down", 1, lambda _t, p: down.put_nowait(p))
        try:
            broker.stop()
            await bridge.wait_disconnected(T)
            for i in range(n):
                await bridge.publish("ggv/outage/seq", f"msg-{i}".encode())
            assert bridge.stats()["spooled"] == n

            broker.start()  # same port, persisted sessions
            await bridge.wait_connected(T)
            await bridge.wait_drained(T)
            await bridge.publish("ggv/outage/end", b"sentinel")
            received = []
            while (msg := await peer.next())[0] != "ggv/outage/end":
                received.append(msg[1])
            # Everything before the sentinel: all 50, in order, no duplicates.
            assert received == [f"msg-{i}".encode() for i in range(n)]
            await bridge.wait_drained(T)  # the sentinel's PUBACK may trail its delivery
            stats = bridge.stats()
            assert stats["reconnects"] >= 1 and stats["spooled"] == 0 and stats["spool_bytes"] == 0

            await peer.publish("ggv/down", b"still subscribed after the outage")
            assert await asyncio.wait_for(down.get(), T) == b"still subscribed after the outage"
        finally:
            await bridge.stop()
            spool.close()
            peer.stop()

    run(scenario)


def test_outage_during_drain_loses_nothing_and_keeps_order(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    n = 400

    async def scenario() -> None:
        peer = Peer(broker.port, pki)
        await peer.start()
        await peer.subscribe("ggv/mid/#")
        # No IoT Core throttle (100 msg/s) so the drain is fast and the outage hits it mid-way.
        spool = DiskSpool(tmp_path / "spool.db", 1 << 20)
        bridge = make_bridge(broker.port, pki, spool, iot_core_limits=False)
        await bridge.start()
        await bridge.wait_connected(T)
        try:
            for i in range(n):
                await bridge.publish("ggv/mid/seq", str(i).encode())
            got = [int((await peer.next())[1]) for _ in range(50)]
            broker.stop()
            await bridge.wait_disconnected(T)
            broker.start()
            await bridge.wait_drained(T)
            await bridge.publish("ggv/mid/end", b"-1")
            while (msg := await peer.next())[0] != "ggv/mid/end":
                got.append(int(msg[1]))
            # At-least-once: duplicates would be tolerated, but first deliveries are complete and ordered.
            assert list(dict.fromkeys(got)) == list(range(n))
        finally:
            await bridge.stop()
            spool.close()
            peer.stop()

    run(scenario)


def test_spooled_messages_survive_bridge_restart(broker: MosquittoBroker, pki: Pki, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"

    async def scenario() -> None:
        peer = Peer(broker.port, pki)
        await peer.start()
        await peer.subscribe("ggv/restart/#")
        broker.stop()

        spool = DiskSpool(spool_path, 1 << 20)
        first = make_bridge(broker.port, pki, spool)
        await first.start()  # broker down: an offline start must not fail
        for i in range(5):
            await first.publish(f"ggv/restart/{i}", f"kept-{i}".encode())
        await first.stop()
        spool.close()

        spool = DiskSpool(spool_path, 1 << 20)
        assert len(spool) == 5
        second = make_bridge(broker.port, pki, spool)
        await second.start()
        broker.start()
        try:
            await second.wait_drained(T)
            got = [await peer.next() for _ in range(5)]
            assert got == [(f"ggv/restart/{i}", f"kept-{i}".encode()) for i in range(5)]
        finally:
            await second.stop()
            spool.close()
            peer.stop()

    run(scenario)


def test_offline_limits_full_spool_oversize_and_qos0(pki: Pki, tmp_path: Path) -> None:
    never_started = MosquittoBroker(tmp_path / "broker", pki)  # just reserves a port nobody listens on

    async def scenario() -> None:
        spool = DiskSpool(tmp_path / "spool.db", max_bytes=4096)
        bridge = make_bridge(never_started.port, pki, spool, max_message_bytes=1500)
        await bridge.start()
        try:
            # Full spool: the new message is refused and the queued ones are untouched.
            for i in range(2):
                await bridge.publish("ggv/full", bytes([i]) * 1500)
            before = (len(spool), spool.bytes_used, spool.peek(10))
            with pytest.raises(SpoolFullError):
                await bridge.publish("ggv/full", b"z" * 1500)
            assert (len(spool), spool.bytes_used, spool.peek(10)) == before

            with pytest.raises(MessageTooLargeError, match="1501 bytes"):
                await bridge.publish("ggv/big", b"x" * 1501)
            for bad in ["", "a/+/b", "a/#", "x" * 257, "/".join("l" * 9)]:
                with pytest.raises(ValueError):
                    await bridge.publish(bad, b"p")
            assert len(spool) == 2

            await bridge.publish("ggv/q0", b"lost", qos=0)
            stats = bridge.stats()
            assert stats["dropped_qos0"] == 1 and stats["spooled"] == 2 and not bridge.connected
        finally:
            await bridge.stop()
            spool.close()

    run(scenario)


def test_default_message_limit_is_iot_core_128k(pki: Pki, tmp_path: Path) -> None:
    async def scenario() -> None:
        with DiskSpool(tmp_path / "spool.db", 1 << 20) as spool:
            bridge = make_bridge(1, pki, spool)  # never started: limits are checked before any I/O
            await bridge.publish("ggv/max", b"m" * 131072)
            with pytest.raises(MessageTooLargeError, match="131072"):
                await bridge.publish("ggv/max", b"m" * 131073)
            assert len(spool) == 1

    run(scenario)
