"""Local deployments against a running runtime (CreateLocalDeployment over real IPC)."""

from __future__ import annotations

import json
from pathlib import Path

from harness import Runtime, wait_until

AGENT, PEER = "com.ggvision.test.Agent", "com.ggvision.test.Peer"


def _starts(rt: Runtime, name: str) -> int:
    return rt.log(name).count("run: starting")


def test_configuration_merge_and_reset_without_restart(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [AGENT]).start()
    try:
        a = rt.agent()
        a.call("subscribe_config", id="cfg", key_path=[])
        starts = _starts(rt, AGENT)
        d = rt.deploy(component_to_configuration={AGENT: {"MERGE": {"threshold": 9, "nested": {"a": 5}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        assert a.call("get_config", key_path=["nested"])["value"] == {"a": 5, "b": "two"}
        events = a.call("events", id="cfg", count=2, timeout=10)
        assert {tuple(e["key_path"]) for e in events} >= {("threshold",), ("nested", "a")}
        d = rt.deploy(component_to_configuration={AGENT: {"RESET": ["/threshold", "/nested/a"]}})
        assert d.status == "SUCCEEDED"
        assert a.call("get_config")["value"]["threshold"] == 5
        assert a.call("get_config", key_path=["nested", "a"])["value"] == {"a": 1}
        assert _starts(rt, AGENT) == starts  # configuration changes alone do not restart it
    finally:
        rt.cleanup()


def test_validation_can_reject_a_configuration(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [AGENT]).start()
    try:
        a = rt.agent()
        a.call("subscribe_validate", id="val")
        d = rt.deploy(component_to_configuration={AGENT: {"MERGE": {"reject": True, "threshold": 1}}})
        assert d.status == "FAILED"
        details = d.deployment_status_details
        assert details.detailed_deployment_status == "FAILED_NO_STATE_CHANGE"
        assert "agent says REJECTED" in details.deployment_failure_cause
        assert a.call("get_config", key_path=["threshold"])["value"] == {"threshold": 5}  # unchanged
        d = rt.deploy(component_to_configuration={AGENT: {"MERGE": {"threshold": 7}}})
        assert d.status == "SUCCEEDED"
        seen = a.call("events", id="val", count=2, timeout=10)
        assert seen[-1]["configuration"]["threshold"] == 7
        assert a.call("get_config", key_path=["threshold"])["value"] == {"threshold": 7}
    finally:
        rt.cleanup()


def test_version_update_notifies_defers_and_restarts(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [AGENT, PEER], config={AGENT: {"deferTimes": 1}}).start()
    try:
        a = rt.agent()
        a.call("subscribe_updates", id="upd")
        new = tmp_path / "v110"
        rt.write_component(PEER, out_dir=new, version="1.1.0")
        d = rt.deploy(recipe_directory_path=str(new), artifacts_directory_path=str(rt.artifacts),
                      root_component_versions_to_add={PEER: "1.1.0"})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        events = a.call("events", id="upd", count=3, timeout=20)
        assert [("pre" in e, "post" in e) for e in events] == [(True, False), (True, False), (False, True)]
        assert events[0]["pre"] == d.deployment_id
        assert rt.client.get_component_details(component_name=PEER).component_details.version == "1.1.0"
        assert rt.state(PEER) == "RUNNING"
        rt.agent(PEER).call("get_config", key_path=["controlSocket"])  # the new version is on IPC
    finally:
        rt.cleanup()


def _broken_version(doc: dict) -> None:
    doc["Manifests"][0]["Lifecycle"] = {"Run": "echo new version fails; exit 1"}


def test_broken_update_is_rolled_back(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [PEER]).start()
    try:
        bad = tmp_path / "bad"
        rt.write_component(PEER, out_dir=bad, version="2.0.0", edit=_broken_version)
        d = rt.deploy(recipe_directory_path=str(bad), artifacts_directory_path=str(rt.artifacts),
                      root_component_versions_to_add={PEER: "2.0.0"})
        assert d.status == "FAILED"
        assert d.deployment_status_details.detailed_deployment_status == "FAILED_ROLLBACK_COMPLETE"
        assert "BROKEN" in d.deployment_status_details.deployment_failure_cause
        assert rt.client.get_component_details(component_name=PEER).component_details.version == "1.0.0"
        rt.wait_state(PEER, "RUNNING")
        rt.agent(PEER).call("get_config", key_path=["controlSocket"])
        # DO_NOTHING keeps the broken version, as the nucleus does
        d = rt.deploy(root_component_versions_to_add={PEER: "2.0.0"}, failure_handling_policy="DO_NOTHING")
        assert d.deployment_status_details.detailed_deployment_status == "FAILED_ROLLBACK_NOT_REQUESTED"
        assert rt.state(PEER) == "BROKEN"
        # a later good deployment repairs a BROKEN component
        d = rt.deploy(root_component_versions_to_add={PEER: "1.0.0"})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        rt.wait_state(PEER, "RUNNING")
    finally:
        rt.cleanup()


def test_remove_component_and_bad_input(tmp_path: Path) -> None:
    rt = Runtime(tmp_path, [AGENT, PEER]).start()
    try:
        d = rt.deploy(root_components_to_remove=[PEER])
        assert d.status == "SUCCEEDED"
        assert PEER not in rt.states() and rt.state(AGENT) == "RUNNING"
        bad = tmp_path / "badrecipe"
        bad.mkdir()
        (bad / "broken.yaml").write_text("RecipeFormatVersion: '2020-01-25'\nComponentName: x.Y\n")
        d = rt.deploy(recipe_directory_path=str(bad))
        assert d.status == "FAILED"
        assert d.deployment_status_details.detailed_deployment_status == "FAILED_NO_STATE_CHANGE"
        assert "broken.yaml" in d.deployment_status_details.deployment_failure_cause
        d = rt.deploy(root_component_versions_to_add={"com.ggvision.test.Missing": "1.0.0"})
        assert d.status == "FAILED"
        assert "com.ggvision.test.Missing" in d.deployment_status_details.deployment_failure_cause
        assert rt.state(AGENT) == "RUNNING"
        # deployments are listed with their outcome
        listed = {x.deployment_id: x.status for x in rt.client.list_local_deployments().local_deployments}
        assert list(listed.values()).count("FAILED") == 2
        wait_until(lambda: json.loads((rt.root / "deployments" / "state.json").read_text())["roots"].get(PEER) is None,
                   5, what="state persisted")
    finally:
        rt.cleanup()
