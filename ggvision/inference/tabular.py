"""The fire-risk pipeline of one tabular model: per sensor, the latest radiometric thermal frame (frame/1.0,
float32 °C [120,160,1]) and the latest gas/1.0 reading become one feature row (fire_features.feature_vector);
due sensors run as one batch, at most once per `period_s` each and only on a thermal frame not used before.
Results go out as detections/1.0 with task "tabular" and the model's outputs (fire_probability, label).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..framebus import FrameDescriptor
from .frames import RingReader
from .shadow import scores_of
from .swap import ModelSlot
from .worker import DETECTIONS, detections_message

log = logging.getLogger("ggvision.inference")

_GAS = re.compile(r"^gas/1\.\d+$")
GAS_FIELDS = ("co2_ppm", "temperature_c", "humidity_pct")


def parse_gas(msg: Any) -> tuple[str, dict[str, float]]:
    """(sensor id, reading) from a gas/1.x message; ValueError naming the field."""
    if not isinstance(msg, dict):
        raise ValueError("gas reading: expected a JSON object")
    schema = msg.get("schema")
    if not isinstance(schema, str) or not _GAS.match(schema):
        raise ValueError(f"gas reading field 'schema': expected gas/1.x, got {str(schema)[:40]!r}")
    sensor = msg.get("sensor")
    if not isinstance(sensor, str) or not sensor:
        raise ValueError("gas reading field 'sensor': expected a non-empty string")
    out = {}
    for f in GAS_FIELDS:
        v = msg.get(f)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"gas reading field {f!r}: expected a finite number, got {v!r}")
        out[f] = float(v)
    return sensor, out


def is_thermal(desc: FrameDescriptor) -> bool:
    """Radiometric frames (float32 °C, one channel) feed tabular models; everything else is video."""
    return desc.dtype == "float32" and desc.shape[2] == 1


class TabularWorker:
    def __init__(self, slot: ModelSlot, period_s: float, publish: Callable[[str, dict[str, Any]], Any],
                 features: Callable[[np.ndarray, dict[str, float]], np.ndarray] | None = None) -> None:
        self.slot = slot
        self.period_s = period_s
        self._publish = publish
        self._features = features
        self._lock = threading.Lock()
        self._frames: dict[str, tuple[FrameDescriptor, float]] = {}  # sensor -> latest thermal frame, arrival
        self._gas: dict[str, dict[str, float]] = {}
        self._done: dict[str, tuple[float, str, int]] = {}  # sensor -> (last run, ring, sequence used)
        self._reader = RingReader()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"inference-{slot.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, desc: FrameDescriptor) -> None:
        with self._lock:
            self._frames[desc.camera] = (desc, time.monotonic())
        self._wake.set()

    def offer_gas(self, sensor: str, reading: dict[str, float]) -> None:
        with self._lock:
            self._gas[sensor] = reading
        self._wake.set()

    def forget(self, sensor: str) -> None:
        with self._lock:
            self._frames.pop(sensor, None)
            self._gas.pop(sensor, None)
            self._done.pop(sensor, None)

    def wake(self) -> None:
        self._wake.set()

    @property
    def depth(self) -> int:
        """Sensors with an unused thermal frame and a gas reading."""
        with self._lock:
            return len(self._due(time.monotonic(), ignore_period=True))

    def _due(self, now: float, ignore_period: bool = False) -> list[tuple[str, FrameDescriptor, float]]:
        out = []
        for sensor, (desc, arrived) in self._frames.items():
            if sensor not in self._gas:
                continue
            last = self._done.get(sensor)
            if last is not None:
                if (last[1], last[2]) == (desc.ring, desc.sequence):
                    continue  # no new thermal frame since the last run
                if not ignore_period and now - last[0] < self.period_s:
                    continue
            out.append((sensor, desc, arrived))
        return out

    def _next_due_in(self, now: float) -> float:
        with self._lock:
            waits = [self.period_s - (now - last[0]) for last in self._done.values()]
        return max(0.01, min([w for w in waits if w > 0], default=1.0))

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                model = self.slot.serving()
                now = time.monotonic()
                with self._lock:
                    due = self._due(now) if model is not None else []
                    gas = {s: dict(self._gas[s]) for s, _, _ in due}
                    for sensor, desc, _ in due:
                        self._done[sensor] = (now, desc.ring, desc.sequence)
                if due:
                    self._process(model, due, gas, now)
                    continue
                self._wake.wait(min(self._next_due_in(now), 0.25))
                self._wake.clear()
        except Exception:
            log.exception("model %s: worker stopped by an unexpected error", self.slot.name)
        finally:
            self._reader.close()

    def _feature_fn(self) -> Callable[[np.ndarray, dict[str, float]], np.ndarray]:
        if self._features is None:
            from ..model.fire_features import feature_vector

            self._features = feature_vector
        return self._features

    def _process(self, model: Any, due: list[tuple[str, FrameDescriptor, float]], gas: dict[str, dict[str, float]],
                 start: float) -> None:
        rows, descs, queue_ms = [], [], []
        features = self._feature_fn()
        for sensor, desc, arrived in due:
            frame = self._reader.read(desc)
            if frame is None:
                self.slot.stats.add_dropped()
                continue
            try:
                rows.append(features(frame, gas[sensor]))
            except Exception as e:
                self.slot.stats.record_error(f"features of {sensor}: {type(e).__name__}: {e}")
                log.warning("model %s: no features for %s: %s", self.slot.name, sensor, e)
                continue
            descs.append(desc)
            queue_ms.append((start - arrived) * 1000)
        if not rows:
            return
        try:
            results, timings = model.infer(rows)
        except Exception as e:
            self.slot.stats.record_error(f"{type(e).__name__}: {e}")
            log.error("model %s: inference failed for %d sensors: %s: %s", self.slot.name, len(rows),
                      type(e).__name__, e)
            return
        n = len(rows)
        for desc, result, q in zip(descs, results, queue_ms, strict=True):
            self._publish(DETECTIONS.format(camera=desc.camera),
                          detections_message(desc, model.manifest, result, {"queue": q, **timings}, n))
        self.slot.stats.record_batch(n, float(timings.get("inference", 0.0)), scores_of(results))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(30)
