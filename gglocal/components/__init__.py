"""Stand-ins for AWS-provided Greengrass components that the local runtime supplies itself.

On a core device the Greengrass service resolves a public component such as `aws.greengrass.Cloudwatch` from
AWS's catalogue. The local runtime has no catalogue, so when a deployment names one of the components below
(as a root or as a dependency) and no recipe of that name was given, it uses the recipe returned here. Each
stand-in is an ordinary component: its recipe runs a module of this package with the runtime's own Python,
as a separate process that talks to the runtime with the real awsiot IPC client, under the accessControl its
documentation gives. docs/runtime.md lists what each one reproduces.

This module only describes the recipes (no IPC, no AWS SDK imports), so the nucleus can read it cheaply.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

CLOUDWATCH = "aws.greengrass.Cloudwatch"
# The version line the stand-in reproduces: the newest documented one (developer guide "CloudWatch metrics",
# Versions: 3.2.x; aws-greengrass/aws-greengrass-cloudwatch-metrics tag v3.2.0).
CLOUDWATCH_VERSION = "3.2.0"
CLOUDWATCH_INPUT = "cloudwatch/metric/put"
CLOUDWATCH_OUTPUT = "cloudwatch/metric/put/status"


def _cloudwatch_recipe(python: str) -> dict[str, Any]:
    """The stand-in's recipe: the documented default configuration (developer guide "CloudWatch metrics",
    Configuration, v3.x) plus `EndpointUrl`, the runtime's own key (docs/runtime.md). No dependency on
    aws.greengrass.TokenExchangeService: the runtime has none; boto3's usual credential chain is used."""
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": CLOUDWATCH,
        "ComponentVersion": CLOUDWATCH_VERSION,
        "ComponentDescription": "The local runtime's stand-in for the CloudWatch metrics component: requests on "
                                "a local topic become batched CloudWatch PutMetricData calls.",
        "ComponentPublisher": "gglocal (stand-in for Amazon)",
        "ComponentConfiguration": {"DefaultConfiguration": {
            "PublishInterval": 10,
            "MaxMetricsToRetain": 5000,
            "InputTopic": CLOUDWATCH_INPUT,
            "OutputTopic": CLOUDWATCH_OUTPUT,
            "PubSubToIoTCore": "false",
            "PublishRegion": "",
            "EndpointUrl": "",
            "accessControl": {
                "aws.greengrass.ipc.pubsub": {
                    f"{CLOUDWATCH}:pubsub:1": {
                        "policyDescription": "Allows access to subscribe to input topics.",
                        "operations": ["aws.greengrass#SubscribeToTopic"],
                        "resources": [CLOUDWATCH_INPUT]},
                    f"{CLOUDWATCH}:pubsub:2": {
                        "policyDescription": "Allows access to publish to output topics.",
                        "operations": ["aws.greengrass#PublishToTopic"],
                        "resources": [CLOUDWATCH_OUTPUT]}},
                "aws.greengrass.ipc.mqttproxy": {
                    f"{CLOUDWATCH}:mqttproxy:1": {
                        "policyDescription": "Allows access to subscribe to input topics.",
                        "operations": ["aws.greengrass#SubscribeToIoTCore"],
                        "resources": [CLOUDWATCH_INPUT]},
                    f"{CLOUDWATCH}:mqttproxy:2": {
                        "policyDescription": "Allows access to publish to output topics.",
                        "operations": ["aws.greengrass#PublishToIoTCore"],
                        "resources": [CLOUDWATCH_OUTPUT]}},
            },
        }},
        "Manifests": [{
            "Platform": {"os": "*"},
            "Lifecycle": {"Run": f"{shlex.quote(python)} -u -m gglocal.components.cloudwatch"},
        }],
    }


SHADOW_MANAGER = "aws.greengrass.ShadowManager"
SHADOW_MANAGER_VERSION = "2.3.9"  # the line whose sync options (direction: 2.2.0+, periodic: 2.1.0+) are reproduced


def _shadow_manager_recipe() -> dict[str, Any]:
    """ShadowManager's work (the shadow IPC operations, local topics, cloud sync) is done inside the runtime
    (gglocal/nucleus/shadows.py, shadowsync.py); this recipe exists so a deployment can name the component and
    carry its documented configuration (developer guide "Shadow manager", Configuration), which the runtime's
    sync follows. It runs no process."""
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": SHADOW_MANAGER,
        "ComponentVersion": SHADOW_MANAGER_VERSION,
        "ComponentDescription": "The local runtime's stand-in for the shadow manager: its configuration "
                                "(synchronize, strategy) drives the runtime's shadow sync with IoT Core.",
        "ComponentPublisher": "gglocal (stand-in for Amazon)",
        "ComponentConfiguration": {"DefaultConfiguration": {"strategy": {"type": "realTime"}, "synchronize": {}}},
        "Manifests": [{"Platform": {"os": "*"}, "Lifecycle": {}}],
    }


SECRET_MANAGER = "aws.greengrass.SecretManager"
SECRET_MANAGER_VERSION = "2.2.9"  # the line whose refresh behaviour (periodic, GetSecretValue refresh) is reproduced


def _secret_manager_recipe() -> dict[str, Any]:
    """Like ShadowManager's: GetSecretValue is answered inside the runtime (gglocal/nucleus/secrets.py), which
    follows this component's documented configuration (developer guide "Secret manager", Configuration). No
    process."""
    return {
        "RecipeFormatVersion": "2020-01-25",
        "ComponentName": SECRET_MANAGER,
        "ComponentVersion": SECRET_MANAGER_VERSION,
        "ComponentDescription": "The local runtime's stand-in for the secret manager: its configuration "
                                "(cloudSecrets, periodicRefreshIntervalMin) says which secrets GetSecretValue serves.",
        "ComponentPublisher": "gglocal (stand-in for Amazon)",
        "ComponentConfiguration": {"DefaultConfiguration": {"cloudSecrets": []}},
        "Manifests": [{"Platform": {"os": "*"}, "Lifecycle": {}}],
    }


def provided_recipes(python: str | None = None) -> dict[str, dict[str, Any]]:
    """Component name -> recipe document of every stand-in, run with `python` (default: this interpreter)."""
    python = python or sys.executable
    return {CLOUDWATCH: _cloudwatch_recipe(python), SHADOW_MANAGER: _shadow_manager_recipe(),
            SECRET_MANAGER: _secret_manager_recipe()}
