"""com.ggvision.Inference configuration: parsing and validation.

Every error is a ValueError whose message starts with the key path (``models.detector.cameras: ...``), so a
refused deployment says exactly what is wrong. See docs/inference.md for the keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topicmatch import valid_topic_filter

from ..component.settings import number, validator

PROVIDERS = ("auto", "tensorrt", "cuda", "cpu")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
DEFAULT_FRAME_TOPICS = ("ggvision/v1/frames/+",)
_TOP_KEYS = {"models", "shadow", "batch", "provider", "threads", "trtCacheDir", "frameTopics", "metricsPeriodS",
             "accessControl"}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's artifacts come from: a model component (installed version unless pinned) or a folder."""

    component: str | None = None
    path: str | None = None
    version: str | None = None

    def describe(self) -> str:
        if self.path is not None:
            return self.path
        return f"{self.component}" + (f"@{self.version}" if self.version else "")


@dataclass(frozen=True)
class ModelSpec:
    id: str
    source: ModelSource
    cameras: tuple[str, ...] | None = None  # vision model: camera ids, or ("*",)
    sensors: tuple[str, ...] | None = None  # tabular model: sensor ids, or ("*",)
    period_s: float = 1.0  # tabular: at most one run per sensor per period

    @property
    def kind(self) -> str:
        return "tabular" if self.sensors is not None else "vision"


@dataclass(frozen=True)
class ShadowSpec:
    model: str  # the id of the vision model it shadows
    source: ModelSource
    sample_rate: float


@dataclass(frozen=True)
class InferenceConfig:
    models: dict[str, ModelSpec]
    shadow: ShadowSpec | None
    max_batch: int
    deadline_ms: float
    provider: str
    threads: int | None
    trt_cache_dir: str
    frame_topics: tuple[str, ...]
    metrics_period_s: float

    @property
    def runtime_options(self) -> tuple[str, int | None, str]:
        """What every session depends on: a change reloads every model."""
        return self.provider, self.threads, self.trt_cache_dir


def _number(d: dict[str, Any], key: str, default: float, lo: float, hi: float, where: str) -> float:
    """settings.number with the full key path in the error (batch.maxSize, not maxSize)."""
    try:
        return number(d, key, default, lo, hi)
    except ValueError as e:
        raise ValueError(f"{where}.{e}") from None


def _source(d: dict[str, Any], where: str) -> ModelSource:
    has_c, has_p = d.get("component") is not None, d.get("path") is not None
    if has_c == has_p:
        raise ValueError(f"{where}: give exactly one of 'component' (a model component name) or 'path' (a folder)")
    version = d.get("version")
    if version is not None:
        if not has_c:
            raise ValueError(f"{where}.version: only with 'component'")
        if not isinstance(version, str) or not VERSION_RE.match(version):
            raise ValueError(f"{where}.version: expected a semantic version like 1.2.0, got {version!r}")
    if has_c:
        c = d["component"]
        if not isinstance(c, str) or not COMPONENT_RE.match(c):
            raise ValueError(f"{where}.component: expected a component name, got {c!r}")
        return ModelSource(component=c, version=version)
    p = d["path"]
    if not isinstance(p, str) or not p:
        raise ValueError(f"{where}.path: expected a folder path, got {p!r}")
    return ModelSource(path=str(Path(p)))


def _ids(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError(f"{where}: expected a non-empty list of ids, or [\"*\"] for all")
    if "*" in v and len(v) > 1:
        raise ValueError(f"{where}: \"*\" stands alone")
    if len(set(v)) != len(v):
        raise ValueError(f"{where}: an id is listed twice")
    return tuple(v)


def _model(model_id: str, d: Any) -> ModelSpec:
    where = f"models.{model_id}"
    if not ID_RE.match(model_id):
        raise ValueError(f"{where}: a model id is letters, digits, '_', '.', '-' (at most 64)")
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected an object")
    unknown = sorted(set(d) - {"component", "path", "version", "cameras", "sensors", "periodS"})
    if unknown:
        raise ValueError(f"{where}: unknown keys {', '.join(unknown)}")
    source = _source(d, where)
    if ("cameras" in d) == ("sensors" in d):
        raise ValueError(f"{where}: give exactly one of 'cameras' (a vision model) or 'sensors' (a tabular model)")
    if "cameras" in d:
        if "periodS" in d:
            raise ValueError(f"{where}.periodS: only for tabular models (with 'sensors')")
        return ModelSpec(model_id, source, cameras=_ids(d["cameras"], f"{where}.cameras"))
    period = _number(d, "periodS", 1.0, 0.05, 3600, where)
    return ModelSpec(model_id, source, sensors=_ids(d["sensors"], f"{where}.sensors"), period_s=period)


def _check_routes(models: dict[str, ModelSpec]) -> None:
    """Each camera (and sensor) is served by one model: one "*" per kind, an id listed once."""
    for kind, attr in (("cameras", "cameras"), ("sensors", "sensors")):
        seen: dict[str, str] = {}
        for spec in models.values():
            for cam in getattr(spec, attr) or ():
                if cam in seen:
                    what = "all " + kind if cam == "*" else f"{kind[:-1]} {cam!r}"
                    raise ValueError(f"models.{spec.id}.{attr}: {what} already served by models.{seen[cam]}")
                seen[cam] = spec.id


def _shadow(d: Any, models: dict[str, ModelSpec]) -> ShadowSpec | None:
    if d is None:
        return None
    if not isinstance(d, dict):
        raise ValueError("shadow: expected an object {model, component|path, sampleRate} or null")
    unknown = sorted(set(d) - {"model", "component", "path", "version", "sampleRate"})
    if unknown:
        raise ValueError(f"shadow: unknown keys {', '.join(unknown)}")
    target = d.get("model")
    if not isinstance(target, str) or target not in models:
        raise ValueError(f"shadow.model: must name a configured model id ({', '.join(sorted(models)) or 'none'}), "
                         f"got {target!r}")
    if models[target].kind != "vision":
        raise ValueError(f"shadow.model: {target!r} is a tabular model; shadows compare vision models")
    return ShadowSpec(target, _source(d, "shadow"), _number(d, "sampleRate", 0.1, 0.0, 1.0, "shadow"))


def parse_config(cfg: dict[str, Any]) -> InferenceConfig:
    """The whole configuration; ValueError naming the key on bad input."""
    if not isinstance(cfg, dict):
        raise ValueError("configuration: expected an object")
    unknown = sorted(set(cfg) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown configuration keys: {', '.join(unknown)}")
    raw_models = cfg.get("models", {})
    if not isinstance(raw_models, dict):
        raise ValueError("models: expected an object of model id -> {component|path, cameras|sensors}")
    # null removes a model: a deployment merge cannot delete a key.
    models = {mid: _model(mid, d) for mid, d in raw_models.items() if d is not None}
    _check_routes(models)
    shadow = _shadow(cfg.get("shadow"), models)

    batch = cfg.get("batch", {})
    if not isinstance(batch, dict):
        raise ValueError("batch: expected an object {maxSize, deadlineMs}")
    unknown = sorted(set(batch) - {"maxSize", "deadlineMs"})
    if unknown:
        raise ValueError(f"batch: unknown keys {', '.join(unknown)}")
    max_size = _number(batch, "maxSize", 8, 1, 64, "batch")
    if max_size != int(max_size):
        raise ValueError(f"batch.maxSize: expected a whole number, got {batch['maxSize']!r}")
    deadline_ms = _number(batch, "deadlineMs", 15, 0, 10_000, "batch")

    provider = cfg.get("provider", "auto")
    if provider not in PROVIDERS:
        raise ValueError(f"provider: one of {', '.join(PROVIDERS)}, got {provider!r}")
    threads: int | None = None
    if cfg.get("threads") not in (None, 0, "0"):
        t = number(cfg, "threads", 0, 1, 256)
        if t != int(t):
            raise ValueError(f"threads: expected a whole number, got {cfg['threads']!r}")
        threads = int(t)
    trt = cfg.get("trtCacheDir", "trt-cache")
    if not isinstance(trt, str) or not trt:
        raise ValueError(f"trtCacheDir: expected a folder path (relative: under the work folder), got {trt!r}")

    topics = cfg.get("frameTopics", list(DEFAULT_FRAME_TOPICS))
    if not isinstance(topics, list) or not topics or not all(isinstance(t, str) for t in topics):
        raise ValueError("frameTopics: expected a non-empty list of topic filters")
    for t in topics:
        why = valid_topic_filter(t)
        if why:
            raise ValueError(f"frameTopics: {why}")
    period = number(cfg, "metricsPeriodS", 5, 0.2, 3600)
    return InferenceConfig(models, shadow, int(max_size), deadline_ms, provider, threads, trt, tuple(topics), period)


validate = validator(parse_config)  # for ComponentApp: the reason a configuration is refused, or None
