"""The named device shadows through which each device's per-site configuration reaches its components.

`ggvision site apply` writes a device's part of the site file as the `desired` state of these shadows (in the
cloud; ShadowManager syncs them to the device); Capture and the Filter follow their own shadow live and write
what they run as `reported`, with `error` when a desired state was refused (docs/sites.md). The shadow's topics
are AWS's (topics.py names the local ones the components subscribe to).
"""

from __future__ import annotations

CAPTURE = "ggvision-capture"  # desired: {"cameras": {...}, "sensors": {...}} in Capture's configuration keys
FILTER = "ggvision-filter"  # desired: {"cameras": {...}} in the Filter's configuration keys

# component -> (its shadow, the configuration keys the shadow may set)
FOLLOWERS = {
    "com.ggvision.Capture": (CAPTURE, ("cameras", "sensors")),
    "com.ggvision.Filter": (FILTER, ("cameras",)),
}
ERROR_KEY = "error"  # reported.error: {"message": why the desired state was refused, "version": its version}


def prefix(thing: str, shadow: str) -> str:
    """A named shadow's reserved topic prefix (AWS IoT developer guide, "Device Shadow MQTT topics")."""
    return f"$aws/things/{thing}/shadow/name/{shadow}"
