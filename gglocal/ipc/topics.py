"""accessControl resource matching: `*` globs everywhere, and MQTT filters for IoT Core (mqttproxy) resources.

The MQTT rules themselves (valid topics and filters, matching) live in topicmatch, shared with the product."""

from __future__ import annotations

import re
from functools import lru_cache

from topicmatch import mqtt_match


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    # Greengrass resource globs: `*` matches anything; `${*}`, `${?}`, `${$}` are literal escapes.
    out: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("${", i) and i + 3 < len(pattern) + 1 and pattern[i + 3 : i + 4] == "}":
            out.append(re.escape(pattern[i + 2]))
            i += 4
            continue
        c = pattern[i]
        out.append(".*" if c == "*" else re.escape(c))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def resource_match(pattern: str, resource: str, mqtt_wildcards: bool = False) -> bool:
    """Does an accessControl resource pattern cover the requested resource?

    `*` globs always apply. For MQTT-style resources (mqttproxy only, as the nucleus' MqttProxyIPCAgent) a
    policy written as an MQTT filter (`a/+/c`, `a/#`) also covers what it would match; a requested filter's
    own wildcards are then treated as plain level names, so `a/#` covers a request for `a/+/c` while `a/b`
    does not cover `a/#`. Elsewhere (local pub/sub included) `+` and `#` are plain characters.
    """
    if pattern == "*" or pattern == resource:
        return True
    if _glob_regex(pattern).fullmatch(resource):
        return True
    return mqtt_wildcards and ("+" in pattern or "#" in pattern) and mqtt_match(pattern, resource)
