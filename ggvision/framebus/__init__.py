"""The frame bus: per-camera shared-memory rings of frames plus small descriptors for IPC.

Writer (the camera's capture worker)::

    ring = FrameRing.create("cam-1")                 # removes the camera's stale rings first
    desc = ring.write(frame_bgr, time.time())        # never blocks
    publish(frames_topic(camera), desc.to_message())   # contract.topics.FRAMES
    ring.close()                                     # on shutdown (SIGTERM handler); unlinks

Reader (inference, filter)::

    try:
        desc = FrameDescriptor.from_message(payload)   # ValueError names the bad field: count, drop
    except ValueError: ...
    ring = rings.get(desc.ring) or FrameRing.attach(desc.ring)   # cache one per ring name
    frame = ring.read(desc, out)                       # None: overwritten meanwhile (counted)
"""

from ..contract.topics import FRAMES
from .descriptor import SCHEMA, FrameDescriptor
from .ring import FENCE_KIND, FrameRing
from .ringfile import camera_slug, cleanup_stale, ring_name


def frames_topic(camera: str) -> str:
    """The local IPC topic descriptors of `camera` are published on."""
    return FRAMES.format(camera=camera)


__all__ = [
    "FENCE_KIND",
    "SCHEMA",
    "FrameDescriptor",
    "FrameRing",
    "camera_slug",
    "cleanup_stale",
    "frames_topic",
    "ring_name",
]
