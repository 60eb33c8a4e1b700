"""Local pub/sub through the real IPC client inside real components: routing, wildcards, authorization."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from harness import AgentError, Runtime


def test_json_and_binary_messages_reach_subscribers_in_order(agents: Runtime) -> None:
    a, p = agents.agent(), agents.agent("com.ggvision.test.Peer")
    p.call("subscribe", id="order", topic="test/peer/data")
    for i in range(200):
        a.call("publish_json", topic="test/peer/data", message={"i": i})
    a.call("publish_binary", topic="test/peer/data", b64=base64.b64encode(b"\x00\xffraw").decode())
    got = p.call("events", id="order", count=201, timeout=20)
    assert [e["json"]["i"] for e in got[:200]] == list(range(200))
    assert base64.b64decode(got[200]["b64"]) == b"\x00\xffraw"
    assert all(e["topic"] == "test/peer/data" for e in got)


def test_wildcards_route_only_matching_topics(agents: Runtime) -> None:
    a, p = agents.agent(), agents.agent("com.ggvision.test.Peer")
    p.call("subscribe", id="plus", topic="test/+/data")
    p.call("subscribe", id="hash", topic="test/fan/#")
    topics = ("test/cam1/data", "test/cam1/other", "test/fan", "test/fan/a/b", "test/cam2/data/x", "test/cam2/data")
    for topic in topics:
        a.call("publish_json", topic=topic, message={"t": topic})
    plus = p.call("events", id="plus", count=2, timeout=10)
    hsh = p.call("events", id="hash", count=2, timeout=10)
    assert sorted(e["topic"] for e in plus) == ["test/cam1/data", "test/cam2/data"]
    assert sorted(e["topic"] for e in hsh) == ["test/fan", "test/fan/a/b"]


def test_receive_mode_from_others_suppresses_own_messages(agents: Runtime) -> None:
    a, p = agents.agent(), agents.agent("com.ggvision.test.Peer")
    a.call("subscribe", id="others", topic="test/peer/mode", receive_mode="RECEIVE_MESSAGES_FROM_OTHERS")
    a.call("subscribe", id="all", topic="test/peer/mode")
    a.call("publish_json", topic="test/peer/mode", message="from-agent")
    p.call("publish_json", topic="test/peer/mode", message="from-peer")
    all_ = a.call("events", id="all", count=2, timeout=10)
    assert sorted(e["json"] for e in all_) == ["from-agent", "from-peer"]
    others = a.call("events", id="others", count=1, timeout=10)
    assert [e["json"] for e in others] == ["from-peer"]


def test_unsubscribe_stops_delivery(agents: Runtime) -> None:
    a = agents.agent()
    a.call("subscribe", id="u1", topic="test/unsub")
    a.call("subscribe", id="u2", topic="test/unsub")
    a.call("publish_json", topic="test/unsub", message=1)
    assert len(a.call("events", id="u1", count=1, timeout=10)) == 1
    a.call("unsubscribe", id="u1")
    a.call("publish_json", topic="test/unsub", message=2)
    # u2 seeing message 2 proves it was routed after the unsubscribe took effect
    assert [e["json"] for e in a.call("events", id="u2", count=2, timeout=10)] == [1, 2]
    assert [e["json"] for e in a.call("events", id="u1", count=0, timeout=0)] == [1]


def test_one_megabyte_binary_message_is_byte_identical(agents: Runtime) -> None:
    a, p = agents.agent(), agents.agent("com.ggvision.test.Peer")
    blob = os.urandom(1024 * 1024)
    p.call("subscribe", id="big", topic="test/big/data")
    a.call("publish_binary", topic="test/big/data", b64=base64.b64encode(blob).decode())
    got = p.call("events", id="big", count=1, timeout=20)
    assert hashlib.sha256(base64.b64decode(got[0]["b64"])).hexdigest() == hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize(("who", "op", "topic"), [
    ("com.ggvision.test.Agent", "publish_json", "other/topic"),  # outside its test/* policy
    ("com.ggvision.test.Peer", "publish_json", "test/agent/x"),  # Peer may only publish under test/peer/*
    ("com.ggvision.test.Peer", "subscribe", "test/#"),  # broader than its policies
    ("com.ggvision.test.Peer", "subscribe", "test/fan/deep"),  # its test/fan/# policy is a literal filter
    ("com.ggvision.test.Peer", "subscribe", "test/cam/other"),
])
def test_access_control_denies_by_default(agents: Runtime, who: str, op: str, topic: str) -> None:
    ag = agents.agent(who)
    args = {"topic": topic, "message": 1} if op == "publish_json" else {"topic": topic, "id": f"deny-{topic}"}
    with pytest.raises(AgentError) as e:
        ag.call(op, **args)
    assert e.value.kind == "UnauthorizedError"
    assert who in e.value.message and topic in e.value.message


def test_access_control_globs_and_literal_mqtt_wildcards(agents: Runtime) -> None:
    """Local pub/sub policies glob with `*` and take `+`/`#` literally (developer guide, ipc-publish-subscribe,
    Authorization: a policy on test/topic/# allows subscribing to test/topic/# but not test/topic/filter; nucleus
    PubSubIPCEventStreamAgent.doAuthorization uses AuthorizationHandler's STANDARD resource lookup)."""
    p = agents.agent("com.ggvision.test.Peer")
    assert p.call("subscribe", id="allow1", topic="test/x/data") == {"topic_name": "test/x/data"}  # test/*/data
    assert p.call("subscribe", id="allow2", topic="test/+/data")  # the policy's own filter, literally
    assert p.call("subscribe", id="allow3", topic="test/fan/#")
    for topic in ("test/fan/deep/er", "test/fan/x"):  # what test/fan/# would match as an MQTT filter
        with pytest.raises(AgentError) as e:
            p.call("subscribe", id=f"deny-{topic}", topic=topic)
        assert e.value.kind == "UnauthorizedError"
    p.call("publish_json", topic="test/peer/anything/at/all", message=1)


def test_invalid_topics_are_refused_clearly(agents: Runtime) -> None:
    a = agents.agent()
    with pytest.raises(AgentError) as e:
        a.call("publish_json", topic="test/+/x", message=1)
    assert e.value.kind == "InvalidArgumentsError" and "wildcard" in e.value.message
    with pytest.raises(AgentError) as e:
        a.call("subscribe", id="bad", topic="test/#/x")
    assert e.value.kind == "InvalidArgumentsError"
