"""IPC operation handlers: validate each request, check accessControl, call the kernel.

Each handler takes (ctx, request JSON) and returns the response JSON, or an awaitable of it.
Subscription handlers call ctx.keep_open() and push events on ctx.stream later.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from topicmatch import valid_publish_topic, valid_topic_filter

from .authorization import is_authorized
from .errors import (
    ConflictError,
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    InvalidTokenError,
    ResourceNotFoundError,
    ServiceError,
    UnauthorizedError,
)
from .host import ConfigError, Host, ShadowError, ShadowNotFound, ShadowVersionConflict, StaleUpdateError
from .server import CallContext, Handler

_STATES = {"RUNNING", "ERRORED"}

# UpdateConfiguration may not touch these top-level configuration keys (nucleus ConfigStoreIPCEventStreamAgent,
# restrictedConfigurationFields). Compared case-insensitively: the nucleus' configuration keys are (Topics keyed by
# CaseInsensitiveString), so `AccessControl` names the same node there.
_RESTRICTED_CONFIG_KEYS = ("accessControl",)
# Characters the nucleus refuses in a PublishToTopic topic (PubSubIPCEventStreamAgent: `+`, `#` and `*`).
_PUBLISH_WILDCARDS = ("+", "#", "*")
# TelemetryUnit of the nucleus' telemetry library (aws-greengrass-logging-java); a PutComponentMetric unit matches one
# after dropping non-alphanumerics, ignoring case (ComponentMetricIPCEventStreamAgent.valueOfIgnoreCase). Note that
# the IPC model's MILLISECONDS has no TelemetryUnit and is refused by the nucleus.
_TELEMETRY_UNITS = {u.lower(): u for u in ("Bytes", "BytesPerSecond", "Count", "CountPerSecond", "Megabytes",
                                           "None", "Percent", "Seconds")}
_AWS_COMPONENT = re.compile(r"^aws\.")  # ComponentMetricIPCEventStreamAgent.SERVICE_NAME_REGEX
STREAM_MANAGER = "aws.greengrass.StreamManager"  # the one caller of ValidateAuthorizationToken (AuthorizationIPCAgent)
# java.util.UUID.fromString's accepted form (the Greengrass CLI validates deployment ids with it).
_UUID = re.compile(r"^[0-9a-fA-F]{1,8}-[0-9a-fA-F]{1,4}-[0-9a-fA-F]{1,4}-[0-9a-fA-F]{1,4}-[0-9a-fA-F]{1,12}$")
DEBUG_USERNAME = "debug"
DEBUG_PASSWORD_TTL_S = 8 * 3600  # CLIEventStreamAgent.DEBUG_PASSWORD_EXPIRATION


def _str(req: dict[str, Any], key: str, op: str, required: bool = True) -> str | None:
    v = req.get(key)
    if v is None:
        if required:
            raise InvalidArgumentsError(f"{op}: '{key}' is required")
        return None
    if not isinstance(v, str):
        raise InvalidArgumentsError(f"{op}: '{key}' must be a string, got {type(v).__name__}")
    return v


def _key_path(req: dict[str, Any], op: str) -> list[str]:
    kp = req.get("keyPath", [])
    if kp is None:
        return []
    if not isinstance(kp, list) or not all(isinstance(k, str) for k in kp):
        raise InvalidArgumentsError(f"{op}: 'keyPath' must be a list of strings")
    return kp


def touches_restricted_config(key_path: list[str], value: Any) -> bool:
    """Would an UpdateConfiguration at key_path with this valueToMerge change accessControl (at any depth below it)?

    As the nucleus: the first key of a non-empty path, or a top-level key of the value merged at the root. A key
    named accessControl deeper in a component's own tree is not its policies, and the nucleus accepts it."""
    restricted = {k.casefold() for k in _RESTRICTED_CONFIG_KEYS}
    if key_path:
        return key_path[0].casefold() in restricted
    return isinstance(value, dict) and any(isinstance(k, str) and k.casefold() in restricted for k in value)


def _deployment_id(req: dict[str, Any], op: str) -> str:
    dep = _str(req, "deploymentId", op)
    assert dep is not None
    if not _UUID.match(dep):
        raise InvalidArgumentsError(f"{op}: Invalid deploymentId format received. DeploymentId is a UUID")
    return dep


def _b64(value: Any, what: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise InvalidArgumentsError(f"{what} must be base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentsError(f"{what} is not valid base64") from None


def build_operations(kernel: Host) -> dict[str, Handler]:
    ops: dict[str, Handler] = {}

    def op(fn: Callable[[CallContext, dict[str, Any]], Any]) -> Callable[[CallContext, dict[str, Any]], Any]:
        ops[fn.__name__] = fn
        return fn

    decisions: dict[tuple[str, str, str], bool] = {}
    decided_at = [-1]  # config version the cached decisions were made at

    def authorize(ctx: CallContext, resource: str) -> None:
        # Decisions are cached until any configuration changes (accessControl lives in config).
        if kernel.config.version != decided_at[0]:
            decisions.clear()
            decided_at[0] = kernel.config.version
        key = (ctx.component, ctx.operation, resource)
        allowed = decisions.get(key)
        if allowed is None:
            allowed = is_authorized(kernel.access_control(ctx.component), ctx.operation, resource)
            if len(decisions) < 65536:
                decisions[key] = allowed
        if not allowed:
            kernel.counters["unauthorized"] += 1
            raise UnauthorizedError(
                f"Principal {ctx.component} is not authorized to perform aws.greengrass#{ctx.operation} "
                f"on resource {resource}"
            )

    # -- local pub/sub ------------------------------------------------------------------
    @op
    def PublishToTopic(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Nucleus PubSubIPCEventStreamAgent: authorization first, then the topic (no `+`, `#` or `*` anywhere).
        topic = _str(req, "topic", "PublishToTopic")
        assert topic is not None
        authorize(ctx, topic)
        if any(w in topic for w in _PUBLISH_WILDCARDS):
            raise InvalidArgumentsError(f"PublishToTopic: Publish topic must not contain a wildcard ({topic!r}).")
        why = valid_publish_topic(topic)
        if why:
            raise InvalidArgumentsError(f"PublishToTopic: {why}")
        pm = req.get("publishMessage")
        if not isinstance(pm, dict):
            raise InvalidArgumentsError("PublishToTopic: 'publishMessage' must be an object")
        if isinstance(pm.get("jsonMessage"), dict):
            kernel.pubsub.publish(ctx.component, topic, "jsonMessage", pm["jsonMessage"].get("message"))
        elif isinstance(pm.get("binaryMessage"), dict):
            msg = pm["binaryMessage"].get("message", "")
            if not isinstance(msg, str):
                raise InvalidArgumentsError("PublishToTopic: binaryMessage.message must be base64 text")
            kernel.pubsub.publish(ctx.component, topic, "binaryMessage", msg)
        else:
            raise InvalidArgumentsError("PublishToTopic: publishMessage needs jsonMessage or binaryMessage")
        return {}

    @op
    def SubscribeToTopic(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        topic = _str(req, "topic", "SubscribeToTopic")
        assert topic is not None
        authorize(ctx, topic)  # `+`/`#` in the policy's resources are plain characters here (STANDARD lookup)
        why = valid_topic_filter(topic)
        if why:
            raise InvalidArgumentsError(f"SubscribeToTopic: {why}")
        mode = req.get("receiveMode")
        if mode is None:
            # Nucleus PubSubIPCEventStreamAgent.validateReceiveMode: a filter with a wildcard level defaults to
            # RECEIVE_MESSAGES_FROM_OTHERS, any other topic to RECEIVE_ALL_MESSAGES.
            wildcard = any(level == "+" for level in topic.split("/")) or topic.split("/")[-1] == "#"
            mode = "RECEIVE_MESSAGES_FROM_OTHERS" if wildcard else "RECEIVE_ALL_MESSAGES"
        if mode not in ("RECEIVE_ALL_MESSAGES", "RECEIVE_MESSAGES_FROM_OTHERS"):
            raise InvalidArgumentsError(f"SubscribeToTopic: unknown receiveMode {mode!r}")
        kernel.pubsub.subscribe(topic, ctx.stream, mode == "RECEIVE_MESSAGES_FROM_OTHERS")
        ctx.keep_open()
        return {"topicName": topic}

    # -- IoT Core -----------------------------------------------------------------------
    # Nucleus MqttProxyIPCAgent: topic required, authorization, then (publish) payload required, then QoS required.
    def _mqtt_topic(ctx: CallContext, req: dict[str, Any], is_filter: bool) -> str:
        if req.get("topicName") is None:
            raise InvalidArgumentsError(f"{ctx.operation}: Topic is required")
        topic = _str(req, "topicName", ctx.operation)
        assert topic is not None
        authorize(ctx, topic)
        why = valid_topic_filter(topic) if is_filter else valid_publish_topic(topic)
        if why:
            raise InvalidArgumentsError(f"{ctx.operation}: {why}")
        return topic

    def _mqtt_qos(ctx: CallContext, req: dict[str, Any]) -> int:
        qos = req.get("qos")
        if qos is None:
            raise InvalidArgumentsError(f"{ctx.operation}: QoS is required")
        if str(qos) not in ("0", "1"):
            raise InvalidArgumentsError(f"{ctx.operation}: Invalid QoS value: {qos!r} (must be '0' or '1')")
        return int(qos)

    @op
    def PublishToIoTCore(ctx: CallContext, req: dict[str, Any]) -> Any:  # noqa: N802
        topic = _mqtt_topic(ctx, req, is_filter=False)
        if req.get("payload") is None:
            raise InvalidArgumentsError("PublishToIoTCore: Payload is required")
        payload = _b64(req.get("payload"), "PublishToIoTCore: payload")
        qos = _mqtt_qos(ctx, req)
        props = req.get("userProperties") or []
        if not isinstance(props, list) or not all(isinstance(p, dict) for p in props):
            raise InvalidArgumentsError("PublishToIoTCore: userProperties must be a list of {key, value}")
        user_props = [(str(p.get("key", "")), str(p.get("value", ""))) for p in props]
        return kernel.iot_publish(topic, payload, qos, bool(req.get("retain", False)), user_props)

    @op
    def SubscribeToIoTCore(ctx: CallContext, req: dict[str, Any]) -> Any:  # noqa: N802
        topic = _mqtt_topic(ctx, req, is_filter=True)
        qos = _mqtt_qos(ctx, req)
        ctx.keep_open()
        return kernel.iot_subscribe(ctx.stream, topic, qos)

    # -- configuration ------------------------------------------------------------------
    @op
    def GetConfiguration(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _str(req, "componentName", "GetConfiguration", required=False) or ctx.component
        kp = _key_path(req, "GetConfiguration")
        try:
            value = kernel.config.get(name, kp)
        except KeyError:
            raise ResourceNotFoundError("Key not found", resource_type="Configuration",
                                        resource_name="/".join([name, *kp])) from None
        if not isinstance(value, dict):
            value = {kp[-1]: value}  # the nucleus wraps a leaf as {lastKey: value}
        return {"componentName": name, "value": value}

    @op
    def UpdateConfiguration(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Nucleus ConfigStoreIPCEventStreamAgent.validateRequest: timestamp, then valueToMerge, then the restricted
        # fields: accessControl changes only through a deployment, never by the component itself.
        kp = _key_path(req, "UpdateConfiguration")
        ts = req.get("timestamp")
        if ts is None:
            raise InvalidArgumentsError("UpdateConfiguration: Timestamp is required")
        if isinstance(ts, bool) or not isinstance(ts, int | float):
            raise InvalidArgumentsError("UpdateConfiguration: 'timestamp' must be a number")
        value = req.get("valueToMerge")
        if value is None:
            raise InvalidArgumentsError("UpdateConfiguration: ValueToMerge is required")
        if not isinstance(value, dict):
            raise InvalidArgumentsError("UpdateConfiguration: 'valueToMerge' must be an object")
        if touches_restricted_config(kp, value):
            fields = ", ".join(_RESTRICTED_CONFIG_KEYS)
            raise InvalidArgumentsError(f"UpdateConfiguration: Config update is not allowed for following fields "
                                        f"[{fields}] (accessControl changes only through a deployment)")
        try:
            kernel.config.update(ctx.component, kp, value, ts)
        except KeyError:
            raise InvalidArgumentsError(
                f"UpdateConfiguration: Component config not found for component {ctx.component}") from None
        except StaleUpdateError as e:
            raise FailedUpdateConditionCheckError(f"UpdateConfiguration: {e}") from None
        except ConfigError as e:
            raise InvalidArgumentsError(f"UpdateConfiguration: {e}") from None
        return {}

    @op
    def SubscribeToConfigurationUpdate(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _str(req, "componentName", "SubscribeToConfigurationUpdate", required=False) or ctx.component
        kp = _key_path(req, "SubscribeToConfigurationUpdate")
        try:  # nucleus: an unknown component or a missing key is ResourceNotFoundError("Key not found")
            kernel.config.get(name, kp)
        except KeyError:
            raise ResourceNotFoundError("Key not found", resource_type="Configuration",
                                        resource_name="/".join([name, *kp])) from None
        stream = ctx.stream

        def on_change(component: str, key_path: list[str]) -> None:
            stream.send_event_obj("ConfigurationUpdateEvents", {
                "configurationUpdateEvent": {"componentName": component, "keyPath": key_path}}, droppable=False)

        stream.on_close.append(kernel.config.subscribe(name, kp, on_change))
        ctx.keep_open()
        return {}

    @op
    def SubscribeToValidateConfigurationUpdates(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        kernel.validators.add(ctx.component, ctx.stream)
        ctx.keep_open()
        return {}

    @op
    def SendConfigurationValidityReport(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        report = req.get("configurationValidityReport")
        if not isinstance(report, dict):
            raise InvalidArgumentsError("SendConfigurationValidityReport: 'configurationValidityReport' is required")
        status = report.get("status")
        if status not in ("ACCEPTED", "REJECTED"):
            raise InvalidArgumentsError(
                f"SendConfigurationValidityReport: status must be ACCEPTED or REJECTED, got {status!r}")
        dep = report.get("deploymentId")
        if not isinstance(dep, str):
            raise InvalidArgumentsError("SendConfigurationValidityReport: 'deploymentId' is required")
        if not kernel.validators.report(ctx.component, dep, status, str(report.get("message") or "")):
            raise InvalidArgumentsError(f"SendConfigurationValidityReport: no validation pending for deployment {dep}")
        return {}

    # -- lifecycle ----------------------------------------------------------------------
    @op
    def UpdateState(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        state = req.get("state")
        if state not in _STATES:
            raise InvalidArgumentsError(f"UpdateState: state must be RUNNING or ERRORED, got {state!r}")
        kernel.report_state(ctx.component, state)
        return {}

    @op
    def SubscribeToComponentUpdates(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        kernel.update_listeners.add(ctx.component, ctx.stream)
        ctx.keep_open()
        return {}

    @op
    def DeferComponentUpdate(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Nucleus LifecycleIPCEventStreamAgent.deferComponentUpdate: the caller must be subscribed to component
        # updates and name a deployment; an answer with no PreComponentUpdateEvent waiting for it is a ServiceError.
        if not kernel.update_listeners.subscribed(ctx.component):
            raise InvalidArgumentsError("DeferComponentUpdate: Component is not subscribed to component update events")
        dep = req.get("deploymentId")
        if dep is None:
            raise InvalidArgumentsError("DeferComponentUpdate: Cannot defer the update, the deployment ID provided "
                                        "was null")
        dep = _str(req, "deploymentId", "DeferComponentUpdate")
        assert dep is not None
        recheck = req.get("recheckAfterMs", 0) or 0
        if not isinstance(recheck, int) or recheck < 0:
            raise InvalidArgumentsError("DeferComponentUpdate: recheckAfterMs must be a non-negative integer")
        if not kernel.update_listeners.defer(ctx.component, dep, recheck, str(req.get("message") or "")):
            raise ServiceError(f"DeferComponentUpdate: Time limit to respond to PreComponentUpdateEvent exceeded "
                               f"(no update of deployment {dep} is waiting for an answer from {ctx.component})")
        return {}

    @op
    def PutComponentMetric(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Nucleus ComponentMetricIPCEventStreamAgent: only `aws.*` components (doServiceAuthorization), then each
        # metric checked (name 1-32 bytes, unit given, value >= 0) and authorized on its name against the
        # aws.greengrass.ipc.componentmetric policy (Stream Manager needs none), then units translated.
        if not _AWS_COMPONENT.match(ctx.component):
            kernel.counters["unauthorized"] += 1
            raise UnauthorizedError(f"Principal {ctx.component} is not authorized to perform "
                                    f"aws.greengrass.ipc.componentmetric:aws.greengrass#PutComponentMetric "
                                    f"(only components named aws.* may put component metrics)")
        metrics = req.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            raise InvalidArgumentsError("PutComponentMetric: Null or Empty list of metrics found in "
                                        "PutComponentMetricRequest")
        for i, m in enumerate(metrics):
            name = m.get("name") if isinstance(m, dict) else None
            value = m.get("value") if isinstance(m, dict) else None
            unit = m.get("unit") if isinstance(m, dict) else None
            if (not isinstance(name, str) or not name or len(name.encode()) > 32 or not isinstance(unit, str)
                    or not unit or isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
                raise InvalidArgumentsError(
                    f"PutComponentMetric: Invalid argument found in PutComponentMetricRequest: metrics[{i}] needs a "
                    f"name of 1-32 bytes, a unit and a value >= 0")
            if ctx.component != STREAM_MANAGER:
                authorize(ctx, name)
        clean = []
        for m in metrics:
            unit = _TELEMETRY_UNITS.get(re.sub(r"[^A-Za-z0-9]", "", m["unit"]).lower())
            if unit is None:
                raise InvalidArgumentsError(f"PutComponentMetric: Invalid telemetry unit: No matching TelemetryUnit "
                                            f"type found for {m['unit']!r}")
            clean.append({"name": m["name"], "unit": unit, "value": float(m["value"])})
        kernel.put_metrics(ctx.component, clean)
        return {}

    def _lifecycle_target(ctx: CallContext, req: dict[str, Any]) -> str:
        # Nucleus LifecycleIPCEventStreamAgent Pause/ResumeComponentHandler: Linux only, a name, authorization on
        # aws.greengrass.ipc.lifecycle with the target as resource, then the target must exist.
        if not sys.platform.startswith("linux"):
            raise ServiceError("Pause/resume component not supported on this platform.")
        name = req.get("componentName")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentsError(f"{ctx.operation}: Component name is required.")
        authorize(ctx, name)
        if not kernel.has_component(name):
            raise ResourceNotFoundError(f"{ctx.operation}: component {name} not found", resource_type="Component",
                                        resource_name=name)
        return name

    @op
    def PauseComponent(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _lifecycle_target(ctx, req)
        if kernel.component_state(name) != "RUNNING":
            raise InvalidArgumentsError(f"PauseComponent: Component {name} is not running")
        try:
            kernel.pause_component(name)  # pausing a paused component succeeds, as GenericExternalService.pause
        except OSError as e:
            raise ServiceError(f"Failed to pause component {name} due to : {e}") from None
        return {}

    @op
    def ResumeComponent(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _lifecycle_target(ctx, req)
        if not kernel.is_paused(name):
            raise InvalidArgumentsError(f"ResumeComponent: Component {name} is not paused")
        try:
            kernel.resume_component(name)
        except OSError as e:
            raise ServiceError(f"Failed to resume component {name} due to : {e}") from None
        return {}

    @op
    def ValidateAuthorizationToken(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Nucleus AuthorizationIPCAgent: only Stream Manager may ask; a token no component was given is
        # InvalidTokenError (AuthenticationHandler.doAuthentication).
        if ctx.component != STREAM_MANAGER:
            kernel.counters["unauthorized"] += 1
            raise UnauthorizedError(f"{ctx.component} is not authorized to perform "
                                    f"aws.greengrass#ValidateAuthorizationToken")
        token = req.get("token")
        if not isinstance(token, str):
            raise InvalidTokenError("Invalid authentication token")
        if kernel.authenticate(token) is None:
            raise InvalidTokenError("Authentication token not found")
        return {"isValid": True}

    # -- secrets ------------------------------------------------------------------------
    @op
    def GetSecretValue(ctx: CallContext, req: dict[str, Any]) -> Any:  # noqa: N802
        sid = _str(req, "secretId", "GetSecretValue")
        assert sid is not None
        vid = req.get("versionId")
        stage = req.get("versionStage")
        refresh = req.get("refresh") is True

        async def answer() -> dict[str, Any]:
            # As SecretManagerIPCAgent: an id the device does not hold is "not found" first; a held one is
            # authorized on its ARN (a name is mapped to it), and only then fetched anew when asked to `refresh`.
            # Off the loop: a secret not downloaded yet, or a refresh, is fetched from the cloud.
            secret = await asyncio.to_thread(kernel.secrets.find, sid, False, stage)
            if secret is None:
                raise ResourceNotFoundError(f"Secret not found: {sid}" + (f" (stage {stage})" if stage else ""),
                                            resource_type="Secret", resource_name=sid)
            authorize(ctx, secret.arn)
            if refresh and vid is None:
                secret = await asyncio.to_thread(kernel.secrets.find, sid, True, stage) or secret
            if vid is not None and vid != secret.version_id:
                raise ResourceNotFoundError(f"Secret {sid} has no version {vid}", resource_type="Secret",
                                            resource_name=sid)
            if stage is not None and stage not in secret.version_stages:
                raise ResourceNotFoundError(f"Secret {sid} has no stage {stage}", resource_type="Secret",
                                            resource_name=sid)
            value = ({"secretString": secret.string} if secret.string is not None
                     else {"secretBinary": base64.b64encode(secret.binary or b"").decode()})
            return {"secretId": secret.arn, "versionId": secret.version_id, "versionStage": secret.version_stages,
                    "secretValue": value}

        return answer()

    # -- shadows ------------------------------------------------------------------------
    def _shadow_args(ctx: CallContext, req: dict[str, Any]) -> tuple[str, str]:
        thing = _str(req, "thingName", ctx.operation)
        name = _str(req, "shadowName", ctx.operation, required=False) or ""
        assert thing is not None
        resource = f"$aws/things/{thing}/shadow" + (f"/name/{name}" if name else "")
        authorize(ctx, resource)
        return thing, name

    def _shadow_call(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        try:
            doc = fn()
        except ShadowNotFound as e:
            raise ResourceNotFoundError(str(e.args[0]), resource_type="Shadow") from None
        except ShadowVersionConflict as e:
            raise ConflictError(str(e)) from None
        except ShadowError as e:
            raise InvalidArgumentsError(str(e)) from None
        return {"payload": base64.b64encode(json.dumps(doc).encode()).decode()}

    @op
    def GetThingShadow(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        thing, name = _shadow_args(ctx, req)
        return _shadow_call(lambda: kernel.shadows.get(thing, name))

    @op
    def UpdateThingShadow(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        thing, name = _shadow_args(ctx, req)
        payload = _b64(req.get("payload"), "UpdateThingShadow: payload")
        return _shadow_call(lambda: kernel.shadows.update(thing, name, payload))

    @op
    def DeleteThingShadow(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        thing, name = _shadow_args(ctx, req)
        return _shadow_call(lambda: kernel.shadows.delete(thing, name))

    @op
    def ListNamedShadowsForThing(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        thing = _str(req, "thingName", "ListNamedShadowsForThing")
        assert thing is not None
        authorize(ctx, f"$aws/things/{thing}/shadow")
        return {"results": kernel.shadows.list_named(thing), "timestamp": time.time()}

    # -- component management (aws.greengrass.Cli) ----------------------------------------
    # As the Greengrass CLI's CLIEventStreamAgent (aws-greengrass-cli): validate, authorize, then look up.
    def _component(ctx: CallContext, req: dict[str, Any]) -> str:
        name = req.get("componentName")
        if not isinstance(name, str) or not name:
            raise InvalidArgumentsError(f"{ctx.operation}: Component name cannot be empty")
        authorize(ctx, name)
        if not kernel.has_component(name):
            raise ResourceNotFoundError(f"Component with name {name} not found in Greengrass",
                                        resource_type="Component", resource_name=name)
        return name

    @op
    def ListComponents(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        authorize(ctx, "*")
        return {"components": [kernel.component_details(n) for n in kernel.component_names()]}

    @op
    def GetComponentDetails(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return {"componentDetails": kernel.component_details(_component(ctx, req))}

    @op
    def RestartComponent(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _component(ctx, req)
        ok, message = kernel.request_restart(name)
        return {"restartStatus": "SUCCEEDED" if ok else "FAILED", "message": message}

    @op
    def StopComponent(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _component(ctx, req)
        ok, message = kernel.request_stop(name)
        return {"stopStatus": "SUCCEEDED" if ok else "FAILED", "message": message}

    @op
    def CreateLocalDeployment(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        authorize(ctx, "*")
        try:
            dep_id = kernel.deployments.submit_ipc(req)
        except ValueError as e:
            raise InvalidArgumentsError(f"CreateLocalDeployment: {e}") from None
        return {"deploymentId": dep_id}

    @op
    def GetLocalDeploymentStatus(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        dep = _deployment_id(req, "GetLocalDeploymentStatus")
        authorize(ctx, dep)
        d = kernel.deployments.describe(dep)
        if d is None:
            raise ResourceNotFoundError(f"Cannot find deployment {dep}", resource_type="LocalDeployment",
                                        resource_name=dep)
        return {"deployment": d}

    @op
    def ListLocalDeployments(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        authorize(ctx, "*")
        return {"localDeployments": kernel.deployments.list()}

    @op
    def CancelLocalDeployment(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if req.get("deploymentId") is None:  # the CLI's UUID.fromString(null) fails: a ServiceError there
            raise ServiceError("CancelLocalDeployment: deploymentId is required")
        dep = _deployment_id(req, "CancelLocalDeployment")
        authorize(ctx, "*")
        outcome = kernel.deployments.cancel(dep)
        if outcome is None:
            raise ResourceNotFoundError(f"Cannot find the deployment id provided {dep}",
                                        resource_type="LocalDeployment", resource_name=dep)
        if outcome == "finished":
            return {"message": "Cancellation request is not processed because deployment is already finished"}
        return {"message": f"Cancel request submitted. Deployment ID: {dep}"}

    @op
    def CreateDebugPassword(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # CLIEventStreamAgent.CreateDebugPasswordHandler: user `debug`, a random password valid for 8 hours. The
        # certificate hashes come from the Local Debug Console's certificate, which this runtime does not have.
        authorize(ctx, "*")
        password = base64.urlsafe_b64encode(hashlib.sha256(secrets.token_bytes(32)).digest()).decode().rstrip("=")
        expires = time.time() + DEBUG_PASSWORD_TTL_S
        now = time.time()
        for old in [p for p, t in kernel.debug_passwords.items() if t <= now]:
            del kernel.debug_passwords[old]
        kernel.debug_passwords[password] = expires
        return {"username": DEBUG_USERNAME, "password": password, "passwordExpiration": expires}

    if not ops:
        raise ServiceError("no operations")  # pragma: no cover
    return ops
