#!/usr/bin/env python3
"""Train the demo detector on synthetic scenes and write model.onnx + manifest.json (YOLOX layout).

    .venv/bin/python -m model_registry.demo.train_detector [--out DIR] [--epochs N]

Data: frames of ggvision.capture.synthetic.SyntheticScene (person / car / bicycle) from training
seeds, letterboxed to 320x192 (BGR 0-255, pad 114) at random offsets; evaluation: held-out seeds,
full-size frames, top-left letterbox exactly as YOLOX's preprocessing, mAP@0.5 (VOC all-points).
Model: a small conv net (BN + ReLU) with a top-down feature pyramid at strides 8 / 16 / 32 and
one 1x1 head per level. Output [N, 1260, 5 + 3] like YOLOX: raw box offsets, sigmoid objectness
and class scores, so the Inference component's yolox decoder serves it and real YOLOX models alike.
Seeded (--seed: data, order, flips, initialisation); repeat runs agree up to the floating-point
summation order of multi-threaded CPU kernels.
"""

from __future__ import annotations

import argparse
import io
import math
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from model_registry.demo.detection_data import (
    INPUT_H,
    INPUT_W,
    LABELS,
    PAD_VALUE,
    Sample,
    eval_set,
    letterbox,
    training_set,
)
from model_registry.demo.detection_eval import decode, grids, iou, map50
from model_registry.demo.model_dir import utc_now, write_model_dir

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "components" / "com.ggvision.Model.SyntheticDetector"
STRIDES = (8, 16, 32)
# Which pyramid levels learn an object, by its longer side in input pixels (overlapping on purpose).
LEVEL_RANGES = {8: (0, 64), 16: (32, 128), 32: (96, 1e9)}
CENTER_RADIUS = 2.5  # positives: cells whose centre lies in the box and within 2.5 strides of its centre
SCORE_THRESHOLD, NMS_IOU = 0.3, 0.45


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class TinyDetector(nn.Module):
    def __init__(self, num_classes: int = len(LABELS)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(conv(3, 16, 2), conv(16, 24, 2), conv(24, 24))  # stride 4
        self.c3 = nn.Sequential(conv(24, 48, 2), conv(48, 48))  # stride 8
        self.c4 = nn.Sequential(conv(48, 64, 2), conv(64, 64))  # stride 16
        self.c5 = nn.Sequential(conv(64, 96, 2), conv(96, 96))  # stride 32
        self.lat5, self.lat4 = nn.Conv2d(96, 64, 1), nn.Conv2d(64, 48, 1)
        self.p4, self.p3 = conv(64, 64), conv(48, 48)
        out = 5 + num_classes
        self.heads = nn.ModuleList([nn.Conv2d(48, out, 1), nn.Conv2d(64, out, 1), nn.Conv2d(96, out, 1)])
        for head in self.heads:  # start with low objectness so the early loss is not all negatives
            nn.init.constant_(head.bias, 0.0)
            nn.init.constant_(head.bias[4:], -4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw outputs [N, anchors, 5 + C]: box offsets, objectness and class logits."""
        c3 = self.c3(self.stem(x / 255.0))
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p4 = self.p4(c4 + F.interpolate(self.lat5(c5), size=c4.shape[-2:], mode="nearest"))
        p3 = self.p3(c3 + F.interpolate(self.lat4(p4), size=c3.shape[-2:], mode="nearest"))
        outs = [head(f).flatten(2) for head, f in zip(self.heads, (p3, p4, c5), strict=True)]
        return torch.cat(outs, 2).permute(0, 2, 1)


class Exported(nn.Module):
    """What goes into the ONNX file: YOLOX's inference output (sigmoid on objectness and classes)."""

    def __init__(self, model: TinyDetector) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.model(images)
        return torch.cat([raw[..., :4], raw[..., 4:].sigmoid()], -1)


CELLS, CELL_STRIDES = grids(INPUT_W, INPUT_H, STRIDES)


def assign(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Per-anchor targets: class index (-1 = background) and the xyxy box it should predict."""
    n = len(CELLS)
    cls = np.full(n, -1, np.int64)
    box = np.zeros((n, 4), np.float32)
    centres = (CELLS + 0.5) * CELL_STRIDES[:, None]
    areas = np.prod(sample.boxes[:, 2:] - sample.boxes[:, :2], 1)
    for i in np.argsort(-areas):  # smaller objects claim shared cells last, so they win them
        b, c = sample.boxes[i], sample.classes[i]
        w, h = b[2] - b[0], b[3] - b[1]
        if w < 2 or h < 2:
            continue
        centre = (b[:2] + b[2:]) / 2
        side = max(w, h)
        for s in STRIDES:
            lo, hi = LEVEL_RANGES[s]
            if not lo <= side < hi:
                continue
            level = s == CELL_STRIDES
            inside = (np.all(centres > b[:2], 1) & np.all(centres < b[2:], 1)
                      & np.all(np.abs(centres - centre) < CENTER_RADIUS * s, 1) & level)
            if not inside.any():  # a tiny box between cell centres: the nearest cell of the level
                d = np.where(level, np.sum((centres - centre) ** 2, 1), np.inf)
                inside = np.zeros(n, bool)
                inside[int(d.argmin())] = True
            cls[inside] = c
            box[inside] = b
    return cls, box


def batch_tensors(samples: list[Sample], flips: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, classes, boxes = [], [], []
    for s, flip in zip(samples, flips, strict=True):
        img, b = s.image, s.boxes
        if flip:  # the three shapes are left-right symmetric enough for mirroring to be honest data
            img = img[:, ::-1]
            b = np.stack([INPUT_W - b[:, 2], b[:, 1], INPUT_W - b[:, 0], b[:, 3]], 1)
        c, t = assign(Sample(img, b, s.classes))
        images.append(np.ascontiguousarray(img.transpose(2, 0, 1)))
        classes.append(c)
        boxes.append(t)
    return (torch.from_numpy(np.stack(images)).float(), torch.from_numpy(np.stack(classes)),
            torch.from_numpy(np.stack(boxes)))


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    lt, rb = torch.max(pred[:, :2], target[:, :2]), torch.min(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(1)
    area_p, area_t = (pred[:, 2:] - pred[:, :2]).prod(1), (target[:, 2:] - target[:, :2]).prod(1)
    union = area_p + area_t - inter + 1e-7
    hull = (torch.max(pred[:, 2:], target[:, 2:]) - torch.min(pred[:, :2], target[:, :2])).prod(1) + 1e-7
    return 1 - inter / union + (hull - union) / hull


def loss_fn(raw: torch.Tensor, cls_t: torch.Tensor, box_t: torch.Tensor) -> torch.Tensor:
    cells, strides = torch.from_numpy(CELLS), torch.from_numpy(CELL_STRIDES)[:, None]
    pos = cls_t >= 0
    npos = max(1, int(pos.sum()))
    obj = F.binary_cross_entropy_with_logits(raw[..., 4], pos.float(), reduction="sum")
    rp = raw[pos]
    onehot = F.one_hot(cls_t[pos], raw.shape[-1] - 5).float()
    cls = F.binary_cross_entropy_with_logits(rp[:, 5:], onehot, reduction="sum")
    idx = pos.nonzero()[:, 1]
    xy = (rp[:, :2] + cells[idx]) * strides[idx]
    wh = torch.exp(rp[:, 2:4].clamp(max=8)) * strides[idx]
    pred = torch.cat([xy - wh / 2, xy + wh / 2], 1)
    reg = giou_loss(pred, box_t[pos]).sum()
    return (obj + cls + 5.0 * reg) / npos


def train(samples: list[Sample], epochs: int, batch: int, seed: int) -> TinyDetector:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = TinyDetector()
    steps = epochs * math.ceil(len(samples) / batch)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    step, t0 = 0, time.monotonic()
    for epoch in range(epochs):
        order = rng.permutation(len(samples))
        model.train()
        total = 0.0
        for k in range(0, len(order), batch):
            chunk = [samples[i] for i in order[k:k + batch]]
            images, cls_t, box_t = batch_tensors(chunk, rng.random(len(chunk)) < 0.5)
            loss = loss_fn(model(images), cls_t, box_t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total += loss.item()
        print(f"epoch {epoch + 1}/{epochs}: loss {total / math.ceil(len(order) / batch):.3f} "
              f"({time.monotonic() - t0:.0f} s)", flush=True)
    return model.eval()


def export(model: TinyDetector) -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(Exported(model), (torch.zeros(1, 3, INPUT_H, INPUT_W),), buf, dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["output"],
                      dynamic_axes={"images": {0: "batch"}, "output": {0: "batch"}})
    return buf.getvalue()


def evaluate(onnx_bytes: bytes) -> dict[str, float]:
    """mAP@0.5 and per-class AP on held-out seeds through onnxruntime, plus single-frame latency."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, opts, providers=["CPUExecutionProvider"])
    data = eval_set()
    predictions, truths, times = [], [], []
    for frame, boxes, classes in data:
        image, ratio = letterbox(frame)
        x = image.transpose(2, 0, 1)[None].astype(np.float32)
        t = time.perf_counter()
        out = session.run(None, {"images": x})[0][0]
        times.append(time.perf_counter() - t)
        predictions.append(decode(out, INPUT_W, INPUT_H, STRIDES, ratio, SCORE_THRESHOLD / 30, NMS_IOU))
        truths.append((boxes, classes))
    m, per_class = map50(predictions, truths, len(LABELS))
    objects = sum(len(b) for _, b, _ in data)
    metrics = {"map50": round(m, 4), **{f"ap50_{label}": round(ap, 4) for label, ap in zip(LABELS, per_class,
                                                                                         strict=True)},
               "eval_frames": len(data), "eval_objects": objects,
               "latency_ms_1thread_p50": round(1000 * float(np.median(times)), 2)}
    # Precision / recall at the operating threshold the manifest ships with.
    tp = fp = 0
    for (pb, ps, pc), (tb, tc) in zip(predictions, truths, strict=True):
        sel = ps >= SCORE_THRESHOLD
        pb, pc = pb[sel], pc[sel]
        used = np.zeros(len(tb), bool)
        for b, c in zip(pb, pc, strict=True):
            ov = np.where(used | (tc != c), -1.0, iou(b, tb)) if len(tb) else np.array([-1.0])
            j = int(ov.argmax())
            if ov[j] >= 0.5:
                used[j] = True
                tp += 1
            else:
                fp += 1
    metrics["precision"] = round(tp / max(1, tp + fp), 4)
    metrics["recall"] = round(tp / max(1, objects), 4)
    return metrics


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="model directory to write (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--scenes", type=int, default=1500, help="training scenes (4 frames each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    samples = training_set(range(1000, 1000 + args.scenes), frames_per_scene=4, seed=args.seed)
    print(f"{len(samples)} training frames, {sum(len(s.boxes) for s in samples)} objects "
          f"({time.monotonic() - t0:.0f} s)", flush=True)
    model = train(samples, args.epochs, args.batch, args.seed)
    onnx_bytes = export(model)
    train_s = time.monotonic() - t0
    metrics = evaluate(onnx_bytes)
    metrics.update(train_frames=len(samples), train_wall_s=round(train_s))
    print("metrics:", metrics, flush=True)
    manifest = {
        "schema": "model-manifest/1.0", "name": "synthetic-detector", "version": "1.0.0",
        "family": "yolox", "task": "detection", "file": "model.onnx",
        "input": {"name": "images", "shape": [-1, 3, INPUT_H, INPUT_W], "dtype": "float32", "layout": "NCHW",
                  "color": "BGR", "scale": 1.0, "mean": [0, 0, 0], "std": [1, 1, 1], "resize": "letterbox",
                  "pad_value": PAD_VALUE, "align": "top-left"},
        "labels": list(LABELS),
        "thresholds": {"score": SCORE_THRESHOLD, "nms_iou": NMS_IOU, "per_class": {}, "max_detections": 100},
        "decoder": {"strides": list(STRIDES), "objectness": True},
        "metrics": metrics, "parent": None, "created_by": "model_registry/demo", "created_at": utc_now(),
        "description": "Demo detector trained on ggvision's synthetic scenes (person, car, bicycle); "
                       "made by model_registry/demo/train_detector.py. Not for real cameras.",
    }
    write_model_dir(args.out, onnx_bytes, manifest)
    print(f"wrote {args.out} ({len(onnx_bytes) / 1e6:.2f} MB) in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
