"""The rollout itself: promote a model version to a stage (canary, soak, gates), roll back, report.

promote(model, version, stage):
  1. refuse when the stage is paused, or the version has not passed the previous stage (unless forced);
  2. read the group's (and canary group's) current deployment: the revision to go back to;
  3. baseline: health summaries of the previous version on the stage's devices;
  4. canary: deploy to the canary thing group as a subdeployment of the stage group (check_canary first: on the
     devices a subdeployment replaces the stage group's deployment, where a deployment of its own would be
     combined with it and fail on the model's conflicting versions; docs/rollout.md), wait for every canary
     device, soak, gates; 5. the whole group: deploy, wait, soak, gates;
  6. any deployment failure or failed gate: redeploy the previous revisions (canary group and, if it was
     reached, the stage group), wait until no device runs the candidate, record the reason.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .backends.base import DONE_FAILED, DONE_OK, Backend, BackendError, Deployment
from .config import RolloutConfig, Stage
from .gates import FAIL, PASS, Verdict, evaluate, samples
from .state import StateFile


class RolloutError(RuntimeError):
    """A promote/rollback that cannot start (paused, order of stages, unknown version); nothing was deployed."""


class GateFailed(Exception):
    def __init__(self, reason: str, verdict: Verdict | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.verdict = verdict


def model_component(model: str) -> str:
    from model_registry.component import component_name

    return component_name(model)


@dataclass
class Step:
    stage: str
    target: str
    kind: str  # canary | group
    devices: list[str]
    current: str | None
    soak_s: float


class Engine:
    def __init__(self, cfg: RolloutConfig, backend: Backend, state: StateFile | None = None,
                 console: Console | None = None, sleep: Callable[[float], None] | None = None) -> None:
        self.cfg = cfg
        self.backend = backend
        self.state = state or StateFile(cfg.state_file)
        self.console = console or Console()
        self._sleep = sleep or getattr(backend, "wait", None) or time.sleep

    # -- plan ----------------------------------------------------------------------------------------------
    def plan(self, model: str, version: str, to: str | None = None) -> list[Step]:
        component = model_component(model)
        steps = []
        for stage in self.cfg.stages:
            current = self.backend.current(stage.group)
            cur = current.version_of(component) if current else None
            if stage.canary:
                steps.append(Step(stage.name, stage.canary.group, "canary", self.backend.devices(stage.canary.group),
                                  cur, stage.canary.soak_s))
            steps.append(Step(stage.name, stage.group, "group", self.backend.devices(stage.group), cur, stage.soak_s))
            if stage.name == to:
                break
        return steps

    # -- promote ---------------------------------------------------------------------------------------------
    def promote(self, model: str, version: str, to: str, force: bool = False) -> bool:
        stage = self.cfg.stage(to)
        component = model_component(model)
        if self.state.paused(stage.name):
            raise RolloutError(f"stage {stage.name} is paused; `rollout resume --stage {stage.name}` first")
        prev_stage = self.cfg.previous_stage(stage.name)
        if prev_stage is not None and not force:
            st = self.state.stage(model, prev_stage.name)
            if st.get("version") != version or st.get("status") != "passed":
                raise RolloutError(f"{model} {version} has not passed {prev_stage.name} (it runs "
                                   f"{st.get('version') or 'nothing'}, {st.get('status') or 'never promoted'}); "
                                   f"promote it --to {prev_stage.name} first, or --force")
        prepare = getattr(self.backend, "prepare", None)
        if prepare is not None:
            prepare(model, version, component)
        group_prev = self.backend.current(stage.group)
        canary_prev = self.backend.current(stage.canary.group) if stage.canary else None
        previous_version = group_prev.version_of(component) if group_prev else None
        all_devices = self.backend.devices(stage.group)
        canary_devices = self.backend.devices(stage.canary.group) if stage.canary else []
        if stage.canary:
            self.check_canary(stage, all_devices, canary_devices, canary_prev)
        rid = self.state.start_rollout("promote", model, version, stage.name, component=component,
                                       previous_version=previous_version,
                                       previous={stage.group: group_prev.to_dict() if group_prev else None,
                                                 **({stage.canary.group: canary_prev.to_dict() if canary_prev
                                                     else None} if stage.canary else {})})
        self._log(rid, "start", f"promote {model} {version} to {stage.name} (group {stage.group}, now "
                                f"{previous_version or 'no version'})")
        if previous_version == version:
            self._log(rid, "noop", f"{stage.group} already runs {version}")
            self.state.finish(rid, "succeeded", "already deployed")
            return True
        deployed: list[str] = []
        try:
            baseline = self._baseline(rid, model, previous_version, all_devices + canary_devices)
            if stage.canary:
                base = _newest(canary_prev, group_prev)
                self._phase(rid, model, version, component, stage, stage.canary.group, canary_devices,
                            stage.canary.soak_s, base, baseline, deployed, parent=stage.group)
            self._phase(rid, model, version, component, stage, stage.group, sorted(set(all_devices + canary_devices)),
                        stage.soak_s, group_prev, baseline, deployed)
        except GateFailed as failure:
            self._log(rid, "gate_failed", failure.reason,
                      results=[r.__dict__ for r in failure.verdict.results] if failure.verdict else [])
            self._rollback(rid, model, version, component, stage, deployed, group_prev, canary_prev)
            self.state.set_stage(model, stage.name, status="rolled_back", failed_version=version,
                                 reason=failure.reason, version=previous_version)
            self.state.finish(rid, "rolled_back", failure.reason)
            self.console.print(f"[red]rolled back[/red] {model} {version} at {stage.name}: {failure.reason}",
                               highlight=False)
            return False
        except BaseException as e:  # Ctrl-C or a backend error mid-rollout: say so in history, then re-raise
            self.state.finish(rid, "aborted", f"{type(e).__name__}: {e}")
            raise
        self.state.set_stage(model, stage.name, version=version, previous=previous_version, status="passed",
                             rollout=rid, reason="")
        self._log(rid, "passed", f"{model} {version} passed {stage.name}")
        self.state.finish(rid, "succeeded")
        return True

    def check_canary(self, stage: Stage, group_devices: list[str], canary_devices: list[str],
                     canary_prev: Deployment | None) -> None:
        """Refuse (RolloutError, nothing deployed) a canary that Greengrass would not apply in place of the stage
        group's deployment. A core device runs the union of its targets' deployments and fails a deployment whose
        pinned versions conflict with another target's (DG "Deploy AWS IoT Greengrass components to devices",
        component dependency resolution; nucleus DependencyResolver), so the canary must be a subdeployment
        (parentTargetArn), which the device applies on behalf of the parent group (nucleus
        DeploymentDocument.getGroupName): that needs every canary device in the stage group, a canary group with no
        components deployed to it as a target of its own (they stay on the devices), and nucleus >= 2.9.0 (DG "Create
        subdeployments")."""
        assert stage.canary is not None
        outside = sorted(set(canary_devices) - set(group_devices))
        if outside:
            raise RolloutError(f"canary devices {outside} of {stage.canary.group} are not in {stage.group}: a "
                               f"subdeployment only replaces the parent group's deployment on the parent's devices")
        if canary_prev is not None and canary_prev.parent_group != stage.group and canary_prev.components:
            raise RolloutError(
                f"{stage.canary.group}'s current deployment {canary_prev.deployment_id} is not a subdeployment of "
                f"{stage.group}: on its devices it is a target of its own whose components stay combined with "
                f"{stage.group}'s (a version pinned differently by the two fails the deployment); deploy it without "
                "components, or use another canary group, first")
        versions = getattr(self.backend, "nucleus_versions", None)
        if versions is not None:
            old = {t: v for t, v in versions(canary_devices).items() if v is not None and _semver(v) < (2, 9, 0)}
            if old:
                raise RolloutError(f"canary devices run Greengrass nucleus older than 2.9.0, which cannot apply a "
                                   f"subdeployment: {old}")

    def _phase(self, rid: str, model: str, version: str, component: str, stage: Stage, group: str,
               devices: list[str], soak_s: float, base: Deployment | None, baseline: dict, deployed: list[str],
               parent: str | None = None) -> None:
        kind = "canary" if parent else "group"
        components = self._components(base, model, version, component)
        self._wait_unpaused(rid, stage.name)
        dep = self.backend.deploy(group, components, parent_group=parent, name=f"{model}-{version}-{stage.name}",
                                  template=base)
        deployed.append(group)
        self._log(rid, "deployed", f"{kind} {group}: deployment {dep.deployment_id} to {len(devices)} device(s)",
                  group=group, deployment_id=dep.deployment_id)
        failures = self._await_deployment(rid, dep, devices)
        if len(failures) > self.cfg.gates.deployment_failures_max:
            raise GateFailed("deployment failed on " + "; ".join(f"{t}: {w}" for t, w in sorted(failures.items())))
        started = time.time()
        verdict = self._soak(rid, model, version, stage.name, group, devices, soak_s, baseline, failures, started)
        self._log(rid, "gates_passed", f"{kind} {group}: gates passed after {soak_s:g} s soak",
                  results=[r.__dict__ for r in verdict.results])

    def _components(self, base: Deployment | None, model: str, version: str, component: str) -> dict[str, Any]:
        comps = copy.deepcopy(base.components) if base else {}
        for name, v in self.cfg.components.items():
            comps.setdefault(name, {"componentVersion": v})
        comps[component] = {"componentVersion": version}
        for name, upd in self.cfg.configuration.items():
            text = json.dumps(upd).replace("{model}", model).replace("{version}", version) \
                .replace("{component}", component)
            comps.setdefault(name, {"componentVersion": self.cfg.components.get(name, "")})
            comps[name]["configurationUpdate"] = json.loads(text)
        return comps

    def _baseline(self, rid: str, model: str, previous: str | None, devices: list[str]) -> dict:
        if previous is None or not devices:
            self._log(rid, "baseline", "no previous version: gates use absolute limits only")
            return {}
        need = self.cfg.gates.min_samples
        since = time.time() - self.cfg.baseline_s
        deadline = time.monotonic() + self.cfg.baseline_s
        with self._progress() as progress:
            task = progress.add_task(f"baseline: {previous} on {len(devices)} device(s)", total=len(devices))
            while True:
                got = samples(self.backend.health(devices, since), model, previous)
                ready = sum(1 for d in devices if len(got.get(d, [])) >= need)
                progress.update(task, completed=ready)
                if ready == len(devices) or time.monotonic() >= deadline:
                    break
                self._sleep(self.cfg.poll_s)
        short = [d for d in devices if len(got.get(d, [])) < need]
        self._log(rid, "baseline", f"{previous}: {sum(len(v) for v in got.values())} summaries from "
                                   f"{len(got)} device(s)" + (f"; too few from {short}" if short else ""))
        return got

    def _await_deployment(self, rid: str, dep: Deployment, devices: list[str]) -> dict[str, str]:
        deadline = time.monotonic() + self.cfg.deployment_timeout_s
        done: dict[str, str] = {}
        failures: dict[str, str] = {}
        with self._progress() as progress:
            task = progress.add_task(f"deploying to {dep.group}", total=len(devices))
            while len(done) < len(devices):
                for thing in devices:
                    if thing in done:
                        continue
                    st = self.backend.device_status(thing, dep.deployment_id)
                    if st.deployment_id == dep.deployment_id and st.status in DONE_OK | DONE_FAILED:
                        done[thing] = st.status
                        if st.status in DONE_FAILED:
                            failures[thing] = f"{st.status} {st.reason}".strip()
                progress.update(task, completed=len(done))
                if len(done) == len(devices):
                    break
                if time.monotonic() >= deadline:
                    for thing in devices:
                        if thing not in done:
                            failures[thing] = f"TIMED_OUT after {self.cfg.deployment_timeout_s:g} s"
                    break
                self._sleep(self.cfg.poll_s)
        self._log(rid, "deployment_done", f"{dep.group}: {len(devices) - len(failures)}/{len(devices)} succeeded"
                  + (f"; failed: {failures}" if failures else ""), failures=failures)
        return failures

    def _soak(self, rid: str, model: str, version: str, stage: str, group: str, devices: list[str], soak_s: float,
              baseline: dict, failures: dict[str, str], started: float) -> Verdict:
        end = time.monotonic() + soak_s
        with self._progress() as progress:
            task = progress.add_task(f"soak {group} ({version})", total=max(soak_s, 0.001))
            while True:
                paused = self._wait_unpaused(rid, stage)
                end += paused
                now = time.monotonic()
                final = now >= end
                cand = samples(self.backend.health(devices, started), model, version)
                verdict = evaluate(self.cfg.gates, devices, cand, baseline, failures, final=final)
                progress.update(task, completed=min(soak_s, soak_s - (end - now)),
                                description=f"soak {group} ({version}): {verdict.status}")
                if verdict.status == FAIL:
                    raise GateFailed(verdict.summary, verdict)
                if final and verdict.status == PASS:
                    return verdict
                self._sleep(min(self.cfg.poll_s, max(0.01, end - now)) if not final else self.cfg.poll_s)

    def _wait_unpaused(self, rid: str, stage: str) -> float:
        if not self.state.paused(stage):
            return 0.0
        t0 = time.monotonic()
        self._log(rid, "paused", f"stage {stage} paused; waiting for `rollout resume`")
        while self.state.paused(stage):
            self._sleep(self.cfg.poll_s)
        self._log(rid, "resumed", f"stage {stage} resumed")
        return time.monotonic() - t0

    # -- rollback --------------------------------------------------------------------------------------------
    def _rollback(self, rid: str, model: str, version: str, component: str, stage: Stage, deployed: list[str],
                  group_prev: Deployment | None, canary_prev: Deployment | None) -> None:
        targets = []
        for group in reversed(deployed):
            if stage.canary and group == stage.canary.group:
                prev = _newest(canary_prev, group_prev)
                targets.append((group, prev, stage.group))
            else:
                targets.append((group, group_prev, None))
        for group, prev, parent in targets:
            comps = copy.deepcopy(prev.components) if prev else {
                n: {"componentVersion": v} for n, v in self.cfg.components.items()}
            dep = self.backend.deploy(group, comps, parent_group=parent, name=f"rollback-{model}-{stage.name}",
                                      template=prev)
            was = prev.version_of(component) if prev else None
            self._log(rid, "rollback", f"{group}: redeployed the previous revision "
                                       f"({component} {was or 'removed'}) as {dep.deployment_id}",
                      group=group, deployment_id=dep.deployment_id)
            devices = self.backend.devices(group)
            failures = self._await_deployment(rid, dep, devices)
            left = [t for t in devices if self.backend.device_status(t, dep.deployment_id)
                    .components.get(component) == version]
            if failures or left:
                self._log(rid, "rollback_incomplete", f"{group}: failed {failures}, still on {version}: {left}")
            else:
                self._log(rid, "rolled_back", f"{group}: no device runs {version}")

    def rollback(self, model: str, stage_name: str, reason: str = "manual rollback") -> bool:
        """Redeploy the revisions the stage's last successful promote replaced."""
        stage = self.cfg.stage(stage_name)
        last = next((r for r in reversed(self.state.rollouts(model)) if r["stage"] == stage.name
                     and r["kind"] == "promote" and r["status"] == "succeeded" and r.get("previous")), None)
        if last is None:
            raise RolloutError(f"{model}: no successful promote to {stage.name} in the history to roll back")
        component = last["component"]
        rid = self.state.start_rollout("rollback", model, last.get("previous_version") or "-", stage.name,
                                       component=component, undoes=last["id"])
        self._log(rid, "start", f"rollback {model} {last['version']} at {stage.name}: {reason}")
        prev = {g: Deployment.from_dict(d) if d else None for g, d in last["previous"].items()}
        deployed = [g for g in ([stage.canary.group] if stage.canary else []) + [stage.group] if g in prev]
        try:
            self._rollback(rid, model, last["version"], component, stage, deployed, prev.get(stage.group),
                           prev.get(stage.canary.group) if stage.canary else None)
        except BackendError as e:
            self.state.finish(rid, "failed", str(e))
            raise
        self.state.set_stage(model, stage.name, version=last.get("previous_version"), status="rolled_back",
                             reason=reason, failed_version=last["version"])
        self.state.finish(rid, "succeeded", reason)
        return True

    # -- output ----------------------------------------------------------------------------------------------
    def _log(self, rid: str, event: str, detail: str, **data: Any) -> None:
        self.state.event(rid, event, detail, **data)
        style = {"gate_failed": "red", "rollback": "yellow", "rolled_back": "yellow", "passed": "green",
                 "gates_passed": "green"}.get(event, "cyan")
        self.console.print(f"[{style}]{event:>16}[/{style}] {detail}", highlight=False)

    def _progress(self) -> Progress:
        return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=self.console, transient=True)


def _semver(v: str) -> tuple[int, ...]:
    core = v.split("-", 1)[0].split("+", 1)[0]
    try:
        return tuple(int(x) for x in core.split("."))
    except ValueError:
        return (0,)


def _newest(*deps: Deployment | None) -> Deployment | None:
    present = [d for d in deps if d is not None]
    return max(present, key=lambda d: d.created) if present else None
