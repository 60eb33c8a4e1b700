"""com.ggvision.Filter: the policy engine between the cameras and the uplink.

Reads detections/1.0 and segment/1.0 for each configured camera, the Uplink's acks, and frame descriptors only
while a camera has `motion.publish` on (the motion gate's only consumer is whoever reads its output; off, the
Filter costs nothing per frame); publishes motion descriptors (ggvision/v1/motion/{camera}), events
(ggvision/v1/events/{camera}), uplink-put/1.0 items (ggvision/v1/uplink/put) and filter-metrics/1.0
(ggvision/v1/metrics/filter); keeps the box's local log of event ends, snapshots and fire-risk results
(locallog.py; it follows disk-budget/1.0 for the log's pictures). Configuration: ggvision/config/filter.py; per
device, the `desired` cameras of the named shadow `ggvision-filter` (zones, rules; written by `ggvision site
apply`) are laid over it and followed live (ggvision/component/shadow.py, docs/sites.md).

Threads: IPC handlers only parse and enqueue (they run on the connection's event thread and must not
block). A motion thread keeps the latest descriptor per camera (a slow gate skips frames, counted); the
pipeline thread handles detections, segments, acks and configuration changes in arrival order, so the
per-camera state has one owner. The frame rings are attached per thread (a ring reader is single-threaded).

Storage: a snapshot that cannot be written (full disk, read-only or forbidden workDir, less free than
minFreeBytes) is given up and the event says so (events.py); the condition is counted and logged once for the
whole component and shown in the metrics' `storage` block, which Health exports. No such condition ever makes
the pipeline drop a message.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..component import ComponentApp, run_component
from ..component.shadow import ShadowFollower
from ..component.storage import StorageFaults, condition_of
from ..config.base import parse, validator
from ..config.filter import FilterConfig
from ..contract import disk, shadows, topics
from ..contract.keys import IMAGES
from ..framebus import FrameDescriptor, FrameRing
from .events import EVENTS_TOPIC, PUT_TOPIC, CameraPipeline, Out
from .locallog import EXPIRE_PERIOD_S, LocalLog
from .messages import Detections, parse_ack, parse_detections, parse_segment
from .policy import Ledger

log = logging.getLogger("ggvision.filter")

NAME = "com.ggvision.Filter"
FRAMES = topics.every(topics.FRAMES)
DETECTIONS = topics.every(topics.DETECTIONS)
SEGMENTS = topics.every(topics.SEGMENTS)
ACKS = topics.UPLINK_ACKS
METRICS = topics.metrics("filter")
SNAPSHOT_TTL_S = 3600.0  # snapshots the Uplink never took are removed after this long
# A camera with motion.publish on whose frame descriptors have not come for this long: Capture most likely has its
# `frameDescriptors` off (the default since Inference reads the rings), so the gate sees nothing. Said once.
MOTION_STARVED_S = 10.0
DRAIN_S = 3.0  # at shutdown, messages received but not handled yet get this long (Greengrass waits longer)


class Rings:
    """Ring readers by name, for one thread; rings of gone writers are dropped."""

    def __init__(self) -> None:
        self.rings: dict[str, FrameRing] = {}
        self.by_camera: dict[str, str] = {}

    def read(self, camera: str, desc: FrameDescriptor) -> np.ndarray | None:
        ring = self.rings.get(desc.ring)
        if ring is None:
            old = self.by_camera.get(camera)
            if old and old in self.rings:
                self.rings.pop(old).close()
            try:
                ring = self.rings[desc.ring] = FrameRing.attach(desc.ring)
            except (OSError, ValueError) as e:
                log.debug("cannot attach %s: %s", desc.ring, e)
                return None
            self.by_camera[camera] = desc.ring
        try:
            out = ring.read(desc)
        except ValueError:
            out = None
        if out is None and ring.replaced():  # the writer made a new ring of that name (bigger frames)
            self.rings.pop(desc.ring).close()
            self.by_camera.pop(camera, None)
            return self.read(camera, desc)
        return out

    def close(self) -> None:
        for r in self.rings.values():
            r.close()
        self.rings.clear()


class FilterComponent:
    def __init__(self, app: ComponentApp, cfg: FilterConfig) -> None:
        self.app = app
        self.cfg = cfg
        self.work_dir = Path(cfg.work_dir or Path.cwd() / "filter")
        self.pipelines: dict[str, CameraPipeline] = {}
        self.ledger = Ledger()
        self.faults = StorageFaults(NAME, log)
        self.malformed: Counter[str] = Counter()
        self.unconfigured: Counter[str] = Counter()
        self.queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=20_000)
        self.queue_full = 0
        self.motion_skipped = 0
        self._frames: dict[str, dict[str, Any]] = {}  # latest descriptor per camera for the motion thread
        self._frames_cv = threading.Condition()
        self._frames_op: Any = None  # the frames/+ subscription while a camera has motion.publish on
        self._frames_lock = threading.Lock()
        self._frame_at: dict[str, float] = {}  # monotonic: a gated camera's last descriptor, or when gating began
        self._starved: set[str] = set()  # gated cameras without descriptors for MOTION_STARVED_S (warned once)
        self._last_det: dict[str, float] = {}  # wall time of the last detections per camera
        self._last_metrics = 0.0
        self._last_prune = 0.0
        self._last_expire = 0.0
        self.local: LocalLog | None = None  # the box's own event and fire-risk log (locallog.py)
        self._stop = threading.Event()
        self._configure(cfg)
        self._worker = threading.Thread(target=self._run_pipeline, name="filter-pipeline", daemon=True)
        self._motion = threading.Thread(target=self._run_motion, name="filter-motion", daemon=True)
        self._worker.start()
        self._motion.start()

    # -- configuration ------------------------------------------------------------------------------
    def _configure(self, cfg: FilterConfig) -> None:
        self.cfg = cfg
        self.work_dir = Path(cfg.work_dir or Path.cwd() / "filter")
        root = self.work_dir / "local"
        if not cfg.local_log.enabled:
            self.local = None
        elif self.local is None or (self.local.root, self.local.cfg) != (root, cfg.local_log):
            self.local = LocalLog(root, cfg.local_log, os.environ.get("AWS_IOT_THING_NAME", "ggvision-local"),
                                  self.faults)  # kept across other changes: its fire-risk pacing and byte counts
        out: list[Out] = []
        for cam in list(self.pipelines):
            if cam not in cfg.cameras or cfg.cameras[cam] != self.pipelines[cam].cfg:
                out += self.pipelines.pop(cam).flush()  # its open events end; a new pipeline starts afresh
        for pipe in self.pipelines.values():
            pipe.min_free_bytes = cfg.min_free_bytes
        for cam, ccfg in cfg.cameras.items():
            if cam not in self.pipelines:
                self.pipelines[cam] = CameraPipeline(ccfg, self.work_dir, faults=self.faults,
                                                     min_free_bytes=cfg.min_free_bytes)
        self._publish(out)

    def follow_frames(self) -> None:
        """Subscribe to the frame descriptors while some camera publishes motion, and only then."""
        with self._frames_lock:
            want = any(p.cfg.motion.publish for p in self.pipelines.values())
            if want and self._frames_op is None:
                self._frames_op = self.app.subscribe(FRAMES, self.on_frame)
                log.info("motion gate on for %s", ", ".join(c for c, p in self.pipelines.items()
                                                           if p.cfg.motion.publish))
            elif not want and self._frames_op is not None:
                self.app.unsubscribe(self._frames_op)
                self._frames_op = None
                log.info("motion gate off: no camera has motion.publish on; frame descriptors no longer read")

    def on_config(self, raw: dict[str, Any]) -> None:
        self._enqueue("config", parse(FilterConfig, raw))

    # -- IPC handlers (event thread: parse, enqueue, return) ----------------------------------------------
    def _enqueue(self, kind: str, item: Any) -> None:
        try:
            self.queue.put_nowait((kind, item))
        except queue.Full:
            self.queue_full += 1

    def on_frame(self, topic: str, msg: Any) -> None:
        cam = topic.rsplit("/", 1)[-1]
        pipe = self.pipelines.get(cam)
        if pipe is None:
            self.unconfigured[cam] += 1
            return
        if not pipe.cfg.motion.publish:  # another camera's motion.publish brought it: not gated
            return
        self._frame_at[cam] = time.monotonic()
        with self._frames_cv:
            if cam in self._frames:
                self.motion_skipped += 1
            self._frames[cam] = msg
            self._frames_cv.notify()

    def on_detections(self, topic: str, msg: Any) -> None:
        if isinstance(msg, dict) and msg.get("task") == "tabular":  # a fire-risk result: for the local log only
            self._enqueue("fire", msg)
            return
        try:
            det = parse_detections(msg)
        except ValueError as e:
            self._bad("detections", e)
            return
        self._enqueue("detections", det)

    def on_segment(self, topic: str, msg: Any) -> None:
        try:
            seg = parse_segment(msg)
        except ValueError as e:
            self._bad("segment", e)
            return
        self._enqueue("segment", seg)

    def on_ack(self, topic: str, msg: Any) -> None:
        try:
            ack = parse_ack(msg)
        except ValueError as e:
            self._bad("uplink-ack", e)
            return
        self._enqueue("ack", ack)

    def on_budget(self, topic: str, msg: Any) -> None:
        try:
            disk.parse_evict(msg)
        except ValueError as e:
            self._bad("disk-budget", e)
            return
        self._enqueue("budget", msg)

    def _bad(self, what: str, e: Exception) -> None:
        self.malformed[what] += 1
        n = self.malformed[what]
        if n in (1, 10, 100) or n % 1000 == 0:
            log.warning("dropped a malformed %s message (%d so far): %s", what, n, e)

    # -- the motion thread ------------------------------------------------------------------------
    def _run_motion(self) -> None:
        rings = Rings()
        try:
            while not self._stop.is_set():
                with self._frames_cv:
                    self._frames_cv.wait_for(lambda: self._frames or self._stop.is_set(), timeout=0.5)
                    batch, self._frames = self._frames, {}
                for cam, msg in batch.items():
                    pipe = self.pipelines.get(cam)
                    if pipe is None or not pipe.cfg.motion.publish:  # removed or turned off meanwhile
                        continue
                    try:
                        desc = FrameDescriptor.from_message(msg)
                    except ValueError as e:
                        self._bad("frame", e)
                        continue
                    frame = rings.read(cam, desc)
                    try:
                        out = pipe.on_frame(desc.to_message(), frame)
                    except Exception:
                        log.exception("motion gate failed on %s", cam)
                        continue
                    if out is not None:
                        self.app.publish(out.topic, out.message)
        finally:
            rings.close()

    # -- the pipeline thread ------------------------------------------------------------------------
    def _run_pipeline(self) -> None:
        rings = Rings()
        try:
            while not self._stop.is_set():
                try:
                    kind, item = self.queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    self._handle(kind, item, rings)
                except Exception as e:
                    if condition_of(e) is not None:  # a storage condition: counted and logged once, never a trace
                        self.faults.failed(f"{kind} message", e)
                    else:
                        log.exception("filter pipeline failed on a %s message", kind)
        finally:
            rings.close()

    def _handle(self, kind: str, item: Any, rings: Rings) -> None:
        if kind == "config":
            self._configure(item)
            self.follow_frames()
        elif kind == "detections":
            det: Detections = item
            pipe = self.pipelines.get(det.camera)
            if pipe is None:
                self.unconfigured[det.camera] += 1
                return
            self._last_det[det.camera] = time.monotonic()
            self._publish(pipe.on_detections(det, lambda: self._read(rings, det)))
        elif kind == "segment":
            pipe = self.pipelines.get(item.camera)
            if pipe is None:
                self.unconfigured[item.camera] += 1
                return
            self._publish(pipe.on_segment(item))
        elif kind == "ack":
            p = self.ledger.ack(item.id, item.status, item.reason)
            if p is not None and item.status == "refused":
                log.warning("uplink refused %s: %s", item.id, item.reason[:200])
                pipe = self.pipelines.get(p.camera)
                if pipe is not None:
                    pipe.media_refused(p.kind, p.events, item.reason)
                if self.local is not None and p.kind == "snapshot":
                    self.local.forget(item.id)
                if p.own_file:  # ours and nobody will take it now
                    try:
                        Path(p.own_file).unlink(missing_ok=True)
                    except OSError as e:
                        self.faults.failed("snapshot cleanup", e)
        elif kind == "tick":
            self._tick()
        elif kind == "fire":
            if self.local is not None:
                try:
                    self.local.fire(item)
                except ValueError as e:
                    self._bad("detections", e)
        elif kind == "budget":
            asked = disk.parse_evict(item).get("snapshots", 0)
            if self.local is not None and asked:
                self.local.evict_snapshots(asked)

    @staticmethod
    def _read(rings: Rings, det: Detections) -> np.ndarray | None:
        f = det.frame
        if f is None or f.shape[2] != 3:
            return None
        try:
            desc = FrameDescriptor(det.camera, det.sequence, f.slot, f.generation, det.timestamp, f.shape, f.ring)
        except ValueError:
            return None
        return rings.read(det.camera, desc)

    def _publish(self, outs: list[Out]) -> None:
        for o in outs:
            if o.topic == PUT_TOPIC and o.pending is not None:
                self.ledger.add(o.message["id"], o.pending)
            if self.local is not None:  # before publishing: the Uplink may take (move) the snapshot's file
                if o.topic == PUT_TOPIC and o.message.get("kind") == IMAGES and o.message.get("file"):
                    self.local.snapshot(o.message["id"], o.message["file"])
                elif o.topic == PUT_TOPIC and isinstance(o.message.get("payload"), dict) \
                        and o.message["payload"].get("schema") == "counts/1.0":
                    self.local.counts(o.message["payload"])
                elif o.topic == EVENTS_TOPIC.format(camera=o.message.get("camera")):
                    self.local.event(o.message)
            self.app.publish(o.topic, o.message)

    # -- periodic work (on the pipeline thread, through the queue) -----------------------------------
    def tick(self) -> None:
        self._enqueue("tick", None)

    def _tick(self) -> None:
        now = time.monotonic()
        for cam, pipe in self.pipelines.items():
            # No detections for a while (camera or inference down, or a still scene behind the motion gate):
            # let time pass for its tracks and its analytics interval.
            idle = now - self._last_det.get(cam, now)
            if idle > 1.0 and (pipe.tracker.tracks or pipe.analytics.enabled):
                self._publish(pipe.expire(pipe.clock + idle))
        self._check_starved(now)
        if now - self._last_metrics >= self.cfg.metrics_period_s:
            self._last_metrics = now
            self.app.publish(METRICS, self.metrics())
        if now - self._last_prune >= 60:
            self._last_prune = now
            self._prune()
        if self.local is not None and now - self._last_expire >= EXPIRE_PERIOD_S:
            self._last_expire = now
            self.local.expire()

    def _check_starved(self, now: float) -> None:
        """Warn once per episode about a gated camera that gets no frame descriptors (see MOTION_STARVED_S)."""
        gated = {cam for cam, p in self.pipelines.items() if p.cfg.motion.publish}
        for cam in list(self._frame_at):
            if cam not in gated:
                del self._frame_at[cam]
        for cam in gated:
            since = self._frame_at.setdefault(cam, now)  # gating began now (or at the configuration change)
            if now - since < MOTION_STARVED_S:
                self._starved.discard(cam)
            elif cam not in self._starved:
                self._starved.add(cam)
                log.warning("camera %s: motion.publish is on but no frame descriptor came for %.0f s: the motion gate "
                            "sees nothing; Capture publishes them only for cameras with frameDescriptors on "
                            "(cameras.%s.frameDescriptors in com.ggvision.Capture)", cam, now - since, cam)
        self._starved &= gated

    def _prune(self) -> None:
        snaps = self.work_dir / "snapshots"
        if not snaps.is_dir():
            return
        cutoff = time.time() - SNAPSHOT_TTL_S
        for p in snaps.iterdir():
            try:
                if p.stat().st_mtime < cutoff:
                    p.unlink()
            except OSError:
                pass

    def metrics(self) -> dict[str, Any]:
        cams = {}
        waiting = self.ledger.waiting(self.pipelines)
        for cam, pipe in self.pipelines.items():
            m = pipe.metrics()
            m["persisted_bytes"] = self.ledger.persisted.get(cam, 0)
            m["persisted_items"] = self.ledger.persisted_items.get(cam, 0)
            m["refused_items"] = self.ledger.refused.get(cam, 0)
            m["awaiting_ack"] = waiting.get(cam, 0)
            cams[cam] = m
        return {"schema": "filter-metrics/1.0", "component": NAME, "timestamp": time.time(), "cameras": cams,
                "malformed": dict(self.malformed), "unconfigured": sum(self.unconfigured.values()),
                "queue_depth": self.queue.qsize(), "queue_full": self.queue_full,
                "motion_skipped": self.motion_skipped, "motion_starved": sorted(self._starved),
                "publish_errors": self.app.publish_errors,
                "last_refusals": list(self.ledger.refusals), "storage": self.faults.metrics(),
                "disk": {"held": self.local.held() if self.local else {},
                         "evicted": {"snapshots": self.local.evicted} if self.local else {}}}

    def close(self) -> None:
        self._stop.set()
        with self._frames_cv:
            self._frames_cv.notify_all()
        self._worker.join(5)
        self._motion.join(5)
        if not self._worker.is_alive():  # what was received before the stop is handled (this thread owns it now)
            self._drain(time.monotonic() + DRAIN_S)
        for pipe in self.pipelines.values():  # open events end on shutdown so the cloud sees them closed, and the
            self._publish(pipe.flush())  # interval so far goes out with what was waiting resolved (analytics.py)

    def _drain(self, deadline: float) -> None:
        rings = Rings()
        try:
            while time.monotonic() < deadline:
                try:
                    kind, item = self.queue.get_nowait()
                except queue.Empty:
                    return
                if kind in ("detections", "segment", "ack", "fire"):
                    try:
                        self._handle(kind, item, rings)
                    except Exception:
                        log.exception("filter pipeline failed on a %s message at shutdown", kind)
            log.warning("shutdown: %d queued message(s) not handled within %g s", self.queue.qsize(), DRAIN_S)
        finally:
            rings.close()


def build(app: ComponentApp, raw: dict[str, Any]) -> FilterComponent:
    check = validator(FilterConfig)
    holder: dict[str, FilterComponent] = {}
    name, keys = shadows.FOLLOWERS[NAME]
    follower = ShadowFollower(app, name, keys, validate=lambda desired: check({**app.config, **desired}),
                              apply=lambda desired: holder["comp"].on_config({**app.config, **desired})
                              if "comp" in holder else None,
                              topics=(topics.FILTER_SHADOW_DELTA, topics.FILTER_SHADOW_DOCUMENTS))
    follower.start()  # before the component exists: the first desired state shapes its pipelines directly
    comp = holder["comp"] = FilterComponent(app, parse(FilterConfig, follower.overlay(raw)))
    try:
        comp.work_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only or full volume: events still flow, snapshots wait for it
        comp.faults.failed("snapshot", e, f"cannot create workDir {comp.work_dir}: snapshots are given up "
                                          "until it can be written")
    app.on_config(lambda config: comp.on_config(follower.overlay(config)))
    app.subscribe(ACKS, comp.on_ack)
    app.subscribe(SEGMENTS, comp.on_segment)
    app.subscribe(DETECTIONS, comp.on_detections)
    comp.follow_frames()
    try:
        app.subscribe(topics.DISK_BUDGET, comp.on_budget)
    except Exception as e:  # a recipe whose accessControl predates it: retention still bounds the local log
        log.warning("no disk budget for the local log (subscribing to %s failed: %s)", topics.DISK_BUDGET, e)
    log.info("filter running for %s in %s (pid %d)", ", ".join(comp.pipelines) or "no cameras", comp.work_dir,
             os.getpid())
    return comp


def main() -> int:
    import cv2

    # OpenCV's thread pool splits each small per-frame call (the motion gate's resize of every frame, snapshot
    # crops) across the cores and spins while waiting: on 2 cores that doubled the gate's CPU (2.4 -> 1.2 ms per
    # 720p frame, bench/suite.py). The Filter's parallelism is per camera and per thread, not inside a call.
    cv2.setNumThreads(1)
    return run_component(NAME, validator(FilterConfig), build)
