"""Durable, bounded FIFO of outbound QoS1 messages (SQLite, WAL).

The Greengrass nucleus spools offline messages in memory, bounded by `mqtt.spooler.maxSizeInBytes` (default
2621440, 2.5 MB); when a message does not fit it first drops spooled QoS 0 messages, and if it still does not
fit it refuses the new one ("Message spool is full. Message could not be added."; a message bigger than the
whole spool: "Message is larger than the size of message spool.") — aws-greengrass-nucleus,
mqttclient/spool/Spool.java, queueCapacityCheck. We keep QoS1 messages on disk so they survive a runtime
restart (QoS 0 is never spooled: it is dropped while offline, the nucleus' default), with the same bound and
the same answer: the *new* message is refused (``SpoolFullError``), older ones are kept.

The disk under the spool may itself be full, read-only or forbidden: then ``SpoolStorageError`` (a
SpoolFullError: the caller's answer is the same, try again later) says so in words instead of SQLite's
exception; nothing was stored, or (``remove``) the message stays queued and is sent again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, so order == age
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    user_properties TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    size INTEGER NOT NULL
)
"""


class SpoolFullError(Exception):
    """Adding the message would exceed the spool's byte bound; nothing was stored."""


class SpoolStorageError(SpoolFullError):
    """The spool's database could not be written (full disk, read-only, permission); nothing was changed."""


def _storage_problem(e: BaseException) -> str:
    text = str(e).lower()
    if "full" in text:
        return "its disk is full"
    if "readonly" in text or "read-only" in text:
        return "its disk is read-only"
    if "unable to open" in text or "permission" in text or "access" in text:
        return "its file cannot be opened for writing"
    return "its disk failed"


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    user_properties: list[tuple[str, str]]
    enqueued_at: float

    @property
    def size(self) -> int:
        return _message_size(self.topic, self.payload, self.user_properties)


def _message_size(topic: str, payload: bytes, user_properties: list[tuple[str, str]]) -> int:
    # Accounted size = what we must eventually send; SQLite page overhead is not counted.
    props = sum(len(k.encode()) + len(v.encode()) for k, v in user_properties)
    return len(topic.encode()) + len(payload) + props


class DiskSpool:
    """Thread-safe FIFO backed by one SQLite connection guarded by a lock.

    ``max_bytes`` bounds the accounted message bytes (topic + payload + user properties); the
    database file itself is somewhat larger because of SQLite overhead.
    """

    def __init__(self, path: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # check_same_thread=False: asyncio.to_thread and CRT threads share it under self._lock.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL (not NORMAL): in WAL mode NORMAL may lose the last commits on power loss, and
        # put() promises durability before it returns.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        count, used = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages").fetchone()
        self._count: int = count
        self._bytes: int = used

    def put(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        user_properties: list[tuple[str, str]] | None = None,
    ) -> int:
        """Append a message; returns its id once the transaction is committed (fsynced)."""
        props = [(str(k), str(v)) for k, v in (user_properties or [])]
        size = _message_size(topic, payload, props)
        with self._lock:
            if size > self.max_bytes:
                raise SpoolFullError(
                    f"IoT Core spool: a {size}-byte message is larger than the whole spool ({self.max_bytes} "
                    "bytes, mqtt.spooler.maxSizeInBytes); message refused"
                )
            if self._bytes + size > self.max_bytes:
                raise SpoolFullError(
                    f"IoT Core spool is full: {self._count} messages / {self._bytes} bytes queued, "
                    f"a {size}-byte message would exceed the {self.max_bytes}-byte limit; "
                    "message refused (older messages are kept)"
                )
            try:
                cur = self._db.execute(
                    "INSERT INTO messages (topic, payload, qos, retain, user_properties, enqueued_at, size)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, bytes(payload), qos, int(retain), json.dumps(props), time.time(), size),
                )
            except sqlite3.Error as e:
                raise SpoolStorageError(
                    f"IoT Core spool {self.path} cannot store the message: {_storage_problem(e)} ({e}); message "
                    f"refused ({self._count} messages / {self._bytes} bytes stay queued)"
                ) from None
            self._count += 1
            self._bytes += size
            return int(cur.lastrowid)

    def peek(self, n: int = 1) -> list[SpooledMessage]:
        """Up to ``n`` oldest messages, oldest first; they stay queued until ``remove``."""
        with self._lock:
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, user_properties, enqueued_at"
                " FROM messages ORDER BY id LIMIT ?",
                (n,),
            ).fetchall()
        return [
            SpooledMessage(
                id=r[0],
                topic=r[1],
                payload=bytes(r[2]),
                qos=r[3],
                retain=bool(r[4]),
                user_properties=[(k, v) for k, v in json.loads(r[5])],
                enqueued_at=r[6],
            )
            for r in rows
        ]

    def remove(self, message_id: int) -> bool:
        """Delete a message (after its PUBACK). Returns False if it was not queued."""
        with self._lock:
            # No DELETE ... RETURNING: it needs SQLite 3.35, newer than some supported distros ship.
            row = self._db.execute("SELECT size FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                return False
            try:
                self._db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
            except sqlite3.Error as e:
                raise SpoolStorageError(
                    f"IoT Core spool {self.path} cannot remove delivered message {message_id}: "
                    f"{_storage_problem(e)} ({e}); it stays queued and is sent again (at least once)"
                ) from None
            self._count -= 1
            self._bytes -= row[0]
            return True

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def bytes_used(self) -> int:
        with self._lock:
            return self._bytes

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> DiskSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
