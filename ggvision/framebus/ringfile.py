"""A frame ring's file in shared memory: its byte layout, its name, its owner, and stale-ring cleanup.

Rings are files in /dev/shm (`GGVISION_SHM_DIR` overrides it: tests, non-Linux dev machines) named
``ggv-<camera slug>-<writer pid>``. This module gives the layout constants the ring reads and writes
through, `camera_slug` / `ring_name`, whether a ring's writer process still runs (pid plus its start
time, so a reused pid is told apart), and `cleanup_stale`, which unlinks rings whose writer is gone.

Memory layout (little-endian; every multi-byte field naturally aligned; the mapping is page-aligned):

    0      static header: magic "GGVRING1" (written last at creation), layout version, slots,
           slot-table offset, slot-header size, max frame bytes, data offset, slot stride,
           owner pid, owner start time (clock ticks since boot, from /proc: tells pid reuse apart),
           creation time, camera id length
    192    written: u64, frames published so far (latest sequence = written - 1); its own cache line
    256    camera id, UTF-8 (up to 1024 bytes)
    1280   slot table, 64 bytes (one cache line) per slot:
             +0  generation u64   even = stable, odd = being written; +2 per write
             +8  sequence u64, timestamp f64, h u32, w u32, c u32, dtype u32 (1 uint8, 2 uint16, 3 float32), nbytes u64
    data   page-aligned; slot i's pixels at data_offset + i * slot_stride (stride = max bytes, page-rounded)
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import re
import struct

import psutil

from .descriptor import MAX_SLOT, RING_NAME_RE

log = logging.getLogger(__name__)

MAGIC = b"GGVRING1"
LAYOUT_VERSION = 1
PAGE = mmap.PAGESIZE
HEADER = struct.Struct("<8sIIIIQQQQQdI")  # the static header, 76 bytes, see the layout above
WRITTEN_OFF = 192
CAMERA_OFF = 256
CAMERA_BYTES = 1024  # MAX_CAMERA_LEN characters of UTF-8
SLOT_TABLE_OFF = CAMERA_OFF + CAMERA_BYTES
SLOT_HDR = 64
SLOT_FIELDS = struct.Struct("<QdIIIIQ")  # after the generation word, at slot + 8
DTYPE_CODES = {"uint8": 1, "uint16": 2, "float32": 3}  # slot header dtype field
DTYPE_NAMES = {v: k for k, v in DTYPE_CODES.items()}
MAX_SLOTS = MAX_SLOT + 1
MAX_RING_FRAME_BYTES = 1 << 30
FILE_MODE = 0o640  # owner (capture) writes; components running as another user in the group may read
_SLUG_MAX = 40
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def shm_dir() -> str:
    return os.environ.get("GGVISION_SHM_DIR", "/dev/shm")


def round_up(n: int, to: int) -> int:
    return (n + to - 1) // to * to


# --- naming -----------------------------------------------------------------------------------------


def camera_slug(camera: str) -> str:
    """A shm-safe, bounded slug; a short hash of the id is added whenever the id had to be changed."""
    safe = _UNSAFE.sub("-", camera).strip("-.")
    if safe == camera and 0 < len(safe) <= _SLUG_MAX:
        return safe
    digest = hashlib.blake2s(camera.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()
    return f"{safe[:_SLUG_MAX]}-{digest}" if safe else digest


def ring_name(camera: str, pid: int | None = None) -> str:
    return f"ggv-{camera_slug(camera)}-{os.getpid() if pid is None else pid}"


# --- owner liveness and cleanup ---------------------------------------------------------------------

HAVE_PROC = os.path.isdir("/proc/self")


def proc_start(pid: int) -> int | None:
    """Start time of a live (non-zombie) process in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2 :].split()  # comm may contain spaces and ')'
    if fields[0] in (b"Z", b"X"):  # killed but not yet reaped: dead for our purposes
        return None
    return int(fields[19])  # field 22 of proc(5)


def owner_alive(pid: int, start: int) -> bool:
    if pid <= 0:
        return False
    if not HAVE_PROC:
        return psutil.pid_exists(pid)
    now = proc_start(pid)
    # start == 0: the header was never completed (or is unreadable); judge by the pid alone.
    return now is not None and (start == 0 or now == start)


def read_owner(path: str) -> tuple[int, int]:
    """(owner pid, owner start ticks) from a ring file's header; (0, 0) when it is unreadable."""
    try:
        with open(path, "rb") as f:
            raw = f.read(HEADER.size)
    except OSError:
        return 0, 0
    if len(raw) < HEADER.size:
        return 0, 0
    fields = HEADER.unpack(raw)
    if fields[0] != MAGIC:
        return 0, 0
    return fields[8], fields[9]


def cleanup_stale(camera: str | None = None) -> list[str]:
    """Unlink rings (of `camera`, or all) whose owner process is dead; returns the removed names."""
    shm = shm_dir()
    try:
        names = os.listdir(shm)
    except FileNotFoundError:
        return []
    slug = camera_slug(camera) if camera is not None else None
    removed: list[str] = []
    for name in sorted(names):
        m = RING_NAME_RE.match(name)
        if not m or (slug is not None and m["slug"] != slug):
            continue
        pid = int(m["pid"])
        path = os.path.join(shm, name)
        hdr_pid, start = read_owner(path)
        if hdr_pid not in (0, pid):
            start = 0  # header disagrees with the name: trust the name's pid only
        if owner_alive(pid, start):
            continue
        try:
            os.unlink(path)
        except FileNotFoundError:
            continue  # another process cleaned it up first
        except PermissionError as e:
            log.warning("cannot remove stale frame ring %s: %s", path, e)
            continue
        removed.append(name)
    if removed:
        log.info("removed stale frame rings: %s", ", ".join(removed))
    return removed
