"""Reference YOLOX decoding and VOC-style mAP@0.5 for the demo detector (numpy + OpenCV only).

The Inference component has its own decoder; this one is the training script's yardstick and is
kept short on purpose: the YOLOX layout [N, anchors, 4 + 1 + C] with raw grid offsets for the box
(centre = (out + grid) * stride, size = exp(out) * stride) and sigmoid objectness / class scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def grids(width: int, height: int, strides: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(anchors, 2) grid cell x, y and (anchors,) stride, in YOLOX order (level, row, column)."""
    cells, steps = [], []
    for s in strides:
        ys, xs = np.mgrid[0:height // s, 0:width // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        steps.append(np.full(xs.size, s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(steps).astype(np.float32)


def decode(output: np.ndarray, width: int, height: int, strides: Sequence[int], ratio: float,
           score_threshold: float = 0.3, nms_iou: float = 0.45,
           offset: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw output (anchors, 5 + C) -> (boxes xyxy in source pixels, scores, classes), after NMS."""
    cell, stride = grids(width, height, strides)
    xy = (output[:, :2] + cell) * stride[:, None]
    wh = np.exp(np.minimum(output[:, 2:4], 10.0)) * stride[:, None]
    scores_all = output[:, 4:5] * output[:, 5:]
    classes = scores_all.argmax(1)
    scores = scores_all[np.arange(len(classes)), classes]
    keep = scores >= score_threshold
    xy, wh, scores, classes = xy[keep], wh[keep], scores[keep], classes[keep]
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)
    boxes = (boxes - [offset[0], offset[1], offset[0], offset[1]]) / ratio
    if len(boxes) == 0:
        return boxes.reshape(0, 4), scores, classes
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), classes.tolist(), score_threshold, nms_iou)
    idx = np.asarray(idx, np.int64).reshape(-1)
    return boxes[idx], scores[idx], classes[idx]


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box with each of ``boxes``."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), 1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], 1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ all-points interpolation)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def map50(predictions: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
          truths: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
          iou_threshold: float = 0.5) -> tuple[float, list[float]]:
    """mAP@0.5 and per-class AP: predictions [(boxes, scores, classes)], truths [(boxes, classes)] per image.

    Each prediction, best score first, matches the unmatched ground truth of its class it overlaps most
    (IoU >= threshold) or is a false positive; a class with no ground truth gets AP nan.
    """
    per_class = []
    for c in range(num_classes):
        records = []  # (score, is true positive)
        total = 0
        for (pb, ps, pc), (tb, tc) in zip(predictions, truths, strict=True):
            gt = tb[tc == c]
            total += len(gt)
            used = np.zeros(len(gt), bool)
            sel = pc == c
            for i in np.argsort(-ps[sel]):
                box, score = pb[sel][i], ps[sel][i]
                hit = False
                if len(gt):
                    overlaps = np.where(used, -1.0, iou(box, gt))
                    j = int(overlaps.argmax())
                    if overlaps[j] >= iou_threshold:
                        used[j] = hit = True
                records.append((float(score), hit))
        if total == 0:
            per_class.append(float("nan"))
            continue
        records.sort(key=lambda t: -t[0])
        tp = np.cumsum([h for _, h in records], dtype=np.float64)
        fp = np.cumsum([not h for _, h in records], dtype=np.float64)
        recall = tp / total
        precision = tp / np.maximum(tp + fp, 1e-9)
        per_class.append(average_precision(recall, precision) if records else 0.0)
    valid = [ap for ap in per_class if not np.isnan(ap)]
    return (float(np.mean(valid)) if valid else float("nan")), per_class
