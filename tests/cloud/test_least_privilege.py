"""Each product component's accessControl grants only what it uses (checked with the runtime's own
authorization code, which the IPC server enforces — see test_ipc_pubsub for the enforcement itself)."""

from __future__ import annotations

import pytest
from harness import REPO

from gglocal.ipc.authorization import is_authorized
from gglocal.nucleus.recipeparser import load_recipe

RECIPES = {p.parent.name: p for p in sorted((REPO / "components").glob("*/recipe.yaml"))}
# Operations that act on no particular resource: the nucleus checks them against "*".
RESOURCELESS = {"aws.greengrass#ListComponents", "aws.greengrass#PutComponentMetric"}


def _acl(name: str) -> dict:
    return load_recipe(RECIPES[name]).default_configuration.get("accessControl", {})


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_no_component_grants_everything(name: str) -> None:
    for service, policies in _acl(name).items():
        for policy_id, policy in policies.items():
            assert policy_id.startswith(f"{name}:"), f"{name}: policy ids must be unique across components"
            assert "*" not in policy.get("operations", []), f"{name} {service} {policy_id}: all operations"
            if not set(policy.get("operations", [])) <= RESOURCELESS:
                assert "*" not in policy.get("resources", []), f"{name} {service} {policy_id}: all resources"
            assert "#" not in policy.get("resources", []), f"{name} {service} {policy_id}: every topic"


def test_capture_publishes_only_its_own_topics() -> None:
    acl = _acl("com.ggvision.Capture")
    for topic in ("ggvision/v1/frames/door", "ggvision/v1/segments/door", "ggvision/v1/sensors/thermal-1",
                  "ggvision/v1/metrics/capture"):
        assert is_authorized(acl, "PublishToTopic", topic), topic
    for topic in ("ggvision/v1/detections/door", "ggvision/v1/events/door", "ggvision/v1/metrics/inference",
                  "other/topic"):
        assert not is_authorized(acl, "PublishToTopic", topic), topic
    assert not is_authorized(acl, "SubscribeToTopic", "ggvision/v1/frames/door")
    assert not is_authorized(acl, "PublishToIoTCore", "ggvision/thing/events")
    # the secret `ggvision camera add` stores, named by the contract (ggvision/{thing}/cameras/{camera})
    from ggvision.contract.secrets import camera_secret_name

    secret = camera_secret_name("ggvision", "box-1", "door")
    assert is_authorized(acl, "GetSecretValue", f"arn:aws:secretsmanager:us-east-1:1:secret:{secret}-AbCdEf")
    assert not is_authorized(acl, "GetSecretValue", "arn:aws:secretsmanager:us-east-1:1:secret:ggvision/cameras/door")
    assert not is_authorized(acl, "GetSecretValue", "arn:aws:secretsmanager:us-east-1:1:secret:db-password")
