"""PublishToIoTCore / SubscribeToIoTCore through the runtime's bridge to a real mosquitto with mTLS."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import AgentError, Runtime, wait_until
from test_iotcore import Peer, _have_mosquitto

from gglocal.iotcore.broker import MosquittoBroker
from gglocal.iotcore.pki import Pki, ensure_pki

pytestmark = pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto is not installed (make test installs it)")


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def test_embedded_broker_round_trip_and_limits(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], iot=True)
    try:
        rt.start()
        a = rt.agent()
        a.call("subscribe_iot", id="loop", topic="ggvision/test-thing/+")
        for i in range(20):
            a.call("publish_iot", topic="ggvision/test-thing/events", b64=b64(f"e{i}"))
        got = a.call("events", id="loop", count=20, timeout=20)
        assert [base64.b64decode(e["b64"]).decode() for e in got] == [f"e{i}" for i in range(20)]
        with pytest.raises(AgentError) as e:  # IoT Core's 128 KB limit
            a.call("publish_iot", topic="ggvision/test-thing/events", b64=base64.b64encode(b"x" * 140_000).decode())
        assert e.value.kind == "InvalidArgumentsError" and "131072" in e.value.message
        with pytest.raises(AgentError) as e:
            a.call("publish_iot", topic="elsewhere/x", b64=b64("no"))
        assert e.value.kind == "UnauthorizedError"
        with pytest.raises(AgentError) as e:
            a.call("subscribe_iot", id="deny", topic="#")
        assert e.value.kind == "UnauthorizedError"
    finally:
        rt.cleanup()


@pytest.fixture
def external(tmp_path: Path) -> Iterator[tuple[MosquittoBroker, Pki]]:
    pki = ensure_pki(tmp_path / "pki", "test-thing")
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    try:
        yield broker, pki
    finally:
        broker.stop()


def _collect(port: int, pki: Pki, topic: str, until: bytes, action: callable) -> list[bytes]:
    """Subscribe with an independent MQTT client, run `action`, return payloads up to the sentinel."""

    async def scenario() -> list[bytes]:
        peer = Peer(port, pki, client_id="outside-observer")
        await peer.start()
        await peer.subscribe(topic)
        try:
            await asyncio.get_running_loop().run_in_executor(None, action)
            out = []
            while (msg := await asyncio.wait_for(peer.messages.get(), 60))[1] != until:
                out.append(msg[1])
            return out
        finally:
            peer.stop()

    return asyncio.run(scenario())


def test_outage_spools_qos1_and_delivers_in_order_across_runtime_restart(
        tmp_path: Path, external: tuple[MosquittoBroker, Pki]) -> None:
    broker, pki = external
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], iot=True,
                 args=["--iot-endpoint", f"127.0.0.1:{broker.port}", "--iot-pki", str(tmp_path / "pki")])

    def outage_then_recover() -> None:
        rt.start()
        a = rt.agent()
        a.call("publish_iot", topic="ggvision/test-thing/results", b64=b64("before"))
        broker.stop()  # the uplink drops
        for i in range(30):
            a.call("publish_iot", topic="ggvision/test-thing/results", b64=b64(f"m{i}"))
        assert rt.stop() == 0  # and the runtime restarts while still offline
        rt.launch()
        rt.wait_state("com.ggvision.test.Agent", "RUNNING")
        a = rt.agent()
        for i in range(30, 40):
            a.call("publish_iot", topic="ggvision/test-thing/results", b64=b64(f"m{i}"))
        broker.start()  # the uplink returns on the same port
        a.call("publish_iot", topic="ggvision/test-thing/results", b64=b64("end"))

    try:
        got = _collect(broker.port, pki, "ggvision/test-thing/results", b"end", outage_then_recover)
    finally:
        rt.cleanup()
    # QoS1 is at-least-once: "before" may arrive twice if the broker went down before its PUBACK.
    # Everything spooled while offline arrives exactly once and in order.
    assert got[0] == b"before"
    assert [m for m in got if m != b"before"] == [f"m{i}".encode() for i in range(40)]


def test_embedded_broker_is_restarted_after_it_dies_and_the_spool_drains(tmp_path: Path) -> None:
    import os
    import signal

    import psutil

    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], iot=True)
    try:
        rt.start()
        a = rt.agent()
        a.call("subscribe_iot", id="back", topic="ggvision/test-thing/back")
        conf = str(rt.root.resolve() / "iotcore" / "broker")
        brokers = [p for p in psutil.process_iter(["name", "cmdline"])
                   if p.info["name"] == "mosquitto" and any(conf in c for c in p.info["cmdline"] or [])]
        assert len(brokers) == 1
        os.kill(brokers[0].pid, signal.SIGKILL)  # the uplink dies hard
        for i in range(10):
            a.call("publish_iot", topic="ggvision/test-thing/back", b64=b64(f"b{i}"))
        want = [f"b{i}" for i in range(10)]

        def delivered() -> list[str]:  # at-least-once: keep first occurrences, order must hold
            seen = [base64.b64decode(e["b64"]).decode() for e in a.call("events", id="back", count=0, timeout=0)]
            return list(dict.fromkeys(seen))

        assert wait_until(lambda: len(delivered()) >= 10 and delivered(), 30, what="spool drained") == want
        assert "mosquitto is not running; restarting it" in rt.log("gglocal.nucleus")
    finally:
        rt.cleanup()
