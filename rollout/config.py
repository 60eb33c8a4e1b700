"""rollout.yaml: stages (dev → staging → production) mapped to thing groups, canary, soak time, gates, backend.

Every problem is a ConfigError naming the file and key. Example: docs/rollout.md.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

GROUP_RE = re.compile(r"^[a-zA-Z0-9:_-]{1,128}$")  # IoT thing group names
STAGE_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
BACKENDS = ("local", "aws")
AB_KEYS = {"inference_component", "model_id", "sample_rate", "skip_when_queued", "bootstrap", "gates"}


class ConfigError(ValueError):
    """A bad rollout configuration; the message names the file and key."""


@dataclass(frozen=True)
class Canary:
    group: str
    soak_s: float


@dataclass(frozen=True)
class Stage:
    name: str
    group: str
    canary: Canary | None
    soak_s: float  # after the whole group has the version


@dataclass(frozen=True)
class Gates:
    """Health gates over health-summary/1.0, candidate vs the previous version on the same devices."""

    min_samples: int = 3  # summaries per device carrying the candidate version before it can be judged
    error_ratio_max: float | None = 0.01
    error_ratio_max_increase: float | None = 0.005
    p95_ms_max: float | None = None
    p95_ratio_max: float | None = 1.5
    p95_noise_ms: float = 1.0  # the ratio gate ignores growth below this (sub-ms models jitter by large ratios)
    fps_ratio_min: float | None = 0.8
    fps_min: float | None = None
    score_drift_max: float | None = 0.15
    shadow_agreement_min: float | None = None
    deployment_failures_max: int = 0


@dataclass(frozen=True)
class RolloutConfig:
    path: Path
    backend: str
    stages: tuple[Stage, ...]
    gates: Gates
    registry: str | None
    state_file: Path
    baseline_s: float
    poll_s: float
    deployment_timeout_s: float
    components: dict[str, str]  # other root components every deployment document carries (pinned)
    configuration: dict[str, Any]  # configurationUpdate per component, with {model}/{version}/{component}
    local: dict[str, Any] = field(default_factory=dict)
    aws: dict[str, Any] = field(default_factory=dict)
    ab: dict[str, Any] = field(default_factory=dict)  # `rollout ab`: checked by rollout/abconfig.parse_ab

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"{self.path}: no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")

    def previous_stage(self, name: str) -> Stage | None:
        i = [s.name for s in self.stages].index(self.stage(name).name)
        return self.stages[i - 1] if i else None


def _num(d: dict, key: str, where: str, default: float | None, lo: float = 0.0, hi: float = math.inf) -> float | None:
    v = d.get(key, default)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise ConfigError(f"{where}.{key}: expected a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _obj(d: Any, where: str, known: set[str]) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(d).__name__}")
    unknown = set(d) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    return d


def parse_gates(raw: Any, where: str) -> Gates:
    g = _obj(raw, where, {"min_samples", "inference_error_ratio", "inference_p95_ms", "detection_fps",
                          "score_drift", "shadow_agreement", "deployment_failures"})
    d = Gates()
    er = _obj(g.get("inference_error_ratio"), f"{where}.inference_error_ratio", {"max", "max_increase"})
    p95 = _obj(g.get("inference_p95_ms"), f"{where}.inference_p95_ms", {"max", "max_ratio", "noise_ms"})
    fps = _obj(g.get("detection_fps"), f"{where}.detection_fps", {"min", "min_ratio"})
    drift = _obj(g.get("score_drift"), f"{where}.score_drift", {"max_abs"})
    shadow = _obj(g.get("shadow_agreement"), f"{where}.shadow_agreement", {"min"})
    dep = _obj(g.get("deployment_failures"), f"{where}.deployment_failures", {"max"})
    min_samples = g.get("min_samples", d.min_samples)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or not 1 <= min_samples <= 10000:
        raise ConfigError(f"{where}.min_samples: expected an int in [1, 10000], got {min_samples!r}")
    failures = dep.get("max", d.deployment_failures_max)
    if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
        raise ConfigError(f"{where}.deployment_failures.max: expected an int >= 0, got {failures!r}")
    return Gates(
        min_samples=min_samples,
        error_ratio_max=_num(er, "max", f"{where}.inference_error_ratio", d.error_ratio_max, 0, 1),
        error_ratio_max_increase=_num(er, "max_increase", f"{where}.inference_error_ratio",
                                      d.error_ratio_max_increase, 0, 1),
        p95_ms_max=_num(p95, "max", f"{where}.inference_p95_ms", d.p95_ms_max),
        p95_ratio_max=_num(p95, "max_ratio", f"{where}.inference_p95_ms", d.p95_ratio_max, 1.0),
        p95_noise_ms=_num(p95, "noise_ms", f"{where}.inference_p95_ms", d.p95_noise_ms) or 0.0,
        fps_ratio_min=_num(fps, "min_ratio", f"{where}.detection_fps", d.fps_ratio_min, 0, 1),
        fps_min=_num(fps, "min", f"{where}.detection_fps", d.fps_min),
        score_drift_max=_num(drift, "max_abs", f"{where}.score_drift", d.score_drift_max, 0, 1),
        shadow_agreement_min=_num(shadow, "min", f"{where}.shadow_agreement", d.shadow_agreement_min, 0, 1),
        deployment_failures_max=failures,
    )


def parse_config(doc: Any, path: Path) -> RolloutConfig:
    where = str(path)
    top = _obj(doc, where, {"backend", "stages", "gates", "registry", "state", "soak_s", "baseline_s", "poll_s",
                            "deployment_timeout_s", "components", "configuration", "local", "aws", "ab"})
    backend = top.get("backend", "local")
    if backend not in BACKENDS:
        raise ConfigError(f"{where}: backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    default_soak = _num(top, "soak_s", where, 300.0)
    raw_stages = top.get("stages")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError(f"{where}: stages: expected a non-empty list (dev, staging, production)")
    stages: list[Stage] = []
    groups: set[str] = set()
    for i, s in enumerate(raw_stages):
        sw = f"{where}: stages[{i}]"
        s = _obj(s, sw, {"name", "group", "canary", "soak_s"})
        name, group = s.get("name"), s.get("group")
        if not isinstance(name, str) or not STAGE_RE.match(name):
            raise ConfigError(f"{sw}.name: expected a lower-case stage name, got {name!r}")
        if not isinstance(group, str) or not GROUP_RE.match(group):
            raise ConfigError(f"{sw}.group: expected a thing group name, got {group!r}")
        canary = None
        if s.get("canary") is not None:
            c = _obj(s["canary"], f"{sw}.canary", {"group", "soak_s"})
            cg = c.get("group")
            if not isinstance(cg, str) or not GROUP_RE.match(cg) or cg == group:
                raise ConfigError(f"{sw}.canary.group: expected a thing group other than {group!r}, got {cg!r}")
            canary = Canary(cg, _num(c, "soak_s", f"{sw}.canary", default_soak) or 0.0)
        for g in (group, canary.group if canary else None):
            if g is not None and g in groups:
                raise ConfigError(f"{sw}: thing group {g!r} is used twice")
            if g is not None:
                groups.add(g)
        if name in {x.name for x in stages}:
            raise ConfigError(f"{sw}.name: stage {name!r} is defined twice")
        stages.append(Stage(name, group, canary, _num(s, "soak_s", sw, default_soak) or 0.0))
    components = top.get("components", {}) or {}
    if not isinstance(components, dict) or not all(isinstance(v, str) for v in components.values()):
        raise ConfigError(f"{where}: components: expected a mapping of component name -> exact version")
    configuration = top.get("configuration", {}) or {}
    if not isinstance(configuration, dict):
        raise ConfigError(f"{where}: configuration: expected a mapping of component name -> configurationUpdate")
    state = top.get("state", ".ggvision/rollout/state.json")
    base = path.parent
    return RolloutConfig(
        path=path, backend=backend, stages=tuple(stages), gates=parse_gates(top.get("gates"), f"{where}: gates"),
        registry=top.get("registry"), state_file=(base / state) if not Path(state).is_absolute() else Path(state),
        baseline_s=_num(top, "baseline_s", where, 60.0) or 0.0, poll_s=_num(top, "poll_s", where, 5.0, 0.05) or 5.0,
        deployment_timeout_s=_num(top, "deployment_timeout_s", where, 900.0, 1.0) or 900.0,
        components=dict(components), configuration=dict(configuration),
        local=_obj(top.get("local"), f"{where}: local", {"fleet"}),
        aws=_obj(top.get("aws"), f"{where}: aws", {"region", "account", "iot_job", "policies", "metrics"}),
        ab=_obj(top.get("ab"), f"{where}: ab", AB_KEYS),
    )


def load_config(path: str | Path) -> RolloutConfig:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    return parse_config(doc, path)
