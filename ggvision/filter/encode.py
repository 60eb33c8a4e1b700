"""Compression for what leaves the device: JPEG or WebP at a quality, downscaled, optionally cropped to the
object's box (region of interest) — chosen per destination (S3 snapshot: the scene; IoT alert: a small crop)."""

from __future__ import annotations

import cv2
import numpy as np

from ..config.filter import ImageConfig

CONTENT_TYPES = {"jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"jpeg": "jpg", "webp": "webp"}


def crop_box(box: tuple[float, float, float, float], margin: float, w: int, h: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(w, int(np.ceil(x2 + mx))), min(h, int(np.ceil(y2 + my))))


def prepare(frame: np.ndarray, cfg: ImageConfig, box: tuple[float, float, float, float] | None = None,
            copy: bool = False) -> np.ndarray:
    """The pixels `encode` compresses: cropped to the box (with its margin) and downscaled to max_width. With
    `copy`, never a view of `frame` (to keep it after the frame is gone)."""
    img = frame
    if cfg.crop and box is not None:
        x1, y1, x2, y2 = crop_box(box, cfg.margin, frame.shape[1], frame.shape[0])
        if x2 > x1 and y2 > y1:
            img = frame[y1:y2, x1:x2]
    if cfg.max_width and img.shape[1] > cfg.max_width:
        h = max(1, round(img.shape[0] * cfg.max_width / img.shape[1]))
        return cv2.resize(img, (cfg.max_width, h), interpolation=cv2.INTER_AREA)
    return img.copy() if copy else img


def encode(frame: np.ndarray, cfg: ImageConfig, box: tuple[float, float, float, float] | None = None) -> bytes:
    """The encoded image (BGR uint8 in). Raises ValueError if the codec refuses it."""
    img = prepare(frame, cfg, box)
    if cfg.format == "webp":
        ok, buf = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, cfg.quality])
    else:
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, cfg.quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1])
    if not ok:
        raise ValueError(f"could not encode a {img.shape} image as {cfg.format}")
    return buf.tobytes()
