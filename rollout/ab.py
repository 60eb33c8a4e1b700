"""A/B experiments: a candidate version B beside the serving version A on a stage's devices (`rollout ab`).

- start: the stage group's current deployment plus the candidate as its own model component (``<component>.B``:
  a device cannot install two versions of one component) and, merged into Inference's configuration,
  ``models.<id>.b = {mode, component, version, share | sampleRate}`` (docs/inference.md, "A/B arms"); deployed
  through the same backend and deployment path as `rollout promote`, waiting until every device reports it.
- report: the health summaries the stage's devices sent since the start (abreport.py); the local backend only
  sees summaries while it is connected, so what each call sees is kept next to the state file and reused.
- stop: the current deployment without the B component and with ``models.<id>.b: null`` (B removed).
- promote: stop, then the normal staged rollout of VERSION (Engine.promote stage by stage up to the target).
Experiments and their outcome are kept in the rollout state file (``experiments``); each deployment is also a
rollout record (kinds ab-start / ab-stop) in `rollout history`.
"""

from __future__ import annotations

import copy
import json
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from .abconfig import AbConfig, ab_config
from .abreport import PASS, Report, report
from .backends.base import Backend, Deployment
from .config import RolloutConfig, Stage
from .engine import Engine, RolloutError, model_component
from .state import StateFile

MODES = ("shadow", "split")
RUNNING, STOPPED, PROMOTED = "running", "stopped", "promoted"


class AbError(RolloutError):
    """An experiment that cannot start, stop or promote; nothing was deployed."""


def b_component(model: str) -> str:
    """The candidate's component: the model's component name plus ``.B`` (still under ``com.ggvision.Model.*``,
    which Inference may look up)."""
    return model_component(model) + ".B"


def parse_duration(text: str) -> float:
    """``90s``, ``15m``, ``24h``, ``2d`` or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise AbError(f"--for: expected a duration like 90s, 15m, 24h or 2d, got {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_share(text: str) -> float:
    """``20%`` or ``0.2``."""
    try:
        v = float(text[:-1]) / 100 if text.strip().endswith("%") else float(text)
    except ValueError:
        v = -1.0
    if not 0 < v <= 1:
        raise AbError(f"--share: expected a share above 0 up to 100% (20% or 0.2), got {text!r}")
    return v


@dataclass
class Experiment:
    doc: dict[str, Any]

    def __getattr__(self, key: str) -> Any:
        try:
            return self.doc[key]
        except KeyError:
            raise AttributeError(key) from None


class Experiments:
    def __init__(self, cfg: RolloutConfig, backend: Backend, state: StateFile | None = None,
                 console: Console | None = None) -> None:
        self.cfg = cfg
        self.ab: AbConfig = ab_config(cfg)
        self.backend = backend
        self.state = state or StateFile(cfg.state_file)
        self.console = console or Console()
        self.engine = Engine(cfg, backend, self.state, console=self.console)

    # -- state -------------------------------------------------------------------------------------------
    def all(self, model: str | None = None) -> list[Experiment]:
        return [Experiment(e) for e in self.state.read().get("experiments", []) if model in (None, e["model"])]

    def running(self, model: str) -> Experiment | None:
        return next((e for e in self.all(model) if e.status == RUNNING), None)

    def latest(self, model: str) -> Experiment:
        exps = self.all(model)
        if not exps:
            raise AbError(f"{model}: no A/B experiment; `rollout ab start {model} VERSION --stage S` first")
        return exps[-1]

    def _update(self, eid: str, **values: Any) -> None:
        with self.state.update() as doc:
            for e in doc.setdefault("experiments", []):
                if e["id"] == eid:
                    e.update(values)

    # -- start / stop ------------------------------------------------------------------------------------
    def start(self, model: str, version: str, stage_name: str, mode: str, share: float | None = None,
              duration_s: float = 86400.0, sample_rate: float | None = None) -> Experiment:
        stage = self.cfg.stage(stage_name)
        component = model_component(model)
        if mode not in MODES:
            raise AbError(f"--mode: expected shadow or split, got {mode!r}")
        if mode == "split" and share is None:
            raise AbError("--mode split needs --share (the share of cameras B serves, e.g. 20%)")
        if mode == "shadow" and share is not None:
            raise AbError("--share is for --mode split; a shadow sees a sample of A's frames (ab.sample_rate)")
        if self.running(model) is not None:
            raise AbError(f"{model}: experiment {self.running(model).id} is running; `rollout ab stop {model}` first")
        if self.state.paused(stage.name):
            raise AbError(f"stage {stage.name} is paused; `rollout resume --stage {stage.name}` first")
        current = self.backend.current(stage.group)
        a_version = current.version_of(component) if current else None
        if current is None or a_version is None:
            raise AbError(f"{stage.group} runs no {component}: an experiment needs a serving version A")
        if a_version == version:
            raise AbError(f"{stage.group} already serves {model} {version} (A); B must be another version")
        bcomp = b_component(model)
        prepare = getattr(self.backend, "prepare", None)
        if prepare is not None:
            prepare(model, version, bcomp)
        model_id = self.ab.model_id or model
        spec: dict[str, Any] = {"mode": mode, "component": bcomp, "version": version}
        if mode == "split":
            spec["share"] = share
        else:
            spec.update(sampleRate=self.ab.sample_rate if sample_rate is None else sample_rate,
                        skipWhenQueued=self.ab.skip_when_queued)
        comps = copy.deepcopy(current.components)
        comps[bcomp] = {"componentVersion": version}
        _merge_b(comps, self.ab.inference_component, self.cfg.components, model_id, spec)
        rid = self.state.start_rollout("ab-start", model, version, stage.name, component=bcomp,
                                       previous_version=a_version, previous={stage.group: current.to_dict()})
        dep = self._deploy(rid, stage, comps, current, f"ab-{model}-{version}-{stage.name}")
        now = time.time()
        exp = {"id": f"ab-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}", "model": model,
               "model_id": model_id, "version": version, "a_version": a_version, "stage": stage.name,
               "group": stage.group, "mode": mode, "spec": spec, "b_component": bcomp, "started": now,
               "ends": now + duration_s, "status": RUNNING, "deployment_id": dep.deployment_id, "rollout": rid,
               "verdict": None, "reason": ""}
        with self.state.update() as doc:
            doc.setdefault("experiments", []).append(exp)
        self.engine._log(rid, "ab_started", f"experiment {exp['id']}: {model} {version} (B, {mode}"
                         + (f" {share:.0%} of cameras" if mode == "split" and share is not None else
                            f", sample rate {spec['sampleRate']:g}" if mode == "shadow" else "")
                         + f") beside {a_version} (A) on {stage.group} until {_when(exp['ends'])}")
        self.state.finish(rid, "succeeded")
        return Experiment(exp)

    def stop(self, model: str, reason: str = "stopped", status: str = STOPPED) -> Experiment:
        exp = self.running(model)
        if exp is None:
            raise AbError(f"{model}: no running A/B experiment to stop")
        stage = self.cfg.stage(exp.stage)
        current = self.backend.current(stage.group)
        comps = copy.deepcopy(current.components) if current else {}
        comps.pop(exp.b_component, None)
        _merge_b(comps, self.ab.inference_component, self.cfg.components, exp.model_id, None)
        rid = self.state.start_rollout("ab-stop", model, exp.version, stage.name, component=exp.b_component,
                                       experiment=exp.id)
        dep = self._deploy(rid, stage, comps, current, f"ab-stop-{model}-{stage.name}")
        left = [t for t in self.backend.devices(stage.group)
                if exp.b_component in self.backend.device_status(t, dep.deployment_id).components]
        self.engine._log(rid, "ab_stopped", f"experiment {exp.id}: B removed from {stage.group} ({reason})"
                         + (f"; still installed on {left}" if left else ""))
        self.state.finish(rid, "succeeded" if not left else "failed", reason)
        self._update(exp.id, status=status, stopped=time.time(), reason=reason)
        return Experiment({**exp.doc, "status": status, "reason": reason})

    def _deploy(self, rid: str, stage: Stage, comps: dict[str, Any], template: Deployment | None,
                name: str) -> Deployment:
        dep = self.backend.deploy(stage.group, comps, name=name, template=template)
        devices = self.backend.devices(stage.group)
        self.engine._log(rid, "deployed", f"group {stage.group}: deployment {dep.deployment_id} to "
                                          f"{len(devices)} device(s)", group=stage.group,
                         deployment_id=dep.deployment_id)
        failures = self.engine._await_deployment(rid, dep, devices)
        if failures:
            self.state.finish(rid, "failed", f"deployment failed: {failures}")
            raise AbError(f"deployment {dep.deployment_id} to {stage.group} failed on {sorted(failures)}: "
                          + "; ".join(f"{t}: {w}" for t, w in sorted(failures.items())))
        return dep

    # -- report / promote --------------------------------------------------------------------------------
    def summaries(self, exp: Experiment, wait_s: float = 0.0) -> list[dict[str, Any]]:
        """Health summaries of the experiment's devices since it started: those kept from earlier calls plus what
        the backend has now (after waiting `wait_s` for more)."""
        devices = self.backend.devices(exp.group)
        wait = getattr(self.backend, "wait", None)
        deadline = time.monotonic() + wait_s
        while wait is not None and (left := deadline - time.monotonic()) > 0:
            wait(left)  # returns at each message: keep collecting until the time is up
        cache = self._cache(exp)
        seen: dict[tuple[str, float], dict[str, Any]] = {}
        if cache.exists():
            for line in cache.read_text(encoding="utf-8").splitlines():
                doc = json.loads(line)
                seen[(str(doc.get("thing")), float(doc.get("timestamp", 0)))] = doc
        until = exp.doc.get("stopped") or exp.ends
        new = [d for d in self.backend.health(devices, exp.started)
               if (str(d.get("thing")), float(d.get("timestamp", 0))) not in seen
               and float(d.get("timestamp", 0)) <= until]
        if new:
            with cache.open("a", encoding="utf-8") as f:
                for d in new:
                    f.write(json.dumps(d, sort_keys=True) + "\n")
                    seen[(str(d.get("thing")), float(d.get("timestamp", 0)))] = d
        return sorted(seen.values(), key=lambda d: float(d.get("timestamp", 0)))

    def _cache(self, exp: Experiment) -> Path:
        d = self.state.path.parent / "ab"
        d.mkdir(parents=True, exist_ok=True)
        return d / f"{exp.id}.jsonl"

    def report(self, model: str, wait_s: float = 0.0) -> tuple[Experiment, Report]:
        exp = self.latest(model)
        rep = report(self.summaries(exp, wait_s if exp.status == RUNNING else 0.0), exp.model_id, exp.version,
                     exp.mode, self.ab.gates, self.ab.bootstrap)
        self._update(exp.id, verdict=rep.verdict, verdict_reasons=rep.reasons, reported=time.time())
        return exp, rep

    def promote(self, model: str, to: str | None = None, force: bool = False, wait_s: float = 0.0) -> bool:
        """B passed its gates (or --force): remove B, then promote VERSION stage by stage up to `to`."""
        exp = self.running(model) or self.latest(model)
        _, rep = self.report(model, wait_s)
        if rep.verdict != PASS and not force:
            raise AbError(f"{model} {exp.version}: the report's verdict is {rep.verdict} ("
                          + "; ".join(rep.reasons) + "); not promoting (--force to promote anyway)")
        if exp.status == RUNNING:
            self.stop(model, reason=f"promoted after a {rep.verdict} report", status=PROMOTED)
        else:
            self._update(exp.id, status=PROMOTED)
        target = self.cfg.stage(to or exp.stage)
        for stage in self.cfg.stages:
            st = self.state.stage(model, stage.name)
            passed = st.get("version") == exp.version and st.get("status") == "passed"
            if not passed and not self.engine.promote(model, exp.version, stage.name):
                return False
            if stage.name == target.name:
                break
        return True


def _merge_b(comps: dict[str, Any], inference: str, pinned: dict[str, str], model_id: str,
             spec: dict[str, Any] | None) -> None:
    """Set (or with None, remove) ``models.<model_id>.b`` in Inference's configurationUpdate merge, keeping the
    rest of the merge: the configuration a deployment carries is applied again by every later revision."""
    inf = comps.setdefault(inference, {"componentVersion": pinned.get(inference, "")})
    upd = dict(inf.get("configurationUpdate") or {})
    merge = upd.get("merge") or {}
    if isinstance(merge, str):
        merge = json.loads(merge)
    merge = copy.deepcopy(merge)
    merge.setdefault("models", {}).setdefault(model_id, {})["b"] = spec
    upd["merge"] = merge
    inf["configurationUpdate"] = upd


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))
