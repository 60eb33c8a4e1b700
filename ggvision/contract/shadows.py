"""The named device shadows through which each device's per-site configuration reaches its components.

`ggvision site apply` writes a device's part of the site file as the `desired` state of these shadows (in the
cloud; ShadowManager syncs them to the device); Capture and the Filter follow their own shadow live and write
what they run as `reported`, with `error` when a desired state was refused (docs/sites.md). The shadow's topics
are AWS's (topics.py names the local ones the components subscribe to).
"""

from __future__ import annotations

import copy
from typing import Any

CAPTURE = "ggvision-capture"  # desired: {"cameras": {...}, "sensors": {...}} in Capture's configuration keys
FILTER = "ggvision-filter"  # desired: {"cameras": {...}} in the Filter's configuration keys

# component -> (its shadow, the configuration keys the shadow may set)
FOLLOWERS = {
    "com.ggvision.Capture": (CAPTURE, ("cameras", "sensors")),
    "com.ggvision.Filter": (FILTER, ("cameras",)),
}
# ShadowManager syncs these shadows of each core device (its coreThing) with IoT Core; `direction` needs 2.2.0+.
SHADOW_MANAGER = "aws.greengrass.ShadowManager"
SHADOW_MANAGER_VERSION = "2.3.9"
ERROR_KEY = "error"  # reported.error: {"message": why the desired state was refused, "version": its version}


def prefix(thing: str, shadow: str) -> str:
    """A named shadow's reserved topic prefix (AWS IoT developer guide, "Device Shadow MQTT topics")."""
    return f"$aws/things/{thing}/shadow/name/{shadow}"


def merge_patch(old: Any, new: Any) -> Any:
    """The shadow update (JSON merge: null removes a key) that turns `old` into `new`; None when they are equal.
    What `ggvision site apply` writes as desired and what a component writes as reported."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = {k: None for k in old if k not in new}
        for k, v in new.items():
            if k not in old:
                out[k] = copy.deepcopy(v)
            elif old[k] != v:
                both = isinstance(v, dict) and isinstance(old[k], dict)
                out[k] = merge_patch(old[k], v) if both else copy.deepcopy(v)
        return out or None
    return None if old == new else copy.deepcopy(new)
