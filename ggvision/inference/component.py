"""com.ggvision.Inference: batched ONNX Runtime across cameras, model hot swap, A/B arms, fire risk.

Frames come from the cameras' rings announced on frame-rings/1.0 (rings.py: one thread looks at each ring when its
next frame is due) for cameras a `frameTopics` filter on ggvision/v1/frames/ matches, and as frame/1.0 descriptors
(`frameTopics`) for the rest: motion topics, sensors, a Capture that announces no rings. A camera followed in its
ring has its descriptors ignored (the same frames). Each camera is routed to the vision model that serves it
(radiometric float32 frames to the tabular model of their sensor, with gas/1.0 readings). Every processed frame
gets one detections/1.0 message on ggvision/v1/detections/{camera}; every model an inference-metrics/1.1
message on ggvision/v1/metrics/inference each `metricsPeriodS`. Models come from model components (installed
version via GetComponentDetails, re-checked on every postUpdateEvent) or folders, and are swapped without
stopping: see swap.py. A vision model may have a candidate B beside it, in shadow or split mode: see arms.py.
Configuration keys: docs/inference.md and ggvision/config/inference.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from topicmatch import mqtt_match

from ..component import ComponentApp, run_component
from ..config.base import parse, validator
from ..config.inference import ArmSpec, InferenceConfig, ModelSource, ModelSpec
from ..contract import topics
from ..framebus import FrameDescriptor
from ..framebus.announce import parse_rings
from .arms import Arm
from .publisher import AsyncPublisher
from .resolve import resolve
from .rings import RingFollower
from .swap import ModelLoader, ModelSlot
from .tabular import TabularWorker, is_thermal, parse_gas
from .worker import BatchSettings, VisionWorker

log = logging.getLogger("ggvision.inference")

NAME = "com.ggvision.Inference"
METRICS = topics.metrics("inference")
ALERTS = topics.ALERTS.format(component="inference")
SENSORS = topics.every(topics.SENSORS)
RETRY_MISSING_S = 10.0
# The Filter publishes motion descriptors only for cameras with its `motion.publish` on, then at least one every
# `motion.keepaliveS` (default 5 s): this long without any on a configured motion topic is worth a warning.
MOTION_QUIET_S = 15.0
MOTION_PREFIX = topics.MOTION.removesuffix("{camera}")
FRAMES_PREFIX = topics.FRAMES.removesuffix("{camera}")

Worker = VisionWorker | TabularWorker


class Routes:
    """Camera (or sensor) id -> the worker serving it: an explicit id wins over "*"."""

    def __init__(self, explicit: dict[str, Worker] | None = None, wildcard: Worker | None = None) -> None:
        self.explicit = explicit or {}
        self.wildcard = wildcard

    def get(self, camera: str) -> Worker | None:
        return self.explicit.get(camera, self.wildcard)


class InferenceComponent:
    def __init__(self, app: ComponentApp, packages: Path | None, load: Callable[..., Any] | None = None,
                 installed_version: Callable[[str], str] | None = None) -> None:
        self.app = app
        self.packages = packages
        self._load_fn = load
        self._installed_version = installed_version or self._component_version
        self.cfg: InferenceConfig | None = None
        self.settings = BatchSettings()
        self.specs: dict[str, ModelSpec] = {}
        self.slots: dict[str, ModelSlot] = {}
        self.workers: dict[str, Worker] = {}
        self.arms: dict[str, Arm] = {}  # model id -> its A/B arm (B's slot, runner or worker)
        self._video = Routes()
        self._thermal = Routes()
        self._frame_topics: tuple[str, ...] = ()
        self._motion_wait: float | None = None  # monotonic: since when motion topics are read and none came yet
        self._subscribed: set[str] = set()
        self._last_offer: dict[str, tuple[str, int]] = {}
        self._lock = threading.RLock()
        self._last_metrics = time.monotonic()
        self._last_retry = time.monotonic()
        self._update_op: Any = None
        self.malformed = 0
        self.unrouted = 0
        self.detections = AsyncPublisher(app.client)
        self.rings = RingFollower(self._route, wanted=self._reads_frames, skipped=self._skipped)
        self.rings.start()
        self.loader = ModelLoader(self._load, self._resolve, self._options, self._on_staged, self._on_refused)

    # -- models ----------------------------------------------------------------------------------
    def _options(self) -> tuple[Any, ...]:
        assert self.cfg is not None
        return self.cfg.runtime_options

    def _load(self, folder: Path) -> Any:
        assert self.cfg is not None
        provider, threads, trt = self.cfg.runtime_options
        load = self._load_fn
        if load is None:
            from ..model.loader import load_model as load
        return load(folder, provider=provider, threads=threads, trt_cache_dir=Path(trt).resolve(),
                    warmup_timeout_s=self.cfg.warmup_timeout_s)

    def _resolve(self, source: ModelSource) -> tuple[Path, str]:
        return resolve(source, self.packages, self._installed_version)

    def _component_version(self, component: str) -> str:
        return str(self.app.client.get_component_details(component_name=component).component_details.version)

    def _on_staged(self, slot: ModelSlot) -> None:
        worker = self.workers.get(slot.name)
        arm = self.arms.get(slot.name.removesuffix(":b"))
        if worker is None and arm is not None and arm.worker is not None and arm.slot is slot:
            worker = arm.worker
        if worker is not None:
            worker.wake()

    def _on_refused(self, slot: ModelSlot, reason: str) -> None:
        now = time.time()
        keep = (f"; still serving {slot.current.manifest.name} {slot.current.manifest.version}"
                if slot.current is not None else "")
        self.app.publish(ALERTS, {"schema": "alert/1.0", "alert": "model-refused", "where": NAME, "since": now,
                                  "message": f"model {slot.name}: refused {reason}{keep}"[:1000],
                                  "severity": "warning", "state": "firing", "timestamp": now, "model": slot.name})

    # -- configuration ---------------------------------------------------------------------------
    def apply(self, raw: dict[str, Any]) -> None:
        """Make the running models, routes and subscriptions match the configuration (live)."""
        cfg = parse(InferenceConfig, raw)
        with self._lock:
            old = self.cfg
            self.cfg = cfg
            self.settings.max_size, self.settings.deadline_s = cfg.max_batch, cfg.deadline_ms / 1000
            self.settings.burst_s = cfg.burst_ms / 1000
            self.settings.model_cpus = cfg.model_cpus
            reload_all = old is not None and old.runtime_options != cfg.runtime_options
            for mid in list(self.slots):
                new = cfg.models.get(mid)
                if new is None or new.kind != self.specs[mid].kind:
                    self._remove(mid)
            for mid, spec in cfg.models.items():
                if mid not in self.slots:
                    self._add(spec)
                else:
                    slot, worker = self.slots[mid], self.workers[mid]
                    if spec.source != slot.source or reload_all:
                        slot.source = spec.source
                        self.loader.request(slot)
                    if isinstance(worker, TabularWorker):
                        worker.period_s = spec.period_s
                self.specs[mid] = spec
            self._set_routes()
            self._apply_arms(cfg.arms, reload_all)
            motion = [t for t in cfg.frame_topics if t.startswith(MOTION_PREFIX)]
            if motion and not any(t.startswith(MOTION_PREFIX) for t in self._frame_topics):
                self._motion_wait = time.monotonic()
                log.info("reading motion descriptors (%s): the Filter publishes them only for cameras with its "
                         "motion.publish on", ", ".join(motion))
            elif not motion:
                self._motion_wait = None
            self._frame_topics = cfg.frame_topics
            self.rings.rewant()
            self._subscribe(topics.FRAME_RINGS, self._on_rings)
            for topic in cfg.frame_topics:
                self._subscribe(topic, self._on_frame)
            if any(s.kind == "tabular" for s in cfg.models.values()):
                self._subscribe(SENSORS, self._on_gas)

    def _add(self, spec: ModelSpec) -> None:
        slot = ModelSlot(spec.id, spec.kind, spec.source)
        worker: Worker
        if spec.kind == "tabular":
            worker = TabularWorker(slot, spec.period_s, self.detections.publish)
        else:
            worker = VisionWorker(slot, self.settings, self.detections.publish,
                                  arm=lambda mid=spec.id: self._arm_of(mid))
        self.slots[spec.id], self.workers[spec.id] = slot, worker
        worker.start()
        self.loader.request(slot)

    def _remove(self, mid: str) -> None:
        worker, slot = self.workers.pop(mid), self.slots.pop(mid)
        self.specs.pop(mid, None)
        worker.stop()
        slot.close()
        log.info("model %s removed", mid)

    def _set_routes(self) -> None:
        routes: dict[str, Routes] = {"vision": Routes(), "tabular": Routes()}
        for mid, spec in self.specs.items():
            r = routes[spec.kind]
            for cam in spec.cameras or spec.sensors or ():
                if cam == "*":
                    r.wildcard = self.workers[mid]
                else:
                    r.explicit[cam] = self.workers[mid]
        self._video, self._thermal = routes["vision"], routes["tabular"]

    def _apply_arms(self, specs: dict[str, ArmSpec], reload_all: bool) -> None:
        for mid in [m for m in self.arms if m not in specs]:
            self.arms.pop(mid).close()
            log.info("model %s: arm B removed", mid)
        for mid, spec in specs.items():
            arm = self.arms.get(mid)
            if arm is None:
                arm = self.arms[mid] = Arm(mid, spec, self.settings, self.detections.publish,
                                           fallback=lambda desc, mid=mid: self._to_a(mid, desc))
                self.loader.request(arm.slot)
            elif arm.update(spec) or reload_all:
                self.loader.request(arm.slot)

    def _to_a(self, mid: str, desc: FrameDescriptor) -> None:
        """A frame B failed on (split mode): A answers it."""
        worker = self.workers.get(mid)
        if isinstance(worker, VisionWorker):
            worker.offer(desc)

    def _arm_of(self, mid: str) -> Arm | None:
        return self.arms.get(mid)

    def _subscribe(self, topic: str, handler: Callable[[str, Any], None]) -> None:
        if topic in self._subscribed:
            return
        try:
            self.app.subscribe(topic, handler)
        except Exception as e:  # e.g. accessControl does not grant it: say so, keep the rest running
            log.error("cannot subscribe to %s: %s: %s", topic, type(e).__name__, getattr(e, "message", "") or e)
            return
        self._subscribed.add(topic)

    # -- messages (on the IPC event thread: quick, never blocking) -------------------------------
    def _malformed(self, what: str, e: Exception) -> None:
        self.malformed += 1
        if self.malformed in (1, 10, 100) or self.malformed % 1000 == 0:
            log.warning("dropped a malformed %s (%d so far): %s", what, self.malformed, e)

    def _reads_frames(self, camera: str) -> bool:
        """Whether the configuration reads this camera's own frames (not only the Filter's motion-gated ones)."""
        topic = topics.FRAMES.format(camera=camera)
        return any(mqtt_match(f, topic) for f in self._frame_topics)

    def _skipped(self, camera: str, n: int) -> None:
        """Frames of a followed ring that a newer one replaced between two looks: dropped by the latest-frame
        policy, as a replaced pending frame is (the model's `dropped_frames`)."""
        worker = self._video.get(camera)
        if worker is not None:
            worker.slot.stats.add_dropped(n)

    def _on_rings(self, topic: str, msg: Any) -> None:
        try:
            component, rings = parse_rings(msg if msg is not None else b"")
        except ValueError as e:
            self._malformed("frame-rings announcement (the rings followed so far stay)", e)
            return
        self.rings.announce(component, rings)

    def _on_frame(self, topic: str, msg: Any) -> None:
        if topic.startswith(FRAMES_PREFIX) and self.rings.follows(topic[len(FRAMES_PREFIX):]):
            return  # read from its ring already: the same frames
        if not any(mqtt_match(f, topic) for f in self._frame_topics):
            return  # a topic no longer configured
        if self._motion_wait is not None and topic.startswith(MOTION_PREFIX):
            self._motion_wait = None
        try:
            desc = FrameDescriptor.from_message(msg if msg is not None else b"")
        except ValueError as e:
            self._malformed("frame descriptor", e)
            return
        last = self._last_offer.get(desc.camera)
        if last is not None and last[0] == desc.ring and desc.sequence <= last[1]:
            return  # seen already (overlapping topic filters)
        self._last_offer[desc.camera] = (desc.ring, desc.sequence)
        self._route(desc)

    def _route(self, desc: FrameDescriptor) -> None:
        """Hand a frame to the worker (or A/B arm) serving its camera; from the IPC thread or the ring follower."""
        worker = (self._thermal if is_thermal(desc) else self._video).get(desc.camera)
        if worker is None:
            self.unrouted += 1
            return
        arm = self.arms.get(worker.slot.name) if isinstance(worker, VisionWorker) else None
        b = arm.serves(desc.camera) if arm is not None else None
        (b or worker).offer(desc)

    def _on_gas(self, topic: str, msg: Any) -> None:
        try:
            sensor, reading = parse_gas(msg)
        except ValueError as e:
            self._malformed("gas reading", e)
            return
        worker = self._thermal.get(sensor)
        if isinstance(worker, TabularWorker):
            worker.offer_gas(sensor, reading)

    # -- component updates -----------------------------------------------------------------------
    def watch_component_updates(self) -> None:
        """postUpdateEvent: a deployment finished; model components may have a new installed version."""
        def on_event(event: Any) -> None:
            if event.pre_update_event is not None:  # nothing to protect: acknowledge at once
                self.app.client.defer_component_update_async(
                    deployment_id=event.pre_update_event.deployment_id, message="ok", recheck_after_ms=0)
            elif event.post_update_event is not None:
                self.rescan()

        def on_error(e: Exception) -> bool:
            log.error("component update notifications: %s", e)
            return False  # keep the stream

        _, self._update_op = self.app.client.subscribe_to_component_updates(on_stream_event=on_event,
                                                                            on_stream_error=on_error)

    def rescan(self) -> None:
        """Look again at the installed version of every model component not pinned to a version."""
        with self._lock:
            slots = list(self.slots.values()) + [arm.slot for arm in self.arms.values()]
        for slot in slots:
            if slot.source.component is not None and slot.source.version is None:
                self.loader.request(slot)

    # -- metrics ---------------------------------------------------------------------------------
    def metrics(self) -> list[dict[str, Any]]:
        out = []
        with self._lock:
            items = [(mid, self.slots[mid], self.workers[mid]) for mid in self.slots]
            arms = dict(self.arms)
        now = time.time()
        blocks = {mid: arm.block() for mid, arm in arms.items()}
        for mid, arm in arms.items():
            b = arm.slot.current
            if b is None:
                continue
            msg = _model_metrics(arm.slot, b, arm.slot.stats.snapshot(), arm.mode, mid, now)
            msg.update(arm="b", ab=blocks[mid])
            if arm.runner is not None:  # the pre-arms shadow fields, still read by Health and the rollout gates
                msg["shadow"] = _shadow_block(blocks[mid])
                msg["skipped_frames"] = arm.runner.skipped
            else:
                msg["queue_depth"] = arm.worker.batcher.depth if arm.worker is not None else 0
            out.append(msg)
        cameras = self.detections.sent.snapshot()  # component-wide: the same block on each primary's message
        rings = self.rings.summary()
        for mid, slot, worker in items:
            model = slot.current
            if model is None:
                continue
            msg = _model_metrics(slot, model, slot.stats.snapshot(), "primary", mid, now)
            msg["cameras"] = cameras
            msg["rings"] = rings
            msg["queue_depth"] = worker.batcher.depth if isinstance(worker, VisionWorker) else worker.depth
            if mid in blocks:
                msg.update(arm="a", ab=blocks[mid])
                if "agreement" in blocks[mid] and blocks[mid]["b_model"] is not None:
                    msg["shadow"] = _shadow_block(blocks[mid])
            out.append(msg)
        return out

    def publish_metrics(self) -> None:
        for msg in self.metrics():
            self.app.publish(METRICS, msg)

    def tick(self) -> None:
        now = time.monotonic()
        assert self.cfg is not None
        if now - self._last_metrics >= self.cfg.metrics_period_s:
            self._last_metrics = now
            self.publish_metrics()
        wait = self._motion_wait
        if wait is not None and now - wait >= MOTION_QUIET_S:
            self._motion_wait = None  # once per configuration
            log.warning("no motion descriptor in %.0f s on %s: turn the Filter's motion.publish on for the cameras "
                        "to analyse (docs/filter.md), or read ggvision/v1/frames/+", now - wait,
                        ", ".join(t for t in self._frame_topics if t.startswith(MOTION_PREFIX)))
        if now - self._last_retry >= RETRY_MISSING_S:
            self._last_retry = now
            with self._lock:
                slots = list(self.slots.values()) + [arm.slot for arm in self.arms.values()]
            for slot in slots:
                if slot.current is None and slot.missing:
                    self.loader.request(slot)

    def close(self) -> None:
        self.rings.close()
        if self._update_op is not None:
            try:
                self._update_op.close()
            except Exception:
                pass
        with self._lock:
            for mid in list(self.slots):
                self._remove(mid)
            for mid in list(self.arms):
                self.arms.pop(mid).close()
        self.loader.close()
        self.detections.drain()


def _model_metrics(slot: ModelSlot, model: Any, stats: dict[str, Any], role: str, mid: str,
                   now: float) -> dict[str, Any]:
    m = model.manifest
    return {"schema": "inference-metrics/1.1", "model": m.name, "version": m.version, "id": mid, "role": role,
            "family": m.family, "task": m.task, "provider": model.provider, "load_ms": round(model.load_ms, 1),
            "source": slot.source.describe() + (f" {slot.version_label}" if slot.version_label
                                                and slot.source.version is None else ""),
            "timestamp": now, **stats}


def _shadow_block(ab: dict[str, Any]) -> dict[str, Any]:
    figures = {k: v for k, v in ab.get("agreement", {}).items() if k != "by_label"}
    return {"model": ab["b_model"], "version": ab["b_version"], **figures}


def build(app: ComponentApp, cfg: dict[str, Any], packages: Path | None) -> InferenceComponent:
    comp = InferenceComponent(app, packages)
    comp.apply(cfg)
    app.on_config(comp.apply)
    comp.watch_component_updates()
    return comp


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ggvision.inference", description=__doc__.splitlines()[0])
    ap.add_argument("--packages", type=Path, default=os.environ.get("GGVISION_PACKAGES") or None,
                    help="the nucleus' packages folder ({kernel:rootPath}/packages): where model components' "
                         "artifacts are installed")
    args = ap.parse_args(argv)
    return run_component(NAME, validator(InferenceConfig), lambda app, cfg: build(app, cfg, args.packages))
