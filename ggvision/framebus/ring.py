"""A per-camera shared-memory frame ring: one writer (the camera's capture worker), many readers.

`FrameRing.create` makes this process' ring for a camera and `write` publishes frames into it without
ever waiting; `FrameRing.attach` maps it read-only and `read` copies a frame out, or returns None when
the writer overwrote it meanwhile (seqlock generations, below); `view` + `unchanged` let a reader compute
straight from the slot instead, with the same check after. Both count what they did (`stats`).

Why a /dev/shm file + mmap and not `multiprocessing.shared_memory`:
- Before Python 3.13 (no `track=False`) every `SharedMemory(name)` attach registers the segment with the
  attaching process' resource tracker, which unlinks it when that *reader* exits (and warns about "leaked"
  segments): a reader would destroy the writer's ring. Readers here must never unlink.
- We need things SharedMemory does not expose: O_EXCL creation, an explicit mode (owner rw, group r), a
  read-only mapping for readers (a reader bug cannot scribble on the frames), `posix_fallocate` so a full
  tmpfs (Docker's default /dev/shm is 64 MiB) fails at create() with ENOSPC instead of a SIGBUS in the
  middle of a frame copy, and listing the directory to find stale rings.
On Linux POSIX shm *is* a tmpfs file in /dev/shm (glibc's shm_open is open() there), so this is the same
memory, just with control.

The file, its byte layout (header, slot table of generation words, page-aligned pixel slots), its
name and stale-ring cleanup are in ringfile.py.

Seqlock protocol and memory ordering ("within what Python allows"):
- Writer:  gen = gen + 1 (odd);  FENCE;  slot fields + pixels (struct.pack_into, numpy copyto = memcpy);
           FENCE;  gen = gen + 1 (even);  FENCE;  written = seq + 1.
- Reader:  g1 = gen (must equal the descriptor's);  FENCE;  fields + pixel copy into private memory;
           FENCE;  g2 = gen;  g1 != g2 means the writer touched the slot while we copied: the copy is
           discarded (None, counted as torn). Only a copy checked this way is ever returned; with `view`, the
           reader's own computation stands in for the copy and `unchanged` is the second check.
- The generation and `written` words are read and written through a numpy uint64 view as single
  elements; numpy does an aligned `*(npy_uint64 *)p = v` / `v = *(npy_uint64 *)p` for a well-behaved
  array, i.e. one 8-byte access, which is single-copy atomic on x86-64 and AArch64 (aligned LDR/STR), so a
  generation is never seen half-written. (struct's standard-size '<Q' packs byte by byte, hence not used
  for these two words.) The other fields are only trusted when the generation check passes.
- FENCE is C11 `atomic_thread_fence(memory_order_seq_cst)` from libatomic via ctypes: `mfence`/locked op on
  x86, `dmb ish` on ARM. x86 (TSO) already keeps store→store and load→load order, which is all a seqlock
  needs, so there the fence is belt and braces; on ARM it is what stops the pixel stores being observed
  before the odd generation, or the reader's pixel loads being satisfied after its second generation load.
  The C compiler cannot move memory accesses across these calls: each Python operation is a separate call
  into opaque C code. Without libatomic: no-op on x86 (TSO suffices); elsewhere a lock acquire/release pair
  (acquire/release atomics inside pthreads) with a warning, as the best Python offers.
- The writer never waits: no locks are shared with readers; a slow reader only loses frames.

A reader instance is meant for one thread (its counters are plain ints); attach one ring per thread.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import errno
import functools
import logging
import math
import mmap
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from .descriptor import MAX_CAMERA_LEN, MAX_CHANNELS, RING_NAME_RE, FrameDescriptor
from .ringfile import (
    CAMERA_BYTES,
    CAMERA_OFF,
    DTYPE_CODES,
    DTYPE_NAMES,
    FILE_MODE,
    HAVE_PROC,
    HEADER,
    LAYOUT_VERSION,
    MAGIC,
    MAX_RING_FRAME_BYTES,
    MAX_SLOTS,
    PAGE,
    SLOT_FIELDS,
    SLOT_HDR,
    SLOT_TABLE_OFF,
    WRITTEN_OFF,
    cleanup_stale,
    owner_alive,
    proc_start,
    read_owner,
    ring_name,
    round_up,
    shm_dir,
)

log = logging.getLogger(__name__)


# --- memory fence -----------------------------------------------------------------------------------


def _make_fence() -> tuple[Callable[[], None], str]:
    for lib_name in ("libatomic.so.1", ctypes.util.find_library("atomic")):
        if not lib_name:
            continue
        try:
            # PyDLL: keep the GIL for a call this short (CDLL would release and re-take it).
            fn = ctypes.PyDLL(lib_name).atomic_thread_fence
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int]
        fn.restype = None
        return functools.partial(fn, 5), "libatomic atomic_thread_fence(seq_cst)"  # 5: memory_order_seq_cst
    if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686", "x86"):
        return (lambda: None), "none needed (x86 TSO)"
    lock = threading.Lock()

    def lock_fence() -> None:
        lock.acquire()
        lock.release()

    log.warning("libatomic not found: frame ring ordering relies on a lock acquire/release on %s", platform.machine())
    return lock_fence, "lock acquire/release (no libatomic)"


_fence, FENCE_KIND = _make_fence()


# --- the ring ---------------------------------------------------------------------------------------


class FrameRing:
    """Shared-memory ring of `slots` frames. `create` (writer) or `attach` (reader); see the module doc."""

    name: str

    def __init__(self, name: str, path: str, mm: mmap.mmap, writer: bool) -> None:
        # Use create() or attach().
        self.name = name
        self.path = path
        self._mm: mmap.mmap | None = mm
        self._writer = writer
        (magic, version, slots, table_off, slot_hdr, max_bytes, data_off, stride, pid, start, created,
         cam_len) = HEADER.unpack_from(mm, 0)
        if magic != MAGIC:
            raise ValueError(f"{name}: not a ggvision frame ring (or still being created)")
        if version != LAYOUT_VERSION:
            raise ValueError(f"{name}: ring layout version {version}, this reader understands {LAYOUT_VERSION}")
        if (table_off != SLOT_TABLE_OFF or slot_hdr != SLOT_HDR or not 1 <= slots <= MAX_SLOTS
                or data_off < table_off + slots * slot_hdr or stride < max_bytes
                or data_off + slots * stride > len(mm)):
            raise ValueError(f"{name}: inconsistent ring header")
        self.slots: int = slots
        self.max_frame_bytes: int = max_bytes
        self.owner_pid: int = pid
        self.created: float = created
        cam = mm[CAMERA_OFF : CAMERA_OFF + min(cam_len, CAMERA_BYTES)]
        self.camera: str = cam.decode("utf-8", "surrogatepass")
        self._owner_start = start
        self._stride = stride
        # Single-element accesses through these views are single aligned 8-byte loads/stores (module doc).
        self._gen: np.ndarray | None = np.ndarray((slots,), "<u8", mm, SLOT_TABLE_OFF, (SLOT_HDR,))
        self._written: np.ndarray | None = np.ndarray((1,), "<u8", mm, WRITTEN_OFF)
        self._data: np.ndarray | None = np.ndarray((slots * stride,), np.uint8, mm, data_off)
        self._seq = int(self._written[0])
        self._final_written = 0
        self._reads = self._overwritten = self._torn = self._invalid = self._skipped = 0
        self._last_seen: int | None = None
        self._file_id: tuple[int, int] | None = None  # (device, inode) of the mapped file, reader side

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def create(cls, camera: str, slots: int = 8, max_frame_bytes: int = 1920 * 1080 * 3,
               first_sequence: int = 0) -> FrameRing:
        """Create this process' ring for `camera` (writer side), after removing the camera's stale rings.

        first_sequence: the sequence of its first frame. A writer replacing its ring (bigger frames) continues
        the old ring's numbering, so a camera's sequences never go back (readers drop what they have seen)."""
        if not isinstance(camera, str) or not 0 < len(camera) <= MAX_CAMERA_LEN:
            raise ValueError(f"camera must be a non-empty string of at most {MAX_CAMERA_LEN} characters")
        if not 1 <= slots <= MAX_SLOTS:
            raise ValueError(f"slots must be in [1, {MAX_SLOTS}], got {slots}")
        if not 1 <= max_frame_bytes <= MAX_RING_FRAME_BYTES:
            raise ValueError(f"max_frame_bytes must be in [1, {MAX_RING_FRAME_BYTES}], got {max_frame_bytes}")
        cleanup_stale(camera)
        pid = os.getpid()
        start = (proc_start(pid) or 0) if HAVE_PROC else 0
        name = ring_name(camera, pid)
        path = os.path.join(shm_dir(), name)
        stride = round_up(max_frame_bytes, PAGE)
        data_off = round_up(SLOT_TABLE_OFF + slots * SLOT_HDR, PAGE)
        total = data_off + slots * stride

        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(path, flags, FILE_MODE)
        except FileExistsError:
            # Same name = same pid. A dead namespace's or a previous boot's ring (different start time) is
            # stale; one of ours is a second create() without close() and is refused.
            _, other_start = read_owner(path)
            if not start or other_start == start:  # without /proc we cannot tell: refuse rather than clobber
                raise FileExistsError(f"frame ring {name} for camera {camera!r} is already open in this process; "
                                      "close it before creating another") from None
            os.unlink(path)
            fd = os.open(path, flags, FILE_MODE)
        try:
            os.fchmod(fd, FILE_MODE)  # the umask may have removed the group bit
            try:
                os.posix_fallocate(fd, 0, total)
            except OSError as e:
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise OSError(e.errno, f"no room for a {total / 2**20:.1f} MiB frame ring in {shm_dir()} "
                                  "(size of /dev/shm? Docker's default is 64 MiB: --shm-size)") from e
                os.ftruncate(fd, total)  # fallocate unsupported here: sparse file
            mm = mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)  # the mapping keeps the memory

        cam = camera.encode("utf-8", "surrogatepass")  # <= 4 * MAX_CAMERA_LEN = CAMERA_BYTES
        HEADER.pack_into(mm, 0, b"\0" * 8, LAYOUT_VERSION, slots, SLOT_TABLE_OFF, SLOT_HDR, max_frame_bytes,
                          data_off, stride, pid, start, time.time(), len(cam))
        mm[CAMERA_OFF : CAMERA_OFF + len(cam)] = cam
        _fence()
        mm[0:8] = MAGIC  # last: a reader never sees a half-initialised header as valid
        ring = cls(name, path, mm, writer=True)
        if first_sequence:
            ring._written[0] = ring._seq = int(first_sequence)  # type: ignore[index]
        atexit.register(ring._atexit)
        return ring

    @classmethod
    def attach(cls, name: str) -> FrameRing:
        """Map an existing ring read-only (reader side). FileNotFoundError when the writer is gone."""
        if not isinstance(name, str) or not RING_NAME_RE.match(name):
            raise ValueError(f"{name!r} is not a frame ring name (ggv-<slug>-<pid>)")
        path = os.path.join(shm_dir(), name)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            size = st.st_size
            if size < SLOT_TABLE_OFF + SLOT_HDR:
                raise ValueError(f"{name}: too small to be a frame ring ({size} bytes)")
            mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        finally:
            os.close(fd)
        try:
            ring = cls(name, path, mm, writer=False)
        except BaseException:
            mm.close()
            raise
        ring._file_id = (st.st_dev, st.st_ino)
        return ring

    @property
    def next_sequence(self) -> int:
        """The sequence the next write() gets (writer side)."""
        return self._seq

    def replaced(self) -> bool:
        """Reader side: whether the file under this ring's name is no longer the one mapped here (the writer
        closed it, and maybe created a new ring of the same name: its process makes one per camera). Costs a
        stat: call it when a read fails, not per frame."""
        if self._file_id is None:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._file_id

    # -- writer ---------------------------------------------------------------------------------------

    def write(self, frame: np.ndarray, timestamp: float) -> FrameDescriptor:
        """Publish `frame` (HxWxC uint8, uint16 or float32) into the next slot; never waits for readers."""
        if not self._writer:
            raise PermissionError(f"{self.name}: attached rings are read-only")
        gen, written, data = self._views()
        if not isinstance(frame, np.ndarray) or frame.dtype.name not in DTYPE_CODES or frame.ndim != 3:
            raise ValueError(f"frame must be a numpy array of shape (h, w, c) and dtype {', '.join(DTYPE_CODES)}")
        h, w, c = (int(x) for x in frame.shape)
        if not (h and w and 1 <= c <= MAX_CHANNELS):
            raise ValueError(f"frame shape {frame.shape} is not (h>0, w>0, 1..{MAX_CHANNELS})")
        dtype = frame.dtype.name
        nbytes = frame.nbytes
        if nbytes > self.max_frame_bytes:
            raise ValueError(f"frame of {nbytes} bytes exceeds this ring's {self.max_frame_bytes} bytes per slot")
        ts = float(timestamp)
        if not math.isfinite(ts) or ts < 0:
            raise ValueError(f"timestamp {timestamp!r} is not a finite epoch time")

        seq = self._seq
        slot = seq % self.slots
        g = int(gen[slot]) + 1
        gen[slot] = g  # odd: readers of this slot will discard what they copy from now on
        _fence()
        base = slot * self._stride
        SLOT_FIELDS.pack_into(self._mm, SLOT_TABLE_OFF + slot * SLOT_HDR + 8, seq, ts, h, w, c,
                              DTYPE_CODES[dtype], nbytes)
        np.copyto(data[base : base + nbytes].view(frame.dtype).reshape(h, w, c), frame)
        _fence()
        g += 1
        gen[slot] = g  # even: stable
        _fence()
        written[0] = seq + 1  # advertise as latest only once stable
        self._seq = seq + 1
        return FrameDescriptor(camera=self.camera, sequence=seq, slot=slot, generation=g, timestamp=ts,
                               shape=(h, w, c), ring=self.name, dtype=dtype)

    # -- reader ---------------------------------------------------------------------------------------

    def read(self, desc: FrameDescriptor, out: np.ndarray | None = None) -> np.ndarray | None:
        """Copy the frame `desc` names into `out` (or a new array); None if the slot was overwritten.

        When None is returned, `out` may hold a partial copy. Raises ValueError for a descriptor that can
        never match this ring (other ring, slot out of range, too big) or an unsuitable `out`.
        """
        if out is not None and (out.dtype.name != desc.dtype or out.shape != desc.shape or not out.flags.writeable):
            raise ValueError(f"out must be a writeable {desc.dtype} array of shape {desc.shape}")
        src = self._slot(desc)
        if src is None:
            return None
        if out is None:
            out = np.empty(desc.shape, desc.dtype)
        self._copy(src, out)
        return out if self.unchanged(desc) else None

    def view(self, desc: FrameDescriptor) -> np.ndarray | None:
        """The frame `desc` names in place (read-only, no copy), or None if the slot was already overwritten.

        The writer may reuse the slot at any moment: anything computed from the view is good only if
        `unchanged(desc)` holds after it was computed (the same seqlock check `read` makes after its copy),
        and the view must not be kept past that check. Raises ValueError as `read` does.
        """
        return self._slot(desc)

    def unchanged(self, desc: FrameDescriptor) -> bool:
        """After a copy or a computation from `view(desc)`: whether the slot still holds that frame (counted as
        a good read, or as torn: the writer touched the slot meanwhile, so the result must be discarded)."""
        gen, _, _ = self._views()
        _fence()
        if int(gen[desc.slot]) != desc.generation:
            self._torn += 1
            return False
        self._reads += 1
        return True

    def _slot(self, desc: FrameDescriptor) -> np.ndarray | None:
        """The slot's pixels as a view once the generation and fields match the descriptor, else None (counted)."""
        gen, _, data = self._views()
        if desc.ring != self.name:
            raise ValueError(f"frame descriptor field 'ring': {desc.ring!r} is not this ring ({self.name!r})")
        if desc.slot >= self.slots:
            raise ValueError(f"frame descriptor field 'slot': {desc.slot} >= {self.slots} slots")
        if desc.nbytes > self.max_frame_bytes:
            raise ValueError(f"frame descriptor field 'shape': {desc.shape} exceeds {self.max_frame_bytes} bytes")

        slot = desc.slot
        g1 = int(gen[slot])
        if g1 != desc.generation:  # already rewritten (or being rewritten): skip the copy
            self._note(desc.sequence)
            self._overwritten += 1
            return None
        _fence()
        seq, _ts, h, w, c, dtype, _n = SLOT_FIELDS.unpack_from(self._mm, SLOT_TABLE_OFF + slot * SLOT_HDR + 8)
        if seq != desc.sequence or (h, w, c) != desc.shape or dtype != DTYPE_CODES[desc.dtype]:
            _fence()
            if int(gen[slot]) != g1:
                self._note(desc.sequence)
                self._overwritten += 1  # the fields changed under us: the writer moved on
            else:
                self._invalid += 1  # stable slot, and the descriptor does not describe it
            return None
        self._note(seq)
        base = slot * self._stride
        return data[base : base + desc.nbytes].view(desc.dtype).reshape(desc.shape)

    def _copy(self, src: np.ndarray, dst: np.ndarray) -> None:
        # A separate method so tests can stall a reader in the middle of its copy.
        np.copyto(dst, src)

    def latest(self) -> FrameDescriptor | None:
        """The newest stable frame's descriptor (None before the first frame, or if the writer keeps
        lapping the newest slot). Compare `sequence` with the last one to see whether it is new."""
        _gen, written, _ = self._views()
        for _ in range(4):
            w = int(written[0])
            if w == 0:
                return None
            desc = self._stable(w - 1)
            if desc is not None:
                self._note(desc.sequence)
                return desc
        return None

    def at(self, sequence: int) -> FrameDescriptor | None:
        """The descriptor of frame `sequence` while its slot still holds it and is stable, else None: for a
        reader that found `latest()` ahead by more than one (frames written between two looks) and wants the
        ones in between. A frame got so no longer counts as skipped in stats()."""
        if sequence < 0 or sequence >= int(self._views()[1][0]):
            return None
        desc = self._stable(sequence)
        if desc is not None and self._last_seen is not None and sequence < self._last_seen and self._skipped > 0:
            self._skipped -= 1  # latest() counted it as skipped when it jumped over it
        return desc

    def _stable(self, seq: int) -> FrameDescriptor | None:
        gen, _, _ = self._views()
        slot = seq % self.slots
        g1 = int(gen[slot])
        _fence()
        s, ts, h, wd, c, dtype, _n = SLOT_FIELDS.unpack_from(self._mm, SLOT_TABLE_OFF + slot * SLOT_HDR + 8)
        _fence()
        if g1 % 2 == 0 and g1 and int(gen[slot]) == g1 and s == seq and dtype in DTYPE_NAMES:
            return FrameDescriptor(camera=self.camera, sequence=seq, slot=slot, generation=g1, timestamp=ts,
                                   shape=(h, wd, c), ring=self.name, dtype=DTYPE_NAMES[dtype])
        return None

    def _note(self, seq: int) -> None:
        # Frames this reader never got to see (it was busy and the writer moved on) count as skipped.
        last = self._last_seen
        if last is not None and seq > last + 1:
            self._skipped += seq - last - 1
        if last is None or seq > last:
            self._last_seen = seq

    def writer_alive(self) -> bool:
        """Whether the process that created this ring is still running (readers: drop rings of dead writers)."""
        return owner_alive(self.owner_pid, self._owner_start)

    def stats(self) -> dict[str, int]:
        """written: frames the writer published; read: this instance's good reads; overwritten/torn: reads
        that returned None (slot reused before / during the copy); skipped: frames this reader never saw;
        dropped = overwritten + torn + skipped; invalid: descriptors that did not match their slot."""
        written = int(self._written[0]) if self._written is not None else self._final_written
        return {
            "written": written,
            "read": self._reads,
            "overwritten": self._overwritten,
            "torn": self._torn,
            "skipped": self._skipped,
            "dropped": self._overwritten + self._torn + self._skipped,
            "invalid": self._invalid,
        }

    # -- lifetime -------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._mm is None

    @property
    def is_writer(self) -> bool:
        return self._writer

    def close(self) -> None:
        """Unmap; the writer (in the process that created the ring) also unlinks it. Idempotent."""
        mm = self._mm
        if mm is None:
            return
        if self._written is not None:
            self._final_written = int(self._written[0])
        self._gen = self._written = self._data = None  # drop the buffer exports before closing the map
        self._mm = None
        mm.close()
        if self._writer:
            atexit.unregister(self._atexit)
            if os.getpid() == self.owner_pid:  # a forked child must not remove its parent's ring
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass

    def _atexit(self) -> None:
        if os.getpid() == self.owner_pid:
            self.close()

    def _views(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._gen is None or self._written is None or self._data is None:
            raise ValueError(f"frame ring {self.name} is closed")
        return self._gen, self._written, self._data

    def __enter__(self) -> FrameRing:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        role = "writer" if self._writer else "reader"
        return f"FrameRing({self.name!r}, {role}, slots={self.slots}, max_frame_bytes={self.max_frame_bytes})"
