"""Synthetic scenes: deterministic moving objects with exact ground truth, for the demo camera, training and tests.

Every frame is a pure function of (seed, frame index): objects move on bouncing straight lines, the
lighting follows a slow sine, and per-frame sensor noise comes from a generator seeded with
(seed, index). So any frame can be rendered on its own (the worker renders only the frames it
delivers unless it records) and the ground-truth boxes of each frame are exact.

`ScriptedScene` is the other kind: objects on scripted paths (piecewise straight, in time), for counting
analytics with known answers; `counting_scene` scripts a mixed crowd around a line and a zone — people
crossing at walking to running speeds, crossing and coming back, turning just before the line, loitering in
the zone, walking in pairs — and `Walker.at` gives each one's exact anchor at any time (bench/analytics.py).
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


# -- scripted paths (counting analytics) ----------------------------------------------------------------

@dataclass(frozen=True)
class Walker:
    """An object on a scripted path: its anchor (bottom centre of the box, pixels) at the given times, straight
    in between; absent before the first and after the last."""

    track_id: int
    label: str
    class_id: int
    w: float
    h: float
    path: tuple[tuple[float, float, float], ...]  # (t, x, y)
    color: tuple[int, int, int] = (40, 40, 200)
    kind: str = ""  # what the script made it do (crossing, back, turn, loiter, pair)

    def at(self, t: float) -> tuple[float, float] | None:
        p = self.path
        if not p[0][0] <= t <= p[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in zip(p, p[1:], strict=False):
            if t <= t1:
                f = (t - t0) / (t1 - t0) if t1 > t0 else 1.0
                return x0 + f * (x1 - x0), y0 + f * (y1 - y0)
        return p[-1][1], p[-1][2]

    def box(self, t: float) -> tuple[float, float, float, float] | None:
        a = self.at(t)
        if a is None:
            return None
        return (a[0] - self.w / 2, a[1] - self.h, a[0] + self.w / 2, a[1])


class ScriptedScene:
    """Walkers over a still background; `truth(t)` and `render(t)` like SyntheticScene's, by time."""

    def __init__(self, width: int, height: int, walkers: list[Walker], seed: int = 0) -> None:
        self.width, self.height, self.walkers, self.seed = width, height, walkers, seed
        self.background = SyntheticScene(width, height, seed=seed, objects=0).background

    def truth(self, t: float) -> list[ObjectBox]:
        out = []
        for w in self.walkers:
            b = w.box(t)
            if b is not None:
                x1, y1, x2, y2 = b
                out.append(ObjectBox(w.class_id, w.label, w.track_id, (max(x1, 0.0), max(y1, 0.0),
                                                                       min(x2, self.width), min(y2, self.height))))
        return out

    def render(self, t: float) -> tuple[np.ndarray, list[ObjectBox]]:
        boxes = self.truth(t)
        img = self.background.copy()
        by_id = {w.track_id: w for w in self.walkers}
        for ob in sorted(boxes, key=lambda b: b.box[3]):  # nearer (lower) objects occlude farther ones
            b = by_id[ob.track_id].box(t)
            assert b is not None
            x1, y1, x2, y2 = (int(round(v)) for v in b)
            _draw_person(img, x1, y1, x2 - x1, y2 - y1, by_id[ob.track_id].color)
        noise = np.random.default_rng((self.seed, round(t * 1000))).standard_normal(
            (self.height, self.width, 1), np.float32)
        return np.clip(img.astype(np.float32) + noise * NOISE_SIGMA, 0, 255).astype(np.uint8), boxes


def counting_scene(width: int = 1280, height: int = 720, duration_s: float = 600.0, seed: int = 0,
                   line_y: float = 0.55, zone: tuple[float, float, float, float] = (0.05, 0.65, 0.35, 0.95),
                   person_h: tuple[float, float] = (0.125, 0.195)) -> ScriptedScene:
    """A crowd scripted around a horizontal line at `line_y` (spanning x 0.1..0.9) and a zone (x1, y1, x2, y2),
    all normalised: a new arrival every 1-4 s, each one of: crossing (down or up, 45-250 px/s, a fifth of them
    running at 300-500 px/s), crossing and coming back, turning just before the line, loitering 5-40 s in the
    zone, or a pair side by side crossing together. Sizes are `person_h` of the frame height, speeds are for a
    720-pixel-high frame and scale with it."""
    rng = np.random.default_rng(seed)
    W, H = float(width), float(height)
    ly = line_y * H
    k = H / 720.0  # speeds and steps are for 720 p
    walkers: list[Walker] = []
    t = 0.0

    def person(kind: str, path: list[tuple[float, float, float]], h: float) -> None:
        color = tuple(int(v) for v in rng.integers(20, 230, 3))
        walkers.append(Walker(len(walkers) + 1, "person", 0, 0.4 * h, h, tuple(path), color, kind))  # type: ignore[arg-type]

    def leg(path: list[tuple[float, float, float]], x: float, y: float, v: float) -> None:
        t0, x0, y0 = path[-1]
        path.append((t0 + math.hypot(x - x0, y - y0) / v, x, y))

    while t < duration_s - 30:
        t += float(rng.uniform(1.0, 4.0))
        h = float(rng.uniform(*person_h)) * H
        v = k * (float(rng.uniform(300, 500)) if rng.random() < 0.2 else float(rng.uniform(45, 250)))
        down = bool(rng.random() < 0.5)
        y_from, y_to = (0.3 * H, 0.97 * H) if down else (0.97 * H, 0.3 * H)
        x0 = float(rng.uniform(0.15, 0.85)) * W
        x1 = float(np.clip(x0 + rng.uniform(-0.2, 0.2) * W, 0.12 * W, 0.88 * W))
        kind = str(rng.choice(["crossing", "crossing", "back", "turn", "loiter", "pair"]))
        path = [(t, x0, y_from)]
        if kind in ("crossing", "pair"):
            leg(path, x1, y_to, v)
            person(kind, path, h)
            if kind == "pair":
                dx = float(rng.uniform(0.6, 1.2)) * 0.4 * h
                person(kind, [(pt, px + dx, py) for pt, px, py in path], h * float(rng.uniform(0.95, 1.05)))
        elif kind == "back":  # over the line by 0.05-0.2 H, a pause, back where it came from
            beyond = ly + (1 if down else -1) * float(rng.uniform(0.05, 0.2)) * H
            leg(path, x1, beyond, v)
            t_end = path[-1][0] + float(rng.uniform(0, 2))
            path.append((t_end, x1, beyond))
            leg(path, x0, y_from, v)
            person(kind, path, h)
        elif kind == "turn":  # up to 0.04 H short of the line (inside the default band or just outside), back
            short = ly - (1 if down else -1) * float(rng.uniform(0.005, 0.04)) * H
            leg(path, x1, short, v)
            path.append((path[-1][0] + float(rng.uniform(0.5, 3)), x1, short))
            leg(path, x0, y_from, v)
            person(kind, path, h)
        else:  # loiter: from the bottom edge into the zone, sway there, leave to the left edge
            zx1, zy1, zx2, zy2 = (zone[0] * W, zone[1] * H, zone[2] * W, zone[3] * H)
            path = [(t, float(rng.uniform(zx1, zx2)), 1.0 * H)]
            cx, cy = float(rng.uniform(zx1 + 40 * k, zx2 - 40 * k)), float(rng.uniform(zy1 + 30 * k, zy2 - 30 * k))
            leg(path, cx, cy, min(v, 150.0 * k))
            stay_until = path[-1][0] + float(rng.uniform(5, 40))
            while path[-1][0] < stay_until:  # small steps in place
                px, py = cx + k * float(rng.uniform(-25, 25)), cy + k * float(rng.uniform(-15, 15))
                leg(path, px, py, 30.0 * k)
                path.append((path[-1][0] + float(rng.uniform(0.5, 3)), px, py))
            leg(path, 0.0, cy, min(v, 150.0 * k))
            person(kind, path, h)
    return ScriptedScene(width, height, walkers, seed)
