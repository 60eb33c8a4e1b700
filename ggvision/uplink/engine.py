"""The drain loop: one thread per lane takes the most important, oldest item, verifies it and hands it to the
lane's sink; offline sinks back off with jitter; everything is paced by the bandwidth caps.

Usable without IPC: `python -m ggvision.uplink.engine --queue DIR --config JSON` drains a queue to the
configured object sink (and SQS/Kinesis) until SIGTERM — the kill -9 tests and bench/uplink run it so.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..component.storage import StorageFaults, condition_of
from ..config.base import parse
from ..config.uplink import UplinkConfig
from ..contract.keys import kind_for, object_key
from .dirsink import DirectorySink
from .errors import ItemError, Preempted, TooLarge, TransientError
from .msgsinks import ArchiveSink, Batch, build_batches
from .queue import Eviction, Item, UplinkQueue
from .s3sink import S3Sink
from .streams import BatchSink, KinesisSink, SqsSink, deliver
from .throttle import Throttle

log = logging.getLogger("ggvision.uplink")

BACKOFF_MIN_S = 0.5
MESSAGE_ROUND = 256  # messages looked at per round of a message lane


class ObjectSink(Protocol):
    name: str

    def put(self, item: Item, key: str, throttle: Throttle, should_yield: Callable[[], bool],
            save_upload: Callable[[dict[str, Any]], None]) -> None: ...
    def close(self) -> None: ...


class MessageSink(Protocol):
    name: str

    def send(self, batch: Batch, body: bytes) -> None: ...
    def close(self) -> None: ...


LaneSink = MessageSink | BatchSink  # a message lane sends batches (IoT, archive) or single items (SQS, Kinesis)


@dataclass
class LaneState:
    online: bool | None = None  # None: not tried yet
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""
    last_error_at: float = 0.0
    sent_bytes: int = 0
    busy_s: float = 0.0  # seconds spent sending: sent_bytes / busy_s is the link's observed rate
    batch_limit: int = 0  # message batches at most this big (0: iot.maxBatchBytes); lowered on TooLarge


def _kind_and_name(item: Item) -> tuple[str, str]:
    """An object item's target is `{kind}/{name}`; items queued before kinds existed have only the name."""
    kind, sep, name = item.target.partition("/")
    return (kind, name) if sep else (kind_for(item.content_type, item.priority_name), item.target)


def object_sink(cfg: UplinkConfig, work: Path) -> ObjectSink:
    if cfg.sink.type == "s3":
        return S3Sink(cfg.sink, cfg.multipart_threshold_bytes, cfg.multipart_part_bytes)
    return DirectorySink(work / cfg.sink.path)


def stream_sinks(cfg: UplinkConfig, work: Path, thing: str) -> dict[str, LaneSink]:
    out: dict[str, LaneSink] = {}
    if cfg.archive:
        out["archive"] = ArchiveSink(work / cfg.sink.path, cfg.site, thing)
    if cfg.sqs.enabled:
        out["sqs"] = SqsSink(cfg.sqs)
    if cfg.kinesis.enabled:
        out["kinesis"] = KinesisSink(cfg.kinesis)
    return out


class Engine:
    def __init__(self, queue: UplinkQueue, cfg: UplinkConfig, thing: str, objects: ObjectSink,
                 messages: dict[str, LaneSink],
                 on_change: Callable[[str, bool, str], None] | None = None,
                 faults: StorageFaults | None = None) -> None:
        self.queue = queue
        # the queue's own writes (a delivery recorded, a retry counted) on a full or read-only disk: counted and
        # logged once; the lane backs off and the item is sent again once the disk can be written (a duplicate
        # at worst, never a loss)
        self.faults = faults or StorageFaults("com.ggvision.Uplink", log)
        self.cfg = cfg
        self.thing = thing
        self.objects = objects
        self.messages = dict(messages)
        self.on_change = on_change  # (lane, online, error) on every online/offline transition
        self.stop_event = threading.Event()
        self.throttle = Throttle(stop=self.stop_event)
        self.lanes: dict[str, LaneState] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.configure(cfg)

    def configure(self, cfg: UplinkConfig, objects: ObjectSink | None = None,
                  messages: dict[str, LaneSink] | None = None) -> None:
        """Apply a new configuration live; sinks are swapped between two deliveries."""
        with self._lock:
            self.cfg = cfg
            self.throttle.configure(cfg.bandwidth_kbps, dict(cfg.camera_bandwidth_kbps),
                                    cfg.default_camera_bandwidth_kbps)
            self.queue.quota_bytes, self.queue.retention_s = cfg.quota_bytes, cfg.retention_s
            # A destination switched on starts its lane; one switched off keeps its items until it is back
            # on or retention removes them (they are counted in the backlog meanwhile).
            self.queue.message_lanes = cfg.message_lanes
            if self._threads:
                for lane in cfg.message_lanes:
                    if lane not in self.lanes:
                        self._start_lane(lane)
            old = []
            if objects is not None:
                old.append(self.objects)
                self.objects = objects
            if messages is not None:
                old += [s for n, s in self.messages.items() if messages.get(n) is not s]
                self.messages.update(messages)
            for st in self.lanes.values():  # a new sink or cap deserves a prompt try
                st.retry_at = 0.0
        for s in old:
            try:
                s.close()
            except Exception:
                pass

    # -- threads ------------------------------------------------------------------------------
    def start(self) -> None:
        for lane in ("object", *self.queue.message_lanes):
            self._start_lane(lane)

    def _start_lane(self, lane: str) -> None:
        self.lanes[lane] = LaneState()
        t = threading.Thread(target=self._run, args=(lane,), name=f"uplink-{lane}", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self.stop_event.set()
        with self.queue.changed:
            self.queue.changed.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _run(self, lane: str) -> None:
        st = self.lanes[lane]
        while not self.stop_event.is_set():
            wait = st.retry_at - time.monotonic()
            if wait > 0:
                self.stop_event.wait(min(wait, 1.0))
                continue
            try:
                worked = self._object_round(st) if lane == "object" else self._message_round(lane, st)
            except Exception as e:  # a bug or a disk error must not kill the lane: log, back off, go on
                cond = condition_of(e)
                if cond is None:
                    log.exception("uplink lane %s failed", lane)
                    self._failed(lane, st, f"internal error: {e!r}")
                else:
                    self.faults.failed(f"{lane} lane", e, "the lane backs off; what it sent goes again once the "
                                                          "queue can record it")
                    self._backoff(st)
                continue
            self.faults.ok(f"{lane} lane")
            if not worked:
                with self.queue.changed:
                    self.queue.changed.wait(1.0)

    def _ok(self, lane: str, st: LaneState) -> None:
        was = st.online
        st.online, st.failures, st.retry_at = True, 0, 0.0
        if was is not True and self.on_change:
            self.on_change(lane, True, "")

    def _failed(self, lane: str, st: LaneState, error: str) -> None:
        was = st.online
        st.failures += 1
        st.online, st.last_error, st.last_error_at = False, error, time.time()
        delay = min(self.cfg.backoff_max_s, BACKOFF_MIN_S * 2 ** min(st.failures - 1, 20))
        st.retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)  # jitter: sites don't retry in step
        if st.failures in (1, 10, 100) or st.failures % 1000 == 0:
            log.warning("uplink %s: %s (attempt %d, next in %.1f s)", lane, error, st.failures, delay)
        if was is not False and self.on_change:
            self.on_change(lane, False, error)

    def _backoff(self, st: LaneState) -> None:
        """Wait before the next round without calling the link offline (the trouble is ours, not the link's)."""
        st.failures += 1
        delay = min(self.cfg.backoff_max_s, BACKOFF_MIN_S * 2 ** min(st.failures - 1, 20))
        st.retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)

    def _partial(self, lane: str, st: LaneState, error: str) -> None:
        """Some entries must be retried but the destination answered (throttled, or took the rest): back off
        as after a failure, without calling the link offline."""
        st.failures += 1
        st.last_error, st.last_error_at = error, time.time()
        delay = min(self.cfg.backoff_max_s, BACKOFF_MIN_S * 2 ** min(st.failures - 1, 20))
        st.retry_at = time.monotonic() + delay * random.uniform(0.5, 1.0)
        if st.failures in (1, 10, 100) or st.failures % 1000 == 0:
            log.warning("uplink %s: %s (retry %d, next in %.1f s)", lane, error, st.failures, delay)

    def _reject(self, lane: str, rejected: list[tuple[Item, str]]) -> None:
        """Items a destination refuses for good leave that lane only; logged here, once each."""
        for it, why in rejected:
            log.error("uplink %s: rejected %s (%s, camera %s, %d bytes), not retried: %s", lane, it.id,
                      it.priority_name, it.camera, it.size, why)
        self.queue.reject(lane, rejected)

    def _drop(self, lane: str, item: Item, reason: str, detail: str) -> Eviction | None:
        log.error("uplink %s: dropping %s (%s, %s): %s", lane, item.id, item.priority_name, reason, detail)
        return self.queue.drop(item, reason, detail)

    # -- objects ------------------------------------------------------------------------------
    def _object_round(self, st: LaneState) -> bool:
        items = self.queue.head("object")
        if not items:
            return False
        item = items[0]
        problem = self.queue.verify(item)
        if problem:
            self._drop("object", item, "corrupt", problem)
            return True
        cfg = self.cfg
        kind, name = _kind_and_name(item)
        key = object_key(cfg.sink.prefix if cfg.sink.type == "s3" else "", kind, cfg.site, self.thing,
                         item.camera, item.start, name)
        sink = self.objects
        t0 = time.monotonic()
        try:
            sink.put(item, key, self.throttle,
                     should_yield=lambda: self.stop_event.is_set() or
                     self.queue.more_important_waiting("object", item.priority),
                     save_upload=lambda up: self.queue.save_upload(item.seq, up))
        except Preempted:
            return True
        except ItemError as e:
            self._drop("object", item, "rejected", str(e))
            return True
        except TransientError as e:
            self.queue.failed("object", [item], str(e))
            self._failed("object", st, str(e))
            return True
        st.busy_s += time.monotonic() - t0
        st.sent_bytes += item.size
        self.queue.delivered("object", [item])
        self._ok("object", st)
        return True

    # -- messages -----------------------------------------------------------------------------
    def _message_round(self, lane: str, st: LaneState) -> bool:
        sink = self.messages.get(lane)
        if isinstance(sink, BatchSink):
            return self._stream_round(lane, st, sink)
        items = self.queue.head(lane, MESSAGE_ROUND)
        if not items or sink is None:
            return False
        good = self._verified(lane, items)
        for batch in build_batches(good, st.batch_limit or self.cfg.iot_max_batch_bytes, self.thing, self.cfg.site):
            if self.stop_event.is_set():
                break
            body = batch.body(self.thing, self.cfg.site)
            self.throttle.take(batch.camera, len(body))
            t0 = time.monotonic()
            try:
                sink.send(batch, body)
            except ItemError as e:
                self._reject(lane, [(it, str(e)) for it in batch.items])
                continue
            except TooLarge as e:
                if len(batch.items) == 1:  # no smaller batch exists: it can never go through this runtime
                    self._reject(lane, [(batch.items[0], str(e))])
                    continue
                # A backlog batches up bigger than the runtime's spool (a device with a small
                # mqtt.spooler.maxSizeInBytes, after an outage): halve the batches and go on, in the same order.
                st.batch_limit = max(1024, len(body) // 2)
                log.warning("uplink %s: a %d-byte batch is too large for the runtime (%s); sending batches of at "
                            "most %d bytes", lane, len(body), e, st.batch_limit)
                return True
            except TransientError as e:
                self.queue.failed(lane, batch.items, str(e))
                self._failed(lane, st, str(e))
                return True  # stop here: nothing may overtake this batch
            st.busy_s += time.monotonic() - t0
            st.sent_bytes += len(body)
            self.queue.delivered(lane, batch.items)
            self._ok(lane, st)
        return True

    def _verified(self, lane: str, items: list[Item]) -> list[Item]:
        """The items whose payload is intact; the others are dropped as corrupt (reported, never silent)."""
        good = []
        for it in items:
            problem = self.queue.verify(it)
            if problem:
                self._drop(lane, it, "corrupt", problem)
            else:
                good.append(it)
        return good

    def _stream_round(self, lane: str, st: LaneState, sink: BatchSink) -> bool:
        """SQS / Kinesis: the head of the lane in batched requests, each item acked, retried or rejected on its
        own (streams.py); a round stops at the first request with something to retry."""
        items = self.queue.head(lane, MESSAGE_ROUND)
        if not items:
            return False
        good = self._verified(lane, items)
        t0 = time.monotonic()
        out = deliver(sink, good, self.thing, self.cfg.site, self.throttle.take, self.stop_event.is_set)
        if out.delivered:
            st.busy_s += time.monotonic() - t0
            st.sent_bytes += out.sent_bytes
            self.queue.delivered(lane, out.delivered)
        if out.rejected:
            self._reject(lane, out.rejected)
        if out.reordered:
            log.warning("uplink %s: %d items were accepted before an earlier item of their camera that must be "
                        "retried (consumers restore the order by seq)", lane, out.reordered)
            self.queue.count(f"reordered.{lane}", out.reordered)
        if out.retry:
            self.queue.failed(lane, out.retry, out.error)
            self.queue.count(f"retried.{lane}", len(out.retry))
            if out.delivered or out.throttled:
                self._partial(lane, st, out.error)
            else:
                self._failed(lane, st, out.error)
        elif out.delivered or out.rejected:
            self._ok(lane, st)
        return True

    # -- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Lane states plus the queue's stats and an estimated drain time (what metrics and the CLI show)."""
        stats = self.queue.stats()
        backlog = sum(stats["backlog_bytes"].values())
        rates = [st.sent_bytes / st.busy_s for st in self.lanes.values() if st.busy_s > 0.05]
        rate = max(rates) if rates else 0.0
        cap = self.cfg.bandwidth_kbps * 125.0
        if cap:
            rate = min(rate, cap) if rate else cap
        errors = [(st.last_error_at, st.last_error) for st in self.lanes.values() if st.last_error]
        stats.update({
            "online": {lane: st.online for lane, st in self.lanes.items()},
            "last_error": max(errors)[1] if errors else "",
            "rate_bytes_per_s": round(rate, 1),
            "drain_eta_s": round(backlog / rate, 1) if rate and backlog else (0.0 if not backlog else None),
            "bandwidth_kbps": self.cfg.bandwidth_kbps,
        })
        return stats

    def save_state(self) -> dict[str, Any]:
        """Status into the index too, so `ggvision uplink status` can show it without IPC."""
        s = self.status()
        try:
            self.queue.set_state(online=s["online"], last_error=s["last_error"],
                                 rate_bytes_per_s=s["rate_bytes_per_s"], bandwidth_kbps=s["bandwidth_kbps"],
                                 updated=time.time(), sink=self.objects.name)
        except Exception as e:
            if condition_of(e) is None:
                raise
            self.faults.failed("status", e, "`ggvision uplink status` shows the last state it could record")
        else:
            self.faults.ok("status")
        return s


def main(argv: list[str] | None = None) -> int:
    """Drain a queue without IPC until SIGTERM (objects and SQS/Kinesis; IoT needs the component)."""
    p = argparse.ArgumentParser(prog="python -m ggvision.uplink.engine", description=main.__doc__)
    p.add_argument("--queue", type=Path, required=True, help="queue folder (index.sqlite3 + payloads/)")
    p.add_argument("--config", default="{}", help="component configuration as JSON (see docs/uplink.md)")
    p.add_argument("--work", type=Path, default=Path.cwd(), help="folder relative sink paths are under")
    p.add_argument("--thing", default="ggvision-local")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = parse(UplinkConfig, json.loads(args.config))
    cfg = cfg.model_copy(update={"iot": cfg.iot.model_copy(update={"enabled": False})})
    engine = run_engine(args.queue, cfg, args.work, args.thing)
    signal.signal(signal.SIGTERM, lambda *_: engine.stop_event.set())
    signal.signal(signal.SIGINT, lambda *_: engine.stop_event.set())
    while not engine.stop_event.wait(1.0):
        engine.save_state()
    engine.stop()
    return 0


def run_engine(queue_dir: Path, cfg: UplinkConfig, work: Path, thing: str,
               messages: dict[str, LaneSink] | None = None) -> Engine:
    queue = UplinkQueue(queue_dir, ("object", *cfg.message_lanes), cfg.quota_bytes, cfg.retention_s)
    engine = Engine(queue, cfg, thing, object_sink(cfg, work), {**stream_sinks(cfg, work, thing), **(messages or {})})
    engine.start()
    return engine


if __name__ == "__main__":
    raise SystemExit(main())
