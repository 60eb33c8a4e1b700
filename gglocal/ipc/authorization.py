"""accessControl enforcement: deny by default, as the nucleus does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .topics import resource_match

# IPC operation → accessControl service identifier (greengrass-facts.md §3.3). Operations not listed
# here need no policy (configuration, UpdateState, component updates).
OPERATION_SERVICE: dict[str, str] = {
    "PublishToTopic": "aws.greengrass.ipc.pubsub",
    "SubscribeToTopic": "aws.greengrass.ipc.pubsub",
    "PublishToIoTCore": "aws.greengrass.ipc.mqttproxy",
    "SubscribeToIoTCore": "aws.greengrass.ipc.mqttproxy",
    "GetThingShadow": "aws.greengrass.ShadowManager",
    "UpdateThingShadow": "aws.greengrass.ShadowManager",
    "DeleteThingShadow": "aws.greengrass.ShadowManager",
    "ListNamedShadowsForThing": "aws.greengrass.ShadowManager",
    "GetSecretValue": "aws.greengrass.SecretManager",
    "PauseComponent": "aws.greengrass.ipc.lifecycle",
    "ResumeComponent": "aws.greengrass.ipc.lifecycle",
    "CreateLocalDeployment": "aws.greengrass.Cli",
    "ListLocalDeployments": "aws.greengrass.Cli",
    "GetLocalDeploymentStatus": "aws.greengrass.Cli",
    "CancelLocalDeployment": "aws.greengrass.Cli",
    "ListComponents": "aws.greengrass.Cli",
    "GetComponentDetails": "aws.greengrass.Cli",
    "RestartComponent": "aws.greengrass.Cli",
    "StopComponent": "aws.greengrass.Cli",
    "CreateDebugPassword": "aws.greengrass.Cli",
    "PutComponentMetric": "aws.greengrass.ipc.componentmetric",
}

# Services whose policy resources match MQTT wildcards (`+`, `#`) as wildcards: only the IoT Core MQTT proxy.
# The nucleus' MqttProxyIPCAgent alone asks AuthorizationHandler for ResourceLookupPolicy.MQTT_STYLE; every other
# agent (PubSubIPCEventStreamAgent included) uses STANDARD, where `+` and `#` are plain characters and only `*`
# globs. Developer guide, ipc-publish-subscribe: a policy on `test/topic/#` lets a component subscribe to
# `test/topic/#` but not to `test/topic/filter`.
_MQTT_STYLE = {"SubscribeToIoTCore", "PublishToIoTCore"}


def is_authorized(access_control: Mapping[str, Any] | None, operation: str, resource: str) -> bool:
    """True when one of the component's policies allows `operation` on `resource`."""
    service = OPERATION_SERVICE.get(operation)
    if service is None:
        return True
    if not isinstance(access_control, Mapping):
        return False
    policies = access_control.get(service)
    if not isinstance(policies, Mapping):
        return False
    full_op = "aws.greengrass#" + operation
    mqtt = operation in _MQTT_STYLE
    for policy in policies.values():
        if not isinstance(policy, Mapping):
            continue
        ops = policy.get("operations") or []
        if not isinstance(ops, list) or not ("*" in ops or full_op in ops):
            continue
        resources = policy.get("resources") or []
        if not isinstance(resources, list):
            continue
        for pattern in resources:
            if isinstance(pattern, str) and resource_match(pattern, resource, mqtt_wildcards=mqtt):
                return True
    return False
