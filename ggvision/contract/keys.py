"""Where uploads land in the data bucket, and how long they may stay: the S3 object key layout the Uplink
writes, the IoT rules' archive layout, and the retention ceiling of the privacy rule. The CloudFormation
templates (deploy/cloudformation) scope the device role and the lifecycle rules to these prefixes; the tests
in tests/cloud/test_site_contract.py hold them together.

    {kind}/{site}/{thing}/{camera}/YYYY/MM/DD/HH/{name}       written by a device (kind: KINDS)
    results/iot-rules/{stream}/{thing}/YYYY/MM/DD/HH/{id}.json  written by the IoT rules, never by a device
"""

from __future__ import annotations

import time

SEGMENTS, CLIPS, IMAGES, RESULTS = "segments", "clips", "images", "results"
KINDS = (SEGMENTS, CLIPS, IMAGES, RESULTS)
"""segments: continuous MPEG-TS video; clips: segments that cover an event; images: snapshots (JPEG/WebP);
results: JSON too large for a message."""

RULE_ARCHIVE_PREFIX = "results/iot-rules/"  # the IoT rules' output; a reserved site name for devices
RULE_STREAMS = ("results", "events", "metrics")  # ggvision/{thing}/<stream> messages the rules archive

RETENTION_DAYS_MAX = 7
"""The privacy rule: images and their metadata — every uploaded kind, results and event records included —
are deleted within 7 days. Parameters may go lower, never higher."""


def kind_for(content_type: str, priority: str) -> str:
    """The kind of an object a producer did not name one for: pictures are images, video that is kept for an
    event (priority alerts/clips) is a clip and other video a segment, anything else results."""
    if content_type.startswith("image/"):
        return IMAGES
    if content_type.startswith("video/"):
        return CLIPS if priority in ("alerts", "clips") else SEGMENTS
    return RESULTS


def object_key(prefix: str, kind: str, site: str, thing: str, camera: str, start: float, name: str) -> str:
    """`{prefix}{kind}/{site}/{thing}/{camera}/YYYY/MM/DD/HH/{name}`, the hour of `start` in UTC."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return f"{prefix}{kind}/{site}/{thing}/{camera}/{time.strftime('%Y/%m/%d/%H', time.gmtime(start))}/{name}"


def rule_archive_key(stream: str, thing: str, at: float, name: str) -> str:
    """What the IoT rule for ggvision/{thing}/{stream} writes (routing.yaml's S3 action key, with `name` for
    its `${newuuid()}.json`): `results/iot-rules/{stream}/{thing}/YYYY/MM/DD/HH/{name}`."""
    return f"{RULE_ARCHIVE_PREFIX}{stream}/{thing}/{time.strftime('%Y/%m/%d/%H', time.gmtime(at))}/{name}"


def device_write_patterns(thing: str) -> list[str]:
    """The key patterns (IAM resource globs below the bucket ARN) a device named `thing` may write."""
    return [f"{kind}/*/{thing}/*" for kind in KINDS]


def foreign_slot_patterns(thing: str) -> list[str]:
    """Key patterns with `thing` deeper than its slot: denied, so a device cannot pose as a site or camera."""
    return [f"{kind}/*/*/{thing}/*" for kind in KINDS]
