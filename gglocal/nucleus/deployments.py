"""Local deployments: the nucleus' deployment flow against a running runtime.

One deployment at a time: import recipes and artifacts, resolve dependencies, build the new
configuration (reset, then merge), let components validate it and defer, snapshot, apply
(stop removed, replace changed versions, update config, restart where the interpolated
lifecycle changed), wait for the changed components to be healthy, and roll back to the
snapshot if one goes BROKEN and the policy is ROLLBACK. A deployment with Bootstrap steps to run takes the
nucleus' intrusive path instead (bootstrap.py): stop everything, bootstrap, start everything again, and
always roll back on failure.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import ArtifactError
from .bootstrap import (
    BootstrapFailed,
    pending_bootstraps,
    restart_into,
    rollback_bootstraps,
    run_bootstraps,
    start_all,
)
from .configstore import ConfigError, merge, reset_pointer
from .dependencies import DependencyError, resolve
from .recipe import Recipe
from .recipereader import RecipeError
from .service import HEALTHY, ComponentService, State

if TYPE_CHECKING:
    from .kernel import Kernel

log = logging.getLogger("gglocal.nucleus")


class DeploymentFailed(Exception):
    def __init__(self, detailed: str, cause: str) -> None:
        super().__init__(cause)
        self.detailed = detailed
        self.cause = cause


@dataclass
class ConfigUpdate:
    merge: dict[str, Any] = field(default_factory=dict)
    reset: list[str] = field(default_factory=list)


@dataclass
class DeploymentRequest:
    recipe_dir: Path | None = None
    artifact_dir: Path | None = None
    add: dict[str, str] = field(default_factory=dict)  # root component -> version (or requirement)
    remove: list[str] = field(default_factory=list)
    config: dict[str, ConfigUpdate] = field(default_factory=dict)
    failure_policy: str = "ROLLBACK"  # or DO_NOTHING
    notify_components: bool = True
    update_timeout_s: float = 60.0
    validation_timeout_s: float = 30.0
    health_timeout_s: float = 300.0
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class DeploymentRecord:
    id: str
    status: str = "QUEUED"  # QUEUED | IN_PROGRESS | SUCCEEDED | FAILED | CANCELED
    detailed: str | None = None
    cause: str | None = None
    created: float = field(default_factory=time.time)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    applying: bool = False  # past the point where CancelLocalDeployment can stop it without a half-done change

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"deploymentId": self.id, "status": self.status, "createdOn": str(self.created)}
        if self.detailed:
            d["deploymentStatusDetails"] = {"detailedDeploymentStatus": self.detailed}
            if self.cause:
                d["deploymentStatusDetails"]["deploymentFailureCause"] = self.cause
        return d


def parse_config_updates(raw: Any, where: str) -> dict[str, ConfigUpdate]:
    """componentToConfiguration: {name: {"MERGE": {...}, "RESET": [...]}} or {name: {...plain merge...}}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object of component name -> configuration update")
    out: dict[str, ConfigUpdate] = {}
    for name, upd in raw.items():
        if not isinstance(upd, dict):
            raise ValueError(f"{where}.{name}: expected an object")
        keys = {k.upper() for k in upd}
        if upd and keys <= {"MERGE", "RESET"}:
            m = next((v for k, v in upd.items() if k.upper() == "MERGE"), {}) or {}
            r = next((v for k, v in upd.items() if k.upper() == "RESET"), []) or []
            if isinstance(m, str):
                try:
                    m = json.loads(m)
                except ValueError as e:
                    raise ValueError(f"{where}.{name}.MERGE: not valid JSON: {e}") from None
            if not isinstance(m, dict):
                raise ValueError(f"{where}.{name}.MERGE: expected an object")
            if not isinstance(r, list) or not all(isinstance(p, str) for p in r):
                raise ValueError(f"{where}.{name}.RESET: expected a list of JSON pointers")
            out[name] = ConfigUpdate(m, r)
        else:
            out[name] = ConfigUpdate(upd, [])
    return out


class DeploymentManager:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.records: dict[str, DeploymentRecord] = {}
        self._queue: asyncio.Queue[DeploymentRequest] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._current: asyncio.Task[None] | None = None  # the deployment being executed

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass

    # -- API ------------------------------------------------------------------------------
    def submit(self, req: DeploymentRequest) -> str:
        self.records[req.id] = DeploymentRecord(req.id)
        self._queue.put_nowait(req)
        return req.id

    def submit_ipc(self, body: dict[str, Any]) -> str:
        """CreateLocalDeployment request → queued deployment (ValueError on bad input)."""
        add = body.get("rootComponentVersionsToAdd") or {}
        remove = body.get("rootComponentsToRemove") or []
        if not isinstance(add, dict) or not all(isinstance(v, str) for v in add.values()):
            raise ValueError("rootComponentVersionsToAdd must map component names to version strings")
        if not isinstance(remove, list) or not all(isinstance(v, str) for v in remove):
            raise ValueError("rootComponentsToRemove must be a list of component names")
        policy = body.get("failureHandlingPolicy") or "ROLLBACK"
        if policy not in ("ROLLBACK", "DO_NOTHING"):
            raise ValueError(f"failureHandlingPolicy must be ROLLBACK or DO_NOTHING, got {policy!r}")
        recipe_dir = body.get("recipeDirectoryPath")
        artifact_dir = body.get("artifactsDirectoryPath")
        for label, d in (("recipeDirectoryPath", recipe_dir), ("artifactsDirectoryPath", artifact_dir)):
            if d is not None and not Path(d).is_dir():
                raise ValueError(f"{label} {d} is not a directory")
        req = DeploymentRequest(
            recipe_dir=Path(recipe_dir) if recipe_dir else None,
            artifact_dir=Path(artifact_dir) if artifact_dir else None,
            add=dict(add), remove=list(remove),
            config=parse_config_updates(body.get("componentToConfiguration"), "componentToConfiguration"),
            failure_policy=policy,
        )
        return self.submit(req)

    def cancel(self, dep_id: str) -> str | None:
        """CancelLocalDeployment (Greengrass CLI CancelLocalDeploymentHandler, nucleus DeploymentService): None for
        an unknown id, "finished" when it has ended, else "submitted". A queued deployment is dropped; one in
        progress stops where it waits (validation, component updates) with nothing changed. Once it has begun
        changing components it runs to its end: stopping half-way would leave components stopped."""
        rec = self.records.get(dep_id)
        if rec is None:
            return None
        if rec.status not in ("QUEUED", "IN_PROGRESS"):
            return "finished"
        if rec.status == "QUEUED":
            rec.status, rec.cause = "CANCELED", "cancelled before it started"
            rec.done.set()
        elif not rec.applying and self._current is not None:
            self._current.cancel()
        self.kernel.hub.line("ggvision.deployment", "nucleus", f"deployment {dep_id}: cancellation requested")
        return "submitted"

    def describe(self, dep_id: str) -> dict[str, Any] | None:
        rec = self.records.get(dep_id)
        return rec.describe() if rec else None

    def list(self) -> list[dict[str, Any]]:
        return [r.describe() for r in self.records.values()]

    async def wait(self, dep_id: str, timeout: float | None = None) -> DeploymentRecord:
        rec = self.records[dep_id]
        await asyncio.wait_for(rec.done.wait(), timeout)
        return rec

    # -- execution ------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            req = await self._queue.get()
            rec = self.records[req.id]
            if rec.status == "CANCELED":  # cancelled while queued
                continue
            rec.status = "IN_PROGRESS"
            self.kernel.hub.line("ggvision.deployment", "nucleus", f"deployment {req.id} started")
            task = self._current = asyncio.get_running_loop().create_task(self._execute(req, rec))
            try:
                await asyncio.wait({task})  # a cancelled deployment does not cancel this worker
            except asyncio.CancelledError:
                task.cancel()
                raise
            finally:
                self._current = None
            if task.cancelled():
                rec.status, rec.cause = "CANCELED", "cancelled before it changed any component"
            elif isinstance(task.exception(), DeploymentFailed):
                e = task.exception()
                assert isinstance(e, DeploymentFailed)
                rec.status, rec.detailed, rec.cause = "FAILED", e.detailed, e.cause
            elif task.exception() is not None:  # never let one bad deployment kill the worker
                e = task.exception()
                log.error("deployment %s crashed", req.id, exc_info=e)
                rec.status, rec.detailed, rec.cause = "FAILED", "FAILED_NO_STATE_CHANGE", f"internal error: {e}"
            else:
                rec.status, rec.detailed = "SUCCEEDED", "SUCCESSFUL"
            outcome = f"deployment {req.id} {rec.status}" + (f": {rec.detailed}: {rec.cause}" if rec.cause else "")
            self.kernel.hub.line("ggvision.deployment", "nucleus", outcome)
            rec.done.set()

    def _prepare(self, req: DeploymentRequest) -> tuple[dict[str, str], dict[str, Recipe]]:
        k = self.kernel
        try:
            if req.recipe_dir:
                k.recipes.import_dir(req.recipe_dir)
        except (RecipeError, OSError) as e:
            raise DeploymentFailed("FAILED_NO_STATE_CHANGE", str(e)) from None
        roots = dict(k.roots)
        for name in req.remove:
            roots.pop(name, None)
        for name, version in req.add.items():
            roots[name] = version
        try:
            target = resolve(roots, k.available_recipes())
        except DependencyError as e:
            raise DeploymentFailed("FAILED_NO_STATE_CHANGE", str(e)) from None
        # Artifacts for everything new or changed (fails before anything is touched).
        for name, recipe in target.items():
            svc = k.services.get(name)
            if svc is not None and svc.version == recipe.version:
                continue
            try:
                k.install_artifacts(recipe, req.artifact_dir)
            except (RecipeError, ArtifactError) as e:
                raise DeploymentFailed("FAILED_NO_STATE_CHANGE", str(e)) from None
        return roots, target

    def _new_configs(self, req: DeploymentRequest, target: dict[str, Recipe]) -> dict[str, dict[str, Any]]:
        k = self.kernel
        out: dict[str, dict[str, Any]] = {}
        for name, recipe in target.items():
            default = recipe.default_configuration
            if k.config.has(name):
                cfg = merge(default, k.config.get(name))  # keys new in this version get their defaults
                if "accessControl" in default:  # policies always come from the recipe (plus merges)
                    cfg["accessControl"] = copy.deepcopy(default["accessControl"])
            else:
                cfg = copy.deepcopy(default)
            upd = req.config.get(name)
            if upd is not None:
                try:
                    for pointer in upd.reset:
                        cfg = reset_pointer(cfg, default, pointer)
                except ConfigError as e:
                    raise DeploymentFailed("FAILED_NO_STATE_CHANGE", f"{name}: {e}") from None
                cfg = merge(cfg, upd.merge)
            out[name] = cfg
        unknown = set(req.config) - set(target)
        if unknown:
            raise DeploymentFailed("FAILED_NO_STATE_CHANGE",
                                   f"configuration given for components not in the deployment: {sorted(unknown)}")
        return out

    async def _execute(self, req: DeploymentRequest, rec: DeploymentRecord) -> None:
        k = self.kernel
        roots, target = self._prepare(req)
        configs = self._new_configs(req, target)
        changed_cfg = {n: c for n, c in configs.items()
                       if n in k.services and k.services[n].version == target[n].version and k.config.peek(n) != c}
        if changed_cfg:
            results = await k.validators.validate(req.id, changed_cfg, req.validation_timeout_s)
            rejected = {n: m for n, (s, m) in results.items() if s == "REJECTED"}
            if rejected:
                why = "; ".join(f"{n}: {m or 'no reason given'}" for n, m in sorted(rejected.items()))
                raise DeploymentFailed("FAILED_NO_STATE_CHANGE", f"configuration rejected by {why}")
        version_changes = [n for n in k.services if n not in target or k.services[n].version != target[n].version]
        if req.notify_components and (version_changes or changed_cfg):
            await k.update_listeners.pre_update(req.id, req.update_timeout_s)
        rec.applying = True
        snapshot = self._snapshot()
        pending = pending_bootstraps(k, target, configs)
        if pending:
            await self._execute_with_bootstrap(req, roots, target, configs, pending, snapshot)
            if req.notify_components:
                k.update_listeners.post_update(req.id)
            return
        changed = await self._apply(roots, target, configs)
        try:
            await self._await_healthy(changed, req.health_timeout_s)
        except DeploymentFailed as failure:
            if req.failure_policy != "ROLLBACK":
                raise DeploymentFailed("FAILED_ROLLBACK_NOT_REQUESTED", failure.cause) from None
            self.kernel.hub.line("ggvision.deployment", "nucleus",
                                 f"deployment {req.id} failed ({failure.cause}); rolling back")
            try:
                restored = await self._restore(snapshot)
                await self._await_healthy(restored, req.health_timeout_s)
            except Exception as e:
                raise DeploymentFailed("FAILED_UNABLE_TO_ROLLBACK", f"{failure.cause}; rollback failed: {e}") from None
            raise DeploymentFailed("FAILED_ROLLBACK_COMPLETE", failure.cause) from None
        if req.notify_components:
            k.update_listeners.post_update(req.id)

    def _snapshot(self) -> dict[str, Any]:
        k = self.kernel
        return {
            "roots": dict(k.roots),
            "versions": {n: s.recipe for n, s in k.services.items()},
            "configs": {n: k.config.get(n) for n in k.services if k.config.has(n)},
            "bootstrapped": dict(k.bootstrapped),
        }

    async def _execute_with_bootstrap(self, req: DeploymentRequest, roots: dict[str, str], target: dict[str, Recipe],
                                      configs: dict[str, dict[str, Any]], pending: list[str],
                                      snap: dict[str, Any]) -> None:
        """The nucleus' KernelUpdateActivator path (bootstrap.py): stop every component, put the new versions
        and configuration in place, run the Bootstrap steps, then start every component again and wait for
        all of them, as a restarted nucleus does (KernelUpdateDeploymentTask tracks every auto-start service).
        Any failure rolls back to the snapshot whatever the failureHandlingPolicy."""
        k = self.kernel

        def say(msg: str) -> None:
            k.hub.line("ggvision.deployment", "nucleus", f"deployment {req.id}: {msg}")

        say(f"Bootstrap to run for {', '.join(pending)}: stopping every component (the nucleus restarts for "
            "a deployment with Bootstrap steps)")
        await restart_into(k, roots, target, configs)
        started: list[str] = []
        try:
            await run_bootstraps(k, pending, target, configs, started, say)
            say("Bootstrap steps done; starting every component again, as the restarted nucleus does")
            start_all(k)
            await self._await_healthy(list(k.services), req.health_timeout_s)
        except (BootstrapFailed, DeploymentFailed) as e:
            cause = e.cause if isinstance(e, DeploymentFailed) else str(e)
            say(f"failed ({cause}); rolling back (a deployment with Bootstrap steps always rolls back)")
            old: dict[str, Recipe] = snap["versions"]
            again = rollback_bootstraps(k, old, snap["configs"], target, configs, started)
            try:
                await restart_into(k, snap["roots"], old, snap["configs"])
                k.bootstrapped = dict(snap["bootstrapped"])
                if again:
                    say(f"running the restored Bootstrap of {', '.join(again)} (BootstrapOnRollback)")
                    await run_bootstraps(k, again, old, snap["configs"], [], say)
                start_all(k)
                await self._await_healthy(list(k.services), req.health_timeout_s)
            except (BootstrapFailed, DeploymentFailed) as r:
                why = r.cause if isinstance(r, DeploymentFailed) else str(r)
                raise DeploymentFailed("FAILED_UNABLE_TO_ROLLBACK", f"{cause}; rollback failed: {why}") from None
            raise DeploymentFailed("FAILED_ROLLBACK_COMPLETE", cause) from None

    async def _restore(self, snap: dict[str, Any]) -> list[str]:
        target: dict[str, Recipe] = snap["versions"]
        self.kernel.bootstrapped = dict(snap["bootstrapped"])
        return await self._apply(snap["roots"], target, snap["configs"], force=True)

    async def _apply(self, roots: dict[str, str], target: dict[str, Recipe], configs: dict[str, dict[str, Any]],
                     force: bool = False) -> list[str]:
        """Make the running set match `target`; returns the names whose state must be checked."""
        k = self.kernel
        changed: list[str] = []
        for name in reversed(k.start_order()):
            svc = k.services[name]
            if name not in target or svc.version != target[name].version or (force and svc.state == State.BROKEN):
                await svc.stop()
                del k.services[name]
                if name not in target:
                    k.config.remove(name)
                    k.bootstrapped.pop(name, None)  # added again later, it is a new component: it bootstraps
        for name, recipe in target.items():
            if name not in k.services:
                k.services[name] = ComponentService(k, recipe, recipe.resolve(k.options.platform))
                changed.append(name)
        for name, cfg in configs.items():
            svc = k.services[name]
            before = k.lifecycle_fingerprint(svc) if name not in changed else None
            k.config.replace(name, cfg)
            if before is not None and k.lifecycle_fingerprint(svc) != before:
                await svc.stop(State.INSTALLED)
                changed.append(name)
        k.roots = dict(roots)
        k.save_state()
        k.reconcile()
        return changed

    async def _await_healthy(self, names: list[str], timeout: float) -> None:
        """Wait until each changed component is RUNNING/FINISHED for `settle_s`; fail on BROKEN."""
        k = self.kernel
        if not names:
            return
        settle = k.options.settle_s
        deadline = time.monotonic() + timeout
        changed = asyncio.Event()

        def listener(svc: ComponentService, old: State, new: State) -> None:
            if svc.name in names:
                changed.set()

        k.state_listeners.append(listener)
        try:
            while True:
                now = time.monotonic()
                broken = [n for n in names if n in k.services and k.services[n].state == State.BROKEN]
                if broken:
                    svc = k.services[broken[0]]
                    raise DeploymentFailed("FAILED_ROLLBACK_NOT_REQUESTED", f"{svc.name} went BROKEN: {svc.reason}")
                waits = []
                for n in names:
                    svc = k.services.get(n)
                    if svc is None:
                        continue
                    if svc.state not in HEALTHY:
                        waits.append(deadline - now)
                    elif now - svc.state_since < settle:
                        waits.append(settle - (now - svc.state_since))
                if not waits:
                    return
                if now >= deadline:
                    pending = [n for n in names if n in k.services and k.services[n].state not in HEALTHY]
                    raise DeploymentFailed("FAILED_ROLLBACK_NOT_REQUESTED",
                                           f"timed out waiting for {', '.join(pending)} to be healthy")
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), max(0.01, min(min(waits), deadline - now)))
                except asyncio.TimeoutError:
                    pass
        finally:
            k.state_listeners.remove(listener)
