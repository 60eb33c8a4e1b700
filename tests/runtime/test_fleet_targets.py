"""A core device in several deployment targets, on a real local fleet (mosquitto + `ggvision nucleus` runtimes
following the fleet's deployment service, gglocal/nucleus/groupdeploy.py): what it runs when its thing groups' and
its own thing's deployments name different components, or different versions of the same component.

What Greengrass does (docs/rollout.md, "Devices in several targets", where the sources are quoted):

- Each core device runs the combination of the deployments that target it, one deployment per target (DG "Deploy
  AWS IoT Greengrass components to devices": components A and B deployed to group X, B and C to group Y → A, B
  and C run on a device in both groups). The nucleus resolves a deployment for one target together with the
  root components it stored for every other target the device belongs to (aws-greengrass-nucleus
  DefaultDeploymentTask.getNonTargetGroupToRootPackagesMap, DependencyResolver.resolveDependencies).
- Versions are requirements per target; when two targets pin one component to different versions, no version
  satisfies both and the deployment fails with nothing changed (DG, "Component dependency resolution"; API
  reference ResolveComponentCandidates: "If the requirements conflict, then this operation returns an error and the
  deployment fails"; nucleus ComponentManager.resolveComponentVersion → NoAvailableComponentVersionException →
  FAILED_NO_STATE_CHANGE). A deployment to a single thing (a thing target) is one more target: it conflicts too.
- A subdeployment (CreateDeployment parentTargetArn, nucleus >= 2.9.0, DG "Create subdeployments") is sent on
  behalf of its root group and applied as that group's deployment (nucleus DeploymentDocument.getGroupName), so it
  replaces the parent's components on the devices it reaches; the newest wins, an older one arriving later is
  REJECTED (DeploymentService.checkIfDeploymentReceivedIsStale; nucleus SubGroupDeploymentIntegrationTest), and
  a new revision of the parent replaces the subdeployments (DG "Create subdeployments").

Under the assumption "the newest deployment among a device's groups wins" this test fails at its first check: the
site group's newer deployment would replace the stage group's components instead of adding to them, and the
conflicting pins would install the newest version instead of failing.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from gglocal.fleet.runner import Fleet
from rollout.backends.base import DONE_FAILED, DONE_OK, Deployment, DeviceStatus
from rollout.backends.local import LocalBackend

PROBE, EXTRA = "com.ggvision.test.Probe", "com.ggvision.test.Extra"
T1, T2 = "ggv-t-1", "ggv-t-2"
STAGE, CANARY, SITE = "ggv-stage", "ggv-stage-canary", "ggv-site"
DEVICES = {T1: [STAGE, CANARY, SITE], T2: [STAGE]}


def recipe(out: Path, name: str, version: str) -> None:
    doc = {"RecipeFormatVersion": "2020-01-25", "ComponentName": name, "ComponentVersion": version,
           "ComponentDescription": "a test component that reports its version and finishes (not product)",
           "ComponentPublisher": "ggvision tests",
           "Manifests": [{"Platform": {"os": "/linux|darwin/"},
                          "Lifecycle": {"Run": f"echo {name} {version} > {{work:path}}/version.txt"}}]}
    (out / f"{name}-{version}.yaml").write_text(yaml.safe_dump(doc))


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBackend]:
    if not Path("/usr/sbin/mosquitto").exists() and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    tmp = tmp_path_factory.mktemp("targets")
    recipes = tmp / "base" / "recipes"
    recipes.mkdir(parents=True)
    for name, version in ((PROBE, "1.0.0"), (PROBE, "2.0.0"), (EXTRA, "1.0.0")):
        recipe(recipes, name, version)
    fleet = Fleet(tmp / "fleet", DEVICES, base=tmp / "base", settle_s=0.5)
    b: LocalBackend | None = None
    try:
        info = fleet.start()
        b = LocalBackend(info)
        yield b
    finally:
        if b is not None:
            b.close()
        fleet.stop()


def finished(b: LocalBackend, thing: str, dep: Deployment) -> DeviceStatus:
    """The device's outcome for `dep` (its report per target), once it has one."""
    def done() -> DeviceStatus | None:
        st = b.device_status(thing, dep.deployment_id)
        return st if st.status in DONE_OK | DONE_FAILED | {"REJECTED"} else None
    return b.client.wait_for(done, 120, f"{thing} finishing deployment {dep.deployment_id} to {dep.group}")


def pins(**components: str) -> dict[str, dict[str, str]]:
    names = {"probe": PROBE, "extra": EXTRA}
    return {names[k]: {"componentVersion": v} for k, v in components.items()}


def test_a_device_runs_the_union_of_its_targets_and_fails_on_conflicting_versions(backend: LocalBackend) -> None:
    b = backend
    stage = b.deploy(STAGE, pins(probe="1.0.0"), name="stage")
    for thing in (T1, T2):
        st = finished(b, thing, stage)
        assert st.status == "SUCCEEDED" and st.components.get(PROBE) == "1.0.0", st

    # Another group of the device (not a subdeployment): its components are added to the stage group's.
    site = b.deploy(SITE, pins(extra="1.0.0"), name="site")
    st = finished(b, T1, site)
    assert st.status == "SUCCEEDED", st
    assert st.components.get(PROBE) == "1.0.0" and st.components.get(EXTRA) == "1.0.0", st.components

    # The same group pinning the Probe to another version than the stage group: no version satisfies both.
    site2 = b.deploy(SITE, pins(extra="1.0.0", probe="2.0.0"), name="site pins probe 2")
    st = finished(b, T1, site2)
    assert st.status == "FAILED" and st.reason.startswith("FAILED_NO_STATE_CHANGE"), st
    assert f"thinggroup/{STAGE} requires =1.0.0" in st.reason and f"thinggroup/{SITE} requires =2.0.0" in st.reason
    assert st.components.get(PROBE) == "1.0.0" and st.components.get(EXTRA) == "1.0.0", st.components

    # A deployment to the device itself (a thing target) is one more target: it conflicts the same way, so a
    # per-thing canary cannot carry a model version the device's stage group pins differently.
    own = b.deploy_thing(T1, pins(probe="2.0.0"), name="thing canary")
    st = finished(b, T1, own)
    assert st.status == "FAILED" and f"thing/{T1} requires =2.0.0" in st.reason, st
    assert st.components.get(PROBE) == "1.0.0", st.components

    # A subdeployment of the stage group is applied in the stage group's place: no conflict, only on its devices;
    # the site group's components stay (its last successful deployment, not the failed one).
    canary = b.deploy(CANARY, pins(probe="2.0.0"), parent_group=STAGE, name="canary")
    st = finished(b, T1, canary)
    assert st.status == "SUCCEEDED", st
    assert st.components.get(PROBE) == "2.0.0" and st.components.get(EXTRA) == "1.0.0", st.components
    applied_as = {e["deploymentId"]: e["target"] for e in b.client.statuses[T1]["deployments"]}
    assert applied_as[canary.deployment_id] == f"thinggroup/{STAGE}"
    assert b.device_status(T2, "").components.get(PROBE) == "1.0.0"

    # An older subdeployment arriving after a newer one for the same root group is rejected as stale.
    older = dict(b.client.groups[CANARY], deploymentId="stale-canary", created=stage.created + 1e-3,
                 components=pins(probe="1.0.0"))
    b.client.publish_group(CANARY, older)
    st = finished(b, T1, Deployment(CANARY, {}, deployment_id="stale-canary"))
    assert st.status == "REJECTED" and st.reason.startswith("REJECTED_STALE_DEPLOYMENT"), st
    assert st.components.get(PROBE) == "2.0.0"

    # A new revision of the stage group replaces its subdeployments: every device on one version again.
    again = b.deploy(STAGE, pins(probe="1.0.0"), name="stage again")
    for thing in (T1, T2):
        st = finished(b, thing, again)
        assert st.status == "SUCCEEDED" and st.components.get(PROBE) == "1.0.0", st
