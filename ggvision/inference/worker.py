"""The vision pipeline of one model: batch → read frames from the rings → infer → one detections/1.0 message per
frame; with an A/B arm (arms.py) a sampled share of A's frames also goes to B in shadow mode, and B's own worker
serves its cameras in split mode (messages tagged `"arm"`).

Each VisionWorker owns one thread. The model it runs is looked up once per batch (`slot.serving()`), which is
where a hot swap takes effect: between two batches, never inside one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..component import cpus
from ..contract.topics import DETECTIONS
from ..framebus import FrameDescriptor
from .batcher import Batcher, Pending
from .frames import RingReader
from .shadow import all_finite, scores_of
from .swap import ModelSlot

log = logging.getLogger("ggvision.inference")

SCHEMA = "detections/1.0"
IDLE_WAIT_S = 0.25  # how often an idle worker looks for a staged model


class BatchSettings:
    """Live batch settings shared with the component (a configuration update changes them in place)."""

    def __init__(self, max_size: int = 8, deadline_ms: float = 15.0, burst_ms: float = 100.0) -> None:
        self.max_size = max_size
        self.deadline_s = deadline_ms / 1000
        self.burst_s = burst_ms / 1000  # the batcher's hold_s (batcher.py)
        self.model_cpus: tuple[int, ...] | None = None  # the workers' CPUs (modelCpus; None: the process's)


def detections_message(desc: FrameDescriptor, manifest: Any, result: dict[str, Any], timings: dict[str, float],
                       batch_size: int, arm: str | None = None) -> dict[str, Any]:
    """detections/1.0 for one frame; `result` is the model's per-frame part (detections | classes | outputs)."""
    msg: dict[str, Any] = {
        "schema": SCHEMA, "camera": desc.camera, "sequence": desc.sequence, "timestamp": desc.timestamp,
        "frame": {"ring": desc.ring, "slot": desc.slot, "generation": desc.generation, "shape": list(desc.shape)},
        "model": {"name": manifest.name, "version": manifest.version, "family": manifest.family},
        "task": manifest.task,
    }
    if "detections" in result:
        msg["detections"] = [{"label": str(d["label"]), "class_id": int(d["class_id"]),
                              "score": round(float(d["score"]), 4),
                              "box": [round(float(v), 1) for v in d["box"]]} for d in result["detections"]]
    if "classes" in result:
        msg["classes"] = [{"label": str(c["label"]), "class_id": int(c["class_id"]),
                           "score": round(float(c["score"]), 4)} for c in result["classes"]]
    if "outputs" in result:
        msg["outputs"] = {k: (round(float(v), 4) if isinstance(v, float | np.floating) else v)
                          for k, v in result["outputs"].items()}
    msg["timings_ms"] = {k: round(float(v), 3) for k, v in timings.items()}
    msg["batch_size"] = batch_size
    if arm is not None:
        msg["arm"] = arm  # "a" or "b" while the model has a candidate (docs/inference.md, A/B arms)
    return msg


class VisionWorker:
    def __init__(self, slot: ModelSlot, settings: BatchSettings, publish: Callable[[str, dict[str, Any]], Any],
                 arm: Callable[[], Any] = lambda: None, tag: str | None = None,
                 fallback: Callable[[FrameDescriptor], None] | None = None) -> None:
        self.slot = slot
        self.settings = settings
        self.batcher = Batcher(hold_s=settings.burst_s)
        self._publish = publish
        self._arm = arm  # -> the model's Arm (arms.py) while it has a candidate, else None
        self.tag = tag  # "b" for a split arm's worker; A's follows whether an arm exists
        self._fallback = fallback  # B in split mode: a failed batch's frames go to A
        self._reader = RingReader(reuse=True)
        self._stop = threading.Event()
        self._last_error_log = 0.0
        self._thread = threading.Thread(target=self._run, name=f"inference-{slot.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, desc: FrameDescriptor) -> None:
        gone = self.batcher.offer(desc.camera, desc)
        if gone:
            self.slot.stats.add_dropped(len(gone))

    def forget(self, camera: str) -> None:
        gone = self.batcher.forget(camera)
        if gone:
            self.slot.stats.add_dropped(len(gone))

    def wake(self) -> None:
        self.batcher.wake()

    def _run(self) -> None:
        pinned: object = ()  # what modelCpus this thread was last set to (() : not yet)
        try:
            while not self._stop.is_set():
                if self.settings.model_cpus != pinned:  # live: a configuration update moves the thread
                    pinned = self.settings.model_cpus
                    cpus.pin_thread(self.settings.model_cpus)  # refused: logged once, the thread stays put
                model = self.slot.serving()
                if model is None:
                    self._stop.wait(IDLE_WAIT_S)  # pending frames wait (latest per camera) for the first model
                    continue
                size = self.settings.max_size
                if model.max_batch is not None:
                    size = min(size, model.max_batch)
                self.batcher.hold_s = self.settings.burst_s  # live: a configuration update changes it
                batch = self.batcher.take(size, self.settings.deadline_s, timeout=IDLE_WAIT_S)
                if batch:
                    self._process(model, batch)
        except Exception:
            log.exception("model %s: worker stopped by an unexpected error", self.slot.name)
        finally:
            cpus.unpin_thread()
            self._reader.close()

    def _process(self, model: Any, batch: list[Pending]) -> None:
        start = time.monotonic()
        arm = self._arm()
        # Without an A/B arm the model reads each frame in its ring slot (no 2.7 MB copy per 720p frame) and a frame
        # the writer reused meanwhile has its result discarded (the ring's generation check, after the batch). An
        # arm gets private copies: it uses them after this batch (arms.py).
        in_place = arm is None
        descs: list[FrameDescriptor] = []
        frames: list[np.ndarray] = []
        queue_ms: list[float] = []
        for p in batch:
            frame = self._reader.view(p.item) if in_place else self._reader.read(p.item)
            if frame is None:  # overwritten in the ring before we got to it
                self.slot.stats.add_dropped()
                continue
            descs.append(p.item)
            frames.append(frame)
            queue_ms.append((start - p.arrived) * 1000)
        if not frames:
            return
        try:
            results, timings = model.infer(frames)
            if self._fallback is not None and not all_finite(results):
                raise ValueError("non-finite scores in the output")
        except Exception as e:
            if in_place:
                frames.clear()
                for desc in descs:
                    self._reader.unchanged(desc)  # counted as read or torn; the batch failed either way
            self.slot.stats.record_error(f"{type(e).__name__}: {e}")
            if self._fallback is not None:
                for desc in descs:
                    self._fallback(desc)
            now = time.monotonic()
            if now - self._last_error_log > 10:  # an error per batch would flood the log
                self._last_error_log = now
                log.error("model %s: inference failed on a batch of %d (%d errors so far): %s: %s", self.slot.name,
                          len(descs), self.slot.stats.errors, type(e).__name__, e)
            return
        n = len(frames)
        if in_place:
            frames.clear()  # the views end here; results of frames overwritten while the model read them go
            kept = [i for i, desc in enumerate(descs) if self._reader.unchanged(desc)]
            if len(kept) < n:
                self.slot.stats.add_dropped(n - len(kept))
                descs, results, queue_ms = ([x[i] for i in kept] for x in (descs, results, queue_ms))
        manifest = model.manifest
        tag = self.tag or ("a" if arm is not None else None)
        for desc, result, q in zip(descs, results, queue_ms, strict=True):
            self._publish(DETECTIONS.format(camera=desc.camera), detections_message(
                desc, manifest, result, {"queue": q, **timings}, n, tag))
        if descs:
            self.slot.stats.record_batch(len(descs), float(timings.get("inference", 0.0)), scores_of(results),
                                         results)
        if arm is not None:
            arm.after_a_batch(self, frames, results, float(timings.get("inference", 0.0)) / n)

    def stop(self) -> None:
        self._stop.set()
        self.batcher.close()
        if self._thread.is_alive():
            self._thread.join(30)
