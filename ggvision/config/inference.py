"""com.ggvision.Inference's configuration as a model: which models serve which cameras and sensors, a vision
model's optional candidate (B) version beside its serving (A) one, batching and the ONNX Runtime options
(docs/inference.md describes the keys).

`parse(InferenceConfig, cfg)` gives the whole configuration or a ConfigError naming the key path
(`models.detector.cameras: ...`); the component passes `validator(InferenceConfig)` to ComponentApp, so a
deployment with a bad value is refused with that text:
- each model comes from exactly one of a model component (its installed version unless `version` pins one)
  or a folder, and serves either cameras (a vision model) or sensors (a tabular model);
- each camera and sensor is served by one model; `models.<id>.b` (vision models only) is the candidate version,
  `mode: shadow` (on a sample of A's frames, compared, never published) or `split` (the cameras whose stable hash
  `split_point(camera)` is below `share` are served by B); the legacy top-level `shadow` key becomes the model's
  `b` with mode shadow (giving both is refused);
- `models.<id>: null` removes a model, unknown keys are refused (`accessControl` travels along, ignored).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BeforeValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from topicmatch import valid_topic_filter

from ..contract import topics
from .base import ComponentConfig, ConfigModel, CpuList, entries, explain, number, whole

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


def _share(v: Any) -> Any:
    """A share as 0..1 or a percentage string ("20%")."""
    if isinstance(v, str) and v.strip().endswith("%"):
        try:
            return float(v.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected a share like 0.2 or \"20%\", got {v!r}") from None
    return v


Mode = Literal["shadow", "split"]


def _mode(v: Any) -> Any:
    if v not in get_args(Mode):
        raise ValueError(f"one of shadow, split, got {v!r}")
    return v


class ArmSpec(ModelSource):
    """The candidate (B) version of a vision model: its source and how it meets traffic (docs/inference.md)."""

    mode: Annotated[Mode, BeforeValidator(_mode)] = "shadow"
    share: Annotated[float, BeforeValidator(_share), AfterValidator(_in_unit),  # split: cameras B serves
                     WithJsonSchema({"type": ["number", "string"], "minimum": 0, "maximum": 1,
                                     "description": "0..1, or a percentage like \"20%\""})] = 0.0
    sample_rate: number(0.0, 1.0) = 0.1  # shadow: share of A's frames B also sees
    skip_when_queued: whole(1, 1024) = 1  # shadow: B skips A's batch while A has this many cameras waiting

    _an_object = model_validator(mode="before")(_object("an object {mode, component|path, share|sampleRate} or null"))

    @model_validator(mode="after")
    def _fits_mode(self) -> ArmSpec:
        given = self.model_fields_set
        if self.mode == "shadow" and "share" in given:
            raise ValueError("share: only with mode split (a shadow sees a sample of A's frames: sampleRate)")
        if self.mode == "split" and "sample_rate" in given:
            raise ValueError("sampleRate: only with mode shadow (split serves whole cameras: share)")
        return self


def _in_unit(v: float) -> float:
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"expected a share from 0 to 1 (or 0% to 100%), got {v!r}")
    return v


def split_point(camera: str) -> float:
    """A camera's fixed place in [0, 1): with mode split it is served by B when this is below `share`. It depends
    only on the camera id (sha256), so a camera keeps its arm across restarts, and changing the share moves only the
    cameras between the old and new share. The rollout computes the same to say which cameras an experiment uses."""
    return int.from_bytes(hashlib.sha256(b"ggvision-ab:" + camera.encode()).digest()[:8], "big") / 2.0**64


def _legacy_shadow(raw: Any) -> Any:
    """The pre-arms `shadow: {model, component|path, version, sampleRate}` -> `models.<model>.b` (mode shadow)."""
    if not isinstance(raw, dict) or raw.get("shadow") is None:
        return raw
    sh = raw["shadow"]
    if not isinstance(sh, dict):
        raise ValueError("shadow: expected an object {model, component|path, sampleRate} or null "
                         "(or use models.<id>.b with mode shadow)")
    target = sh.get("model")
    models = raw.get("models") if isinstance(raw.get("models"), dict) else {}
    if not isinstance(target, str) or not isinstance(models.get(target), dict):
        known = ", ".join(sorted(k for k, v in models.items() if v is not None)) or "none"
        raise ValueError(f"shadow.model: must name a configured model id ({known}), got {target!r}")
    if models[target].get("sensors") is not None:
        raise ValueError(f"shadow.model: {target!r} is a tabular model; shadows compare vision models")
    if models[target].get("b") is not None:
        raise ValueError(f"shadow: models.{target}.b is given too; the top-level shadow is its old spelling, "
                         "keep one")
    b = {"mode": "shadow", **{k: v for k, v in sh.items() if k != "model"}}
    try:  # errors named where the user wrote them (shadow.sampleRate), not where the key moves to
        ArmSpec.model_validate(b)
    except ValidationError as e:
        raise ValueError("; ".join(f"shadow.{part}" if re.match(r"^[A-Za-z]+(\.\S+)?: ", part) else f"shadow: {part}"
                                   for part in explain(e).split("; "))) from None
    return {**raw, "shadow": None, "models": {**models, target: {**models[target], "b": b}}}


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
    b: ArmSpec | None = None  # vision: the candidate version beside this (A) one
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
        if self.b is not None and self.sensors is not None:
            raise ValueError("b: only for vision models (with 'cameras'); arms compare detections")
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


# -- the whole configuration -------------------------------------------------------------------------------

class BatchConfig(ConfigModel):
    """Cross-camera batches: at most `maxSize` frames, waiting at most `deadlineMs` for more. A camera's pending
    frame that has waited less than `burstMs` when its next frame comes is kept and analysed too (the two came in
    a burst); one that waited longer is replaced by the newer (the model is behind: latest-frame). 0: always
    latest-frame."""

    max_size: whole(1, 64) = 8
    deadline_ms: number(0, 10_000) = 15.0
    burst_ms: number(0, 10_000) = 100.0

    _an_object = model_validator(mode="before")(_object("an object {maxSize, deadlineMs, burstMs}"))


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
    # the old spelling of models.<id>.b (mode shadow): moved there before validation
    shadow: Annotated[None, WithJsonSchema({"type": ["object", "null"], "deprecated": True,
                                            "description": "{model, component|path, version, sampleRate}: "
                                                           "the same as models.<model>.b with mode shadow"})] = None

    _legacy = model_validator(mode="before")(_legacy_shadow)
    batch: BatchConfig = BatchConfig()
    provider: Annotated[Provider, BeforeValidator(_provider)] = "auto"
    threads: Annotated[whole(1, 256) | None, BeforeValidator(_zero_is_none),  # 0 or null: ONNX Runtime's choice
                       WithJsonSchema({"type": ["integer", "string", "null"], "minimum": 0, "maximum": 256})] = None
    trt_cache_dir: Annotated[str, BeforeValidator(_folder_path)] = "trt-cache"
    # a model whose warm-up run takes longer is refused as hung; it includes a TensorRT engine build (minutes)
    warmup_timeout_s: number(0.1, 86_400) = 900.0
    frame_topics: Annotated[tuple[str, ...], BeforeValidator(_topic_filters)] = DEFAULT_FRAME_TOPICS
    metrics_period_s: number(0.2, 3600) = 5.0
    # the CPUs of the model threads (the workers), apart from `cpus` (every other thread): a model on the CPU can
    # have a core of its own when no component's `cpus` includes it (docs/inference.md, "CPUs")
    model_cpus: CpuList = None

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

    @property
    def arms(self) -> dict[str, ArmSpec]:
        """Model id -> its candidate (B) version, for the models that have one."""
        return {mid: spec.b for mid, spec in self.models.items() if spec.b is not None}

    @property
    def max_batch(self) -> int:
        return self.batch.max_size

    @property
    def deadline_ms(self) -> float:
        return self.batch.deadline_ms

    @property
    def burst_ms(self) -> float:
        return self.batch.burst_ms

    @property
    def runtime_options(self) -> tuple[str, int | None, str]:
        """What every session depends on: a change reloads every model."""
        return self.provider, self.threads, self.trt_cache_dir
