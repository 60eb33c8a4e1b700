"""com.ggvision.Inference's configuration as a model: which models serve which cameras and sensors, the
optional shadow model, batching and the ONNX Runtime options (docs/inference.md describes the keys).

`parse(InferenceConfig, cfg)` gives the whole configuration or a ConfigError naming the key path
(`models.detector.cameras: ...`); the component passes `validator(InferenceConfig)` to ComponentApp, so a
deployment with a bad value is refused with that text:
- each model comes from exactly one of a model component (its installed version unless `version` pins one)
  or a folder, and serves either cameras (a vision model) or sensors (a tabular model);
- each camera and sensor is served by one model, and the shadow compares against a configured vision model;
- `models.<id>: null` removes a model, unknown keys are refused (`accessControl` travels along, ignored).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PrivateAttr,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from topicmatch import valid_topic_filter

from ..contract import topics
from .base import ComponentConfig, ConfigModel, entries, number, whole

Provider = Literal["auto", "tensorrt", "cuda", "cpu"]
PROVIDERS: tuple[str, ...] = get_args(Provider)
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
COMPONENT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.+-]+)?$")
DEFAULT_FRAME_TOPICS = (topics.every(topics.FRAMES),)


def _object(what: str) -> Any:
    def check(v: Any) -> Any:
        if not isinstance(v, dict):
            raise ValueError(f"expected {what}")
        return v

    return check


# -- where a model comes from ------------------------------------------------------------------------------

def _component(v: Any) -> Any:
    if v is not None and (not isinstance(v, str) or not COMPONENT_RE.match(v)):
        raise ValueError(f"expected a component name, got {v!r}")
    return v


def _folder(v: Any) -> Any:
    if v is None:
        return v
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a folder path, got {v!r}")
    return str(Path(v))


class ModelSource(ConfigModel):
    """Where a model's artifacts come from: a model component (installed version unless pinned) or a folder.
    In the configuration its keys sit beside the model's other keys (`models.<id>.component`)."""

    component: Annotated[str | None, BeforeValidator(_component)] = None
    path: Annotated[str | None, BeforeValidator(_folder)] = None
    version: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, v: Any, info: ValidationInfo) -> Any:
        if v is None:
            return v
        if info.data.get("component") is None:
            raise ValueError("only with 'component'")
        if not isinstance(v, str) or not VERSION_RE.match(v):
            raise ValueError(f"expected a semantic version like 1.2.0, got {v!r}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> ModelSource:
        if (self.component is None) == (self.path is None):
            raise ValueError("give exactly one of 'component' (a model component name) or 'path' (a folder)")
        return self

    @property
    def source(self) -> ModelSource:
        """Where the artifacts come from, as a ModelSource of its own (comparable across configurations)."""
        return ModelSource.model_construct(component=self.component, path=self.path, version=self.version)

    def describe(self) -> str:
        if self.path is not None:
            return self.path
        return f"{self.component}" + (f"@{self.version}" if self.version else "")


# -- models ------------------------------------------------------------------------------------------------

def _ids(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not v or not all(isinstance(x, str) and x for x in v):
        raise ValueError("expected a non-empty list of ids, or [\"*\"] for all")
    if "*" in v and len(v) > 1:
        raise ValueError("\"*\" stands alone")
    if len(set(v)) != len(v):
        raise ValueError("an id is listed twice")
    return tuple(v)


Ids = Annotated[tuple[str, ...], BeforeValidator(_ids)]
"""Camera or sensor ids, or ("*",) for all."""


def _model_id(v: str) -> str:
    if not ID_RE.match(v):
        raise ValueError("a model id is letters, digits, '_', '.', '-' (at most 64)")
    return v


ModelId = Annotated[str, AfterValidator(_model_id)]


class ModelSpec(ModelSource):
    """A model the component serves: its source, and the cameras (vision) or sensors (tabular) it serves."""

    cameras: Ids | None = None  # vision model: camera ids, or ("*",)
    sensors: Ids | None = None  # tabular model: sensor ids, or ("*",)
    period_s: number(0.05, 3600) = 1.0  # tabular: at most one run per sensor per period
    _id: str = PrivateAttr("")  # the key under `models`

    _an_object = model_validator(mode="before")(_object("an object"))

    @field_validator("period_s")
    @classmethod
    def _tabular_only(cls, v: float, info: ValidationInfo) -> float:
        if info.data.get("cameras") is not None:
            raise ValueError("only for tabular models (with 'sensors')")
        return v

    @model_validator(mode="after")
    def _one_kind(self) -> ModelSpec:
        if (self.cameras is None) == (self.sensors is None):
            raise ValueError("give exactly one of 'cameras' (a vision model) or 'sensors' (a tabular model)")
        return self

    @property
    def id(self) -> str:
        return self._id

    @property
    def kind(self) -> str:
        return "tabular" if self.sensors is not None else "vision"


def _named(models: dict[str, ModelSpec]) -> dict[str, ModelSpec]:
    for model_id, spec in models.items():
        spec._id = model_id
    return models


class ShadowSpec(ModelSource):
    """A second model that sees a sample of one vision model's frames; its detections are only compared."""

    model: str | None = None  # the id of the vision model it shadows
    sample_rate: number(0.0, 1.0) = 0.1

    _an_object = model_validator(mode="before")(_object("an object {model, component|path, sampleRate} or null"))

    @field_validator("model", mode="before")
    @classmethod
    def _model_id(cls, v: Any) -> Any:
        if v is not None and not isinstance(v, str):
            raise ValueError(f"must name a configured model id, got {v!r}")
        return v


# -- the whole configuration -------------------------------------------------------------------------------

class BatchConfig(ConfigModel):
    """Cross-camera batches: at most `maxSize` frames, waiting at most `deadlineMs` for more."""

    max_size: whole(1, 64) = 8
    deadline_ms: number(0, 10_000) = 15.0

    _an_object = model_validator(mode="before")(_object("an object {maxSize, deadlineMs}"))


def _provider(v: Any) -> Any:
    if v not in PROVIDERS:
        raise ValueError(f"one of {', '.join(PROVIDERS)}, got {v!r}")
    return v


def _zero_is_none(v: Any) -> Any:
    return None if v in (None, 0, "0") else v  # 0: ONNX Runtime's default


def _folder_path(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"expected a folder path (relative: under the work folder), got {v!r}")
    return v


def _topic_filters(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list | tuple) or not v or not all(isinstance(t, str) for t in v):
        raise ValueError("expected a non-empty list of topic filters")
    for t in v:
        why = valid_topic_filter(t)
        if why:
            raise ValueError(why)
    return tuple(v)


class InferenceConfig(ComponentConfig):
    """The whole configuration of com.ggvision.Inference."""

    models: Annotated[entries(ModelSpec, "model", key=ModelId), AfterValidator(_named)] = {}
    shadow: ShadowSpec | None = None
    batch: BatchConfig = BatchConfig()
    provider: Annotated[Provider, BeforeValidator(_provider)] = "auto"
    threads: Annotated[whole(1, 256) | None, BeforeValidator(_zero_is_none),  # 0 or null: ONNX Runtime's choice
                       WithJsonSchema({"type": ["integer", "string", "null"], "minimum": 0, "maximum": 256})] = None
    trt_cache_dir: Annotated[str, BeforeValidator(_folder_path)] = "trt-cache"
    # a model whose warm-up run takes longer is refused as hung; it includes a TensorRT engine build (minutes)
    warmup_timeout_s: number(0.1, 86_400) = 900.0
    frame_topics: Annotated[tuple[str, ...], BeforeValidator(_topic_filters)] = DEFAULT_FRAME_TOPICS
    metrics_period_s: number(0.2, 3600) = 5.0

    @model_validator(mode="after")
    def _routes(self) -> InferenceConfig:
        """Each camera (and sensor) is served by one model: one "*" per kind, an id listed once."""
        for kind in ("cameras", "sensors"):
            seen: dict[str, str] = {}
            for spec in self.models.values():
                for cam in getattr(spec, kind) or ():
                    if cam in seen:
                        what = "all " + kind if cam == "*" else f"{kind[:-1]} {cam!r}"
                        raise ValueError(f"models.{spec.id}.{kind}: {what} already served by models.{seen[cam]}")
                    seen[cam] = spec.id
        return self

    @model_validator(mode="after")
    def _shadowed_model(self) -> InferenceConfig:
        if self.shadow is None:
            return self
        target = self.shadow.model
        if target not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise ValueError(f"shadow.model: must name a configured model id ({known}), got {target!r}")
        if self.models[target].kind != "vision":
            raise ValueError(f"shadow.model: {target!r} is a tabular model; shadows compare vision models")
        return self

    @property
    def max_batch(self) -> int:
        return self.batch.max_size

    @property
    def deadline_ms(self) -> float:
        return self.batch.deadline_ms

    @property
    def runtime_options(self) -> tuple[str, int | None, str]:
        """What every session depends on: a change reloads every model."""
        return self.provider, self.threads, self.trt_cache_dir
