"""ShadowManager's behaviour in the local runtime, over the real awsiot IPC client and a real mosquitto.

Sources: ShadowManager publishes delta/documents/accepted on local pub/sub after each update
(aws-greengrass-shadow-manager ipc/UpdateThingShadowRequestHandler.java, publishDeltaMessage /
publishDocumentsMessage, as binary messages: ipc/PubSubClientWrapper.java); its sync configuration and merge
rules are the developer guide's "Sync local device shadows with AWS IoT Core" (synchronize, direction, strategy;
"Shadow merge conflict behavior": desired conflicts take the cloud's value, reported conflicts the device's),
implemented as in sync/model/FullShadowSyncRequest.java + util/SyncNodeMerger.java.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import AgentError, Runtime, wait_until
from shadow_dev import Cloud, agent_watching_shadows, decoded
from test_iotcore import _have_mosquitto

from gglocal.iotcore.broker import MosquittoBroker
from gglocal.iotcore.pki import ensure_pki
from gglocal.nucleus.shadows import three_way_merge
from gglocal.nucleus.shadowsync import SyncConfigError, parse_sync_config

THING, SHADOW = "test-thing", "cfg"
PREFIX = f"$aws/things/{THING}/shadow/name/{SHADOW}"


def test_local_update_publishes_delta_documents_accepted_and_rejected(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], config=agent_watching_shadows())
    try:
        rt.start()
        a = rt.agent()
        for what in ("delta", "documents", "accepted", "rejected"):
            a.call("subscribe", id=what, topic=f"{PREFIX}/update/{what}")
        a.call("update_shadow", thing=THING, name=SHADOW, doc={"state": {"desired": {"fps": 5}}, "clientToken": "t1"})
        delta = decoded(a.call("events", id="delta", count=1)[0])
        assert delta["state"] == {"fps": 5} and delta["version"] == 1 and delta["clientToken"] == "t1"
        docs = decoded(a.call("events", id="documents", count=1)[0])
        assert docs["previous"] is None and docs["current"]["state"]["desired"] == {"fps": 5}
        assert decoded(a.call("events", id="accepted", count=1)[0])["version"] == 1
        # reported catches up: documents again, and no delta (desired == reported)
        a.call("update_shadow", thing=THING, name=SHADOW, doc={"state": {"reported": {"fps": 5}}})
        docs = decoded(a.call("events", id="documents", count=2)[1])
        assert docs["previous"]["version"] == 1 and docs["current"]["state"]["reported"] == {"fps": 5}
        assert len(a.call("events", id="delta", count=1)) == 1
        with pytest.raises(AgentError) as e:
            a.call("update_shadow", thing=THING, name=SHADOW, doc={"state": {"desired": 3}, "clientToken": "t2"})
        assert e.value.kind == "InvalidArgumentsError"
        rejected = decoded(a.call("events", id="rejected", count=1)[0])
        assert rejected["code"] == 400 and rejected["clientToken"] == "t2" and "desired" in rejected["message"]
    finally:
        rt.cleanup()


def test_sync_configuration_is_checked_with_the_key_named() -> None:
    cfg = parse_sync_config({"synchronize": {"coreThing": {"classic": "false", "namedShadows": ["a"]},
                                             "shadowDocuments": [{"thingName": "cam-1", "namedShadows": ["b"]}],
                                             "direction": "cloudToDevice"},
                             "strategy": {"type": "periodic", "delay": "30"}}, "core")
    assert cfg.shadows == {("core", "a"), ("cam-1", ""), ("cam-1", "b")}
    assert cfg.direction == "cloudToDevice" and cfg.periodic_s == 30
    assert parse_sync_config(None, "core").shadows == frozenset()
    for bad, where in (({"synchronize": {"direction": "up"}}, "synchronize.direction"),
                       ({"synchronize": {"shadowDocuments": [{"namedShadows": ["x"]}]}},
                        "synchronize.shadowDocuments[0].thingName"),
                       ({"strategy": {"type": "periodic", "delay": 0}}, "strategy.delay")):
        with pytest.raises(SyncConfigError, match=where.replace("[", r"\[").replace("]", r"\]")):
            parse_sync_config(bad, "core")


def test_three_way_merge_follows_the_documented_conflict_rules() -> None:
    from gglocal.nucleus.shadows import _ABSENT

    base = {"fps": 5, "zone": "a", "gone": 1}
    local = {"fps": 7, "zone": "a", "gone": 1, "new_local": True}
    cloud = {"fps": 10, "zone": "b"}  # "gone" removed in the cloud only
    assert three_way_merge(local, cloud, base, "cloud") == {"fps": 10, "zone": "b", "new_local": True}
    assert three_way_merge(local, cloud, base, "local") == {"fps": 7, "zone": "b", "new_local": True}
    assert three_way_merge(_ABSENT, {"x": 1}, _ABSENT, "local") == {"x": 1}


# -- cloud sync through the IoT Core stand-in -----------------------------------------------------------------

@pytest.fixture
def linked(tmp_path: Path) -> Iterator[tuple[Runtime, Cloud, MosquittoBroker]]:
    if not _have_mosquitto():
        pytest.skip("mosquitto is not installed (make test installs it)")
    pki = ensure_pki(tmp_path / "pki", THING)
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    cloud = Cloud(tmp_path / "cloud", broker.port, pki)
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], iot=True, config=agent_watching_shadows(),
                 args=["--iot-endpoint", f"127.0.0.1:{broker.port}", "--iot-pki", str(tmp_path / "pki")])
    try:
        rt.start()
        d = rt.deploy(root_component_versions_to_add={"aws.greengrass.ShadowManager": "2.3.9"},
                      component_to_configuration={"aws.greengrass.ShadowManager": {"MERGE": {
                          "synchronize": {"coreThing": {"classic": False, "namedShadows": [SHADOW]}}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        yield rt, cloud, broker
    finally:
        try:
            rt.cleanup()
        finally:
            cloud.close()
            broker.stop()


def _local(rt: Runtime) -> dict[str, Any]:
    try:
        return rt.agent().call("get_shadow", thing=THING, name=SHADOW)["state"]
    except AgentError:
        return {}


def test_cloud_desired_reaches_the_device_and_reported_reaches_the_cloud(
        linked: tuple[Runtime, Cloud, MosquittoBroker]) -> None:
    rt, cloud, _ = linked
    a = rt.agent()
    a.call("subscribe", id="delta", topic=f"{PREFIX}/update/delta")
    cloud.update(THING, SHADOW, {"desired": {"cameras": {"door": {"fps": 5}}}})
    delta = decoded(a.call("events", id="delta", count=1, timeout=30)[0])  # a component hears it locally
    assert delta["state"] == {"cameras": {"door": {"fps": 5}}}
    a.call("update_shadow", thing=THING, name=SHADOW, doc={"state": {"reported": {"cameras": {"door": {"fps": 5}}}}})
    wait_until(lambda: (cloud.state(THING, SHADOW) or {}).get("reported") == {"cameras": {"door": {"fps": 5}}},
               30, what="reported in the cloud")
    # a removal in the cloud (null) is a removal on the device too
    cloud.update(THING, SHADOW, {"desired": {"cameras": {"door": None, "yard": {"fps": 2}}}})
    wait_until(lambda: _local(rt).get("desired") == {"cameras": {"yard": {"fps": 2}}}, 30, what="yard replaces door")


def test_changes_on_both_sides_while_offline_converge_by_the_documented_rules(
        linked: tuple[Runtime, Cloud, MosquittoBroker]) -> None:
    rt, cloud, broker = linked
    a = rt.agent()
    cloud.update(THING, SHADOW, {"desired": {"fps": 5, "zone": "a"}})
    wait_until(lambda: _local(rt).get("desired") == {"fps": 5, "zone": "a"}, 30, what="first sync")
    a.call("update_shadow", thing=THING, name=SHADOW, doc={"state": {"reported": {"fps": 5, "zone": "a"}}})
    wait_until(lambda: (cloud.state(THING, SHADOW) or {}).get("reported") == {"fps": 5, "zone": "a"}, 30,
               what="reported synced")
    broker.stop()  # the link is down: both sides change
    cloud.update(THING, SHADOW, {"desired": {"fps": 10, "zone": "b"}, "reported": {"fps": 1}})
    a.call("update_shadow", thing=THING, name=SHADOW, doc={"state": {"desired": {"fps": 7, "light": "on"},
                                                                    "reported": {"fps": 6, "temp": 30}}})
    broker.start()  # the link returns (same port)
    want = {"desired": {"fps": 10, "zone": "b", "light": "on"},  # desired conflict: the cloud's value
            "reported": {"fps": 6, "zone": "a", "temp": 30}}  # reported conflict: the device's value
    wait_until(lambda: {k: _local(rt).get(k) for k in want} == want, 60, what="device converged")
    wait_until(lambda: {k: (cloud.state(THING, SHADOW) or {}).get(k) for k in want} == want, 60,
               what="cloud converged")
