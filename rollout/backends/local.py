"""Local backend: drives a `ggvision fleet up` fleet for real.

Deployments are group-deployment/1.0 documents published retained on the fleet's broker (the devices follow
them as Greengrass core devices follow their targets' deployments: gglocal/nucleus/groupdeploy.py); a canary is a
subdeployment (``parentGroup``, with ``onBehalfOf`` = the root group, as the cloud marks one), which the devices
apply in place of the parent group's deployment. Per-device status is what each device reports on
ggvision/fleet/things/{thing}/deployment (the outcome per target, like ListEffectiveDeployments); health summaries
are what each device's Health publishes on ggvision/{thing}/metrics, collected from the moment the backend
connects. Model component versions are built from the model registry into the fleet's component store before they
are deployed.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from gglocal.fleet.client import FleetClient
from gglocal.fleet.layout import FleetError, FleetInfo
from ggvision.contract import schemas, topics

from ..config import RolloutConfig
from .base import BackendError, Deployment, DeviceStatus

# the devices' health summaries the gates read: where they travel and their schema's major version
SUMMARIES = (topics.every(topics.IOT_METRICS), schemas.HEALTH_SUMMARY.rsplit(".", 1)[0] + ".")


class LocalBackend:
    name = "local"

    def __init__(self, info: FleetInfo, registry: Any = None) -> None:
        self.info = info
        self.registry = registry
        try:
            self.client = FleetClient(info, summaries=SUMMARIES)
        except FleetError as e:
            raise BackendError(str(e)) from None
        # Retained group documents arrive right after subscribing; give them a moment so current() sees them.
        try:
            self.client.wait_for(lambda: self.client.groups or None, 2.0, "retained group deployments")
        except FleetError:
            pass  # a fresh fleet has none

    @classmethod
    def from_config(cls, cfg: RolloutConfig) -> LocalBackend:
        fleet_dir = Path(cfg.local.get("fleet", ".ggvision/fleet"))
        if not fleet_dir.is_absolute():
            fleet_dir = cfg.path.parent / fleet_dir
        try:
            info = FleetInfo.load(fleet_dir)
        except FleetError as e:
            raise BackendError(str(e)) from None
        registry = None
        if cfg.registry is not None:
            from model_registry.registry import Registry

            reg = cfg.registry
            if not reg.startswith("s3://") and not Path(reg).is_absolute():
                reg = str(cfg.path.parent / reg)
            registry = Registry(reg)
        return cls(info, registry)

    def prepare(self, model: str, version: str, component: str) -> None:
        """Put the model component version into the fleet's store (built from the registry, named `component`: an
        A/B candidate is the model under another component name, rollout/ab.py) if missing."""
        store = Path(self.info.store)
        if list((store / "recipes").glob(f"{component}-{version}.*")):
            return
        if self.registry is None:
            raise BackendError(f"{component} {version} is not in the fleet store {store} and rollout.yaml names no "
                               "registry to build it from")
        from model_registry.names import RegistryError
        from model_registry.publish import build

        try:
            build(self.registry, model, version, store, component)
        except RegistryError as e:
            raise BackendError(f"build {model} {version} into {store}: {e}") from None

    def current(self, group: str) -> Deployment | None:
        d = self.client.groups.get(group)
        if not d:
            return None
        return Deployment(group=group, components=d["components"], deployment_id=d["deploymentId"],
                          revision=str(d.get("revision", "")), created=d["created"], parent_group=d.get("parentGroup"))

    def _document(self, prev: dict[str, Any], components: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
        docs = [*self.client.groups.values(), *self.client.thing_targets.values()]
        created = max(time.time(), max((d.get("created", 0) for d in docs), default=0) + 1e-3)
        return {"schema": "group-deployment/1.0", "deploymentId": str(uuid.uuid4()), "deploymentName": name,
                "revision": int(prev.get("revision", 0)) + 1, "created": created, "components": components,
                "failureHandlingPolicy": "ROLLBACK", "recipeDirectoryPath": str(Path(self.info.store) / "recipes"),
                "artifactsDirectoryPath": str(Path(self.info.store) / "artifacts")}

    def deploy(self, group: str, components: dict[str, dict[str, Any]], *, parent_group: str | None = None,
               name: str = "", template: Deployment | None = None) -> Deployment:
        """A thing group's deployment; with `parent_group` a subdeployment, which the cloud sends on behalf of the
        parent's root group (the nucleus applies it as that group's deployment: DeploymentDocument.getGroupName)."""
        doc = {**self._document(self.client.groups.get(group) or {}, components, name), "group": group,
               "parentGroup": parent_group}
        if parent_group is not None:
            parent = self.client.groups.get(parent_group) or {}
            doc["onBehalfOf"] = parent.get("onBehalfOf") or parent_group
        try:
            self.client.publish_group(group, doc)
        except Exception as e:
            raise BackendError(f"publish deployment for {group}: {e}") from None
        return Deployment(group=group, components=components, deployment_id=doc["deploymentId"],
                          revision=str(doc["revision"]), created=doc["created"], parent_group=parent_group)

    def deploy_thing(self, thing: str, components: dict[str, dict[str, Any]], name: str = "") -> Deployment:
        """A deployment whose target is one thing (CreateDeployment with a thing ARN): on the device it is one more
        target, resolved together with its thing groups' deployments."""
        doc = {**self._document(self.client.thing_targets.get(thing) or {}, components, name), "thing": thing}
        try:
            self.client.publish_thing(thing, doc)
        except Exception as e:
            raise BackendError(f"publish deployment for thing {thing}: {e}") from None
        return Deployment(group=f"thing/{thing}", components=components, deployment_id=doc["deploymentId"],
                          revision=str(doc["revision"]), created=doc["created"])

    def devices(self, group: str) -> list[str]:
        return sorted(t for t, groups in self.info.devices.items() if group in groups)

    def device_status(self, thing: str, deployment_id: str) -> DeviceStatus:
        st = self.client.statuses.get(thing)
        if not st:
            return DeviceStatus(thing, None, "UNKNOWN")
        comps = dict(st.get("components", {}))
        if deployment_id:  # the device's outcome per target (ListEffectiveDeployments), else its last report
            mine = [e for e in st.get("deployments", [st]) if e.get("deploymentId") == deployment_id]
            if not mine:
                return DeviceStatus(thing, st.get("deploymentId"), "QUEUED", "", comps)
            return DeviceStatus(thing, deployment_id, mine[0].get("status", "UNKNOWN"), mine[0].get("reason", ""),
                                comps)
        return DeviceStatus(thing, st.get("deploymentId"), st.get("status", "UNKNOWN"), st.get("reason", ""), comps)

    def health(self, things: list[str], since: float) -> list[dict[str, Any]]:
        return self.client.health(things, since)

    def wait(self, seconds: float) -> None:
        self.client.wait(seconds)

    def close(self) -> None:
        self.client.close()
