"""Storage conditions a site must expect, and what a component does about them.

A disk fills up (ENOSPC, EDQUOT; SQLite's "database or disk is full"), a volume is remounted read-only after
an I/O error (EROFS; "attempt to write a readonly database") or an operator changes an owner (EACCES,
EPERM). None of these may stop a component's message pipeline: the write that failed is given up (media) or
kept in memory and tried again (records), and the condition is

- counted: `StorageFaults.failed()` classifies the error and counts it per condition and per kind of write;
- logged once per condition, when it begins and when it clears (never once per message);
- shown: `metrics()` is the `storage` block each component puts in its metrics message, which Health
  exports as `ggvision_storage_errors` and `ggvision_storage_degraded` (ggvision/contract/metrics.py).

A condition clears when a write of each kind that failed has succeeded again (`ok()`), or by `clear()`.

`free_bytes()` and `short_of_space()` let a component leave the last bytes of a filesystem to what matters
more (event records and alerts before media) before the disk is actually full.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DISK_FULL = "disk-full"
READ_ONLY = "read-only"
PERMISSION = "permission-denied"
IO_ERROR = "io-error"  # any other OSError of a write: handled the same way, named apart
CONDITIONS = (DISK_FULL, READ_ONLY, PERMISSION, IO_ERROR)

_BY_ERRNO = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EFBIG: DISK_FULL, errno.EROFS: READ_ONLY,
             errno.EACCES: PERMISSION, errno.EPERM: PERMISSION}
_SQLITE = (("database or disk is full", DISK_FULL), ("readonly database", READ_ONLY),
           ("disk i/o error", IO_ERROR), ("unable to open database file", IO_ERROR))


def condition_of(exc: BaseException) -> str | None:
    """The storage condition an exception (or one it was raised from) stands for; None if it is not one."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError):
            return _BY_ERRNO.get(e.errno or -1, IO_ERROR)
        if isinstance(e, sqlite3.OperationalError | sqlite3.DatabaseError):
            text = str(e).lower()
            for needle, cond in _SQLITE:
                if needle in text:
                    return cond
        e = e.__cause__ or e.__context__
    return None


def describe(exc: BaseException) -> str:
    """A short, stable text for an error: `ENOSPC: No space left on device` (plus the path when known)."""
    e: BaseException | None = exc
    while e is not None and not isinstance(e, OSError) and (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    if isinstance(e, OSError) and e.errno:
        name = errno.errorcode.get(e.errno, str(e.errno))
        where = f" ({e.filename})" if e.filename else ""
        return f"{name}: {e.strerror or os.strerror(e.errno)}{where}"
    return f"{type(exc).__name__}: {exc}"[:300]


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on `path`'s filesystem (the nearest existing parent's);
    None when it cannot be told."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        st = os.statvfs(p)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def short_of_space(path: str | os.PathLike[str], reserve_bytes: int, need: int = 0) -> str:
    """'' if writing `need` bytes under `path` leaves at least `reserve_bytes` free, else why not."""
    if reserve_bytes <= 0:
        return ""
    free = free_bytes(path)
    if free is None or free - need >= reserve_bytes:
        return ""
    return f"only {free} bytes free under {path}, {reserve_bytes} kept for event records and alerts"


@dataclass
class _Active:
    since: float  # epoch
    error: str  # the first error's text
    what: set[str] = field(default_factory=set)  # kinds of write that failed and have not succeeded since
    failures: int = 0


class StorageFaults:
    """One component's storage conditions (thread-safe): counts, one log line per condition, metrics."""

    def __init__(self, component: str, logger: logging.Logger | None = None) -> None:
        self.component = component
        self.log = logger or logging.getLogger("ggvision.storage")
        self._lock = threading.Lock()
        self.errors: dict[str, int] = {}  # condition -> failed writes, cumulative
        self.by_what: dict[str, int] = {}  # kind of write -> failed writes, cumulative
        self.degraded: dict[str, int] = {}  # what was given up or kept back because of a condition -> count
        self.active: dict[str, _Active] = {}

    def failed(self, what: str, exc: BaseException, consequence: str = "") -> str:
        """Count a failed write of kind `what` (snapshot, segment, queue, ...) and return its condition
        (`io-error` for an OSError of another kind). Logs a warning only when the condition begins."""
        cond = condition_of(exc) or IO_ERROR
        text = describe(exc)
        with self._lock:
            self.errors[cond] = self.errors.get(cond, 0) + 1
            self.by_what[what] = self.by_what.get(what, 0) + 1
            act = self.active.get(cond)
            new = act is None
            if act is None:
                act = self.active[cond] = _Active(time.time(), f"{what}: {text}")
            act.what.add(what)
            act.failures += 1
        if new:
            self.log.warning("%s: storage %s: %s%s (logged once; counted in metrics until it clears)",
                             self.component, cond, f"{what}: {text}", f"; {consequence}" if consequence else "")
        return cond

    def count(self, what: str, n: int = 1) -> None:
        """Count something given up or held back because of a storage condition (a missing snapshot, ...)."""
        with self._lock:
            self.degraded[what] = self.degraded.get(what, 0) + n

    def ok(self, what: str) -> None:
        """A write of kind `what` succeeded: conditions that only it was failing clear (logged once)."""
        if not self.active:  # the common case, without the lock
            return
        cleared = []
        with self._lock:
            for cond, act in list(self.active.items()):
                act.what.discard(what)
                if not act.what:
                    del self.active[cond]
                    cleared.append((cond, act))
        for cond, act in cleared:
            self.log.warning("%s: storage %s cleared after %.0f s (%d failed writes)", self.component, cond,
                             time.time() - act.since, act.failures)

    def clear(self, cond: str) -> None:
        with self._lock:
            act = self.active.pop(cond, None)
        if act is not None:
            self.log.warning("%s: storage %s cleared after %.0f s (%d failed writes)", self.component, cond,
                             time.time() - act.since, act.failures)

    def is_active(self, cond: str | None = None) -> bool:
        with self._lock:
            return bool(self.active) if cond is None else cond in self.active

    def metrics(self) -> dict[str, Any]:
        """The `storage` block of a component's metrics message (docs/messages.md)."""
        with self._lock:
            return {"errors": dict(self.errors), "failed_writes": dict(self.by_what), "degraded": dict(self.degraded),
                    "active": {c: {"since": round(a.since, 3), "error": a.error, "failures": a.failures,
                                   "what": sorted(a.what)} for c, a in self.active.items()}}


__all__ = ["CONDITIONS", "DISK_FULL", "IO_ERROR", "PERMISSION", "READ_ONLY", "StorageFaults", "condition_of",
           "describe", "free_bytes", "short_of_space"]
