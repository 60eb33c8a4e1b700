"""Privacy redaction: objects of the configured classes and static privacy masks are made unrecognisable
in every image before it is encoded, so nothing that leaves the device carries them.

Methods: pixelate (the box becomes a grid of at most 8 blocks along its longer side: a face or number
plate spans a block or two, identity is gone, the scene still reads), blur (a Gaussian with a kernel half the
box size), fill (a flat grey). The box is grown by `margin` on each side so edges of the object are covered.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from ..config.filter import Polygon, RedactConfig
from .messages import Detection

BLOCKS = 8


def _region(box: tuple[float, float, float, float], margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    # floor/ceil: every pixel the box touches is inside the region
    return (max(0, int(np.floor(x1 - mx))), max(0, int(np.floor(y1 - my))),
            min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my))))


def _obscure(roi: np.ndarray, method: str) -> None:
    h, w = roi.shape[:2]
    if h == 0 or w == 0:
        return
    if method == "fill":
        roi[...] = 128
    elif method == "blur":
        k = max(3, (max(h, w) // 2) | 1)
        roi[...] = cv2.GaussianBlur(roi, (k, k), 0)
        roi[...] = cv2.GaussianBlur(roi, (k, k), 0)  # twice: one pass leaves strong edges readable
    else:
        step = max(h, w) / BLOCKS
        bw, bh = max(1, round(w / step)), max(1, round(h / step))
        small = cv2.resize(roi, (bw, bh), interpolation=cv2.INTER_AREA)
        roi[...] = cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def redact(frame: np.ndarray, dets: Iterable[Detection], cfg: RedactConfig,
           masks: Iterable[Polygon] = ()) -> tuple[np.ndarray, int]:
    """A redacted copy of `frame` (the ring's frame is never touched) and how many regions were obscured."""
    out = frame.copy()
    h, w = out.shape[:2]
    n = 0
    for d in dets:
        if d.label in cfg.classes and d.score >= cfg.min_score:
            x1, y1, x2, y2 = _region(d.box, cfg.margin, w, h)
            _obscure(out[y1:y2, x1:x2], cfg.method)
            n += 1
    for poly in (*cfg.masks, *masks):
        pts = np.array([[round(x * (w - 1)), round(y * (h - 1))] for x, y in poly], np.int32)
        x, y, bw, bh = cv2.boundingRect(pts)
        roi = out[y:y + bh + 1, x:x + bw + 1]
        mask = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(mask, [pts - [x, y]], 255)
        obscured = roi.copy()
        _obscure(obscured, "fill" if cfg.method == "fill" else "pixelate")
        roi[mask > 0] = obscured[mask > 0]
        n += 1
    return out, n
