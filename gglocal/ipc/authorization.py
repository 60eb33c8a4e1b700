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
    "PutComponentMetric": "aws.greengrass.ipc.componentmetric",
}

# Where a requested resource is an MQTT filter, policy resources may be MQTT filters too.
_MQTT_STYLE = {"SubscribeToTopic", "SubscribeToIoTCore", "PublishToIoTCore"}


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
