"""com.ggvision.Uplink: uplink-put/1.0 requests in, acks after they are on disk, the drain engine out.

Configuration (recipe DefaultConfiguration, deployment merges, live updates; see ggvision/config/uplink.py and
docs/uplink.md):
  site, sink {type directory|s3, ...}, iot {enabled, maxBatchBytes}, sqs / kinesis {enabled, ...},
  bandwidthKbps, cameraBandwidthKbps {camera: kbit/s}, defaultCameraBandwidthKbps, quotaBytes, retentionDays,
  multipartThresholdBytes, multipartPartBytes, metricsPeriodS, backoffMaxS, queuePath.
Relative paths (queuePath, sink.path) are under the component's work folder (its current directory).

Storage (docs/reliability.md): media is refused (acked `refused`, reason first word the condition) when the
queue's filesystem would keep fewer than minFreeBytes free, or when the queue cannot store it; records and
alerts that the queue cannot store (a full or read-only disk) are held in memory, in order, and stored and
acked as soon as it can — none is dropped while HELD_MAX_BYTES of them fit. The condition is counted and
logged once (ggvision/component/storage.py) and shown in the metrics' `storage` block.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue as stdqueue
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..component import ComponentApp, run_component
from ..component.storage import DISK_FULL, StorageFaults, condition_of, describe, short_of_space
from ..config.base import parse, validator
from ..config.uplink import UplinkConfig
from ..contract import disk, topics
from .engine import Engine, LaneSink, object_sink, stream_sinks
from .messages import ACK_TOPIC, METRICS_TOPIC, PUT_TOPIC, STATUS_TOPIC, PutRequest, Refused, ack, parse_put
from .msgsinks import IotSink
from .queue import UplinkQueue

log = logging.getLogger("ggvision.uplink")

NAME = "com.ggvision.Uplink"
INTAKE_BATCH = 256  # requests stored per group commit
ENVELOPE_BYTES = 1024  # room kept for the uplink-batch/1.0 envelope and the entry's own fields
EXPIRE_PERIOD_S = 10.0
HELD_RETRY_S = 1.0  # records held in memory (the disk could not take them) are tried again this often
HELD_MAX_BYTES = 32 << 20  # ... up to this many payload bytes; past it new records are refused, saying why


class UplinkComponent:
    def __init__(self, app: ComponentApp, cfg: UplinkConfig, work: Path | None = None) -> None:
        self.app = app
        self.cfg = cfg
        self.work = work or Path.cwd()
        self.thing = os.environ.get("AWS_IOT_THING_NAME", "ggvision-local")
        self.faults = StorageFaults(NAME, log)
        self.queue = UplinkQueue(self.work / cfg.queue_path, ("object", *cfg.message_lanes), cfg.quota_bytes,
                                 cfg.retention_s)
        self.queue.faults = self.faults
        self.engine = Engine(self.queue, cfg, self.thing, object_sink(cfg, self.work), self._message_sinks(cfg),
                             on_change=self._on_change, faults=self.faults)
        self._held: list[PutRequest] = []  # records the disk could not take yet, oldest first
        self._held_ids: set[str] = set()
        self._held_at = 0.0  # monotonic time of the last try that failed
        self._held_error: BaseException | None = None
        self.malformed = 0
        self.refused = 0
        self.persisted = 0
        self._intake: stdqueue.Queue[Any] = stdqueue.Queue()
        self._changes: list[dict[str, Any]] = []
        self._changes_lock = threading.Lock()
        self._last_metrics = 0.0
        self._last_expire = 0.0
        self._budget: dict[str, Any] | None = None  # the latest disk-budget/1.0, applied by the next tick
        self.budget_evicted = dict.fromkeys(disk.EVICTION_ORDER, 0)
        self._stop = threading.Event()
        self._intake_thread = threading.Thread(target=self._intake_loop, name="uplink-intake", daemon=True)

    def _message_sinks(self, cfg: UplinkConfig) -> dict[str, LaneSink]:
        sinks = stream_sinks(cfg, self.work, self.thing)
        if cfg.iot_enabled:
            sinks["iot"] = IotSink(self.app.client)
        return sinks

    def start(self) -> None:
        self._intake_thread.start()
        self.engine.start()
        self.app.subscribe(PUT_TOPIC, lambda _topic, msg: self._intake.put(msg))  # quick: the IPC thread
        try:
            self.app.subscribe(topics.DISK_BUDGET, self._on_budget)
        except Exception as e:  # e.g. a recipe whose accessControl predates the budget: the quota still holds
            log.warning("no disk budget (subscribing to %s failed: %s)", topics.DISK_BUDGET, e)

    def _on_budget(self, _topic: str, msg: Any) -> None:
        try:
            disk.parse_evict(msg)
        except ValueError as e:
            log.warning("malformed disk-budget message on %s: %s", topics.DISK_BUDGET, e)
            return
        self._budget = msg  # the IPC thread only keeps it; the tick deletes

    def apply_budget(self) -> None:
        """Give up what the disk budget asks of our queue (oldest first) and keep its state for `uplink status`."""
        msg, self._budget = self._budget, None
        if msg is None:
            return
        for cls, nbytes in disk.parse_evict(msg).items():
            gone = self.queue.evict_class(cls, nbytes)
            freed = sum(ev.size for ev in gone)
            self.budget_evicted[cls] += freed
            if gone:
                log.warning("disk budget: gave up %d %s items (%d bytes; %d asked)", len(gone), cls, freed, nbytes)
        self.queue.set_state(disk={k: msg.get(k) for k in (
            "timestamp", "root", "used_bytes", "budget_bytes", "free_bytes", "reserve_bytes", "low_bytes",
            "headroom_bytes", "level", "evict")})

    def apply(self, raw: dict[str, Any]) -> None:
        cfg = parse(UplinkConfig, raw)
        old, self.cfg = self.cfg, cfg
        objects = object_sink(cfg, self.work) if cfg.sink != old.sink or \
            (cfg.multipart_threshold_bytes, cfg.multipart_part_bytes) != \
            (old.multipart_threshold_bytes, old.multipart_part_bytes) else None
        messages = self._message_sinks(cfg) if (cfg.sqs, cfg.kinesis, cfg.iot_enabled, cfg.archive, cfg.sink) != \
            (old.sqs, old.kinesis, old.iot_enabled, old.archive, old.sink) else None
        self.engine.configure(cfg, objects, messages)
        log.info("configuration applied (sink %s, cap %g kbit/s, quota %d bytes)", cfg.sink.type,
                 cfg.bandwidth_kbps, cfg.quota_bytes)

    # -- intake ---------------------------------------------------------------------------------
    def _intake_loop(self) -> None:
        while not self._stop.is_set():
            try:
                msgs = [self._intake.get(timeout=HELD_RETRY_S / 2 if self._held else 0.5)]
            except stdqueue.Empty:
                if self._held and time.monotonic() - self._held_at >= HELD_RETRY_S:  # try the disk again
                    try:
                        self._store([])
                    except Exception:
                        log.exception("storing %d held uplink records failed", len(self._held))
                continue
            while len(msgs) < INTAKE_BATCH:
                try:
                    msgs.append(self._intake.get_nowait())
                except stdqueue.Empty:
                    break
            try:
                self._store(msgs)
            except Exception:  # e.g. the disk failed: nothing was acked, producers send again
                log.exception("storing %d uplink requests failed", len(msgs))

    def _store(self, msgs: list[Any]) -> None:
        reqs: list[PutRequest] = self._held  # held records first: they keep their place in line
        self._held = []
        for msg in msgs:
            try:
                reqs.append(parse_put(msg, self.thing, self.cfg.iot_max_batch_bytes - ENVELOPE_BYTES))
            except Refused as e:
                self.malformed += 1
                rid = msg.get("id") if isinstance(msg, dict) else None
                if self.malformed in (1, 10, 100) or self.malformed % 1000 == 0:
                    log.warning("malformed uplink-put %r (%d so far): %s", rid, self.malformed, e)
                if isinstance(rid, str) and rid:
                    self.app.publish(ACK_TOPIC, ack(rid, "refused", f"malformed: {e}"))
        reqs = [r for r in reqs if not self._short_of_space(r)]
        if not reqs:
            return
        if self._held_error is not None and time.monotonic() - self._held_at < HELD_RETRY_S:
            self._hold(reqs, self._held_error, tried=False)  # not yet time to try the disk again
            return
        try:
            results = self.queue.put_many(reqs)
        except Exception as e:
            if condition_of(e) is None:
                raise
            self._hold(reqs, e)
            return
        self.faults.ok("queue")
        self._held_ids, self._held_error = set(), None
        for req, (status, reason) in zip(reqs, results, strict=True):
            if status == "refused":
                self.refused += 1
                log.warning("uplink-put %s refused: %s", req.id, reason)
                self.app.publish(ACK_TOPIC, ack(req.id, "refused", reason))
            else:
                self.persisted += status == "persisted"
                self.app.publish(ACK_TOPIC, ack(req.id, "persisted", "duplicate id" if status == "duplicate" else ""))

    def _short_of_space(self, req: PutRequest) -> bool:
        """Media that would leave less than minFreeBytes free is refused at once (records are never)."""
        if req.destination != "s3" or self.cfg.min_free_bytes <= 0:
            return False
        try:
            size = len(req.data) if req.data is not None else os.stat(req.file).st_size
        except OSError:
            return False  # put_many says what is wrong with the file
        why = short_of_space(self.queue.root, self.cfg.min_free_bytes, size)
        if why:
            self.faults.failed("queue payload", OSError(errno.ENOSPC, why), "media is refused (its producer is "
                                                                          "told); records still go")
            self._refuse_media(req, f"{DISK_FULL}: {why}")
        return bool(why)

    def _refuse_media(self, req: PutRequest, why: str) -> None:
        self.refused += 1
        self.faults.count("media refused")
        self.app.publish(ACK_TOPIC, ack(req.id, "refused", why))

    def _hold(self, reqs: list[PutRequest], e: BaseException, tried: bool = True) -> None:
        """The queue cannot store anything now: media is refused (its producer decides), records are held in
        memory in their order and tried again (HELD_RETRY_S) — they are what a full disk must not lose."""
        if tried:
            self.faults.failed("queue", e, "media is refused; event records and alerts are held in memory and "
                                           "stored as soon as the disk takes them")
            self._held_at, self._held_error = time.monotonic(), e
        why = f"{condition_of(e) or 'io-error'}: the uplink queue cannot store it: {describe(e)}"
        held, size = [], 0
        for req in reqs:
            if req.destination == "s3":
                self._refuse_media(req, why)
            elif size + len(req.payload) > HELD_MAX_BYTES:
                self.refused += 1
                self.faults.count("records refused")
                self.app.publish(ACK_TOPIC, ack(req.id, "refused", f"{why} (and {len(held)} records, "
                                                                   f"{size} bytes, already wait in memory)"))
            else:
                held.append(req)
                size += len(req.payload)
        new = sum(1 for r in held if r.id not in self._held_ids)
        if new:
            self.faults.count("records held", new)
        self._held, self._held_ids = held, {r.id for r in held}

    # -- reports --------------------------------------------------------------------------------
    def _on_change(self, lane: str, online: bool, error: str) -> None:
        name = self.engine.objects.name if lane == "object" else lane
        log.log(logging.INFO if online else logging.WARNING, "uplink %s is %s%s", name,
                "online" if online else "offline", f": {error}" if error else "")
        with self._changes_lock:
            self._changes.append({"link": name, "online": online, "error": error, "at": time.time()})

    def report(self) -> None:
        """Evictions and link changes to IoT Core ggvision/{thing}/status, through the queue itself (as an
        alert: durable, and first in line). Marked reported only once queued, so none is ever lost silently."""
        pending = self.queue.unreported(100)
        with self._changes_lock:
            changes, self._changes = self._changes, []
        if not pending and not changes:
            return
        evictions = [e.to_dict() for _, e in pending]
        for e in evictions:
            if e["reason"] in ("corrupt", "rejected", "budget"):
                continue  # the engine logged it when it dropped or rejected the item; the budget once per request
            log.warning("uplink evicted %s (%s, camera %s, %d bytes, %.0f s old): %s %s", e["id"], e["priority"],
                        e["camera"], e["size"], e["age_s"], e["reason"], e["detail"])
        if self.cfg.iot_enabled:
            now = time.time()
            stats = self.queue.stats()
            msg = {"schema": "uplink-status/1.0", "thing": self.thing, "site": self.cfg.site, "timestamp": now,
                   "evictions": evictions, "evicted": stats["evicted"], "evicted_by_reason": stats["evicted_by_reason"],
                   "links": changes, "backlog_bytes": stats["backlog_bytes"]}
            req = PutRequest(f"uplink:status:{uuid.uuid4().hex}", NAME, 0, "uplink", now, now, "iot",
                             topic=STATUS_TOPIC.format(thing=self.thing),
                             payload=json.dumps(msg, separators=(",", ":")).encode(), lanes=("iot",))
            try:
                status, reason = self.queue.put_many([req])[0]
            except BaseException:  # the disk cannot take it now: the changes wait for the next report
                with self._changes_lock:
                    self._changes[:0] = changes
                raise
            if status == "refused":
                log.error("uplink status could not be queued: %s", reason)
                with self._changes_lock:
                    self._changes[:0] = changes
                return
        if pending:
            self.queue.mark_reported(pending[-1][0])

    def metrics(self) -> dict[str, Any]:
        s = self.engine.save_state()
        online = {(self.engine.objects.name if lane == "object" else lane): v for lane, v in s["online"].items()}
        links = {(self.engine.objects.name if lane == "object" else lane): v for lane, v in s["links"].items()}
        return {"schema": "uplink-metrics/1.0", "component": NAME, "timestamp": time.time(),
                "backlog_bytes": s["backlog_bytes"], "backlog_items": s["backlog_items"],
                "oldest_age_s": s["oldest_age_s"], "online": online, "uploaded_bytes": s["uploaded_bytes"],
                "uploaded_items": s["uploaded_items"], "evicted": s["evicted"],
                "evicted_by_reason": s["evicted_by_reason"], "last_error": s["last_error"], "links": links,
                "cameras": {c: {"items": v["items"], "bytes": v["bytes"]} for c, v in s["cameras"].items()},
                "drain_eta_s": s["drain_eta_s"], "rate_bytes_per_s": s["rate_bytes_per_s"],
                "bytes_queued": self.queue.bytes_queued, "quota_bytes": self.cfg.quota_bytes,
                "persisted": self.persisted, "refused": self.refused, "malformed": self.malformed,
                "held_records": len(self._held), "storage": self.faults.metrics(),
                "disk": {"held": self.queue.class_bytes(), "evicted": dict(self.budget_evicted)}}

    def _guarded(self, what: str, task: Any) -> None:
        """A periodic write of the queue; on a full or read-only disk it waits for the next tick (counted)."""
        try:
            task()
        except Exception as e:
            if condition_of(e) is None:
                raise
            self.faults.failed(what, e, "tried again every tick")
        else:
            self.faults.ok(what)

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last_expire >= EXPIRE_PERIOD_S:
            self._last_expire = now
            self._guarded("retention", self.queue.expire)
        self._guarded("budget", self.apply_budget)
        self._guarded("report", self.report)
        if now - self._last_metrics >= self.cfg.metrics_period_s:
            self._last_metrics = now
            self.app.publish(METRICS_TOPIC, self.metrics())

    def close(self) -> None:
        self._stop.set()
        self.engine.stop()
        self._intake_thread.join(5)
        self.queue.close()


def build(app: ComponentApp, raw: dict[str, Any]) -> UplinkComponent:
    comp = UplinkComponent(app, parse(UplinkConfig, raw))
    comp.start()
    app.on_config(comp.apply)
    return comp


def main() -> int:
    return run_component(NAME, validator(UplinkConfig), build)
