"""model-manifest/1.0: what a model is and how to feed and read it, next to its model.onnx.

A model directory holds `model.onnx` and `manifest.json`. The family, input spec, labels, thresholds and decoder
options all come from the manifest, so a new model is a new directory, never a code edit. Every problem is a
ModelError that names the key and the place (`where`: the manifest path or the caller's description).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA = "model-manifest/1.0"
SCHEMA_MAJOR = "model-manifest/1."
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.onnx"

# family -> the task it serves (detections/1.0 "task")
FAMILY_TASKS = {
    "yolox": "detection",
    "yolov8": "detection",
    "ssd": "detection",
    "classification": "classification",
    "tabular": "tabular",
}
VISION_FAMILIES = frozenset({"yolox", "yolov8", "ssd", "classification"})
DTYPES = ("float32", "float16", "uint8", "int8", "float64")
LAYOUTS = ("NCHW", "NHWC")
COLORS = ("BGR", "RGB", "GRAY")
RESIZES = ("letterbox", "stretch")
ALIGNS = ("top-left", "center")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ModelError(Exception):
    """A model or manifest that cannot be used; the message names what is wrong and where."""


@dataclass(frozen=True)
class InputSpec:
    """The model's single input. shape uses -1 for a dynamic dimension (normally the batch).

    Vision: pixels are converted as (pixel * scale - mean) / std per channel after colour conversion and resize.
    `align` says where a letterboxed image sits: YOLOX's own preproc pads bottom/right ("top-left"),
    Ultralytics centres it ("center").
    """

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    layout: str = "NCHW"
    color: str = "BGR"
    scale: float = 1.0
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    resize: str = "letterbox"
    pad_value: float = 114.0
    features: tuple[str, ...] | None = None
    align: str = "top-left"

    @property
    def batch(self) -> int:
        """The fixed batch size, or -1 when dynamic."""
        return self.shape[0]

    @property
    def hw(self) -> tuple[int, int]:
        """(height, width) of a vision input."""
        if self.layout == "NHWC":
            return self.shape[1], self.shape[2]
        return self.shape[2], self.shape[3]

    @property
    def channels(self) -> int:
        return self.shape[3] if self.layout == "NHWC" else self.shape[1]


@dataclass(frozen=True)
class Thresholds:
    """Score threshold (per class where given), NMS IoU and the cap on detections per frame."""

    score: float = 0.3
    nms_iou: float = 0.45
    per_class: dict[str, float] = field(default_factory=dict)
    max_detections: int = 100

    def for_class(self, label: str) -> float:
        return self.per_class.get(label, self.score)


@dataclass(frozen=True)
class ModelManifest:
    name: str
    version: str
    family: str
    task: str
    file: str
    sha256: str
    input: InputSpec
    labels: tuple[str, ...]
    thresholds: Thresholds
    decoder: dict[str, Any]
    metrics: dict[str, Any]
    parent: str | None
    created_by: str
    created_at: str
    description: str
    raw: dict[str, Any]

    @classmethod
    def from_dict(cls, d: Any, where: str) -> ModelManifest:
        """Validate a parsed manifest; ModelError naming the key and `where` on any problem."""
        if not isinstance(d, dict):
            raise ModelError(f"{where}: manifest must be a JSON object, got {type(d).__name__}")
        schema = d.get("schema")
        if not isinstance(schema, str) or not schema.startswith(SCHEMA_MAJOR):
            raise ModelError(f"{where}: 'schema' must be {SCHEMA!r} (any 1.x minor), got {schema!r}")
        name = _str(d, "name", where)
        version = _str(d, "version", where)
        family = _str(d, "family", where)
        if family not in FAMILY_TASKS:
            raise ModelError(f"{where}: unknown 'family' {family!r}; known: {', '.join(FAMILY_TASKS)}")
        task = d.get("task", FAMILY_TASKS[family])
        if task != FAMILY_TASKS[family]:
            raise ModelError(f"{where}: 'task' {task!r} does not fit family {family!r} "
                             f"(expected {FAMILY_TASKS[family]!r})")
        file = d.get("file", MODEL_FILE)
        if not isinstance(file, str) or not file or "/" in file or "\\" in file or file in (".", ".."):
            raise ModelError(f"{where}: 'file' must be a plain file name in the model directory, got {file!r}")
        sha = d.get("sha256")
        if not isinstance(sha, str) or not _HEX64.match(sha.lower()):
            raise ModelError(f"{where}: 'sha256' must be the 64-hex-digit digest of {file}, got {sha!r}")
        spec = _input_spec(d.get("input"), family, f"{where}: 'input'")
        labels = _labels(d.get("labels"), family, where)
        thresholds = _thresholds(d.get("thresholds", {}), labels, where)
        decoder = d.get("decoder", {})
        if not isinstance(decoder, dict):
            raise ModelError(f"{where}: 'decoder' must be an object, got {decoder!r}")
        metrics = d.get("metrics", {})
        if not isinstance(metrics, dict):
            raise ModelError(f"{where}: 'metrics' must be an object, got {metrics!r}")
        parent = d.get("parent")
        if parent is not None and not isinstance(parent, str):
            raise ModelError(f"{where}: 'parent' must be a string or null, got {parent!r}")
        texts = {}
        for key in ("created_by", "created_at", "description"):
            v = d.get(key, "")
            if v is None:
                v = ""
            if not isinstance(v, str):
                raise ModelError(f"{where}: {key!r} must be a string, got {v!r}")
            texts[key] = v
        return cls(name=name, version=version, family=family, task=task, file=file, sha256=sha.lower(),
                   input=spec, labels=labels, thresholds=thresholds, decoder=dict(decoder), metrics=dict(metrics),
                   parent=parent, raw=dict(d), **texts)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as JSON-able dict (unknown keys of the original kept, known ones normalised)."""
        s = self.input
        spec: dict[str, Any] = {"name": s.name, "shape": list(s.shape), "dtype": s.dtype}
        if self.family == "tabular":
            if s.features is not None:
                spec["features"] = list(s.features)
        else:
            spec.update(layout=s.layout, color=s.color, scale=s.scale, mean=list(s.mean), std=list(s.std),
                        resize=s.resize, pad_value=s.pad_value, align=s.align)
        out = dict(self.raw)
        out.update({
            "schema": out.get("schema", SCHEMA), "name": self.name, "version": self.version, "family": self.family,
            "task": self.task, "file": self.file, "sha256": self.sha256, "input": spec, "labels": list(self.labels),
            "thresholds": {"score": self.thresholds.score, "nms_iou": self.thresholds.nms_iou,
                           "per_class": dict(self.thresholds.per_class),
                           "max_detections": self.thresholds.max_detections},
            "decoder": dict(self.decoder), "metrics": dict(self.metrics), "parent": self.parent,
            "created_by": self.created_by, "created_at": self.created_at, "description": self.description,
        })
        return out


def load_manifest(model_dir: str | Path) -> ModelManifest:
    """Read and validate `<model_dir>/manifest.json`."""
    path = Path(model_dir) / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ModelError(f"{path}: cannot read manifest: {e.strerror or e}") from None
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ModelError(f"{path}: manifest is not valid JSON: {e}") from None
    return ModelManifest.from_dict(d, str(path))


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_model_dir(out_dir: str | Path, onnx_model: bytes | str | Path | Any, manifest: dict) -> Path:
    """Write `model.onnx` and `manifest.json` (sha256 and file filled in, validated) into out_dir; ModelError
    (and nothing written) when the manifest would be refused at load. Needs neither onnx nor onnxruntime.

    onnx_model: the serialized bytes, a path to an .onnx file, or an onnx.ModelProto.
    """
    out = Path(out_dir)
    if hasattr(onnx_model, "SerializeToString"):
        data = onnx_model.SerializeToString()
    elif isinstance(onnx_model, bytes | bytearray):
        data = bytes(onnx_model)
    else:
        data = Path(onnx_model).read_bytes()
    d = dict(manifest)
    d.setdefault("schema", "model-manifest/1.0")
    d["file"] = d.get("file") or MODEL_FILE
    d["sha256"] = hashlib.sha256(data).hexdigest()
    ModelManifest.from_dict(d, f"{out / MANIFEST_FILE}")  # refuse to write a manifest load_model would refuse
    out.mkdir(parents=True, exist_ok=True)
    for name, payload in ((d["file"], data), (MANIFEST_FILE, (json.dumps(d, indent=2) + "\n").encode())):
        tmp = out / f".{name}.tmp"
        tmp.write_bytes(payload)
        os.replace(tmp, out / name)
    return out


# --- field validation -------------------------------------------------------------------------------------------

def _str(d: dict, key: str, where: str) -> str:
    v = d.get(key)
    if not isinstance(v, str) or not v.strip():
        raise ModelError(f"{where}: missing or empty {key!r} (a non-empty string), got {v!r}")
    return v


def _num(v: Any, what: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or not lo <= v <= hi:
        raise ModelError(f"{what}: expected a number in [{lo:g}, {hi:g}], got {v!r}")
    return float(v)


def _vec(v: Any, n: int, what: str) -> tuple[float, ...]:
    if isinstance(v, int | float) and not isinstance(v, bool):
        v = [v] * n
    if not isinstance(v, list | tuple) or len(v) not in (1, n):
        raise ModelError(f"{what}: expected a number or a list of {n} numbers, got {v!r}")
    vals = tuple(_num(x, what) for x in v)
    return vals * n if len(vals) == 1 else vals


def _input_spec(v: Any, family: str, where: str) -> InputSpec:
    if not isinstance(v, dict):
        raise ModelError(f"{where}: missing or not an object, got {v!r}")
    name = _str(v, "name", where)
    shape = v.get("shape")
    if (not isinstance(shape, list | tuple) or not shape
            or not all(isinstance(x, int) and not isinstance(x, bool) and (x == -1 or x > 0) for x in shape)):
        raise ModelError(f"{where}.shape: expected a list of positive ints (-1 = dynamic), got {shape!r}")
    shape = tuple(shape)
    dtype = v.get("dtype", "float32")
    if dtype not in DTYPES:
        raise ModelError(f"{where}.dtype: expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if family == "tabular":
        if len(shape) != 2 or shape[1] == -1:
            raise ModelError(f"{where}.shape: a tabular input is [N or -1, features], got {list(shape)}")
        features = v.get("features")
        if features is not None:
            if (not isinstance(features, list) or not all(isinstance(f, str) and f for f in features)
                    or len(set(features)) != len(features)):
                raise ModelError(f"{where}.features: expected a list of distinct names, got {features!r}")
            if len(features) != shape[1]:
                raise ModelError(f"{where}.features: {len(features)} names for {shape[1]} input columns")
            features = tuple(features)
        return InputSpec(name=name, shape=shape, dtype=dtype, layout="NC", color="", mean=(), std=(),
                         resize="", pad_value=0.0, features=features)
    layout = v.get("layout", "NCHW")
    if layout not in LAYOUTS:
        raise ModelError(f"{where}.layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
    if len(shape) != 4:
        raise ModelError(f"{where}.shape: a vision input is 4-D ({layout}), got {list(shape)}")
    dims = shape[1:] if layout == "NCHW" else (shape[3], shape[1], shape[2])
    if any(x == -1 for x in dims):
        raise ModelError(f"{where}.shape: only the batch dimension may be dynamic, got {list(shape)}")
    channels = dims[0]
    if channels not in (1, 3):
        raise ModelError(f"{where}.shape: 1 or 3 channels expected, got {channels} in {list(shape)}")
    color = v.get("color", "BGR" if channels == 3 else "GRAY")
    if color not in COLORS or (color == "GRAY") != (channels == 1):
        raise ModelError(f"{where}.color: {color!r} does not fit {channels} channel(s); one of {', '.join(COLORS)}")
    resize = v.get("resize", "letterbox")
    if resize not in RESIZES:
        raise ModelError(f"{where}.resize: expected one of {', '.join(RESIZES)}, got {resize!r}")
    align = v.get("align", "top-left" if family == "yolox" else "center")
    if align not in ALIGNS:
        raise ModelError(f"{where}.align: expected one of {', '.join(ALIGNS)}, got {align!r}")
    std = _vec(v.get("std", 1.0), channels, f"{where}.std")
    if any(s == 0 for s in std):
        raise ModelError(f"{where}.std: must not contain 0, got {list(std)}")
    return InputSpec(
        name=name, shape=shape, dtype=dtype, layout=layout, color=color,
        scale=_num(v.get("scale", 1.0), f"{where}.scale"), mean=_vec(v.get("mean", 0.0), channels, f"{where}.mean"),
        std=std, resize=resize, pad_value=_num(v.get("pad_value", 114), f"{where}.pad_value"),
        features=None, align=align)


def _labels(v: Any, family: str, where: str) -> tuple[str, ...]:
    if family == "tabular" and (v is None or v == []):  # regressors have no classes
        return ()
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise ModelError(f"{where}: missing or bad 'labels' (a non-empty list of class names), got "
                         f"{v if not isinstance(v, list) or len(v) < 5 else str(v[:5]) + '...'!r}")
    return tuple(v)


def _thresholds(v: Any, labels: tuple[str, ...], where: str) -> Thresholds:
    if not isinstance(v, dict):
        raise ModelError(f"{where}: 'thresholds' must be an object, got {v!r}")
    per_class = v.get("per_class", {})
    if not isinstance(per_class, dict):
        raise ModelError(f"{where}: 'thresholds.per_class' must be an object, got {per_class!r}")
    unknown = sorted(set(per_class) - set(labels))
    if unknown:
        raise ModelError(f"{where}: 'thresholds.per_class' names labels the model does not have: {unknown}")
    max_det = v.get("max_detections", 100)
    if isinstance(max_det, bool) or not isinstance(max_det, int) or not 1 <= max_det <= 10000:
        raise ModelError(f"{where}: 'thresholds.max_detections' must be an int in [1, 10000], got {max_det!r}")
    return Thresholds(
        score=_num(v.get("score", 0.3), f"{where}: 'thresholds.score'", 0.0, 1.0),
        nms_iou=_num(v.get("nms_iou", 0.45), f"{where}: 'thresholds.nms_iou'", 0.0, 1.0),
        per_class={k: _num(x, f"{where}: 'thresholds.per_class.{k}'", 0.0, 1.0) for k, x in per_class.items()},
        max_detections=max_det)
