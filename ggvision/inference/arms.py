"""A/B arms of one vision model: A (the configured model) serves; B (`models.<id>.b`) is the candidate.

- shadow: B runs on a sample of A's frames (copies) on its own thread (shadow.py), compared with A's results;
  only A's results are published. A never waits for B: A's batch is not offered to B while A has
  `skipWhenQueued` cameras waiting, nor when B's queue is full (both counted as `b_skipped`).
- split: the cameras with `split_point(camera) < share` are served by B's own VisionWorker; its detections/1.0
  carry `"arm": "b"` (A's `"arm": "a"`). While B is not loaded its cameras stay with A, and a batch B fails on
  is handed to A (`fallback`), so B's failure costs those frames a second run, never their results.
B raising, or giving NaN/infinite scores, is counted in B's `errors` (`b_failed` in A's `ab` block).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import numpy as np

from ..config.inference import ArmSpec, split_point
from ..framebus import FrameDescriptor
from .shadow import ShadowRunner
from .swap import ModelSlot
from .worker import BatchSettings, VisionWorker


class Arm:
    def __init__(self, model_id: str, spec: ArmSpec, settings: BatchSettings,
                 publish: Callable[[str, dict[str, Any]], Any], fallback: Callable[[FrameDescriptor], None]) -> None:
        self.model_id = model_id
        self.spec = spec
        self.slot = ModelSlot(f"{model_id}:b", "vision", spec.source)
        self._settings, self._publish, self._fallback = settings, publish, fallback
        self.runner: ShadowRunner | None = None
        self.worker: VisionWorker | None = None
        self._rng = random.Random()
        self._points: dict[str, float] = {}
        self._start()

    @property
    def mode(self) -> str:
        return self.spec.mode

    def _start(self) -> None:
        if self.spec.mode == "shadow":
            runner = self.runner = ShadowRunner(self.slot.serving, self.slot.stats)
            self.slot.on_swap[:] = [lambda _s: runner.reset()]
        else:
            self.slot.on_swap[:] = []
            self.worker = VisionWorker(self.slot, self._settings, self._publish, tag="b", fallback=self._fallback)
            self.worker.start()

    def _stop(self) -> None:
        if self.runner is not None:
            self.runner.close()
        if self.worker is not None:
            self.worker.stop()
        self.runner = self.worker = None

    def update(self, spec: ArmSpec) -> bool:
        """A new configuration of this arm; True when B's model must be (re)loaded."""
        old, self.spec = self.spec, spec
        if old.mode != spec.mode:
            self._stop()
            self._start()
        if spec.source != self.slot.source:
            self.slot.source = spec.source
            return True
        return False

    def close(self) -> None:
        self._stop()
        self.slot.close()

    # -- split ------------------------------------------------------------------------------------
    def serves(self, camera: str) -> VisionWorker | None:
        """B's worker when it serves `camera` now (split, loaded, camera inside the share), else None."""
        if self.worker is None or not self.slot.ready:
            return None
        point = self._points.get(camera)
        if point is None:
            point = self._points[camera] = split_point(camera)
        return self.worker if point < self.spec.share else None

    # -- shadow -----------------------------------------------------------------------------------
    def after_a_batch(self, a: VisionWorker, frames: list[np.ndarray], results: list[dict[str, Any]],
                      a_ms_per_frame: float) -> None:
        """A published a batch: offer a sample of it to B unless A has work waiting (B's cost is bounded)."""
        runner = self.runner
        if runner is None or not self.slot.ready:
            return
        picked = [i for i in range(len(frames)) if self._rng.random() < self.spec.sample_rate]
        if not picked:
            return
        if a.batcher.depth >= self.spec.skip_when_queued:
            runner.skip(len(picked))
            return
        # copies: A's frame buffers are reused by its next batch
        runner.submit([frames[i].copy() for i in picked], [results[i] for i in picked], a_ms_per_frame)

    # -- metrics ----------------------------------------------------------------------------------
    def block(self) -> dict[str, Any]:
        """The `ab` block of both arms' inference-metrics/1.0 messages."""
        m = self.slot.current
        out: dict[str, Any] = {"mode": self.mode, "b_model": m.manifest.name if m else None,
                               "b_version": m.manifest.version if m else None,
                               "b_failed": self.slot.stats.errors, "b_load_errors": self.slot.stats.load_errors}
        if self.runner is not None:
            out["sample_rate"] = self.spec.sample_rate
            out["b_skipped"] = self.runner.skipped
            out["agreement"] = self.runner.agreement.summary()
        else:
            out["share"] = self.spec.share
            out["b_cameras"] = sorted(c for c, p in self._points.items() if p < self.spec.share)[:64]
        return out
