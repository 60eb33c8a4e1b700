"""com.ggvision.Capture: one worker per camera, frames into shared-memory rings, the rings announced over IPC.

Configuration (component DefaultConfiguration, deployment merges, live updates), the model CaptureConfig in
ggvision/config/capture.py:
  cameras:        {camera id: camera settings (CameraConfig), or null to remove one}
  sensors:        {sensor id: {"type": "thermal-sim", "scenario": normal|heater|sunlight|cooking|fire,
                   "seed": 0, "fps": 8.7}} thermal + gas simulators (radiometric float32 °C frames
                   into a ring like video; SCD41 readings on ggvision/v1/sensors/{id}), null removes one
  ringSlots:      slots per camera ring (default 8)
  metricsPeriodS: seconds between metrics messages and frame-rings announcements (default 5)
Each camera's ring is announced on ggvision/v1/frame-rings (frame-rings/1.0: ring name, creation time, detect
rate) when it is created and every metrics period; Inference reads the frames straight from it. A frame/1.0
descriptor per frame goes on ggvision/v1/frames/{camera} only for cameras with `frameDescriptors` on (the
Filter's motion gate needs them); sensors always have them (their tabular model reads descriptors).
Cameras are added, changed and removed by a configuration update without a restart; an invalid
configuration is refused through the validation IPC with the reason and the old one stays.
Per device, the `desired` state of the named shadow `ggvision-capture` (its `cameras` and `sensors`, written by
`ggvision site apply`) is laid over the configuration and followed live; a refused one keeps the last good
state and shows the reason in `reported.error` (ggvision/component/shadow.py, docs/sites.md).
Recording that cannot write (full disk, read-only or forbidden folder, less free than record.minFreeBytes) never
stops frames: the segment is given up, and the condition is counted and logged once for all cameras and shown
in the metrics' `storage` block (ggvision/component/storage.py), which Health exports. The suite's disk budget
(Health's disk-budget/1.0) may ask for `video`: the oldest local segments of every camera go first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..component import ComponentApp, run_component
from ..component.shadow import ShadowFollower
from ..component.storage import StorageFaults
from ..config.base import parse, validator
from ..config.capture import CameraConfig, CaptureConfig, SensorConfig
from ..contract import disk, shadows, topics
from ..contract.topics import FRAMES, SEGMENTS, SENSORS
from ..framebus import FrameRing
from ..framebus.announce import RingInfo, rings_message
from ..sim.thermal import HEIGHT, WIDTH
from .recorder import evict_oldest, recorded
from .thermal import ThermalWorker
from .worker import CameraWorker

log = logging.getLogger("ggvision.capture")

NAME = "com.ggvision.Capture"
METRICS = topics.metrics("capture")


validate = validator(CaptureConfig)  # for ComponentApp: the reason a configuration is refused, or None


class Published:
    """Frames delivered into the ring of one camera or sensor (announced by descriptor or not): what Health's
    camera-silent watchdog reads from the metrics instead of subscribing to every frame (docs/messages.md,
    capture-metrics/1.1)."""

    __slots__ = ("count", "at", "timestamp")

    def __init__(self) -> None:
        self.count = 0
        self.at = 0.0  # monotonic time of the last publish
        self.timestamp = 0.0  # the last frame's own timestamp (epoch seconds)

    def note(self, timestamp: float) -> None:
        self.at, self.timestamp = time.monotonic(), timestamp
        self.count += 1  # last: a reader seeing the count sees the time that goes with it (one writer thread)

    def fields(self, now: float) -> dict[str, Any]:
        if not self.count:
            return {"frames_published": 0, "last_frame_age_s": None, "last_frame_timestamp": None}
        return {"frames_published": self.count, "last_frame_age_s": round(max(0.0, now - self.at), 3),
                "last_frame_timestamp": self.timestamp}


@dataclass
class Camera:
    config: CameraConfig
    worker: CameraWorker
    ring: FrameRing | None = None
    published: Published = field(default_factory=Published)


@dataclass
class Sensor:
    config: SensorConfig
    worker: ThermalWorker
    ring: FrameRing
    published: Published = field(default_factory=Published)


class CaptureComponent:
    def __init__(self, app: ComponentApp) -> None:
        self.app = app
        self.cameras: dict[str, Camera] = {}
        self.sensors: dict[str, Sensor] = {}
        self.slots = 8
        self.metrics_period = 5.0
        self._lock = threading.Lock()
        self.started = time.time()
        self._last_metrics = 0.0
        self.faults = StorageFaults(NAME, log)
        self._evict = 0  # bytes of video the disk budget asked for, deleted by the next tick
        self.budget_evicted = 0

    def apply(self, cfg: dict[str, Any]) -> None:
        """Start, restart or stop workers so the running set matches the configuration."""
        config = parse(CaptureConfig, cfg)
        cameras, sensors = config.cameras, config.sensors
        slots, period = config.ring_slots, config.metrics_period_s
        with self._lock:
            for sid in list(self.sensors):
                if sid not in sensors or sensors[sid] != self.sensors[sid].config:
                    self._stop_sensor(sid)
            for sid, scfg in sensors.items():
                if sid not in self.sensors:
                    self._start_sensor(scfg)
            self.slots, self.metrics_period = slots, period
            for cam_id in list(self.cameras):
                if cam_id not in cameras or cameras[cam_id] != self.cameras[cam_id].config:
                    self._stop(cam_id)
            for cam_id, cam_cfg in cameras.items():
                if cam_id not in self.cameras:
                    self._start(cam_id, cam_cfg)

    def _start(self, cam_id: str, cfg: CameraConfig) -> None:
        holder: dict[str, Camera] = {}
        worker = CameraWorker(
            cfg,
            on_frame=lambda frame, ts: self._on_frame(holder["cam"], frame, ts),
            on_segment=lambda seg: self._on_segment(cam_id, seg),
            secret_lookup=self._secret,
            faults=self.faults,
            on_gap=lambda start, end, reason: self._on_gap(cam_id, start, end, reason),
        )
        cam = holder["cam"] = Camera(cfg, worker)
        self.cameras[cam_id] = cam
        worker.start()
        log.info("camera %s started", cam_id)

    def _secret(self, secret_id: str, refresh: bool = False) -> str:
        """A camera's credentials (never logged). refresh: the camera refused the ones held, so SecretManager is
        asked to fetch the latest value from Secrets Manager first (GetSecretValue `refresh`, SecretManager 2.2.0+)
        and the camera reconnects with it: a rotated password needs no restart."""
        if not refresh:
            return self.app.get_secret(secret_id)
        return self.app.client.get_secret_value(secret_id=secret_id, refresh=True).secret_value.secret_string

    def _stop(self, cam_id: str) -> None:
        cam = self.cameras.pop(cam_id)
        cam.worker.stop()
        if cam.ring is not None:
            cam.ring.close()
        log.info("camera %s stopped", cam_id)

    def _start_sensor(self, cfg: SensorConfig) -> None:
        ring = FrameRing.create(cfg.sensor_id, slots=self.slots, max_frame_bytes=WIDTH * HEIGHT * 4)

        published = Published()

        def on_frame(frame: np.ndarray, ts: float) -> None:
            self.app.publish(FRAMES.format(camera=cfg.sensor_id), ring.write(frame, ts).to_message())
            published.note(ts)

        worker = ThermalWorker(cfg.sensor_id, cfg.scenario, cfg.seed, cfg.fps, on_frame,
                               lambda reading: self.app.publish(SENSORS.format(sensor=cfg.sensor_id), reading))
        self.sensors[cfg.sensor_id] = Sensor(cfg, worker, ring, published)
        worker.start()
        log.info("sensor %s started (%s)", cfg.sensor_id, cfg.scenario)

    def _stop_sensor(self, sensor_id: str) -> None:
        sensor = self.sensors.pop(sensor_id)
        sensor.worker.stop()
        sensor.ring.close()
        log.info("sensor %s stopped", sensor_id)

    def _on_frame(self, cam: Camera, frame: np.ndarray, timestamp: float) -> None:
        ring = cam.ring
        new_ring = ring is None or frame.nbytes > ring.max_frame_bytes
        if new_ring:
            # Sized by the first frame; a camera that changes resolution upwards gets a new ring (of the same name:
            # it continues the numbering, so readers tell its frames from the old ring's and re-attach).
            first = 0
            if ring is not None:
                first = ring.next_sequence
                ring.close()
            ring = cam.ring = FrameRing.create(cam.config.camera_id, slots=self.slots, max_frame_bytes=frame.nbytes,
                                               first_sequence=first)
        desc = ring.write(frame, timestamp)
        if new_ring:  # after the first write: a reader that attaches at once finds a frame
            self.announce_rings()
        if cam.config.frame_descriptors:
            self.app.publish(FRAMES.format(camera=cam.config.camera_id), desc.to_message())
        cam.published.note(timestamp)

    def rings(self) -> dict[str, RingInfo]:
        """Camera id -> its ring, for the cameras that have one (a ring is made at a camera's first frame)."""
        cams = list(self.cameras.items())  # a snapshot: worker threads call this too, without the lock
        return {cam_id: RingInfo(ring.name, ring.created, cam.config.detect_fps)
                for cam_id, cam in cams if (ring := cam.ring) is not None and not ring.closed}

    def announce_rings(self) -> None:
        self.app.publish(topics.FRAME_RINGS, rings_message(NAME, self.rings(), time.time()))

    def _on_segment(self, cam_id: str, seg: Any) -> None:
        self.app.publish(
            SEGMENTS.format(camera=cam_id),
            {
                "schema": "segment/1.0",
                "camera": cam_id,
                "path": str(seg.path),
                "start": seg.start,
                "end": seg.end,
                "size": seg.size,
                "sha256": seg.sha256,
            },
        )

    def _on_gap(self, cam_id: str, start: float, end: float, reason: str) -> None:
        """Time that could not be recorded, as a segment/1.0 without a file: `missing` says why."""
        self.app.publish(SEGMENTS.format(camera=cam_id), {
            "schema": "segment/1.0", "camera": cam_id, "start": start, "end": end, "missing": reason[:300]})

    def _recordings(self) -> list[tuple[Path, str]]:
        return [(Path(c.config.record.dir), cam_id) for cam_id, c in self.cameras.items()
                if c.config.record.enabled and c.config.record.dir]

    def _on_budget(self, _topic: str, msg: Any) -> None:
        try:
            evict = disk.parse_evict(msg)
        except ValueError as e:
            log.warning("malformed disk-budget message on %s: %s", topics.DISK_BUDGET, e)
            return
        if evict.get("video"):
            self._evict = evict["video"]  # the IPC thread only notes it; the tick deletes

    def apply_budget(self) -> None:
        nbytes, self._evict = self._evict, 0
        if nbytes <= 0:
            return
        with self._lock:
            places = self._recordings()
        n, freed = evict_oldest(places, nbytes)
        self.budget_evicted += freed
        if n:
            log.warning("disk budget: deleted the %d oldest local segments (%d bytes; %d asked)", n, freed, nbytes)

    def metrics(self) -> dict[str, Any]:
        with self._lock:
            held = sum(size for _, size, _ in recorded(self._recordings()))
            now = time.monotonic()
            cams = {}
            for cam_id, cam in self.cameras.items():
                st = cam.worker.status()
                cams[cam_id] = {
                    **cam.worker.stats(),
                    "status": st.state,
                    "reason": st.reason,
                    "ring": cam.ring.stats() if cam.ring else None,
                    **cam.published.fields(now),
                }
            sensors = {sid: {"status": "connected" if s.worker.is_alive() else "stopped", "frames_out": s.worker.frames,
                             "ring": s.ring.stats(), **s.published.fields(now)} for sid, s in self.sensors.items()}
        return {"schema": "capture-metrics/1.1", "component": NAME, "timestamp": time.time(), "cameras": cams,
                "sensors": sensors, "storage": self.faults.metrics(),
                "disk": {"held": {"video": held}, "evicted": {"video": self.budget_evicted}}}

    def publish_metrics(self) -> None:
        self.app.publish(METRICS, self.metrics())

    def tick(self) -> None:
        self.apply_budget()
        if time.monotonic() - self._last_metrics >= self.metrics_period:
            self._last_metrics = time.monotonic()
            self.publish_metrics()
            self.announce_rings()  # a reader started (or restarted) since the last one learns the rings

    def close(self) -> None:
        with self._lock:
            for cam_id in list(self.cameras):
                self._stop(cam_id)
            for sid in list(self.sensors):
                self._stop_sensor(sid)


def build(app: ComponentApp, cfg: dict[str, Any]) -> CaptureComponent:
    comp = CaptureComponent(app)
    name, keys = shadows.FOLLOWERS[NAME]
    follower = ShadowFollower(app, name, keys, validate=lambda desired: validate({**app.config, **desired}),
                              apply=lambda desired: comp.apply({**app.config, **desired}),
                              topics=(topics.CAPTURE_SHADOW_DELTA, topics.CAPTURE_SHADOW_DOCUMENTS))
    follower.start()  # applies the shadow's cameras when it has some; the next line is then a no-op
    comp.apply(follower.overlay(cfg))
    app.on_config(lambda config: comp.apply(follower.overlay(config)))
    try:
        app.subscribe(topics.DISK_BUDGET, comp._on_budget)
    except Exception as e:  # e.g. a recipe whose accessControl predates the budget: record as before
        log.warning("no disk budget (subscribing to %s failed: %s); local segments follow retainS only",
                    topics.DISK_BUDGET, e)
    return comp


def main() -> int:
    return run_component(NAME, validate, build)
