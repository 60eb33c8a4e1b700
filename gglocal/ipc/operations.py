"""IPC operation handlers: validate each request, check accessControl, call the kernel.

Each handler takes (ctx, request JSON) and returns the response JSON, or an awaitable of it.
Subscription handlers call ctx.keep_open() and push events on ctx.stream later.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from topicmatch import valid_publish_topic, valid_topic_filter

from .authorization import is_authorized
from .errors import (
    ComponentNotFoundError,
    ConflictError,
    FailedUpdateConditionCheckError,
    InvalidArgumentsError,
    ResourceNotFoundError,
    ServiceError,
    UnauthorizedError,
)
from .host import ConfigError, Host, ShadowError, ShadowNotFound, ShadowVersionConflict, StaleUpdateError
from .server import CallContext, Handler

_STATES = {"RUNNING", "ERRORED"}


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
        topic = _str(req, "topic", "PublishToTopic")
        assert topic is not None
        why = valid_publish_topic(topic)
        if why:
            raise InvalidArgumentsError(f"PublishToTopic: {why}")
        authorize(ctx, topic)
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
        why = valid_topic_filter(topic)
        if why:
            raise InvalidArgumentsError(f"SubscribeToTopic: {why}")
        mode = req.get("receiveMode") or "RECEIVE_ALL_MESSAGES"
        if mode not in ("RECEIVE_ALL_MESSAGES", "RECEIVE_MESSAGES_FROM_OTHERS"):
            raise InvalidArgumentsError(f"SubscribeToTopic: unknown receiveMode {mode!r}")
        authorize(ctx, topic)
        kernel.pubsub.subscribe(topic, ctx.stream, mode == "RECEIVE_MESSAGES_FROM_OTHERS")
        ctx.keep_open()
        return {"topicName": topic}

    # -- IoT Core -----------------------------------------------------------------------
    def _mqtt_request(ctx: CallContext, req: dict[str, Any], is_filter: bool) -> tuple[str, int]:
        """Topic (checked and authorized) and QoS of an IoT Core request."""
        topic = _str(req, "topicName", ctx.operation)
        assert topic is not None
        why = valid_topic_filter(topic) if is_filter else valid_publish_topic(topic)
        if why:
            raise InvalidArgumentsError(f"{ctx.operation}: {why}")
        authorize(ctx, topic)
        qos = req.get("qos", "0")
        if str(qos) not in ("0", "1"):
            raise InvalidArgumentsError(f"{ctx.operation}: qos must be '0' or '1', got {qos!r}")
        return topic, int(qos)

    @op
    def PublishToIoTCore(ctx: CallContext, req: dict[str, Any]) -> Any:  # noqa: N802
        topic, qos = _mqtt_request(ctx, req, is_filter=False)
        payload = _b64(req.get("payload"), "PublishToIoTCore: payload")
        props = req.get("userProperties") or []
        if not isinstance(props, list) or not all(isinstance(p, dict) for p in props):
            raise InvalidArgumentsError("PublishToIoTCore: userProperties must be a list of {key, value}")
        user_props = [(str(p.get("key", "")), str(p.get("value", ""))) for p in props]
        return kernel.iot_publish(topic, payload, qos, bool(req.get("retain", False)), user_props)

    @op
    def SubscribeToIoTCore(ctx: CallContext, req: dict[str, Any]) -> Any:  # noqa: N802
        topic, qos = _mqtt_request(ctx, req, is_filter=True)
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
        kp = _key_path(req, "UpdateConfiguration")
        if "valueToMerge" not in req:
            raise InvalidArgumentsError("UpdateConfiguration: 'valueToMerge' is required")
        ts = req.get("timestamp")
        if ts is not None and not isinstance(ts, int | float):
            raise InvalidArgumentsError("UpdateConfiguration: 'timestamp' must be a number")
        if kp and kp[0] == "accessControl":
            raise InvalidArgumentsError("UpdateConfiguration: accessControl can only change through a deployment")
        try:
            kernel.config.update(ctx.component, kp, req["valueToMerge"], ts)
        except StaleUpdateError as e:
            raise FailedUpdateConditionCheckError(f"UpdateConfiguration: {e}") from None
        except ConfigError as e:
            raise InvalidArgumentsError(f"UpdateConfiguration: {e}") from None
        return {}

    @op
    def SubscribeToConfigurationUpdate(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        name = _str(req, "componentName", "SubscribeToConfigurationUpdate", required=False) or ctx.component
        kp = _key_path(req, "SubscribeToConfigurationUpdate")
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
        dep = _str(req, "deploymentId", "DeferComponentUpdate")
        recheck = req.get("recheckAfterMs", 0) or 0
        if not isinstance(recheck, int) or recheck < 0:
            raise InvalidArgumentsError("DeferComponentUpdate: recheckAfterMs must be a non-negative integer")
        assert dep is not None
        if not kernel.update_listeners.defer(ctx.component, dep, recheck, str(req.get("message") or "")):
            raise ResourceNotFoundError(f"DeferComponentUpdate: no update pending for deployment {dep}",
                                        resource_type="Deployment", resource_name=dep)
        return {}

    @op
    def PutComponentMetric(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        metrics = req.get("metrics")
        if not isinstance(metrics, list) or not metrics:
            raise InvalidArgumentsError("PutComponentMetric: 'metrics' must be a non-empty list")
        authorize(ctx, "*")
        clean = []
        for i, m in enumerate(metrics):
            if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
                raise InvalidArgumentsError(f"PutComponentMetric: metrics[{i}] needs a name")
            if not isinstance(m.get("value"), int | float):
                raise InvalidArgumentsError(f"PutComponentMetric: metrics[{i}] ({m['name']}) needs a numeric value")
            unit = m.get("unit", "COUNT")
            if unit not in ("BYTES", "BYTES_PER_SECOND", "COUNT", "COUNT_PER_SECOND", "MEGABYTES", "SECONDS",
                            "MILLISECONDS", "PERCENT"):
                raise InvalidArgumentsError(f"PutComponentMetric: metrics[{i}] has unknown unit {unit!r}")
            clean.append({"name": m["name"], "unit": unit, "value": float(m["value"])})
        kernel.put_metrics(ctx.component, clean)
        return {}

    # -- secrets ------------------------------------------------------------------------
    @op
    def GetSecretValue(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        sid = _str(req, "secretId", "GetSecretValue")
        assert sid is not None
        secret = kernel.secrets.find(sid)
        # Authorize on the ARN like Secret Manager does; an unknown id is checked as given.
        authorize(ctx, secret.arn if secret else sid)
        if secret is None:
            raise ResourceNotFoundError(f"Secret not found: {sid}", resource_type="Secret", resource_name=sid)
        vid = req.get("versionId")
        stage = req.get("versionStage")
        if vid is not None and vid != secret.version_id:
            raise ResourceNotFoundError(f"Secret {sid} has no version {vid}", resource_type="Secret", resource_name=sid)
        if stage is not None and stage not in secret.version_stages:
            raise ResourceNotFoundError(f"Secret {sid} has no stage {stage}", resource_type="Secret", resource_name=sid)
        value = ({"secretString": secret.string} if secret.string is not None
                 else {"secretBinary": base64.b64encode(secret.binary or b"").decode()})
        return {"secretId": secret.arn, "versionId": secret.version_id, "versionStage": secret.version_stages,
                "secretValue": value}

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
        import time

        return {"results": kernel.shadows.list_named(thing), "timestamp": time.time()}

    # -- component management (aws.greengrass.Cli) ----------------------------------------
    def _component(ctx: CallContext, req: dict[str, Any]) -> str:
        name = _str(req, "componentName", ctx.operation)
        assert name is not None
        authorize(ctx, name)
        if not kernel.has_component(name):
            raise ComponentNotFoundError(f"Component {name} not found")
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
        authorize(ctx, "*")
        dep = _str(req, "deploymentId", "GetLocalDeploymentStatus")
        assert dep is not None
        d = kernel.deployments.describe(dep)
        if d is None:
            raise ResourceNotFoundError(f"Deployment {dep} not found", resource_type="LocalDeployment",
                                        resource_name=dep)
        return {"deployment": d}

    @op
    def ListLocalDeployments(ctx: CallContext, req: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        authorize(ctx, "*")
        return {"localDeployments": kernel.deployments.list()}

    if not ops:
        raise ServiceError("no operations")  # pragma: no cover
    return ops
