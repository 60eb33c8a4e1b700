"""Where components notice the nucleus: refusals, error types and operations, through the real awsiotsdk client.

Every test names the nucleus (or Greengrass CLI) source or developer-guide page whose behaviour it holds the
runtime to. Sources: aws-greengrass/aws-greengrass-nucleus (builtin/services/*, authorization/*,
lifecyclemanager/GenericExternalService), aws-greengrass/aws-greengrass-cli (server/.../CLIEventStreamAgent), and
the developer guide (docs.aws.amazon.com/greengrass/v2/developerguide/<page>.html).
"""

from __future__ import annotations

import copy
import datetime
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from awsiot.greengrasscoreipc import model
from harness import AGENT_SCRIPT, RECIPES, AgentError, Runtime, wait_until, write_recipe
from test_ipc_protocol import component_token

AGENT, PEER = "com.ggvision.test.Agent", "com.ggvision.test.Peer"
METRICS = "aws.ggvision.test.Metrics"  # an aws.* name: the only kind the nucleus lets put component metrics
STREAM_MANAGER = "aws.greengrass.StreamManager"  # a test agent under the one name ValidateAuthorizationToken serves
PUT_METRIC = "aws.greengrass#PutComponentMetric"


def _agent_doc() -> dict[str, Any]:
    return yaml.safe_load((RECIPES / f"{AGENT}.yaml").read_text())


def _extra_agent(rt: Runtime, name: str, access_control: dict[str, Any]) -> None:
    """The test agent under another component name, written beside the others before the runtime starts."""
    doc = _agent_doc()
    doc["ComponentName"] = name
    cfg = doc["ComponentConfiguration"]["DefaultConfiguration"]
    cfg["controlSocket"] = rt.agent_socket(name)
    cfg["accessControl"] = access_control
    write_recipe(doc, rt.recipes)
    art = rt.artifacts / name / str(doc["ComponentVersion"])
    art.mkdir(parents=True, exist_ok=True)
    shutil.copy(AGENT_SCRIPT, art / "agent.py")


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    acl = copy.deepcopy(_agent_doc()["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"])
    acl["aws.greengrass.ipc.lifecycle"] = {f"{AGENT}:lifecycle:1": {
        "operations": ["aws.greengrass#PauseComponent", "aws.greengrass#ResumeComponent"],
        "resources": [PEER, "no.such.Component"]}}
    # deferTimes: once subscribed to component updates, the Agent keeps deferring them (the cancel test's hold).
    runtime = Runtime(tmp_path_factory.mktemp("fidelity"), [AGENT, PEER],
                      config={AGENT: {"accessControl": acl, "deferTimes": 1000}})
    _extra_agent(runtime, METRICS, {"aws.greengrass.ipc.componentmetric": {f"{METRICS}:metric:1": {
        "operations": [PUT_METRIC], "resources": ["ggv.frames*"]}}})
    _extra_agent(runtime, STREAM_MANAGER, {})
    try:
        runtime.start(wait_for={n: ("RUNNING",) for n in (AGENT, PEER, METRICS, STREAM_MANAGER)})
        yield runtime
    finally:
        runtime.cleanup()


def _refused(call: Any, kind: str, *words: str) -> AgentError:
    with pytest.raises(AgentError) as e:
        call()
    assert e.value.kind == kind, e.value
    for w in words:
        assert w in e.value.message, (w, e.value.message)
    return e.value


# -- 1. accessControl is deployment-only ------------------------------------------------------------------------
GRANT = {"operations": ["aws.greengrass#PublishToTopic"], "resources": ["*"]}
GRANT_SERVICE = {f"{PEER}:pubsub:granted": GRANT}
GRANT_ACL = {"aws.greengrass.ipc.pubsub": GRANT_SERVICE}


@pytest.mark.parametrize(("key_path", "value"), [
    ([], {"accessControl": GRANT_ACL}),  # merged at the root
    ([], {"nested": {"x": 1}, "accessControl": GRANT_ACL}),  # beside an ordinary key
    (["accessControl"], GRANT_ACL),
    (["accessControl", "aws.greengrass.ipc.pubsub"], GRANT_SERVICE),
    (["accessControl", "aws.greengrass.ipc.pubsub", f"{PEER}:pubsub:1"], {"resources": ["*"]}),  # widen its own
    ([], {"AccessControl": GRANT_ACL}),  # case variants: the nucleus' configuration keys are case-insensitive
    (["ACCESSCONTROL"], GRANT_ACL),
    (["accesscontrol", "aws.greengrass.ipc.pubsub"], GRANT_SERVICE),
], ids=["root", "root-beside", "path", "path-service", "path-policy", "root-Case", "path-CASE", "path-case-deep"])
def test_a_component_cannot_grant_itself_ipc_permissions(rt: Runtime, key_path: list[str], value: Any) -> None:
    """UpdateConfiguration touching accessControl — merged at the root or at a path into it, in any letter case —
    is refused, and the component's permissions stay as its recipe made them.

    Source: nucleus ConfigStoreIPCEventStreamAgent.UpdateConfigurationOperationHandler.validateRequest
    (restrictedConfigurationFields = [accessControl]: the first key of the path, or a top-level key of a root
    merge → InvalidArgumentsError "Config update is not allowed for following fields"). The nucleus compares that
    key case-sensitively, but its configuration keys are case-insensitive (config/Topics keyed by
    CaseInsensitiveString), so a case variant names the same node there: refused here in every case."""
    p = rt.agent(PEER)
    before = p.call("get_config")["value"]
    _refused(lambda: p.call("update_config", key_path=key_path, value=value), "InvalidArgumentsError",
             "accessControl")
    assert p.call("get_config")["value"] == before
    _refused(lambda: p.call("publish_json", topic="other/escalated", message=1), "UnauthorizedError", PEER)


def test_a_key_named_access_control_deeper_in_a_component_tree_is_no_policy(rt: Runtime) -> None:
    """Only configuration/accessControl holds policies: the nucleus accepts accessControl below another key (its
    check looks at the first key only) and AuthorizationPolicyParser reads configuration/accessControl alone.

    Source: nucleus ConfigStoreIPCEventStreamAgent.validateRequest; authorization/AuthorizationPolicyParser
    (serviceConfig.findNode(CONFIGURATION_CONFIG_KEY, ACCESS_CONTROL_NAMESPACE_TOPIC))."""
    p = rt.agent(PEER)
    p.call("update_config", key_path=["notes"], value={"accessControl": GRANT_ACL})
    assert p.call("get_config", key_path=["notes"])["value"] == {"accessControl": GRANT_ACL}
    _refused(lambda: p.call("publish_json", topic="other/escalated", message=1), "UnauthorizedError")


def test_a_deployment_may_set_access_control_but_a_component_may_not_deploy(rt: Runtime) -> None:
    """A deployment's configuration merge may set accessControl (the documented way to grant IPC permissions);
    CreateLocalDeployment itself needs an aws.greengrass.Cli policy, so a component without one cannot use a
    deployment to grant another component (or itself) anything.

    Sources: developer guide interprocess-communication, "Authorize components to perform IPC operations"
    ("set in the component recipe or when you deploy the component"; example configuration update with an
    authorization policy); Greengrass CLI CLIEventStreamAgent.CreateLocalDeploymentHandler → authorizeRequest
    (aws.greengrass.Cli, aws.greengrass#CreateLocalDeployment)."""
    topic = "test/granted/x"
    grant = {"accessControl": {"aws.greengrass.ipc.pubsub": {f"{PEER}:pubsub:deployed": {
        "operations": ["aws.greengrass#PublishToTopic"], "resources": ["test/granted/*"]}}}}
    a, p = rt.agent(), rt.agent(PEER)
    _refused(lambda: a.call("raw", method="create_local_deployment",
                            kwargs={"component_to_configuration": {PEER: {"MERGE": grant}}}),
             "UnauthorizedError", "CreateLocalDeployment")
    _refused(lambda: p.call("publish_json", topic=topic, message="before"), "UnauthorizedError")
    d = rt.deploy(component_to_configuration={PEER: {"MERGE": grant}})  # the CLI identity, as greengrass-cli
    assert d.status == "SUCCEEDED", d.deployment_status_details
    a.call("subscribe", id="granted", topic=topic)
    p.call("publish_json", topic=topic, message="after")
    assert [e["json"] for e in a.call("events", id="granted", count=1, timeout=10)] == ["after"]
    a.call("unsubscribe", id="granted")


# -- 2. PutComponentMetric --------------------------------------------------------------------------------------
def test_put_component_metric_is_for_aws_components_with_checked_metrics(rt: Runtime) -> None:
    """Only components named aws.* may put metrics; each metric needs a name of 1-32 bytes, a unit and a value
    >= 0, is authorized on its name against aws.greengrass.ipc.componentmetric (Stream Manager needs no policy),
    and its unit must be a telemetry unit.

    Source: nucleus builtin/services/telemetry/ComponentMetricIPCEventStreamAgent (doServiceAuthorization:
    ^aws\\. else UnauthorizedError; validateComponentMetricRequest; doMetricAuthorization; valueOfIgnoreCase over
    TelemetryUnit of aws-greengrass-logging-java: Bytes, BytesPerSecond, Count, CountPerSecond, Megabytes, None,
    Percent, Seconds — no Milliseconds)."""
    agent, m, sm = rt.agent(), rt.agent(METRICS), rt.agent(STREAM_MANAGER)
    # A com.* component is refused even with a componentmetric policy on "*" (the Agent's recipe has one).
    _refused(lambda: agent.call("put_metric", name="ggv.frames", value=1, unit="COUNT"), "UnauthorizedError",
             AGENT, "aws.")
    m.call("put_metric", name="ggv.frames", value=3, unit="COUNT")
    m.call("put_metric", name="ggv.frames.dropped", value=0.5, unit="COUNT_PER_SECOND")
    m.call("put_metric", name="ggv.frames.size", value=1, unit="Megabytes")  # units match ignoring case and '_'
    _refused(lambda: m.call("put_metric", name="ggv.latency", value=1, unit="COUNT"), "UnauthorizedError",
             "ggv.latency")  # outside its policy's resources
    for bad in ({"name": "ggv.frames", "value": -1, "unit": "COUNT"},
                {"name": "ggv.frames" + "x" * 23, "value": 1, "unit": "COUNT"},  # 33 bytes
                {"name": "ggv.frames", "value": 1, "unit": None},
                {"name": "ggv.frames", "value": 1, "unit": "MILLISECONDS"},
                {"name": "ggv.frames", "value": 1, "unit": "FURLONGS"}):
        _refused(lambda bad=bad: m.call("put_metric", **bad), "InvalidArgumentsError")
    sm.call("put_metric", name="anything.at.all", value=2, unit="BYTES")  # Stream Manager: no policy needed


# -- 3. pub/sub semantics -----------------------------------------------------------------------------------------
def test_local_pubsub_policy_wildcards_are_literal_but_mqtt_proxy_ones_match(rt: Runtime) -> None:
    """Local pub/sub policies take `+` and `#` literally (only `*` globs); IoT Core (mqttproxy) policies match
    MQTT wildcards. The runtime here has no IoT Core bridge, so an authorized IoT Core call fails only after
    authorization, with a ServiceError.

    Sources: developer guide ipc-publish-subscribe, Authorization (a policy on test/topic/# allows subscribing to
    test/topic/#, not test/topic/filter) and ipc-iot-core-mqtt, "MQTT wildcards in AWS IoT Core MQTT IPC
    authorization policies"; nucleus PubSubIPCEventStreamAgent.doAuthorization (ResourceLookupPolicy.STANDARD)
    vs MqttProxyIPCAgent.doAuthorization (MQTT_STYLE), authorization/WildcardTrie."""
    a, p = rt.agent(), rt.agent(PEER)
    assert p.call("subscribe", id="lit-hash", topic="test/fan/#")  # Peer's policy: test/fan/#, test/+/data
    assert p.call("subscribe", id="lit-plus", topic="test/+/data")
    for topic in ("test/fan/filter", "test/fan/a/b"):
        _refused(lambda topic=topic: p.call("subscribe", id=topic, topic=topic), "UnauthorizedError", topic)
    p.call("unsubscribe", id="lit-hash")
    p.call("unsubscribe", id="lit-plus")
    # The Agent's mqttproxy policy is ggvision/#: it covers ggvision/a/b as an MQTT filter would.
    _refused(lambda: a.call("subscribe_iot", id="iot-ok", topic="ggvision/a/b"), "ServiceError", "not running")
    _refused(lambda: a.call("subscribe_iot", id="iot-no", topic="other/a"), "UnauthorizedError")


def test_wildcard_subscriptions_default_to_messages_from_others(rt: Runtime) -> None:
    """SubscribeToTopic without receiveMode: RECEIVE_MESSAGES_FROM_OTHERS when the topic has an MQTT wildcard,
    RECEIVE_ALL_MESSAGES otherwise; an explicit mode is kept.

    Sources: developer guide ipc-publish-subscribe, SubscribeToTopic request, receiveMode ("The default behavior
    depends on whether the topic contains an MQTT wildcard"); nucleus PubSubIPCEventStreamAgent.validateReceiveMode
    and SubscriptionTrie.isWildcard."""
    a, p = rt.agent(), rt.agent(PEER)
    a.call("subscribe", id="rm-exact", topic="test/peer/rm")
    a.call("subscribe", id="rm-wild", topic="test/peer/+")
    a.call("subscribe", id="rm-wild-all", topic="test/peer/+", receive_mode="RECEIVE_ALL_MESSAGES")
    a.call("publish_json", topic="test/peer/rm", message="from-agent")
    p.call("publish_json", topic="test/peer/rm", message="from-peer")
    assert [e["json"] for e in a.call("events", id="rm-exact", count=2, timeout=10)] == ["from-agent", "from-peer"]
    assert [e["json"] for e in a.call("events", id="rm-wild-all", count=2, timeout=10)] == ["from-agent",
                                                                                             "from-peer"]
    # The server sends from-agent before from-peer: delivered to rm-wild, it would show up here too.
    assert [e["json"] for e in a.call("events", id="rm-wild", count=1, timeout=10)] == ["from-peer"]
    for sub in ("rm-exact", "rm-wild", "rm-wild-all"):
        a.call("unsubscribe", id=sub)


def test_publishing_to_a_topic_with_a_wildcard_is_refused_after_authorization(rt: Runtime) -> None:
    """PublishToTopic: authorization first, then a topic containing `+`, `#` or `*` is InvalidArgumentsError.

    Source: nucleus PubSubIPCEventStreamAgent (PublishToTopicOperationHandler.handleRequest → doAuthorization,
    then handlePublishToTopicRequest: "Publish topic must not contain a wildcard.")."""
    a, p = rt.agent(), rt.agent(PEER)
    for topic in ("test/a/+", "test/a/#", "test/a*b"):  # the Agent may publish under test/*
        _refused(lambda topic=topic: a.call("publish_json", topic=topic, message=1), "InvalidArgumentsError",
                 "wildcard")
    _refused(lambda: p.call("publish_json", topic="test/agent/+", message=1), "UnauthorizedError")


def test_iot_core_calls_need_qos_and_a_payload(rt: Runtime) -> None:
    """PublishToIoTCore without a payload or without a QoS, and SubscribeToIoTCore without a QoS, are
    InvalidArgumentsError — after authorization. With both, the call gets past validation (and fails here only
    because this runtime has no IoT Core bridge).

    Source: nucleus builtin/services/mqttproxy/MqttProxyIPCAgent (validateTopic, doAuthorization, validatePayload
    "Payload is required", validateQoS "QoS is required")."""
    a = rt.agent()
    topic = "ggvision/test-thing/x"
    _refused(lambda: a.call("publish_iot", topic=topic, qos="1", b64=None), "InvalidArgumentsError", "Payload")
    _refused(lambda: a.call("publish_iot", topic=topic, qos=None, b64="aGk="), "InvalidArgumentsError", "QoS")
    _refused(lambda: a.call("publish_iot", topic="other/x", qos=None, b64=None), "UnauthorizedError")
    _refused(lambda: a.call("publish_iot", topic=topic, qos="1", b64="aGk="), "ServiceError", "not running")
    _refused(lambda: a.call("subscribe_iot", id="noqos", topic=topic, qos=None), "InvalidArgumentsError", "QoS")


# -- 4. error types the client maps to exceptions ---------------------------------------------------------------
def test_unknown_components_and_bad_deployment_ids(rt: Runtime) -> None:
    """GetComponentDetails, RestartComponent and StopComponent of an unknown component: ResourceNotFoundError; an
    empty name: InvalidArgumentsError. GetLocalDeploymentStatus of a non-UUID id: InvalidArgumentsError; of an
    unknown UUID: ResourceNotFoundError.

    Source: Greengrass CLI server CLIEventStreamAgent (GetComponentDetailsHandler, RestartComponentsHandler,
    StopComponentHandler: validateComponentName, then kernel.locate → ResourceNotFoundError;
    GetLocalDeploymentStatusHandler.validateGetLocalDeploymentStatusRequest: UUID.fromString)."""
    a = rt.agent()
    for op in ("component_details", "restart", "stop"):
        _refused(lambda op=op: a.call(op, name="no.such.Component"), "ResourceNotFoundError", "no.such.Component")
        _refused(lambda op=op: a.call(op, name=""), "InvalidArgumentsError")
    with pytest.raises(model.InvalidArgumentsError):
        rt.client.get_local_deployment_status(deployment_id="not-a-uuid")
    with pytest.raises(model.ResourceNotFoundError):
        rt.client.get_local_deployment_status(deployment_id=str(uuid.uuid4()))


def test_configuration_errors(rt: Runtime) -> None:
    """UpdateConfiguration without a timestamp is refused (and changes nothing); SubscribeToConfigurationUpdate on
    a missing key or an unknown component is ResourceNotFoundError.

    Source: nucleus ConfigStoreIPCEventStreamAgent (UpdateConfigurationOperationHandler.validateRequest:
    "Timestamp is required"; ConfigurationUpdateOperationHandler.handleRequest: "Key not found")."""
    a = rt.agent()
    _refused(lambda: a.call("raw", method="update_configuration",
                            kwargs={"key_path": ["nested"], "value_to_merge": {"b": "no-timestamp"}}),
             "InvalidArgumentsError", "Timestamp")
    assert a.call("get_config", key_path=["nested", "b"])["value"] == {"b": "two"}
    _refused(lambda: a.call("subscribe_config", id="missing", key_path=["no", "such"]), "ResourceNotFoundError")
    _refused(lambda: a.call("subscribe_config", id="nobody", component="no.such.Component"), "ResourceNotFoundError")
    a.call("subscribe_config", id="present", key_path=["nested"])  # control: an existing key
    a.call("unsubscribe", id="present")


def test_defer_component_update_without_a_pending_update(rt: Runtime) -> None:
    """DeferComponentUpdate from a component not subscribed to component updates: InvalidArgumentsError; without a
    deployment id: InvalidArgumentsError; when no PreComponentUpdateEvent awaits its answer: ServiceError.

    Source: nucleus LifecycleIPCEventStreamAgent.deferComponentUpdate."""
    a, p = rt.agent(), rt.agent(PEER)
    dep = str(uuid.uuid4())
    _refused(lambda: p.call("raw", method="defer_component_update",
                            kwargs={"deployment_id": dep, "recheck_after_ms": 0}), "InvalidArgumentsError",
             "not subscribed")
    a.call("subscribe_updates", id="defer-check")
    try:
        _refused(lambda: a.call("raw", method="defer_component_update", kwargs={"recheck_after_ms": 0}),
                 "InvalidArgumentsError", "deployment ID")
        _refused(lambda: a.call("raw", method="defer_component_update",
                                kwargs={"deployment_id": dep, "recheck_after_ms": 0}), "ServiceError", "Time limit")
    finally:
        a.call("unsubscribe", id="defer-check")


# -- 5. operations that were "Unsupported" ----------------------------------------------------------------------
def _processes(rt: Runtime, component: str) -> list[psutil.Process]:
    """The component's processes: the process group of its agent.py (under this runtime's root)."""
    marker = f"{rt.root}/packages/artifacts/{component}/"

    def find() -> list[psutil.Process] | None:
        for proc in psutil.process_iter(["cmdline"]):
            if any(marker in part for part in proc.info["cmdline"] or []):
                try:
                    pgid = os.getpgid(proc.pid)
                except ProcessLookupError:
                    continue
                group = []
                for q in psutil.process_iter():
                    try:
                        if os.getpgid(q.pid) == pgid:
                            group.append(q)
                    except (ProcessLookupError, psutil.Error):
                        continue
                return group
        return None

    return wait_until(find, 10, what=f"{component}'s processes")


def _all_status(procs: list[psutil.Process], status: str) -> bool:
    try:
        return all(p.status() == status for p in procs)
    except psutil.NoSuchProcess:
        return False


def test_pause_and_resume_freeze_and_thaw_a_component(rt: Runtime) -> None:
    """PauseComponent freezes every process of a RUNNING component and the nucleus keeps reporting it RUNNING;
    pausing again succeeds; ResumeComponent thaws it; resuming a component that is not paused, pausing one that
    is not running, an unknown one or one the caller's aws.greengrass.ipc.lifecycle policy does not name are
    refused; stopping a paused component resumes it and shuts it down.

    Sources: developer guide ipc-component-lifecycle, PauseComponent/ResumeComponent (nucleus >= 2.4.0; "When you
    restart or shut down a paused component ... the nucleus resumes the component and runs its shutdown
    lifecycle"); nucleus LifecycleIPCEventStreamAgent.PauseComponentHandler/ResumeComponentHandler (Linux only;
    name required; authorization; ResourceNotFoundError; "is not running" / "is not paused" InvalidArgumentsError —
    the guide's "InvalidRequestError" is no shape of the IPC model), GenericExternalService.pause/resume/shutdown."""
    a, p = rt.agent(), rt.agent(PEER)
    peer = _processes(rt, PEER)
    a.call("raw", method="pause_component", kwargs={"component_name": PEER})
    wait_until(lambda: _all_status(peer, psutil.STATUS_STOPPED), 10, what="Peer frozen")
    assert a.call("component_details", name=PEER)["state"] == "RUNNING"
    a.call("raw", method="pause_component", kwargs={"component_name": PEER})  # already paused: fine
    _refused(lambda: a.call("raw", method="pause_component", kwargs={"component_name": AGENT}),
             "UnauthorizedError", AGENT)  # its policy names the Peer (and no.such.Component) only
    for method in ("pause_component", "resume_component"):
        _refused(lambda method=method: a.call("raw", method=method, kwargs={"component_name": "no.such.Component"}),
                 "ResourceNotFoundError")
    a.call("raw", method="resume_component", kwargs={"component_name": PEER})
    wait_until(lambda: not any(q.status() == psutil.STATUS_STOPPED for q in peer), 10, what="Peer thawed")
    assert p.call("get_config", key_path=["controlSocket"])  # it answers again
    _refused(lambda: a.call("raw", method="resume_component", kwargs={"component_name": PEER}),
             "InvalidArgumentsError", "not paused")
    _refused(lambda: p.call("raw", method="pause_component", kwargs={"component_name": AGENT}),
             "UnauthorizedError")  # no lifecycle policy at all

    # Stopping a paused component: resumed, then shut down gracefully (SIGTERM suffices, no SIGKILL).
    a.call("raw", method="pause_component", kwargs={"component_name": PEER})
    wait_until(lambda: _all_status(peer, psutil.STATUS_STOPPED), 10, what="Peer frozen again")
    assert a.call("stop", name=PEER)["status"] == "SUCCEEDED"
    rt.wait_state(PEER, "FINISHED", 10)
    assert "SIGTERM; killed" not in rt.log(PEER)
    _refused(lambda: a.call("raw", method="pause_component", kwargs={"component_name": PEER}),
             "InvalidArgumentsError", "not running")
    assert a.call("restart", name=PEER)["status"] == "SUCCEEDED"
    rt.wait_state(PEER, "RUNNING")
    rt.agent(PEER).call("get_config", key_path=["controlSocket"])


def _submit(rt: Runtime, **kwargs: Any) -> str:
    op = rt.client.client.new_create_local_deployment()
    op.activate(model.CreateLocalDeploymentRequest(**kwargs)).result(30)
    return op.get_response().result(30).deployment_id


def _status(rt: Runtime, dep: str) -> str:
    return rt.client.get_local_deployment_status(deployment_id=dep).deployment.status


def test_cancel_local_deployment(rt: Runtime, tmp_path: Path) -> None:
    """CancelLocalDeployment: a queued deployment is dropped, one waiting in progress stops with nothing changed,
    both report CANCELED; a finished one is left alone with a message; an unknown id is ResourceNotFoundError, a
    non-UUID InvalidArgumentsError, a caller without an aws.greengrass.Cli policy UnauthorizedError.

    Sources: Greengrass CLI CLIEventStreamAgent.CancelLocalDeploymentHandler (UUID check, authorizeRequest,
    "Cannot find the deployment id provided", "Cancellation request is not processed because deployment is
    already finished", "Cancel request submitted"); nucleus DeploymentService.cancelCurrentDeployment (status
    CANCELED for local deployments); IPC model DeploymentStatus.CANCELED."""
    a = rt.agent()
    new = tmp_path / "v110"
    rt.write_component(PEER, out_dir=new, version="1.1.0")
    a.call("subscribe_updates", id="hold")  # the Agent defers every update: the deployment waits in progress
    try:
        first = _submit(rt, recipe_directory_path=str(new), artifacts_directory_path=str(rt.artifacts),
                        root_component_versions_to_add={PEER: "1.1.0"})
        assert a.call("events", id="hold", count=1, timeout=20)[0] == {"pre": first}
        second = _submit(rt, component_to_configuration={PEER: {"MERGE": {"queued": True}}})
        assert _status(rt, second) == "QUEUED"
        assert "submitted" in rt.client.cancel_local_deployment(deployment_id=second).message
        assert _status(rt, second) == "CANCELED"
        _refused(lambda: a.call("raw", method="cancel_local_deployment", kwargs={"deployment_id": first}),
                 "UnauthorizedError", "CancelLocalDeployment")
        assert _status(rt, first) == "IN_PROGRESS"
        assert rt.client.cancel_local_deployment(deployment_id=first).message == \
            f"Cancel request submitted. Deployment ID: {first}"
        wait_until(lambda: _status(rt, first) == "CANCELED", 20, what="first deployment cancelled")
    finally:
        a.call("unsubscribe", id="hold")
    details = rt.client.get_component_details(component_name=PEER).component_details
    assert (details.version, details.state) == ("1.0.0", "RUNNING")
    assert "queued" not in details.configuration
    assert "already finished" in rt.client.cancel_local_deployment(deployment_id=first).message
    with pytest.raises(model.ResourceNotFoundError):
        rt.client.cancel_local_deployment(deployment_id=str(uuid.uuid4()))
    with pytest.raises(model.InvalidArgumentsError):
        rt.client.cancel_local_deployment(deployment_id="nope")
    # The queue still works after the cancellations.
    d = rt.deploy(component_to_configuration={PEER: {"MERGE": {"afterCancel": 1}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details


def test_create_debug_password(rt: Runtime) -> None:
    """CreateDebugPassword (a Greengrass CLI operation): user `debug`, a random URL-safe password, valid for 8 hours;
    a component needs an aws.greengrass.Cli policy for it.

    Source: Greengrass CLI CLIEventStreamAgent.CreateDebugPasswordHandler (DEBUG_USERNAME, generatePassword:
    base64url of a SHA-256 digest, DEBUG_PASSWORD_EXPIRATION 8 h)."""
    r1, r2 = rt.client.create_debug_password(), rt.client.create_debug_password()
    assert r1.username == "debug" and len(r1.password) == 43 and r1.password != r2.password
    assert set(r1.password) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    left = r1.password_expiration - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=7, minutes=59) < left <= datetime.timedelta(hours=8)
    _refused(lambda: rt.agent().call("raw", method="create_debug_password"), "UnauthorizedError",
             "CreateDebugPassword")


def test_validate_authorization_token_is_for_stream_manager_only(rt: Runtime) -> None:
    """ValidateAuthorizationToken: any caller but aws.greengrass.StreamManager is UnauthorizedError; for Stream
    Manager a token the nucleus gave a component is valid and any other is InvalidTokenError.

    Source: nucleus authorization/AuthorizationIPCAgent (AUTHORIZED_COMPONENTS = [aws.greengrass.StreamManager];
    AuthenticationHandler.doAuthentication → InvalidTokenError)."""
    peer_token = component_token(rt, PEER)
    _refused(lambda: rt.agent().call("raw", method="validate_authorization_token", kwargs={"token": peer_token}),
             "UnauthorizedError", AGENT)
    sm = rt.agent(STREAM_MANAGER)
    assert "is_valid=True" in sm.call("raw", method="validate_authorization_token", kwargs={"token": peer_token})
    _refused(lambda: sm.call("raw", method="validate_authorization_token", kwargs={"token": "not-a-token"}),
             "InvalidTokenError")
