"""Configuration, state, metrics, secrets, shadows and component management over real IPC."""

from __future__ import annotations

import time

import pytest
from harness import TEST_SECRET, AgentError, Runtime, wait_until


def test_get_configuration_whole_leaf_missing_and_other_component(agents: Runtime) -> None:
    a = agents.agent()
    whole = a.call("get_config")
    assert whole["component"] == "com.ggvision.test.Agent"
    assert whole["value"]["threshold"] == 5 and whole["value"]["nested"] == {"a": 1, "b": "two"}
    assert a.call("get_config", key_path=["nested", "b"])["value"] == {"b": "two"}  # leaf wrapped, as the nucleus
    with pytest.raises(AgentError) as e:
        a.call("get_config", key_path=["nope"])
    assert e.value.kind == "ResourceNotFoundError"
    other = a.call("get_config", component="com.ggvision.test.Peer", key_path=["controlSocket"])
    assert other["component"] == "com.ggvision.test.Peer"


def test_update_configuration_notifies_subscribers_and_checks_timestamps(agents: Runtime) -> None:
    a, p = agents.agent(), agents.agent("com.ggvision.test.Peer")
    a.call("subscribe_config", id="own", key_path=["nested"])
    p.call("subscribe_config", id="watch", component="com.ggvision.test.Agent", key_path=[])
    a.call("update_config", key_path=["nested"], value={"b": "three", "c": [1, 2]})
    own = a.call("events", id="own", count=2, timeout=10)
    assert sorted(tuple(e["key_path"]) for e in own) == [("nested", "b"), ("nested", "c")]
    assert len(p.call("events", id="watch", count=2, timeout=10)) >= 2
    assert a.call("get_config", key_path=["nested"])["value"] == {"a": 1, "b": "three", "c": [1, 2]}
    with pytest.raises(AgentError) as e:  # older than the stored value
        a.call("update_config", key_path=["nested"], value={"b": "old"}, timestamp=time.time() - 3600)
    assert e.value.kind == "FailedUpdateConditionCheckError"
    assert a.call("get_config", key_path=["nested", "b"])["value"] == {"b": "three"}


def test_update_state_and_component_metrics(agents: Runtime) -> None:
    """PutComponentMetric is refused to any component not named aws.*, policy or not (nucleus
    ComponentMetricIPCEventStreamAgent.doServiceAuthorization); the aws.* path is in test_nucleus_fidelity.py."""
    a = agents.agent()
    a.call("update_state", state="RUNNING")
    assert agents.state("com.ggvision.test.Agent") == "RUNNING"
    for who in ("com.ggvision.test.Agent", "com.ggvision.test.Peer"):  # with and without a componentmetric policy
        with pytest.raises(AgentError) as e:
            agents.agent(who).call("put_metric", name="frames", value=12, unit="COUNT")
        assert e.value.kind == "UnauthorizedError" and who in e.value.message


def test_get_secret_value_allow_and_deny_and_never_logged(agents: Runtime) -> None:
    a = agents.agent()
    got = a.call("get_secret", secret_id="arn:aws:secretsmanager:us-east-1:000000000000:secret:camera-1")
    assert got["string"] == TEST_SECRET
    assert a.call("get_secret", secret_id="camera-1")["string"] == TEST_SECRET  # by name, authorized on its ARN
    with pytest.raises(AgentError) as e:
        a.call("get_secret", secret_id="other")
    assert e.value.kind == "UnauthorizedError"
    with pytest.raises(AgentError) as e:
        agents.agent("com.ggvision.test.Peer").call("get_secret", secret_id="camera-1")
    assert e.value.kind == "UnauthorizedError"
    logs = agents.output() + "".join(p.read_text() for p in (agents.root / "logs").glob("*.log"))
    assert TEST_SECRET not in logs


def test_thing_shadows(agents: Runtime) -> None:
    a = agents.agent()
    with pytest.raises(AgentError) as e:
        a.call("get_shadow", thing="test-thing", name="cfg")
    assert e.value.kind == "ResourceNotFoundError"
    r = a.call("update_shadow", thing="test-thing", name="cfg",
               doc={"state": {"desired": {"fps": 5, "zone": "a"}, "reported": {"fps": 3}}})
    assert r["version"] == 1
    doc = a.call("get_shadow", thing="test-thing", name="cfg")
    assert doc["state"]["delta"] == {"fps": 5, "zone": "a"}
    a.call("update_shadow", thing="test-thing", name="cfg", doc={"state": {"reported": {"fps": 5, "zone": "a"}}})
    doc = a.call("get_shadow", thing="test-thing", name="cfg")
    assert "delta" not in doc["state"] and doc["version"] == 2
    with pytest.raises(AgentError) as e:
        a.call("update_shadow", thing="test-thing", name="cfg", doc={"state": {"desired": {}}, "version": 1})
    assert e.value.kind == "ConflictError"
    a.call("update_shadow", thing="test-thing", doc={"state": {"reported": {"classic": True}}})
    assert a.call("get_shadow", thing="test-thing")["state"]["reported"] == {"classic": True}
    assert a.call("delete_shadow", thing="test-thing", name="cfg")["version"] == 2
    with pytest.raises(AgentError):
        a.call("get_shadow", thing="test-thing", name="cfg")
    with pytest.raises(AgentError) as e:
        agents.agent("com.ggvision.test.Peer").call("get_shadow", thing="test-thing")
    assert e.value.kind == "UnauthorizedError"


def test_list_and_details_and_cli_denied_without_policy(agents: Runtime) -> None:
    a = agents.agent()
    comps = {c["name"]: c for c in a.call("list_components")}
    assert comps["com.ggvision.test.Peer"]["version"] == "1.0.0"
    assert comps["com.ggvision.test.Peer"]["state"] == "RUNNING"
    d = a.call("component_details", name="com.ggvision.test.Agent")
    assert d == {"name": "com.ggvision.test.Agent", "version": "1.0.0", "state": "RUNNING"}
    with pytest.raises(AgentError) as e:  # the Greengrass CLI's GetComponentDetailsHandler: ResourceNotFoundError
        a.call("component_details", name="no.such.Component")
    assert e.value.kind == "ResourceNotFoundError"
    with pytest.raises(AgentError) as e:
        agents.agent("com.ggvision.test.Peer").call("list_components")
    assert e.value.kind == "UnauthorizedError"


def test_unsupported_operation_gets_service_error(agents: Runtime) -> None:
    with pytest.raises(AgentError) as e:  # client device auth: no aws.greengrass.clientdevices.Auth here
        agents.agent().call("raw", method="authorize_client_device_action", kwargs={
            "client_device_auth_token": "t", "operation": "mqtt:publish", "resource": "mqtt:topic:x"})
    assert e.value.kind == "ServiceError" and "AuthorizeClientDeviceAction" in e.value.message


def test_restart_and_stop_component(agents: Runtime) -> None:
    a = agents.agent()
    peer_log_before = agents.log("com.ggvision.test.Peer").count("run: starting")
    assert a.call("restart", name="com.ggvision.test.Peer")["status"] == "SUCCEEDED"
    wait_until(lambda: agents.log("com.ggvision.test.Peer").count("run: starting") > peer_log_before, 20,
               what="peer restart")
    agents.wait_state("com.ggvision.test.Peer", "RUNNING")
    agents.agent("com.ggvision.test.Peer").call("get_config", key_path=["controlSocket"])  # it is back on IPC
    assert a.call("stop", name="com.ggvision.test.Peer")["status"] == "SUCCEEDED"
    agents.wait_state("com.ggvision.test.Peer", "FINISHED")
    assert a.call("restart", name="com.ggvision.test.Peer")["status"] == "SUCCEEDED"
    agents.wait_state("com.ggvision.test.Peer", "RUNNING")
