"""Post-processing per model family: raw ONNX outputs for a batch -> detections/1.0 task parts per frame.

  detection       {"detections": [{"label", "class_id", "score", "box": [x1, y1, x2, y2]}, ...]}
                  boxes in ORIGINAL frame pixels, clipped to the frame, best score first
  classification  {"classes": [{"label", "class_id", "score"}, ...]}  (top-k, best first)
  tabular         {"outputs": {...}}                                   (named by the manifest's decoder.outputs)

Decoder options come from the manifest's "decoder" object (see docs/models.md). Detection families share the
same tail: per-class score thresholds, class-aware NMS (cv2.dnn.NMSBoxesBatched), max_detections, mapping back
to frame coordinates through the preprocess Geometry.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from .manifest import ModelError, ModelManifest
from .preprocess import Geometry

OutputMeta = tuple[str, list, str]  # (name, shape with ints or symbolic names/None, onnx type string)


def _dim(d: Any) -> int | None:
    return d if isinstance(d, int) and d > 0 else None


class Decoder:
    """Base: validates its options against the manifest at construction, static output shapes at load."""

    task = ""

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        self.m = manifest
        self.where = where or f"model {manifest.name} {manifest.version}"
        self.opts = dict(manifest.decoder)

    def err(self, msg: str) -> ModelError:
        return ModelError(f"{self.where}: {self.m.family} decoder: {msg}")

    def check_outputs(self, outputs: list[OutputMeta]) -> None:
        """Refuse a model whose declared outputs cannot be what this family decodes."""

    def __call__(self, outputs: dict[str, np.ndarray], geoms: list[Geometry | None]) -> list[dict]:
        raise NotImplementedError

    def _output(self, outputs: list[OutputMeta], key: str, default: str | None) -> OutputMeta:
        """The output named by option `key` (default: `default`, or the first output when that is None)."""
        name = self.opts.get(key, default)
        if name is None:
            return outputs[0]
        for o in outputs:
            if o[0] == name:
                return o
        raise self.err(f"output {name!r} (decoder.{key}) not in the model's outputs {[o[0] for o in outputs]}")


class DetectionDecoder(Decoder):
    task = "detection"

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        super().__init__(manifest, where)
        labels = manifest.labels
        self.thr = np.array([manifest.thresholds.for_class(lb) for lb in labels], dtype=np.float32)
        self.min_thr = float(self.thr.min())

    def finish(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, geom: Geometry,
               nms: bool = True) -> dict:
        """boxes [N,4] xyxy in model-input pixels, scores [N], class_ids [N] -> the frame's detections."""
        n_cls = len(self.m.labels)
        class_ids = class_ids.astype(np.int64, copy=False)
        bad = (class_ids < 0) | (class_ids >= n_cls)
        if bad.any():
            raise self.err(f"class id {int(class_ids[bad][0])} outside the {n_cls} labels")
        keep = scores >= self.thr[class_ids]
        boxes, scores, class_ids = boxes[keep], scores[keep], class_ids[keep]
        if not len(scores):
            return {"detections": []}
        t = self.m.thresholds
        if nms:
            xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
            idx = cv2.dnn.NMSBoxesBatched(xywh.astype(np.float64), scores.astype(np.float32).tolist(),
                                          class_ids.astype(np.int32).tolist(), 0.0, t.nms_iou)
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        else:
            idx = np.arange(len(scores))
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        fb = geom.to_frame(boxes[idx])
        dets = []
        for j, b in zip(idx, fb, strict=True):
            if b[2] - b[0] <= 0 or b[3] - b[1] <= 0:  # entirely in the letterbox padding
                continue
            c = int(class_ids[j])
            dets.append({"label": self.m.labels[c], "class_id": c, "score": round(float(scores[j]), 4),
                         "box": [round(float(v), 2) for v in b]})
            if len(dets) >= t.max_detections:
                break
        return {"detections": dets}


class YoloxDecoder(DetectionDecoder):
    """YOLOX export [B, N, 4 + 1 + C]: (cx, cy, w, h) as grid offsets (xy = (v + grid) * stride,
    wh = exp(v) * stride) unless the export already decoded them (decoder.decoded: true, or auto-detected from
    the first batch when absent), then objectness and class scores (already sigmoid-ed in the official export;
    decoder.sigmoid: true applies it)."""

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        super().__init__(manifest, where)
        strides = self.opts.get("strides", [8, 16, 32])
        if not isinstance(strides, list) or not strides or not all(isinstance(s, int) and s > 0 for s in strides):
            raise self.err(f"decoder.strides must be a list of positive ints, got {strides!r}")
        self.objectness = bool(self.opts.get("objectness", True))
        self.sigmoid = bool(self.opts.get("sigmoid", False))
        decoded = self.opts.get("decoded")
        if decoded is not None and not isinstance(decoded, bool):
            raise self.err(f"decoder.decoded must be true, false or absent (auto), got {decoded!r}")
        self.decoded: bool | None = decoded
        h, w = manifest.input.hw
        grids, strd = [], []
        for s in strides:
            hs, ws = h // s, w // s
            yv, xv = np.meshgrid(np.arange(hs), np.arange(ws), indexing="ij")
            grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
            strd.append(np.full((hs * ws, 1), s))
        self.grid = np.concatenate(grids).astype(np.float32)
        self.stride = np.concatenate(strd).astype(np.float32)
        self.head = 5 if self.objectness else 4
        self.name: str | None = None

    def check_outputs(self, outputs: list[OutputMeta]) -> None:
        name, shape, _ = self._output(outputs, "output", None)
        self.name = name
        if len(shape) != 3:
            raise self.err(f"output {name!r} must be 3-D [batch, anchors, {self.head}+classes], got {shape}")
        k = self.head + len(self.m.labels)
        if _dim(shape[2]) not in (None, k):
            raise self.err(f"output {name!r} has {shape[2]} values per anchor; {len(self.m.labels)} labels "
                           f"need {k}")
        if _dim(shape[1]) not in (None, len(self.grid)):
            raise self.err(f"output {name!r} has {shape[1]} anchors; input {self.m.input.hw} with strides "
                           f"{self.opts.get('strides', [8, 16, 32])} gives {len(self.grid)}")

    def __call__(self, outputs: dict[str, np.ndarray], geoms: list[Geometry | None]) -> list[dict]:
        out = outputs[self.name] if self.name else next(iter(outputs.values()))
        k = self.head + len(self.m.labels)
        if out.ndim != 3 or out.shape[1] != len(self.grid) or out.shape[2] != k:
            raise self.err(f"output shape {list(out.shape)}, expected [batch, {len(self.grid)}, {k}]")
        if self.decoded is None:
            # Raw offsets are about one cell (|v| < ~2); decoded centres spread over the input (median ~ size/2).
            self.decoded = bool(np.median(np.abs(out[0, :, :2])) > 8.0)
        results = []
        for b, geom in enumerate(geoms):
            p = out[b].astype(np.float32, copy=False)
            if self.decoded:
                cxcy, wh = p[:, :2], p[:, 2:4]
            else:
                cxcy = (p[:, :2] + self.grid) * self.stride
                wh = np.exp(np.minimum(p[:, 2:4], 20.0)) * self.stride  # cap: exp overflow on garbage values
            cls = p[:, self.head:]
            if self.sigmoid:
                cls = 1.0 / (1.0 + np.exp(-cls))
            cid = cls.argmax(1)
            score = cls[np.arange(len(cid)), cid]
            if self.objectness:
                obj = p[:, 4]
                score = score * (1.0 / (1.0 + np.exp(-obj)) if self.sigmoid else obj)
            sel = score >= self.min_thr
            cxcy, wh = cxcy[sel], wh[sel]
            boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)
            results.append(self.finish(boxes, score[sel], cid[sel], geom))
        return results


class Yolov8Decoder(DetectionDecoder):
    """Ultralytics YOLOv8/YOLO11 export [B, 4 + C, N] (or [B, N, 4 + C]): cx, cy, w, h in input pixels, then
    class scores (no objectness)."""

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        super().__init__(manifest, where)
        self.name: str | None = None

    def check_outputs(self, outputs: list[OutputMeta]) -> None:
        name, shape, _ = self._output(outputs, "output", None)
        self.name = name
        k = 4 + len(self.m.labels)
        if len(shape) != 3 or (k not in (_dim(shape[1]), _dim(shape[2])) and None not in (_dim(shape[1]),
                                                                                       _dim(shape[2]))):
            raise self.err(f"output {name!r} must be [batch, 4+{len(self.m.labels)}, boxes], got {shape}")

    def __call__(self, outputs: dict[str, np.ndarray], geoms: list[Geometry | None]) -> list[dict]:
        out = outputs[self.name] if self.name else next(iter(outputs.values()))
        k = 4 + len(self.m.labels)
        if out.ndim != 3 or k not in out.shape[1:]:
            raise self.err(f"output shape {list(out.shape)}, expected [batch, {k}, boxes]")
        if out.shape[1] != k:  # [B, N, 4+C]
            out = out.transpose(0, 2, 1)
        results = []
        for b, geom in enumerate(geoms):
            p = out[b].T.astype(np.float32, copy=False)  # [N, 4+C]
            cls = p[:, 4:]
            cid = cls.argmax(1)
            score = cls[np.arange(len(cid)), cid]
            sel = score >= self.min_thr
            c = p[sel]
            boxes = np.column_stack([c[:, 0] - c[:, 2] / 2, c[:, 1] - c[:, 3] / 2,
                                     c[:, 0] + c[:, 2] / 2, c[:, 1] + c[:, 3] / 2])
            results.append(self.finish(boxes, score[sel], cid[sel], geom))
        return results


SSD_BOX_FORMATS = ("xyxy", "yxyx", "xywh", "cxcywh")


class SsdDecoder(DetectionDecoder):
    """SSD-style exports with separate outputs: boxes [B, N, 4], scores [B, N] with classes [B, N], or scores
    [B, N, C] (argmax per box), optional num_detections [B]. decoder.box_format: xyxy | yxyx | xywh | cxcywh, with
    suffix _norm when relative to the input size (default xyxy_norm). decoder.class_offset is subtracted from the
    class ids (1 for TF Object Detection API exports whose id 0 is background). decoder.nms: apply NMS (default:
    only when scores are per class, i.e. the export did not already)."""

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        super().__init__(manifest, where)
        fmt = self.opts.get("box_format", "xyxy_norm")
        base = fmt[:-5] if isinstance(fmt, str) and fmt.endswith("_norm") else fmt
        if base not in SSD_BOX_FORMATS:
            raise self.err(f"decoder.box_format {fmt!r}: expected one of {', '.join(SSD_BOX_FORMATS)} "
                           "(optionally with _norm)")
        self.fmt, self.norm = base, fmt.endswith("_norm")
        off = self.opts.get("class_offset", 0)
        if not isinstance(off, int) or isinstance(off, bool):
            raise self.err(f"decoder.class_offset must be an int, got {off!r}")
        self.class_offset = off
        self.nms = self.opts.get("nms")
        self.names: dict[str, str | None] = {}

    def check_outputs(self, outputs: list[OutputMeta]) -> None:
        names = {o[0]: o for o in outputs}
        boxes = self._output(outputs, "boxes", "boxes")
        scores = self._output(outputs, "scores", "scores")
        classes = self.opts.get("classes", "classes" if "classes" in names else None)
        if classes is not None and classes not in names:
            raise self.err(f"output {classes!r} (decoder.classes) not in the model's outputs {list(names)}")
        num = self.opts.get("num_detections", "num_detections" if "num_detections" in names else None)
        if num is not None and num not in names:
            raise self.err(f"output {num!r} (decoder.num_detections) not in the model's outputs {list(names)}")
        if len(boxes[1]) != 3 or _dim(boxes[1][2]) not in (None, 4):
            raise self.err(f"output {boxes[0]!r} must be [batch, boxes, 4], got {boxes[1]}")
        if classes is None and len(scores[1]) != 3:
            raise self.err(f"without a classes output, {scores[0]!r} must be [batch, boxes, classes], "
                           f"got {scores[1]}")
        self.names = {"boxes": boxes[0], "scores": scores[0], "classes": classes, "num": num}

    def __call__(self, outputs: dict[str, np.ndarray], geoms: list[Geometry | None]) -> list[dict]:
        n = self.names
        boxes_all, scores_all = outputs[n["boxes"]], outputs[n["scores"]]
        h, w = self.m.input.hw
        results = []
        for b, geom in enumerate(geoms):
            bx = boxes_all[b].reshape(-1, 4).astype(np.float32)
            sc = scores_all[b].astype(np.float32)
            if n["classes"] is not None:
                cid = outputs[n["classes"]][b].reshape(-1).astype(np.int64) - self.class_offset
                sc = sc.reshape(-1)
                nms = bool(self.nms) if self.nms is not None else False
            else:
                sc = sc.reshape(len(bx), -1)
                if self.class_offset > 0:  # leading background column(s)
                    sc = sc[:, self.class_offset:]
                cid = sc.argmax(1)
                sc = sc[np.arange(len(cid)), cid]
                nms = bool(self.nms) if self.nms is not None else True
            if n["num"] is not None:
                k = int(np.asarray(outputs[n["num"]]).reshape(-1)[b])
                bx, sc, cid = bx[:k], sc[:k], cid[:k]
            if len(bx) != len(sc) or len(sc) != len(cid):
                raise self.err(f"{len(bx)} boxes, {len(sc)} scores, {len(cid)} classes in image {b}")
            sel = sc >= self.min_thr
            bx, sc, cid = bx[sel], sc[sel], cid[sel]
            if self.fmt == "yxyx":
                bx = bx[:, [1, 0, 3, 2]]
            elif self.fmt == "xywh":
                bx = np.column_stack([bx[:, 0], bx[:, 1], bx[:, 0] + bx[:, 2], bx[:, 1] + bx[:, 3]])
            elif self.fmt == "cxcywh":
                bx = np.column_stack([bx[:, 0] - bx[:, 2] / 2, bx[:, 1] - bx[:, 3] / 2,
                                      bx[:, 0] + bx[:, 2] / 2, bx[:, 1] + bx[:, 3] / 2])
            if self.norm:
                bx = bx * np.array([w, h, w, h], dtype=np.float32)
            results.append(self.finish(bx.reshape(-1, 4), sc, cid, geom, nms=nms))
        return results


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class ClassificationDecoder(Decoder):
    """Output [B, C] (extra unit dims squeezed): decoder.softmax (default false: the model outputs
    probabilities) then the top_k (default 5) classes whose score reaches their threshold."""

    task = "classification"

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        super().__init__(manifest, where)
        top_k = self.opts.get("top_k", 5)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
            raise self.err(f"decoder.top_k must be a positive int, got {top_k!r}")
        self.top_k = top_k
        self.softmax = bool(self.opts.get("softmax", False))
        self.thr = np.array([manifest.thresholds.for_class(lb) for lb in manifest.labels], dtype=np.float32)
        self.name: str | None = None

    def check_outputs(self, outputs: list[OutputMeta]) -> None:
        name, shape, _ = self._output(outputs, "output", None)
        self.name = name
        dims = [_dim(d) for d in shape[1:]]
        known = [d for d in dims if d is not None and d != 1]
        if len(shape) < 2 or (None not in dims and known != [len(self.m.labels)]):
            raise self.err(f"output {name!r} must be [batch, {len(self.m.labels)}] for {len(self.m.labels)} "
                           f"labels, got {shape}")

    def __call__(self, outputs: dict[str, np.ndarray], geoms: list[Geometry | None]) -> list[dict]:
        out = outputs[self.name] if self.name else next(iter(outputs.values()))
        out = out.reshape(out.shape[0], -1).astype(np.float32)
        if out.shape[1] != len(self.m.labels):
            raise self.err(f"output has {out.shape[1]} classes, the manifest {len(self.m.labels)} labels")
        if self.softmax:
            out = softmax(out)
        results = []
        for b in range(len(geoms)):
            p = out[b]
            order = np.argsort(-p, kind="stable")
            classes = [{"label": self.m.labels[c], "class_id": int(c), "score": round(float(p[c]), 4)}
                       for c in order if p[c] >= self.thr[c]][: self.top_k]
            results.append({"classes": classes})
        return results


class TabularDecoder(Decoder):
    """skl2onnx-style classifier (zipmap disabled): a label output [N] and a probabilities output [N, C];
    or any model whose outputs are read by name.

    decoder.outputs maps result names to what they hold:
      "positive"       probability of class decoder.positive_index (default 1)
      "probabilities"  all class probabilities (list)
      "argmax"         index of the most probable class
      "label"          manifest label of the most probable class
      [names...]       that list indexed by the most probable class
      "output:<name>"  the model output <name> for this row (a number, or a list)
    Default: {"probabilities", "label"} for classifiers, every output by name otherwise.
    """

    task = "tabular"

    def __init__(self, manifest: ModelManifest, where: str = "") -> None:
        super().__init__(manifest, where)
        pi = self.opts.get("positive_index", 1)
        if not isinstance(pi, int) or isinstance(pi, bool) or pi < 0:
            raise self.err(f"decoder.positive_index must be an int >= 0, got {pi!r}")
        self.positive_index = pi
        spec = self.opts.get("outputs")
        if spec is not None and (not isinstance(spec, dict) or not spec):
            raise self.err(f"decoder.outputs must be a non-empty object, got {spec!r}")
        self.spec: dict[str, Any] | None = spec
        self.prob: str | None = None
        self.all_outputs: list[str] = []

    def check_outputs(self, outputs: list[OutputMeta]) -> None:
        names = {o[0]: o for o in outputs}
        self.all_outputs = list(names)
        prob = self.opts.get("probability_output", "probabilities" if "probabilities" in names else None)
        if prob is not None:
            if prob not in names:
                raise self.err(f"output {prob!r} (decoder.probability_output) not in the model's outputs "
                               f"{list(names)} (skl2onnx: convert with options zipmap=False)")
            shape = names[prob][1]
            if len(shape) != 2:
                raise self.err(f"output {prob!r} must be [rows, classes], got {shape} "
                               "(a sequence of maps means zipmap was left on)")
            n = _dim(shape[1])
            if n is not None and self.m.labels and n != len(self.m.labels):
                raise self.err(f"output {prob!r} has {n} classes, the manifest {len(self.m.labels)} labels")
            if n is not None and self.positive_index >= n:
                raise self.err(f"decoder.positive_index {self.positive_index} >= {n} classes")
        self.prob = prob
        for key, what in (self.spec or {}).items():
            if isinstance(what, list):
                continue
            if what in ("positive", "probabilities", "argmax", "label"):
                if prob is None:
                    raise self.err(f"decoder.outputs.{key}: {what!r} needs a probability output")
                if what == "label" and not self.m.labels:
                    raise self.err(f"decoder.outputs.{key}: 'label' needs the manifest's labels")
            elif isinstance(what, str) and what.startswith("output:"):
                if what[7:] not in names:
                    raise self.err(f"decoder.outputs.{key}: model has no output {what[7:]!r} ({list(names)})")
            else:
                raise self.err(f"decoder.outputs.{key}: unknown {what!r}")

    def __call__(self, outputs: dict[str, np.ndarray], geoms: list[Geometry | None]) -> list[dict]:
        probs = None
        if self.prob is not None:
            probs = np.asarray(outputs[self.prob], dtype=np.float64)
            if probs.ndim != 2 or probs.shape[0] != len(geoms):
                raise self.err(f"output {self.prob!r} shape {list(probs.shape)}, expected [{len(geoms)}, classes]")
        spec = self.spec
        if spec is None:
            if probs is not None:
                spec = {"probabilities": "probabilities", "label": "label" if self.m.labels else "argmax"}
            else:
                spec = {name: f"output:{name}" for name in self.all_outputs}
        results = []
        for r in range(len(geoms)):
            res: dict[str, Any] = {}
            arg = int(probs[r].argmax()) if probs is not None else None
            for key, what in spec.items():
                if isinstance(what, list):
                    if arg is None or arg >= len(what):
                        raise self.err(f"decoder.outputs.{key}: no name for class {arg}")
                    res[key] = what[arg]
                elif what == "positive":
                    res[key] = round(float(probs[r, self.positive_index]), 6)
                elif what == "probabilities":
                    res[key] = [round(float(x), 6) for x in probs[r]]
                elif what == "argmax":
                    res[key] = arg
                elif what == "label":
                    res[key] = self.m.labels[arg]
                else:
                    v = np.asarray(outputs[what[7:]])[r]
                    v = v.reshape(-1)
                    vals = [x.item() if hasattr(x, "item") else str(x) for x in v]
                    res[key] = vals[0] if len(vals) == 1 else vals
            results.append({"outputs": res})
        return results


DECODERS: dict[str, type[Decoder]] = {
    "yolox": YoloxDecoder,
    "yolov8": Yolov8Decoder,
    "ssd": SsdDecoder,
    "classification": ClassificationDecoder,
    "tabular": TabularDecoder,
}


def make_decoder(manifest: ModelManifest, where: str = "") -> Decoder:
    cls = DECODERS.get(manifest.family)
    if cls is None:
        raise ModelError(f"{where or manifest.name}: no decoder for family {manifest.family!r}; "
                         f"known: {', '.join(DECODERS)}")
    return cls(manifest, where)
