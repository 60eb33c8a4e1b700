"""Follow the deployments the local fleet's deployment service publishes (``ggvision fleet``), as a core device does.

The service publishes each target's current deployment retained on the shared broker: a thing group's on
``ggvision/fleet/groups/{group}/deployment`` and a thing's own (a thing target) on
``ggvision/fleet/thing-targets/{thing}/deployment`` (``group-deployment/1.0``). A runtime started with
``--thing-groups`` follows the latest deployment of EACH of its groups and of its own thing, the way the Greengrass
nucleus does (sources checked in docs/rollout.md, "Devices in several targets"):

- The device keeps, per target, the root components of that target's last applied deployment (the nucleus'
  ``GroupToRootComponents``: ``thinggroup/<name>`` or ``thing/<name>`` → {component: version}). A deployment for
  target T replaces T's root components and is resolved together with the stored root components of every other
  target the device belongs to (nucleus ``DefaultDeploymentTask.getNonTargetGroupToRootPackagesMap`` +
  ``DependencyResolver.resolveDependencies``): the device runs the union.
- Each target pins its components to exact versions (CreateDeployment's ``componentVersion``); a component pinned
  to different versions by two targets has no version that satisfies both, the deployment fails with
  ``FAILED_NO_STATE_CHANGE`` and nothing changes (nucleus ``ComponentManager.resolveComponentVersion`` →
  ``NoAvailableComponentVersionException``; API reference ResolveComponentCandidates: "If the requirements
  conflict, then this operation returns an error and the deployment fails"). Only a successful deployment is
  stored as its target's (``DeploymentService.persistGroupToRootComponents``), and a failed one is not retried
  until its target gets a new deployment (a failed job execution is final).
- A subdeployment (``parentGroup``: CreateDeployment ``parentTargetArn``, nucleus >= 2.9.0) is applied on behalf of
  its root group (``onBehalfOf``; nucleus ``DeploymentDocument.getGroupName``): it replaces that group's root
  components on the devices it reaches instead of adding a target, so it never conflicts with its parent. Among a
  group and its subdeployments the newest (``created``) wins; an older one that arrives later is REJECTED
  (``DeploymentService.checkIfDeploymentReceivedIsStale``, ``REJECTED_STALE_DEPLOYMENT``).
- Targets the device is no longer a member of drop out at its next deployment.

Each outcome is published retained on ``ggvision/fleet/things/{thing}/deployment`` (``device-deployment/1.0``): the
deployment just handled, plus ``deployments``, the last outcome per target (like ListEffectiveDeployments).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import semantic_version

from .deployments import DeploymentRequest, parse_config_updates

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("gglocal.nucleus")

GROUP_TOPIC = "ggvision/fleet/groups/{group}/deployment"
THING_TARGET_TOPIC = "ggvision/fleet/thing-targets/{thing}/deployment"
THING_TOPIC = "ggvision/fleet/things/{thing}/deployment"  # what the device reports
GROUP_SCHEMA = "group-deployment/1."
STATUS_SCHEMA = "device-deployment/1.0"
GROUP_PREFIX, THING_PREFIX = "thinggroup/", "thing/"  # the nucleus' names for a target's key


def parse_group_document(payload: bytes, group: str) -> dict[str, Any]:
    """Validate a thing group's group-deployment/1.x document; ValueError naming the field."""
    return parse_deployment_document(payload, GROUP_PREFIX, group)


def parse_deployment_document(payload: bytes, kind: str, name: str) -> dict[str, Any]:
    """Validate a group-deployment/1.x document for target `kind` + `name` (kind: "thinggroup/" or "thing/")."""
    doc = json.loads(payload)
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith(GROUP_SCHEMA):
        got = doc.get("schema") if isinstance(doc, dict) else doc
        raise ValueError(f"expected schema group-deployment/1.x, got {got!r}")
    field = "group" if kind == GROUP_PREFIX else "thing"
    if doc.get(field) != name:
        raise ValueError(f"{field} {doc.get(field)!r} does not match the topic's {name!r}")
    if not isinstance(doc.get("deploymentId"), str) or not doc["deploymentId"]:
        raise ValueError("deploymentId: expected a non-empty string")
    if isinstance(doc.get("created"), bool) or not isinstance(doc.get("created"), int | float):
        raise ValueError("created: expected a timestamp")
    for key in ("parentGroup", "onBehalfOf"):
        if doc.get(key) is not None and (kind != GROUP_PREFIX or not isinstance(doc[key], str) or not doc[key]):
            raise ValueError(f"{key}: expected a thing group name (only a thing group's deployment can be a "
                             "subdeployment)")
    comps = doc.get("components")
    if not isinstance(comps, dict) or not all(isinstance(c, dict) and isinstance(c.get("componentVersion"), str)
                                              for c in comps.values()):
        raise ValueError("components: expected {name: {componentVersion, configurationUpdate?}}")
    for cname, c in comps.items():
        try:
            semantic_version.Version(c["componentVersion"])
        except ValueError:
            raise ValueError(f"components.{cname}.componentVersion: expected a version such as 1.0.0, got "
                             f"{c['componentVersion']!r}") from None
    return doc


def target_key(doc: dict[str, Any]) -> str:
    """The target a document is applied as: a subdeployment's root group, else its own group or thing."""
    if doc.get("thing") is not None and doc.get("group") is None:
        return THING_PREFIX + doc["thing"]
    return GROUP_PREFIX + (doc.get("onBehalfOf") or doc.get("parentGroup") or doc["group"])


def version_conflicts(pins: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """{component: {target: version}} → the components pinned to more than one version, as given."""
    return {name: by_target for name, by_target in sorted(pins.items()) if len(set(by_target.values())) > 1}


def describe_conflict(conflicts: dict[str, dict[str, str]]) -> str:
    parts = []
    for name, by_target in conflicts.items():
        reqs = ", ".join(f"{t} requires ={v}" for t, v in sorted(by_target.items()))
        parts.append(f"component {name}: {reqs}")
    return ("no component version satisfies the requirements of all the device's deployments (their version "
            "constraints conflict; revise a deployment to resolve it): " + "; ".join(parts))


class GroupFollower:
    def __init__(self, kernel: Kernel, groups: tuple[str, ...]) -> None:
        self.kernel = kernel
        self.groups = tuple(groups)
        self.thing = kernel.options.thing_name
        self.members = {GROUP_PREFIX + g for g in self.groups} | {THING_PREFIX + self.thing}
        self.docs: dict[str, dict[str, Any]] = {}  # source ("thinggroup/x" | "thing/y") -> its current document
        self._state_file = kernel.root / "deployments" / "group-deployment.json"
        state: dict[str, Any] = json.loads(self._state_file.read_text()) if self._state_file.exists() else {}
        if "deploymentId" in state and "targets" not in state:
            # The one-document state of earlier versions: its components are held (removed unless a target names
            # them) under a key no target has, and every current document is handled again.
            state = {"targets": {"legacy/" + str(state.get("group")): {
                "deploymentId": state["deploymentId"], "source": "", "created": 0,
                "components": state.get("components", {})}}}
        # target -> the last applied deployment {deploymentId, source, created, components}
        self.targets: dict[str, dict[str, Any]] = state.get("targets", {})
        self.processed: dict[str, str] = state.get("processed", {})  # source -> last deploymentId handled
        self.effective: dict[str, dict[str, Any]] = state.get("effective", {})  # source -> last outcome
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.malformed = 0

    async def start(self) -> None:
        bridge = self.kernel.bridge
        if bridge is None:
            raise RuntimeError("--thing-groups needs the IoT Core connection (--iot)")
        for g in self.groups:
            await bridge.subscribe(GROUP_TOPIC.format(group=g), 1, self._on_message(GROUP_PREFIX, g))
        await bridge.subscribe(THING_TARGET_TOPIC.format(thing=self.thing), 1, self._on_message(THING_PREFIX,
                                                                                                  self.thing))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _on_message(self, kind: str, name: str) -> Any:
        source = kind + name

        def handle(topic: str, payload: bytes) -> None:
            if not payload:  # a cleared retained message: the target has no deployment
                self.docs.pop(source, None)
                return
            try:
                self.docs[source] = parse_deployment_document(payload, kind, name)
            except (ValueError, TypeError) as e:
                self.malformed += 1
                log.warning("deployment on %s dropped: %s", topic, e)
                return
            self._wake.set()
        return handle

    def pending(self) -> tuple[str, dict[str, Any]] | None:
        """The oldest document not handled yet (jobs are handled one at a time, in the order they were created)."""
        todo = [(s, d) for s, d in self.docs.items() if d["deploymentId"] != self.processed.get(s)]
        return min(todo, key=lambda sd: (sd[1]["created"], sd[1].get("revision", 0))) if todo else None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while (item := self.pending()) is not None:
                await self._apply(*item)

    async def _apply(self, source: str, doc: dict[str, Any]) -> None:
        k = self.kernel
        dep_id, key = doc["deploymentId"], target_key(doc)
        last = self.targets.get(key)
        if key.startswith(GROUP_PREFIX) and last is not None and doc["created"] < last.get("created", 0):
            await self._report(source, doc, key, "REJECTED",
                               f"REJECTED_STALE_DEPLOYMENT: the device has a newer deployment for {key} "
                               f"({last['deploymentId']}); this one is older")
            return
        await self._report(source, doc, key, "IN_PROGRESS", done=False)
        others = {t: d for t, d in self.targets.items() if t != key and t in self.members}
        pins: dict[str, dict[str, str]] = {}
        for t, d in [*others.items(), (key, doc)]:
            for name, c in d["components"].items():
                pins.setdefault(name, {})[t] = c["componentVersion"]
        conflicts = version_conflicts(pins)
        if conflicts:
            await self._report(source, doc, key, "FAILED", f"FAILED_NO_STATE_CHANGE: {describe_conflict(conflicts)}")
            return
        wanted = {name: next(iter(by_target.values())) for name, by_target in pins.items()}
        held = {name for d in self.targets.values() for name in d["components"]}
        try:
            config = parse_config_updates({n: {"MERGE": c["configurationUpdate"].get("merge", {}),
                                               "RESET": c["configurationUpdate"].get("reset", [])}
                                           for n, c in doc["components"].items() if c.get("configurationUpdate")},
                                          "components")
            recipes, artifacts = doc.get("recipeDirectoryPath"), doc.get("artifactsDirectoryPath")
            req = DeploymentRequest(recipe_dir=Path(recipes) if recipes else None,
                                    artifact_dir=Path(artifacts) if artifacts else None, add=wanted,
                                    remove=sorted(held - set(wanted)), config=config,
                                    failure_policy=doc.get("failureHandlingPolicy", "ROLLBACK"))
        except ValueError as e:
            await self._report(source, doc, key, "FAILED", f"FAILED_NO_STATE_CHANGE: {e}")
            return
        local_id = k.deployments.submit(req)
        rec = await k.deployments.wait(local_id)
        if rec.status == "SUCCEEDED" or rec.detailed == "FAILED_ROLLBACK_NOT_REQUESTED":
            # what the device now runs for this target (the nucleus also keeps it when it did not roll back)
            self.targets = {t: d for t, d in self.targets.items() if t in self.members}
            self.targets[key] = {"deploymentId": dep_id, "source": source, "created": doc["created"],
                                 "components": doc["components"]}
        ok = rec.status == "SUCCEEDED"
        await self._report(source, doc, key, "SUCCEEDED" if ok else "FAILED", "" if ok
                           else f"{rec.detailed}: {rec.cause}")

    def _save(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"targets": self.targets, "processed": self.processed,
                                   "effective": self.effective}))
        tmp.replace(self._state_file)

    async def _report(self, source: str, doc: dict[str, Any], key: str, status: str, reason: str = "",
                      done: bool = True) -> None:
        k = self.kernel
        now = time.time()
        self.effective[source] = {"deploymentId": doc["deploymentId"], "source": source, "target": key,
                                  "status": status, "reason": reason[:2000], "timestamp": now}
        if done:
            self.processed[source] = doc["deploymentId"]
        self._save()
        msg = {"schema": STATUS_SCHEMA, "thing": self.thing, "deploymentId": doc["deploymentId"],
               "group": doc.get("group"), "source": source, "target": key, "status": status,
               "reason": reason[:2000], "timestamp": now,
               "components": {n: s.version for n, s in k.services.items()},
               "states": {n: str(s.state.name if hasattr(s.state, "name") else s.state) for n, s in k.services.items()},
               "deployments": sorted(self.effective.values(), key=lambda e: e["source"])}
        try:
            await k.bridge.publish(THING_TOPIC.format(thing=self.thing), json.dumps(msg).encode(), qos=1, retain=True)
        except Exception as e:  # never let reporting kill the follower
            log.warning("could not report deployment %s status: %s", doc["deploymentId"], e)
