"""Follow thing-group deployments published by the local fleet's deployment service (``ggvision fleet``).

The cloud side of Greengrass sends each core device the deployment of every thing group it belongs to; here the
service publishes each group's current deployment document, retained, on the shared broker
(``ggvision/fleet/groups/{group}/deployment``, ``group-deployment/1.0``) and a runtime started with
``--thing-groups`` follows them: the newest document among its groups (a canary subgroup's subdeployment is newer
than its parent's deployment until the parent is deployed again) becomes a local deployment; components the
previous group deployment added and the new one lacks are removed. The outcome is published retained on
``ggvision/fleet/things/{thing}/deployment`` (``device-deployment/1.0``), like a job execution status.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .deployments import DeploymentRequest, parse_config_updates

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("gglocal.nucleus")

GROUP_TOPIC = "ggvision/fleet/groups/{group}/deployment"
THING_TOPIC = "ggvision/fleet/things/{thing}/deployment"
GROUP_SCHEMA = "group-deployment/1."
STATUS_SCHEMA = "device-deployment/1.0"


def parse_group_document(payload: bytes, group: str) -> dict[str, Any]:
    """Validate a group-deployment/1.x document; ValueError naming the field."""
    doc = json.loads(payload)
    if not isinstance(doc, dict) or not str(doc.get("schema", "")).startswith(GROUP_SCHEMA):
        got = doc.get("schema") if isinstance(doc, dict) else doc
        raise ValueError(f"expected schema group-deployment/1.x, got {got!r}")
    if doc.get("group") != group:
        raise ValueError(f"group {doc.get('group')!r} does not match the topic's {group!r}")
    if not isinstance(doc.get("deploymentId"), str) or not doc["deploymentId"]:
        raise ValueError("deploymentId: expected a non-empty string")
    if not isinstance(doc.get("created"), int | float):
        raise ValueError("created: expected a timestamp")
    comps = doc.get("components")
    if not isinstance(comps, dict) or not all(isinstance(c, dict) and isinstance(c.get("componentVersion"), str)
                                              for c in comps.values()):
        raise ValueError("components: expected {name: {componentVersion, configurationUpdate?}}")
    return doc


class GroupFollower:
    def __init__(self, kernel: Kernel, groups: tuple[str, ...]) -> None:
        self.kernel = kernel
        self.groups = tuple(groups)
        self.thing = kernel.options.thing_name
        self.docs: dict[str, dict[str, Any]] = {}
        self._state_file = kernel.root / "deployments" / "group-deployment.json"
        self.applied: dict[str, Any] = (json.loads(self._state_file.read_text())
                                        if self._state_file.exists() else {})
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.malformed = 0

    async def start(self) -> None:
        bridge = self.kernel.bridge
        if bridge is None:
            raise RuntimeError("--thing-groups needs the IoT Core connection (--iot)")
        for g in self.groups:
            await bridge.subscribe(GROUP_TOPIC.format(group=g), 1, self._on_message(g))
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _on_message(self, group: str) -> Any:
        def handle(topic: str, payload: bytes) -> None:
            if not payload:  # a cleared retained message: the group has no deployment
                self.docs.pop(group, None)
                return
            try:
                self.docs[group] = parse_group_document(payload, group)
            except (ValueError, TypeError) as e:
                self.malformed += 1
                log.warning("group deployment on %s dropped: %s", topic, e)
                return
            self._wake.set()
        return handle

    def effective(self) -> dict[str, Any] | None:
        docs = list(self.docs.values())
        return max(docs, key=lambda d: (d["created"], d.get("revision", 0))) if docs else None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            doc = self.effective()
            if doc is None or doc["deploymentId"] == self.applied.get("deploymentId"):
                continue
            await self._apply(doc)

    async def _apply(self, doc: dict[str, Any]) -> None:
        k = self.kernel
        dep_id = doc["deploymentId"]
        await self._report(dep_id, doc["group"], "IN_PROGRESS")
        previous = set(self.applied.get("components", {}))
        add = {n: c["componentVersion"] for n, c in doc["components"].items()}
        try:
            config = parse_config_updates({n: {"MERGE": c["configurationUpdate"].get("merge", {}),
                                               "RESET": c["configurationUpdate"].get("reset", [])}
                                           for n, c in doc["components"].items() if c.get("configurationUpdate")},
                                          "components")
            recipes, artifacts = doc.get("recipeDirectoryPath"), doc.get("artifactsDirectoryPath")
            req = DeploymentRequest(recipe_dir=Path(recipes) if recipes else None,
                                    artifact_dir=Path(artifacts) if artifacts else None, add=add,
                                    remove=sorted(previous - set(add)), config=config,
                                    failure_policy=doc.get("failureHandlingPolicy", "ROLLBACK"))
        except ValueError as e:
            await self._report(dep_id, doc["group"], "FAILED", f"FAILED_NO_STATE_CHANGE: {e}")
            self._remember(doc)
            return
        local_id = k.deployments.submit(req)
        rec = await k.deployments.wait(local_id)
        status = "SUCCEEDED" if rec.status == "SUCCEEDED" else "FAILED"
        await self._report(dep_id, doc["group"], status, "" if status == "SUCCEEDED"
                           else f"{rec.detailed}: {rec.cause}")
        self._remember(doc)

    def _remember(self, doc: dict[str, Any]) -> None:
        self.applied = {"deploymentId": doc["deploymentId"], "group": doc["group"],
                        "components": doc["components"]}
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.applied))
        tmp.replace(self._state_file)

    async def _report(self, dep_id: str, group: str, status: str, reason: str = "") -> None:
        k = self.kernel
        msg = {"schema": STATUS_SCHEMA, "thing": self.thing, "deploymentId": dep_id, "group": group,
               "status": status, "reason": reason[:2000], "timestamp": time.time(),
               "components": {n: s.version for n, s in k.services.items()},
               "states": {n: str(s.state.name if hasattr(s.state, "name") else s.state) for n, s in k.services.items()}}
        try:
            await k.bridge.publish(THING_TOPIC.format(thing=self.thing), json.dumps(msg).encode(), qos=1, retain=True)
        except Exception as e:  # never let reporting kill the follower
            log.warning("could not report deployment %s status: %s", dep_id, e)
