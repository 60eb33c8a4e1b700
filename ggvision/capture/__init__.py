"""Capture: one worker per camera, decoding at the detect rate and recording MPEG-TS segments."""

from ..config.capture import CameraConfig, RecordConfig
from .recorder import SegmentInfo, SegmentRecorder
from .urls import redact_url
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
