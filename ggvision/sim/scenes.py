"""Synthetic scenes: deterministic moving objects with exact ground truth, for the demo camera, training and tests.

Every frame is a pure function of (seed, frame index): objects move on bouncing straight lines, the
lighting follows a slow sine, and per-frame sensor noise comes from a generator seeded with
(seed, index). So any frame can be rendered on its own (the worker renders only the frames it
delivers unless it records) and the ground-truth boxes of each frame are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

LIGHT_PERIOD_S = 20.0
LIGHT_DEPTH = 0.35
NOISE_SIGMA = 4.0


@dataclass(frozen=True)
class ObjectBox:
    """Ground truth for one object in one frame; box is (x1, y1, x2, y2) in pixels, clipped to the frame."""

    class_id: int
    label: str
    track_id: int
    box: tuple[float, float, float, float]

    def scaled(self, s: float) -> ObjectBox:
        x1, y1, x2, y2 = self.box
        return ObjectBox(self.class_id, self.label, self.track_id, (x1 * s, y1 * s, x2 * s, y2 * s))


@dataclass(frozen=True)
class _Track:
    class_id: int
    w: float
    h: float
    x0: float
    y0: float
    vx: float
    vy: float
    color: tuple[int, int, int]


def _bounce(p: float, span: float) -> float:
    """Position on [0, span] of a point moving freely along p and reflecting off both ends."""
    if span <= 0:
        return 0.0
    p %= 2 * span
    return p if p <= span else 2 * span - p


def _draw_person(img: np.ndarray, x: int, y: int, w: int, h: int, color: tuple[int, int, int]) -> None:
    head = max(2, w // 3)
    body_h = (h - 2 * head) // 2
    cv2.circle(img, (x + w // 2, y + head), head, color, -1)
    cv2.ellipse(img, (x + w // 2, y + 2 * head + body_h), (w // 2, body_h), 0, 0, 360, color, -1)


def _draw_car(img: np.ndarray, x: int, y: int, w: int, h: int, color: tuple[int, int, int]) -> None:
    wheel = max(2, h // 5)
    cv2.rectangle(img, (x + w // 5, y), (x + 4 * w // 5, y + h // 2), color, -1)
    cv2.rectangle(img, (x, y + h // 3), (x + w, y + h - wheel), color, -1)
    for cx in (x + w // 4, x + 3 * w // 4):
        cv2.circle(img, (cx, y + h - wheel), wheel, (20, 20, 20), -1)


def _draw_bicycle(img: np.ndarray, x: int, y: int, w: int, h: int, color: tuple[int, int, int]) -> None:
    r = max(2, min(w // 4, h // 3))
    c1, c2 = (x + r, y + h - r), (x + w - r, y + h - r)
    top = (x + w // 2, y + h // 4)
    for c in (c1, c2):
        cv2.circle(img, c, r, color, max(1, r // 4))
    cv2.line(img, c1, top, color, max(1, r // 3))
    cv2.line(img, top, c2, color, max(1, r // 3))
    cv2.circle(img, (top[0], y + r // 2), max(1, r // 2), color, -1)  # rider's head keeps the top of the box honest


_SHAPES = (_draw_person, _draw_car, _draw_bicycle)
# (w/H or w/W range, aspect h/w) per shape: persons are tall, cars wide.
_SIZES = (((0.2, 0.4), 2.5, "h"), ((0.16, 0.28), 0.5, "w"), ((0.1, 0.16), 0.75, "w"))


class SyntheticScene:
    def __init__(
        self,
        width: int = 640,
        height: int = 360,
        fps: float = 10.0,
        seed: int = 0,
        objects: int = 4,
        classes: tuple[str, ...] = ("person", "car", "bicycle"),
    ) -> None:
        self.width, self.height, self.fps, self.seed = width, height, fps, seed
        self.classes = tuple(classes)
        rng = np.random.default_rng(seed)
        self.background = self._background(rng)
        self.tracks = [self._track(rng) for _ in range(objects)]
        self.light_phase = float(rng.uniform(0, 2 * math.pi))

    def _background(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.width, self.height
        ramp = np.linspace(70, 150, h, dtype=np.float32)[:, None, None]
        img = np.broadcast_to(ramp, (h, w, 3)).astype(np.uint8).copy()
        horizon = int(h * 0.45)
        for _ in range(8):  # buildings above the horizon
            x = int(rng.integers(0, w))
            bw, bh = int(rng.integers(w // 20, w // 6)), int(rng.integers(h // 10, horizon))
            shade = tuple(int(v) for v in rng.integers(90, 200, 3))
            cv2.rectangle(img, (x, horizon - bh), (x + bw, horizon), shade, -1)
        cv2.rectangle(img, (0, horizon), (w, h), (95, 95, 95), -1)  # road
        for x in range(0, w, max(8, w // 10)):  # lane marks
            cv2.rectangle(img, (x, int(h * 0.72)), (x + w // 25, int(h * 0.72) + max(2, h // 90)), (210, 210, 210), -1)
        return img

    def _track(self, rng: np.random.Generator) -> _Track:
        class_id = int(rng.integers(0, len(self.classes)))
        (lo, hi), aspect, ref = _SIZES[class_id % len(_SHAPES)]
        if ref == "h":
            h = rng.uniform(lo, hi) * self.height
            w = h / aspect
        else:
            w = rng.uniform(lo, hi) * self.width
            h = w * aspect
        w, h = min(w, self.width - 2), min(h, self.height - 2)
        speed = rng.uniform(0.05, 0.2) * self.width * rng.choice([-1.0, 1.0])
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        return _Track(
            class_id=class_id,
            w=float(w),
            h=float(h),
            x0=float(rng.uniform(0, self.width - w)),
            y0=float(rng.uniform(self.height * 0.3, self.height - h)) if h < self.height * 0.7 else 0.0,
            vx=float(speed),
            vy=float(rng.uniform(-0.03, 0.03) * self.height),
            color=color,  # type: ignore[arg-type]
        )

    def truth(self, index: int) -> list[ObjectBox]:
        t = index / self.fps
        boxes = []
        for tid, tr in enumerate(self.tracks):
            x = _bounce(tr.x0 + tr.vx * t, self.width - tr.w)
            y = _bounce(tr.y0 + tr.vy * t, self.height - tr.h)
            boxes.append(ObjectBox(tr.class_id, self.classes[tr.class_id], tid, (x, y, x + tr.w, y + tr.h)))
        return boxes

    def render(self, index: int) -> tuple[np.ndarray, list[ObjectBox]]:
        """Frame `index` (BGR uint8, height x width x 3) and its ground-truth boxes (later objects occlude)."""
        boxes = self.truth(index)
        img = self.background.copy()
        for ob, tr in zip(boxes, self.tracks, strict=True):
            x1, y1, x2, y2 = (int(round(v)) for v in ob.box)
            _SHAPES[tr.class_id % len(_SHAPES)](img, x1, y1, x2 - x1, y2 - y1, tr.color)
        gain = 1.0 + LIGHT_DEPTH * math.sin(2 * math.pi * index / self.fps / LIGHT_PERIOD_S + self.light_phase)
        noise = np.random.default_rng((self.seed, index)).standard_normal((self.height, self.width, 1), np.float32)
        out = img.astype(np.float32) * gain + noise * NOISE_SIGMA
        return np.clip(out, 0, 255).astype(np.uint8), boxes
