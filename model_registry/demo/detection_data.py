"""Detector data from the capture component's synthetic scenes, letterboxed the way YOLOX is.

YOLOX preprocessing (and the Inference component's yolox decoder): resize by r = min(H/h, W/w)
keeping the aspect ratio, paste at the top-left of an H x W canvas filled with 114, BGR 0-255.
Training pastes at a random offset too, so the model does not depend on where the padding is.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ggvision.sim.scenes import SyntheticScene

LABELS = ("person", "car", "bicycle")
INPUT_W, INPUT_H = 320, 192
PAD_VALUE = 114
# Source frame sizes seen in training: the capture defaults (1280x720, 640x360) and a few others.
TRAIN_SIZES = ((1280, 720), (640, 360), (960, 540), (480, 270), (800, 600), (640, 480))
EVAL_SIZES = ((1280, 720), (640, 360))
TRAIN_SEEDS = range(1000, 1000 + 1500)  # train_detector --scenes N uses the first N; evaluation: 100000 on
EVAL_SEEDS = range(100000, 100000 + 100)


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # INPUT_H x INPUT_W x 3 uint8 BGR (letterboxed)
    boxes: np.ndarray  # (n, 4) float32 x1 y1 x2 y2 in input pixels
    classes: np.ndarray  # (n,) int64


def letterbox(frame: np.ndarray, width: int = INPUT_W, height: int = INPUT_H,
              offset: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, float]:
    """The frame resized into a width x height canvas of PAD_VALUE at ``offset``; returns (canvas, ratio)."""
    h, w = frame.shape[:2]
    r = min(height / h, width / w)
    nw, nh = int(w * r), int(h * r)
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    dx, dy = offset
    canvas[dy:dy + nh, dx:dx + nw] = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, r


def scene_samples(seed: int, frames: Sequence[int], size: tuple[int, int], objects: int,
                  rng: np.random.Generator | None = None) -> Iterator[Sample]:
    """Letterboxed frames of one scene; with ``rng`` the paste offset is random (training)."""
    scene = SyntheticScene(size[0], size[1], fps=10.0, seed=seed, objects=objects, classes=LABELS)
    for index in frames:
        frame, truth = scene.render(index)
        r = min(INPUT_H / size[1], INPUT_W / size[0])
        free_x, free_y = INPUT_W - int(size[0] * r), INPUT_H - int(size[1] * r)
        dx = int(rng.integers(0, free_x + 1)) if rng is not None else 0
        dy = int(rng.integers(0, free_y + 1)) if rng is not None else 0
        image, r = letterbox(frame, offset=(dx, dy))
        boxes = np.array([ob.box for ob in truth], np.float32).reshape(-1, 4) * r + [dx, dy, dx, dy]
        classes = np.array([ob.class_id for ob in truth], np.int64)
        yield Sample(image, boxes.astype(np.float32), classes)


def training_set(seeds: Sequence[int] = TRAIN_SEEDS, frames_per_scene: int = 4, seed: int = 0) -> list[Sample]:
    """Varied scenes (seed, source size, 1-8 objects, time) with random letterbox placement."""
    rng = np.random.default_rng(seed)
    out: list[Sample] = []
    for s in seeds:
        size = TRAIN_SIZES[int(rng.integers(0, len(TRAIN_SIZES)))]
        frames = sorted(int(f) for f in rng.integers(0, 3000, frames_per_scene))
        out.extend(scene_samples(s, frames, size, int(rng.integers(1, 9)), rng))
    return out


def eval_set(seeds: Sequence[int] = EVAL_SEEDS, frames_per_scene: int = 3) -> list[tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]]:
    """Held-out full-size frames (not letterboxed) with ground truth: [(frame, boxes, classes)]."""
    out = []
    for i, s in enumerate(seeds):
        size = EVAL_SIZES[i % len(EVAL_SIZES)]
        scene = SyntheticScene(size[0], size[1], fps=10.0, seed=s, objects=1 + i % 8, classes=LABELS)
        for index in (150 * k + 7 * i for k in range(frames_per_scene)):
            frame, truth = scene.render(index)
            boxes = np.array([ob.box for ob in truth], np.float32).reshape(-1, 4)
            out.append((frame, boxes, np.array([ob.class_id for ob in truth], np.int64)))
    return out
