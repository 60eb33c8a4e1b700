"""The B arm in shadow mode: a candidate runs on a sampled fraction of the serving (A) model's frames, off A's
path, and its agreement with A is measured. Shadow results are never published as detections (arms.py holds the
arm; split mode serves cameras with B instead).

Agreement per sampled frame: primary and shadow detections are matched greedily by IoU (same label, IoU >= 0.5,
best pairs first). Over all sampled frames since the shadow was loaded:
  matched_ratio    = matched pairs / sum over frames of max(#primary, #shadow)  (1.0 when both found nothing)
  iou_mean         = mean IoU of matched pairs
  score_delta_mean = mean (shadow score - primary score) over matched pairs
  latency_ratio    = shadow inference ms per frame / primary inference ms per frame
  per label (A's label for a flip): matched pairs, label_flips (unmatched A and B boxes with IoU >= 0.5 but
  different labels), a_only and b_only (what is left unmatched)
Classification models: a frame matches when the top-1 labels agree (IoU 1 by convention).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .stats import ModelStats

log = logging.getLogger("ggvision.inference")

MATCH_IOU = 0.5


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N,4 xyxy) with every box in b (M,4)."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(primary: list[dict[str, Any]], shadow: list[dict[str, Any]],
          min_iou: float = MATCH_IOU) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching of detections with the same label: (primary index, shadow index, IoU)."""
    if not primary or not shadow:
        return []
    iou = iou_matrix(np.asarray([d["box"] for d in primary], np.float64),
                     np.asarray([d["box"] for d in shadow], np.float64))
    same = np.asarray([[p["label"] == s["label"] for s in shadow] for p in primary])
    iou = np.where(same, iou, 0.0)
    pairs = []
    used_p: set[int] = set()
    used_s: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        i, j = divmod(int(flat), iou.shape[1])
        v = float(iou[i, j])
        if v < min_iou:
            break
        if i in used_p or j in used_s:
            continue
        used_p.add(i)
        used_s.add(j)
        pairs.append((i, j, v))
    return pairs


def flips(primary: list[dict[str, Any]], shadow: list[dict[str, Any]], min_iou: float = MATCH_IOU
          ) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs of boxes in the same place (IoU >= min_iou) whatever their labels."""
    relabel = [{**d, "label": ""} for d in primary], [{**d, "label": ""} for d in shadow]
    return [(i, j) for i, j, _ in match(*relabel, min_iou)]


MAX_LABELS = 32  # labels kept per figure (bounded metric label sets)


def _bump(counts: dict[str, int], label: str) -> None:
    if label in counts or len(counts) < MAX_LABELS:
        counts[label] = counts.get(label, 0) + 1


@dataclass
class Agreement:
    frames: int = 0
    matched: int = 0
    possible: int = 0
    iou_sum: float = 0.0
    score_delta_sum: float = 0.0
    shadow_ms: float = 0.0  # inference ms per frame, summed over sampled frames
    primary_ms: float = 0.0
    by_label: dict[str, dict[str, int]] = field(default_factory=lambda: {
        "matched": {}, "label_flips": {}, "a_only": {}, "b_only": {}})

    def add(self, primary: dict[str, Any], shadow: dict[str, Any], primary_ms: float, shadow_ms: float) -> None:
        self.frames += 1
        self.primary_ms += primary_ms
        self.shadow_ms += shadow_ms
        if "classes" in primary or "classes" in shadow:
            p, s = primary.get("classes") or [], shadow.get("classes") or []
            self.possible += 1
            if p and s and p[0]["label"] == s[0]["label"]:
                self.matched += 1
                self.iou_sum += 1.0
                self.score_delta_sum += float(s[0]["score"]) - float(p[0]["score"])
                _bump(self.by_label["matched"], str(p[0]["label"]))
            elif p and s:
                _bump(self.by_label["label_flips"], str(p[0]["label"]))
            elif p or s:
                _bump(self.by_label["a_only" if p else "b_only"], str((p or s)[0]["label"]))
            return
        p, s = primary.get("detections") or [], shadow.get("detections") or []
        self.possible += max(len(p), len(s))
        used_p, used_s = set(), set()
        for i, j, v in match(p, s):
            self.matched += 1
            self.iou_sum += v
            self.score_delta_sum += float(s[j]["score"]) - float(p[i]["score"])
            used_p.add(i)
            used_s.add(j)
            _bump(self.by_label["matched"], str(p[i]["label"]))
        rest_p = [i for i in range(len(p)) if i not in used_p]
        rest_s = [j for j in range(len(s)) if j not in used_s]
        for i, j in flips([p[i] for i in rest_p], [s[j] for j in rest_s]):
            _bump(self.by_label["label_flips"], str(p[rest_p[i]]["label"]))
            used_p.add(rest_p[i])
            used_s.add(rest_s[j])
        for i in range(len(p)):
            if i not in used_p:
                _bump(self.by_label["a_only"], str(p[i]["label"]))
        for j in range(len(s)):
            if j not in used_s:
                _bump(self.by_label["b_only"], str(s[j]["label"]))

    def summary(self) -> dict[str, Any]:
        ratio = round(self.matched / self.possible, 4) if self.possible else (1.0 if self.frames else None)
        return {
            "frames": self.frames,
            "matched_ratio": ratio,
            "iou_mean": round(self.iou_sum / self.matched, 4) if self.matched else None,
            "score_delta_mean": round(self.score_delta_sum / self.matched, 4) if self.matched else None,
            "latency_ratio": round(self.shadow_ms / self.primary_ms, 4) if self.primary_ms > 0 else None,
            **{k: sum(v.values()) for k, v in self.by_label.items()},
            "by_label": {k: dict(v) for k, v in self.by_label.items()},
        }


@dataclass
class _Job:
    frames: list[np.ndarray]
    primary: list[dict[str, Any]]
    primary_ms_per_frame: float


class ShadowRunner:
    """Runs the shadow model on its own thread; a job arriving while two wait replaces the oldest (skipped).
    B raising or producing non-finite scores is counted in its stats' errors; A never waits for B."""

    def __init__(self, current: Callable[[], Any], stats: ModelStats | None = None) -> None:
        self._current = current  # -> the shadow's LoadedModel, or None while none is loaded
        self.stats = stats if stats is not None else ModelStats()
        self.agreement = Agreement()
        self.skipped = 0
        self._jobs: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="inference-shadow", daemon=True)
        self._thread.start()

    def skip(self, n: int) -> None:
        """A's batch was not offered to B (A would fall behind)."""
        with self._cond:
            self.skipped += n

    def submit(self, frames: list[np.ndarray], primary: list[dict[str, Any]], primary_ms_per_frame: float) -> None:
        with self._cond:
            if len(self._jobs) >= 2:
                self._jobs.popleft()
                self.skipped += len(frames)
            self._jobs.append(_Job(frames, primary, primary_ms_per_frame))
            self._cond.notify()

    def reset(self) -> None:
        """A new shadow model: agreement starts over (waiting jobs stay: the new model runs them)."""
        with self._cond:
            self.agreement = Agreement()
            self.stats.new_model()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._jobs or self._stop)
                if self._stop:
                    return
                job = self._jobs.popleft()
            model = self._current()  # may take a staged model, which resets the agreement: read it after
            if model is None:
                continue
            with self._cond:
                agreement = self.agreement
            try:
                results, timings = model.infer(job.frames)
            except Exception as e:
                self.stats.record_error(f"{type(e).__name__}: {e}")
                log.warning("shadow model %s failed on a batch of %d: %s", model.manifest.name, len(job.frames), e)
                continue
            n = len(job.frames)
            ms = float(timings.get("inference", 0.0))
            if not all_finite(results):
                self.stats.record_error("non-finite scores in the output")
                continue
            self.stats.record_batch(n, ms, scores_of(results), results)
            for p, s in zip(job.primary, results, strict=True):
                agreement.add(p, s, job.primary_ms_per_frame, ms / n)

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(5)


def scores_of(results: list[dict[str, Any]]) -> list[float]:
    """The scores a model produced (detections, top-1 class, or tabular probability) for the score histogram."""
    out: list[float] = []
    for r in results:
        if "detections" in r:
            out.extend(float(d["score"]) for d in r["detections"])
        elif r.get("classes"):
            out.append(float(r["classes"][0]["score"]))
        elif isinstance(r.get("outputs"), dict):  # tabular: its probability output
            nums = [v for v in r["outputs"].values() if isinstance(v, int | float) and not isinstance(v, bool)]
            if nums:
                out.append(float(r["outputs"].get("fire_probability", nums[0])))
    return out


def all_finite(results: list[dict[str, Any]]) -> bool:
    """False when a result carries a NaN or infinite score or box (a candidate that went bad at run time)."""
    for r in results:
        for d in (r.get("detections") or []) + (r.get("classes") or []):
            vals = [d.get("score", 0.0), *(d.get("box") or ())]
            if not all(np.isfinite(float(v)) for v in vals):
                return False
    return True
