"""Reading frames named by descriptors out of the cameras' shared-memory rings (one reader per worker thread)."""

from __future__ import annotations

import logging

import numpy as np

from ..framebus import FrameDescriptor, FrameRing

log = logging.getLogger("ggvision.inference")


class RingReader:
    """Attached rings by name; a camera's old ring is let go when its writer starts a new one.

    With reuse=True each camera's frames are copied into one buffer kept for that camera (a 1280x720 frame is
    2.7 MB: a fresh array per frame costs page faults): the frame returned stays valid until the next read of the
    same camera, which is enough for a batch (a camera has at most one frame per batch)."""

    def __init__(self, reuse: bool = False) -> None:
        self._rings: dict[str, FrameRing] = {}
        self._by_camera: dict[str, str] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._reuse = reuse
        self.missing = 0  # descriptors whose ring could not be attached

    def read(self, desc: FrameDescriptor) -> np.ndarray | None:
        """A private copy of the frame, or None when it is gone (overwritten, or its ring is not there)."""
        return self._retry(desc, copy=True)

    def view(self, desc: FrameDescriptor) -> np.ndarray | None:
        """The frame in its ring slot, not copied (FrameRing.view): use it only until `unchanged(desc)`, which says
        whether what was computed from it stands. Saves the copy (2.7 MB for a 1280x720 frame)."""
        return self._retry(desc, copy=False)

    def unchanged(self, desc: FrameDescriptor) -> bool:
        ring = self._rings.get(desc.ring)
        return ring is not None and ring.unchanged(desc)

    def _retry(self, desc: FrameDescriptor, copy: bool) -> np.ndarray | None:
        out = self._read(desc, copy)
        if out is None:
            ring = self._rings.get(desc.ring)
            if ring is not None and ring.replaced():  # the writer made a new ring of that name (bigger frames)
                self._drop(desc.ring)
                self._by_camera.pop(desc.camera, None)
                out = self._read(desc, copy)
        return out

    def _read(self, desc: FrameDescriptor, copy: bool = True) -> np.ndarray | None:
        ring = self._rings.get(desc.ring)
        if ring is None:
            old = self._by_camera.get(desc.camera)
            if old is not None and old != desc.ring:
                self._drop(old)
            try:
                ring = FrameRing.attach(desc.ring)
            except (OSError, ValueError) as e:
                self.missing += 1
                if self.missing in (1, 10, 100) or self.missing % 1000 == 0:
                    log.warning("cannot attach frame ring %s of %s (%d so far): %s", desc.ring, desc.camera,
                                self.missing, e)
                return None
            self._rings[desc.ring] = ring
            self._by_camera[desc.camera] = desc.ring
        if not copy:
            try:
                return ring.view(desc)
            except ValueError as e:  # a descriptor that can never match this ring
                log.warning("frame %s/%d: %s", desc.camera, desc.sequence, e)
                return None
        out = None
        if self._reuse:
            out = self._buffers.get(desc.camera)
            if out is None or out.shape != desc.shape or out.dtype.name != desc.dtype:
                out = self._buffers[desc.camera] = np.empty(desc.shape, desc.dtype)
        try:
            return ring.read(desc, out)
        except ValueError as e:  # a descriptor that can never match this ring
            log.warning("frame %s/%d: %s", desc.camera, desc.sequence, e)
            return None

    def _drop(self, name: str) -> None:
        ring = self._rings.pop(name, None)
        if ring is not None:
            ring.close()

    def close(self) -> None:
        for name in list(self._rings):
            self._drop(name)
        self._by_camera.clear()
        self._buffers.clear()
