"""Platforms in nucleus terms: whether a recipe manifest's Platform fits a device, and this machine's.

`platform_matches` is the nucleus rule for a manifest's Platform (case-insensitive keys and values,
``*``, ``/regex/``); `current_platform` names this machine the way the nucleus does
(``{"os": "linux", "architecture": "amd64"}``).
"""

from __future__ import annotations

import platform as _platform
import re
from collections.abc import Mapping


def platform_matches(required: Mapping[str, str], device: Mapping[str, str]) -> bool:
    """True when every key a manifest requires is satisfied by the device platform.

    Keys compare case-insensitively. A value matches if equal (case-insensitive), ``*``, or a
    ``/regex/`` that fully matches the device value; ``*`` also matches a key the device lacks.
    """
    device_ci = {k.lower(): str(v) for k, v in device.items()}
    for key, want in required.items():
        have = device_ci.get(key.lower())
        if want == "*":
            continue
        if have is None:
            return False
        if len(want) >= 2 and want.startswith("/") and want.endswith("/"):
            try:
                if not re.fullmatch(want[1:-1], have, re.IGNORECASE):
                    return False
            except re.error:
                return False
        elif want.lower() != have.lower():
            return False
    return True


_ARCH_ALIASES = {
    "x86_64": "amd64", "amd64": "amd64", "x64": "amd64",
    "aarch64": "aarch64", "arm64": "aarch64",
    "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "x86": "x86",
}


def current_platform() -> dict[str, str]:
    """This machine's platform in nucleus terms, e.g. ``{"os": "linux", "architecture": "amd64"}``."""
    machine = _platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine)
    if arch is None:
        arch = "arm" if machine.startswith("arm") else machine
    return {"os": _platform.system().lower() or "unknown", "architecture": arch}
