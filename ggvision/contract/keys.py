"""Where uploads land in the bucket: the S3 object key layout the Uplink writes and the cloud side reads."""

from __future__ import annotations

import time


def object_key(prefix: str, site: str, thing: str, camera: str, start: float, name: str) -> str:
    """`{prefix}{site}/{thing}/{camera}/YYYY/MM/DD/HH/{name}`, the hour of `start` in UTC."""
    return f"{prefix}{site}/{thing}/{camera}/{time.strftime('%Y/%m/%d/%H', time.gmtime(start))}/{name}"
