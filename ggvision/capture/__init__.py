"""Capture: one worker per camera, decoding at the detect rate and recording MPEG-TS segments."""

from .config import CameraConfig, RecordConfig, redact_url
from .recorder import SegmentInfo, SegmentRecorder
from .worker import CameraStatus, CameraWorker

__all__ = [
    "CameraConfig",
    "CameraStatus",
    "CameraWorker",
    "RecordConfig",
    "SegmentInfo",
    "SegmentRecorder",
    "redact_url",
]
