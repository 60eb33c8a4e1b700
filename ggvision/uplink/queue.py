"""The durable queue: an SQLite index (WAL, synchronous=FULL) plus one payload file per object.

Durability: a payload is written to staging/, fsynced, hard-linked or renamed into payloads/ (directory
fsynced), and only then is its row committed; `put_many` returns after that commit, so an acknowledged item
survives kill -9 and power loss. A crash before the commit leaves at most a file without a row, removed at
the next start (the producer got no ack and sends again; the id makes that idempotent).

Lanes: an item waits on one lane per destination it still has to reach ("object" for S3 / the directory
bucket; "iot", "sqs", "kinesis" for messages). A lane takes its items by priority, then age; a row leaves
when its last lane delivered it.

Quota and retention: a new item may evict items of its own or a lower priority (video first, then clips,
results, alerts; oldest first within a priority), never a more important one; if that cannot make room it
is refused. The suite's disk budget (Health's disk-budget/1.0) may ask for a class to be given up
(`evict_class`, oldest first; never records or alerts). Items older than the retention age are deleted
whatever their priority (the privacy rule). Every
eviction is written to the `evictions` table in the same transaction, so the report survives a crash.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..component.storage import StorageFaults
from ..contract import disk, keys
from . import PRIORITIES
from .messages import PutRequest, Refused

# An item's disk-budget class: messages and anything of priority alerts are records, never given up for space;
# objects by the kind their target starts with (contract.keys).
_CLASS_SQL = (f"CASE WHEN kind != 'object' OR priority = 0 THEN '{disk.RECORDS}' "
              + " ".join(f"WHEN target LIKE '{k}/%' THEN '{disk.object_class(k)}'" for k in keys.KINDS)
              + " ELSE 'results' END")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: order == age
    id TEXT NOT NULL UNIQUE,                -- the producer's idempotency key
    priority INTEGER NOT NULL,
    camera TEXT NOT NULL,
    producer TEXT NOT NULL,
    kind TEXT NOT NULL,                     -- object | message
    target TEXT NOT NULL,                   -- object: {kind}/{name} (contract.keys); message: its topic
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    start REAL NOT NULL,
    end REAL NOT NULL,
    created REAL NOT NULL,                  -- min(start, enqueue time): the age retention counts from
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    file TEXT,                              -- payload file under payloads/ (objects)
    data BLOB,                              -- payload inline (messages: small JSON)
    upload TEXT                             -- multipart state: {"upload_id", "part_bytes", "parts": {n: {...}}}
);
CREATE TABLE IF NOT EXISTS lanes (
    lane TEXT NOT NULL, priority INTEGER NOT NULL, seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (lane, priority, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lanes_seq ON lanes (seq);
CREATE INDEX IF NOT EXISTS items_created ON items (created);
CREATE INDEX IF NOT EXISTS items_evict ON items (priority, seq);
CREATE TABLE IF NOT EXISTS delivered (id TEXT PRIMARY KEY, at REAL NOT NULL);  -- duplicate puts after delivery
CREATE INDEX IF NOT EXISTS delivered_at ON delivered (at);
CREATE TABLE IF NOT EXISTS evictions (
    n INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, id TEXT NOT NULL, priority INTEGER NOT NULL,
    camera TEXT NOT NULL, size INTEGER NOT NULL, age_s REAL NOT NULL,
    reason TEXT NOT NULL,                   -- quota | budget | retention | corrupt | rejected
    detail TEXT NOT NULL DEFAULT '', reported INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, value TEXT NOT NULL);  -- for `ggvision uplink status`
"""

INDEX_NAME = "index.sqlite3"


@dataclass
class Item:
    seq: int
    id: str
    priority: int
    camera: str
    producer: str
    kind: str
    target: str
    content_type: str
    metadata: dict[str, Any]
    start: float
    end: float
    created: float
    size: int
    sha256: str
    path: Path | None
    data: bytes | None
    upload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0

    @property
    def priority_name(self) -> str:
        return PRIORITIES[self.priority]


@dataclass
class Eviction:
    id: str
    priority: int
    camera: str
    size: int
    age_s: float
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "priority": PRIORITIES[self.priority], "camera": self.camera, "size": self.size,
                "age_s": round(self.age_s, 1), "reason": self.reason, "detail": self.detail}


_ITEM_COLS = ("seq, id, priority, camera, producer, kind, target, content_type, metadata, start, end, created, "
              "size, sha256, file, data, upload")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class UplinkQueue:
    def __init__(self, root: Path, lanes: tuple[str, ...] = ("object", "iot"), quota_bytes: int = 10 << 30,
                 retention_s: float = 7 * 86400.0, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.payloads = self.root / "payloads"
        self.staging = self.root / "staging"
        for d in (self.root, self.payloads, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        self.message_lanes = tuple(lane for lane in lanes if lane != "object")
        self.quota_bytes = quota_bytes
        self.retention_s = retention_s
        self.clock = clock
        self.faults: StorageFaults | None = None  # told of payload files that cannot be staged (full disk, ...)
        self._lock = threading.RLock()
        self._put_lock = threading.Lock()  # quota decisions and their inserts are serialized
        self.changed = threading.Condition()  # notified when items arrive (drain lanes wait on it)
        self._db = sqlite3.connect(self.root / INDEX_NAME, check_same_thread=False, isolation_level=None,
                                   timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # WAL + NORMAL may lose the last commits on power loss
        self._db.executescript(_SCHEMA)
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(size), 0) FROM items").fetchone()[0])
        self._recover()

    # -- start-up -------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Remove what a crash left half-done: staged files and payloads that never got their row."""
        for p in self.staging.iterdir():
            p.unlink(missing_ok=True)
        known = {r[0] for r in self._db.execute("SELECT file FROM items WHERE file IS NOT NULL")}
        for p in self.payloads.iterdir():
            if p.name not in known:
                p.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:  # SQLite may have rolled back already (a full disk, say)
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- enqueue --------------------------------------------------------------------------------
    def put_many(self, reqs: list[PutRequest]) -> list[tuple[str, str]]:
        """Store requests durably; one (status, reason) per request: persisted | duplicate | refused.
        Payload files are fsynced one by one and the rows committed together (group commit)."""
        out: list[tuple[str, str]] = []
        rows: list[tuple[int, PutRequest, str | None, int, str, Path | None]] = []
        with self._put_lock:
            seen: set[str] = set()
            for req in reqs:
                try:
                    if req.id in seen or self._known(req.id):
                        out.append(("duplicate", ""))
                        continue
                    rows.append((len(out), *self._stage(req)))
                    seen.add(req.id)
                    out.append(("persisted", ""))
                except Refused as e:
                    out.append(("refused", str(e)))
            if rows:
                self._insert(rows, out)
        if rows:
            with self.changed:
                self.changed.notify_all()
        return out

    def _known(self, req_id: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM items WHERE id = ? UNION ALL SELECT 1 FROM delivered WHERE id = ?",
                                    (req_id, req_id)).fetchone() is not None

    def _stage(self, req: PutRequest) -> tuple[PutRequest, str | None, int, str, Path | None]:
        """Payload on disk (objects) and its size and sha256; the source file is left in place until commit."""
        if req.destination == "iot":
            return req, None, len(req.payload), hashlib.sha256(req.payload).hexdigest(), None
        staged = self.staging / uuid.uuid4().hex
        h = hashlib.sha256()
        try:
            if req.data is not None:
                with open(staged, "wb") as f:
                    f.write(req.data)
                    f.flush()
                    os.fsync(f.fileno())
                h.update(req.data)
            else:
                self._stage_file(Path(req.file), staged, h, req.move)
        except FileNotFoundError:
            raise Refused(f"file: {req.file} does not exist") from None
        except OSError as e:
            with contextlib.suppress(OSError):
                staged.unlink(missing_ok=True)
            if self.faults is not None:
                self.faults.failed("queue payload", e, "media is refused (its producer is told); records still go")
            raise Refused(f"file: {req.file}: {e.strerror or e}") from e  # the cause says the storage condition
        digest = h.hexdigest()
        if req.sha256 and digest != req.sha256:
            staged.unlink(missing_ok=True)
            raise Refused(f"sha256: the content hashes to {digest}, not {req.sha256}")
        if self.faults is not None:
            self.faults.ok("queue payload")
        name = hashlib.sha256(req.id.encode()).hexdigest()[:40]  # deterministic: a re-sent id replaces an orphan
        os.replace(staged, self.payloads / name)
        return req, name, (self.payloads / name).stat().st_size, digest, Path(req.file) if req.move else None

    @staticmethod
    def _stage_file(src: Path, staged: Path, h: Any, move: bool) -> None:
        if move:
            with contextlib.suppress(OSError):  # same filesystem: no copy; the source goes after the commit
                os.link(src, staged)
                with open(staged, "rb") as f:
                    while chunk := f.read(1 << 20):
                        h.update(chunk)
                    os.fsync(f.fileno())
                return
        with open(src, "rb") as fin, open(staged, "wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())

    def _insert(self, rows: list[tuple[int, PutRequest, str | None, int, str, Path | None]],
                out: list[tuple[str, str]]) -> None:
        _fsync_dir(self.payloads)
        now = self.clock()
        freed: list[Path] = []
        moved: list[Path] = []
        with self._tx() as db:
            for i, req, name, size, digest, move_src in rows:
                lanes = ("object",) if req.destination == "s3" else req.lanes or self.message_lanes
                reason = self._make_room(db, req.priority, size, now, freed) if lanes else \
                    "no message destination is enabled (iot, sqs and kinesis are all off)"
                if reason:
                    out[i] = ("refused", reason)
                    if name:
                        freed.append(self.payloads / name)
                    continue
                cur = db.execute(
                    f"INSERT INTO items ({_ITEM_COLS.replace('seq, ', '')}) VALUES "
                    "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (req.id, req.priority, req.camera, req.producer, "object" if name else "message",
                     f"{req.kind}/{req.name}" if name else req.topic, req.content_type, json.dumps(req.metadata),
                     req.start, req.end, min(req.start, now), size, digest, name, None if name else req.payload, None))
                db.executemany("INSERT INTO lanes (lane, priority, seq) VALUES (?, ?, ?)",
                               [(lane, req.priority, cur.lastrowid) for lane in lanes])
                self._bytes += size
                if move_src is not None:
                    moved.append(move_src)
        for p in freed:
            p.unlink(missing_ok=True)
        for p in moved:
            p.unlink(missing_ok=True)

    def _make_room(self, db: sqlite3.Connection, priority: int, size: int, now: float, freed: list[Path]) -> str:
        """Evict items of `priority` or less important until `size` fits; '' or the reason it cannot."""
        if self._bytes + size <= self.quota_bytes:
            return ""
        need = self._bytes + size - self.quota_bytes
        victims, total = [], 0
        for row in db.execute("SELECT seq, size FROM items WHERE priority >= ? ORDER BY priority DESC, seq ASC",
                              (priority,)):
            victims.append(row[0])
            total += row[1]
            if total >= need:
                break
        if total < need:
            return (f"over quota: {self._bytes} of {self.quota_bytes} bytes queued and only {total} bytes of "
                    f"{PRIORITIES[priority]} or less important items to evict for {size} bytes")
        for seq in victims:
            self._delete(db, seq, "quota", now, f"room for a {PRIORITIES[priority]} item", freed)
        return ""

    def _delete(self, db: sqlite3.Connection, seq: int, reason: str, now: float, detail: str,
                freed: list[Path]) -> Eviction | None:
        row = db.execute("SELECT id, priority, camera, size, created, file FROM items WHERE seq = ?",
                         (seq,)).fetchone()
        if row is None:
            return None
        db.execute("DELETE FROM items WHERE seq = ?", (seq,))
        db.execute("DELETE FROM lanes WHERE seq = ?", (seq,))
        ev = Eviction(row[0], row[1], row[2], row[3], max(0.0, now - row[4]), reason, detail)
        db.execute("INSERT INTO evictions (at, id, priority, camera, size, age_s, reason, detail) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (now, *row[:4], ev.age_s, reason, detail))
        self._count(db, f"evicted.{PRIORITIES[row[1]]}", 1)
        self._count(db, f"evicted_reason.{reason}", 1)
        self._bytes -= row[3]
        if row[5]:
            freed.append(self.payloads / row[5])
        return ev

    @staticmethod
    def _count(db: sqlite3.Connection, name: str, n: float) -> None:
        db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                   "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (name, n))

    # -- drain ----------------------------------------------------------------------------------
    def _item(self, row: tuple[Any, ...], attempts: int = 0) -> Item:
        return Item(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], json.loads(row[8]), row[9],
                    row[10], row[11], row[12], row[13], self.payloads / row[14] if row[14] else None,
                    bytes(row[15]) if row[15] is not None else None, json.loads(row[16]) if row[16] else {},
                    attempts)

    def head(self, lane: str, limit: int = 1) -> list[Item]:
        """The next items of a lane: most important first, oldest first within a priority."""
        cols = ", ".join(f"i.{c.strip()}" for c in _ITEM_COLS.split(","))
        with self._lock:
            rows = self._db.execute(
                f"SELECT {cols}, l.attempts FROM lanes l JOIN items i ON i.seq = l.seq WHERE l.lane = ? "
                "ORDER BY l.priority, l.seq LIMIT ?", (lane, limit)).fetchall()
        return [self._item(r[:-1], r[-1]) for r in rows]

    def more_important_waiting(self, lane: str, priority: int) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM lanes WHERE lane = ? AND priority < ? LIMIT 1",
                                    (lane, priority)).fetchone() is not None

    def save_upload(self, seq: int, upload: dict[str, Any]) -> None:
        """Multipart progress (UploadId, part checksums), committed before the next part starts."""
        with self._tx() as db:
            db.execute("UPDATE items SET upload = ? WHERE seq = ?", (json.dumps(upload) if upload else None, seq))

    def delivered(self, lane: str, items: list[Item]) -> None:
        freed: list[Path] = []
        now = self.clock()
        with self._tx() as db:
            for it in items:
                if db.execute("DELETE FROM lanes WHERE lane = ? AND seq = ?", (lane, it.seq)).rowcount == 0:
                    continue  # evicted meanwhile
                self._count(db, f"uploaded_items.{lane}", 1)
                self._count(db, f"uploaded_bytes.{lane}", it.size)
                self._release_if_done(db, it, now, freed)
        for p in freed:
            p.unlink(missing_ok=True)

    def _release_if_done(self, db: sqlite3.Connection, it: Item, now: float, freed: list[Path]) -> None:
        """An item no lane holds any more leaves the queue; its id is remembered, so a re-sent put is a
        duplicate, and its payload file is freed after the commit."""
        if db.execute("SELECT 1 FROM lanes WHERE seq = ?", (it.seq,)).fetchone() is None:
            db.execute("DELETE FROM items WHERE seq = ?", (it.seq,))
            db.execute("INSERT OR REPLACE INTO delivered (id, at) VALUES (?, ?)", (it.id, now))
            self._bytes -= it.size
            if it.path is not None:
                freed.append(it.path)

    def failed(self, lane: str, items: list[Item], error: str) -> None:
        with self._tx() as db:
            db.executemany("UPDATE lanes SET attempts = attempts + 1, last_error = ? WHERE lane = ? AND seq = ?",
                           [(error[:500], lane, it.seq) for it in items])

    def drop(self, item: Item, reason: str, detail: str) -> Eviction | None:
        """Remove an item that can never be delivered (corrupt payload, refused by the destination), reported
        like an eviction so it is never silent."""
        freed: list[Path] = []
        with self._tx() as db:
            ev = self._delete(db, item.seq, reason, self.clock(), detail[:500], freed)
        for p in freed:
            p.unlink(missing_ok=True)
        return ev

    def reject(self, lane: str, rejected: list[tuple[Item, str]]) -> list[Eviction]:
        """Take items off one lane for good: that destination refused them and always will (too large for the
        queue, say). Recorded and counted like an eviction (reason `rejected`, detail `{lane}: why`; counters
        `evicted.*` and `rejected.{lane}`), so it is reported on IoT Core and in the metrics; the item stays
        queued for its other lanes and leaves (as handled: a re-sent id is a duplicate) when none is left."""
        freed: list[Path] = []
        out: list[Eviction] = []
        now = self.clock()
        with self._tx() as db:
            for it, why in rejected:
                if db.execute("DELETE FROM lanes WHERE lane = ? AND seq = ?", (lane, it.seq)).rowcount == 0:
                    continue  # evicted meanwhile
                ev = Eviction(it.id, it.priority, it.camera, it.size, max(0.0, now - it.created), "rejected",
                              f"{lane}: {why}"[:500])
                db.execute("INSERT INTO evictions (at, id, priority, camera, size, age_s, reason, detail) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (now, ev.id, ev.priority, ev.camera, ev.size, ev.age_s, ev.reason, ev.detail))
                self._count(db, f"evicted.{PRIORITIES[it.priority]}", 1)
                self._count(db, "evicted_reason.rejected", 1)
                self._count(db, f"rejected.{lane}", 1)
                out.append(ev)
                self._release_if_done(db, it, now, freed)
        for p in freed:
            p.unlink(missing_ok=True)
        return out

    def count(self, name: str, n: float) -> None:
        """Add to a counter of the index (cumulative, survives restarts; read_stats shows it)."""
        with self._tx() as db:
            self._count(db, name, n)

    def verify(self, item: Item) -> str:
        """'' if the stored payload is intact, else what is wrong with it."""
        if item.data is not None:
            return "" if hashlib.sha256(item.data).hexdigest() == item.sha256 else "inline payload checksum mismatch"
        assert item.path is not None
        try:
            size = item.path.stat().st_size
        except FileNotFoundError:
            return f"payload file {item.path.name} is missing"
        if size != item.size:
            return f"payload file {item.path.name} has {size} bytes, {item.size} were queued (truncated?)"
        digest = file_sha256(item.path)
        return "" if digest == item.sha256 else f"payload file {item.path.name} hashes to {digest[:16]}…, " \
                                                  f"{item.sha256[:16]}… was queued"

    # -- the disk budget -------------------------------------------------------------------------------
    def class_bytes(self) -> dict[str, int]:
        """Bytes queued per disk-budget class (contract/disk.py)."""
        out = dict.fromkeys(disk.CLASSES, 0)
        with self._lock:
            for cls, size in self._db.execute(f"SELECT {_CLASS_SQL} AS c, SUM(size) FROM items GROUP BY c"):
                out[cls] = int(size or 0)
        return out

    def evict_class(self, cls: str, nbytes: int) -> list[Eviction]:
        """Give up the oldest items of a disk-budget class until `nbytes` are freed (or none is left)."""
        if cls not in disk.EVICTION_ORDER:
            raise ValueError(f"not a class the disk budget evicts: {cls!r}")
        now = self.clock()
        freed: list[Path] = []
        out: list[Eviction] = []
        with self._tx() as db:
            total = 0
            for seq, size in db.execute(f"SELECT seq, size FROM items WHERE {_CLASS_SQL} = ? ORDER BY seq",
                                        (cls,)).fetchall():
                if total >= nbytes:
                    break
                ev = self._delete(db, seq, "budget", now, f"the suite's disk budget: {cls} first", freed)
                if ev:
                    out.append(ev)
                    total += size
            if total:
                self._count(db, f"budget_evicted_bytes.{cls}", total)
        for p in freed:
            p.unlink(missing_ok=True)
        return out

    # -- retention, reports, status ------------------------------------------------------------------
    def expire(self) -> list[Eviction]:
        """Delete every item older than the retention age, whatever its priority; forget old delivered ids."""
        now = self.clock()
        cutoff = now - self.retention_s
        freed: list[Path] = []
        out: list[Eviction] = []
        with self._tx() as db:
            for (seq,) in db.execute("SELECT seq FROM items WHERE created < ?", (cutoff,)).fetchall():
                ev = self._delete(db, seq, "retention", now, f"older than {self.retention_s / 86400:g} days", freed)
                if ev:
                    out.append(ev)
            db.execute("DELETE FROM delivered WHERE at < ?", (cutoff,))
        for p in freed:
            p.unlink(missing_ok=True)
        return out

    def unreported(self, limit: int = 100) -> list[tuple[int, Eviction]]:
        with self._lock:
            rows = self._db.execute("SELECT n, id, priority, camera, size, age_s, reason, detail FROM evictions "
                                    "WHERE reported = 0 ORDER BY n LIMIT ?", (limit,)).fetchall()
        return [(r[0], Eviction(*r[1:])) for r in rows]

    def mark_reported(self, upto: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE evictions SET reported = 1 WHERE n <= ?", (upto,))
            db.execute("DELETE FROM evictions WHERE reported = 1 AND at < ?", (self.clock() - self.retention_s,))

    def set_state(self, **values: Any) -> None:
        with self._tx() as db:
            db.executemany("INSERT OR REPLACE INTO state (name, value) VALUES (?, ?)",
                           [(k, json.dumps(v)) for k, v in values.items()])

    @property
    def bytes_queued(self) -> int:
        return self._bytes

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return read_stats(self._db, self.clock())


def read_stats(db: sqlite3.Connection, now: float) -> dict[str, Any]:
    """Backlog by priority, camera and lane, counters and state: what metrics and the status CLI show."""
    backlog_bytes = dict.fromkeys(PRIORITIES, 0)
    backlog_items = dict.fromkeys(PRIORITIES, 0)
    cameras: dict[str, dict[str, Any]] = {}
    oldest = None
    for prio, cam, n, size, created in db.execute(
            "SELECT priority, camera, COUNT(*), SUM(size), MIN(created) FROM items GROUP BY priority, camera"):
        p = PRIORITIES[prio]
        backlog_bytes[p] += size
        backlog_items[p] += n
        c = cameras.setdefault(cam, {"items": 0, "bytes": 0, "by_priority": {}})
        c["items"] += n
        c["bytes"] += size
        c["by_priority"][p] = {"items": n, "bytes": size}
        oldest = created if oldest is None else min(oldest, created)
    lanes = {lane: {"items": n, "errors": err or ""} for lane, n, err in db.execute(
        "SELECT lane, COUNT(*), MAX(last_error) FROM lanes GROUP BY lane")}
    counters = dict(db.execute("SELECT name, value FROM counters").fetchall())
    state = {k: json.loads(v) for k, v in db.execute("SELECT name, value FROM state")}
    evicted = dict.fromkeys(PRIORITIES, 0)
    uploaded_items = uploaded_bytes = 0
    for name, value in counters.items():
        if name.startswith("evicted."):
            evicted[name.split(".", 1)[1]] = int(value)
        elif name.startswith("uploaded_items."):
            uploaded_items += int(value)
        elif name.startswith("uploaded_bytes."):
            uploaded_bytes += int(value)
    links: dict[str, dict[str, Any]] = {}  # per lane: backlog and what became of its items, since the queue began
    for name, value in counters.items():
        what, _, lane = name.partition(".")
        if what in ("uploaded_items", "rejected", "retried", "reordered") and lane:
            links.setdefault(lane, {})[what] = int(value)
    for lane, v in lanes.items():
        links.setdefault(lane, {})["backlog_items"] = v["items"]
    links = {lane: {"backlog_items": v.get("backlog_items", 0), "delivered_items": v.get("uploaded_items", 0),
                    "retried_items": v.get("retried", 0), "rejected_items": v.get("rejected", 0),
                    "reordered_items": v.get("reordered", 0), "last_error": lanes.get(lane, {}).get("errors", "")}
             for lane, v in sorted(links.items())}
    return {"backlog_bytes": backlog_bytes, "backlog_items": backlog_items, "cameras": cameras, "lanes": lanes,
            "links": links,
            "oldest_age_s": round(now - oldest, 3) if oldest is not None else 0.0, "evicted": evicted,
            "evicted_by_reason": {k.split(".", 1)[1]: int(v) for k, v in counters.items()
                                  if k.startswith("evicted_reason.")},
            "uploaded_items": uploaded_items, "uploaded_bytes": uploaded_bytes, "state": state,
            "budget_evicted_bytes": {k.split(".", 1)[1]: int(v) for k, v in counters.items()
                                     if k.startswith("budget_evicted_bytes.")}}


def open_readonly(root: Path) -> sqlite3.Connection:
    """The index for reading only (the status CLI): never creates or changes anything."""
    path = Path(root) / INDEX_NAME
    if not path.exists():
        raise FileNotFoundError(f"no uplink queue at {root} ({INDEX_NAME} not found)")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
