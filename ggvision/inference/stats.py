"""Per-model counters and recent distributions for inference-metrics/1.x, and per-camera message counts.

Counters (runs, errors, frames, dropped_frames, load_errors) are cumulative for the process. Latency and batch
size are over the last WINDOW batches and scores over the last SCORE_WINDOW scores, so a metrics message shows
the model as it behaves now (Health's gates compare p95 latency and confidence drift across periods).
`detections_per_frame` (per label, since the model was loaded, over `label_frames` frames) describes what an arm
finds (docs/inference.md); the rollout's A/B report turns consecutive values into per-interval rates.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np

WINDOW = 1024
SCORE_WINDOW = 4096
HIST_BINS = 10
MAX_LABELS = 32  # labels counted per model (a bounded metric label set)
MAX_CAMERAS = 1024  # cameras counted by CameraCounts (a runaway camera set cannot grow the metrics without bound)


class CameraCounts:
    """detections/1.x messages published per camera, for inference-metrics' `cameras` block: Health's detection fps
    and hung-inference watchdog read these instead of subscribing to every detections message. The last message's
    frame timestamp makes the count exact over frames: between two metrics messages, the frames of that camera
    analysed against the frames its timestamps span (bench/suite.py's analysed-vs-asked)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # camera -> [messages, monotonic time of the last, the last one's frame timestamp (None: not known)]
        self._counts: dict[str, list[Any]] = {}

    def note(self, camera: str, frame_ts: float | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            c = self._counts.get(camera)
            if c is None:
                if len(self._counts) >= MAX_CAMERAS:
                    return
                c = self._counts[camera] = [0, now, None]
            c[0] += 1
            c[1] = now
            if frame_ts is not None:
                c[2] = frame_ts

    def snapshot(self, now: float | None = None) -> dict[str, dict[str, float]]:
        now = time.monotonic() if now is None else now
        with self._lock:
            out: dict[str, dict[str, float]] = {}
            for cam, (n, at, ts) in sorted(self._counts.items()):
                out[cam] = {"detection_msgs": int(n), "last_age_s": round(max(0.0, now - at), 3)}
                if ts is not None:
                    out[cam]["last_frame_ts"] = round(ts, 6)
            return out


class ModelStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0  # inference calls (batches), failed ones included
        self.errors = 0  # inference calls that raised
        self.frames = 0  # frames that got a result
        self.dropped_frames = 0  # latest-frame replacements + frames overwritten in the ring before reading
        self.load_errors = 0  # models refused (digest mismatch, wrong shape, load failure)
        self.last_error = ""
        self._infer_ms: deque[float] = deque(maxlen=WINDOW)
        self._batch: deque[int] = deque(maxlen=WINDOW)
        self._scores: deque[float] = deque(maxlen=SCORE_WINDOW)
        self._rate_mark = (time.monotonic(), 0)
        self._label_frames = 0  # frames since the model was loaded (detections_per_frame's denominator)
        self._labels: dict[str, int] = {}

    def record_batch(self, size: int, inference_ms: float, scores: list[float],
                     results: list[dict[str, Any]] | None = None) -> None:
        with self._lock:
            self.runs += 1
            self.frames += size
            self._infer_ms.append(inference_ms)
            self._batch.append(size)
            self._scores.extend(scores)
            if results is not None:
                self._label_frames += size
                for r in results:
                    for d in r.get("detections") or (r.get("classes") or [])[:1]:
                        label = str(d["label"])
                        if label in self._labels or len(self._labels) < MAX_LABELS:
                            self._labels[label] = self._labels.get(label, 0) + 1

    def record_error(self, message: str) -> None:
        with self._lock:
            self.runs += 1
            self.errors += 1
            self.last_error = message[:500]

    def record_load_error(self, message: str) -> None:
        with self._lock:
            self.load_errors += 1
            self.last_error = message[:500]

    def add_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped_frames += n

    def new_model(self) -> None:
        """A different model now serves: recent latencies and scores describe the old one."""
        with self._lock:
            self._infer_ms.clear()
            self._batch.clear()
            self._scores.clear()
            self._label_frames = 0
            self._labels.clear()

    def mean_infer_ms_per_frame(self) -> float | None:
        with self._lock:
            n = sum(self._batch)
            return sum(self._infer_ms) / n if n else None

    def snapshot(self) -> dict[str, Any]:
        """The inference-metrics/1.x fields these counters feed (cumulative counters, recent distributions)."""
        now = time.monotonic()
        with self._lock:
            lat = np.asarray(self._infer_ms, dtype=np.float64)
            scores = np.asarray(self._scores, dtype=np.float64)
            batch = list(self._batch)
            t0, runs0 = self._rate_mark
            self._rate_mark = (now, self.runs)
            out: dict[str, Any] = {
                "runs": self.runs, "errors": self.errors, "frames": self.frames,
                "dropped_frames": self.dropped_frames, "load_errors": self.load_errors,
                "batches_per_s": round((self.runs - runs0) / (now - t0), 3) if now > t0 else 0.0,
            }
            if self.last_error:
                out["last_error"] = self.last_error
            if self._label_frames:
                out["label_frames"] = self._label_frames  # what detections_per_frame is over
                out["detections_per_frame"] = {k: round(v / self._label_frames, 4)
                                               for k, v in sorted(self._labels.items())}
        if lat.size:
            p50, p95, p99 = np.percentile(lat, [50, 95, 99])
            out["latency_ms"] = {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "p99": round(float(p99), 3)}
        else:
            out["latency_ms"] = {"p50": None, "p95": None, "p99": None}
        out["batch_size_mean"] = round(sum(batch) / len(batch), 3) if batch else None
        if scores.size:
            out["score_mean"] = round(float(scores.mean()), 4)
            hist, _ = np.histogram(np.clip(scores, 0.0, 1.0), bins=HIST_BINS, range=(0.0, 1.0))
            out["score_hist"] = [int(h) for h in hist]
        else:
            out["score_mean"] = None
            out["score_hist"] = [0] * HIST_BINS
        return out
