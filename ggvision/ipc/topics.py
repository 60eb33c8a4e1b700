"""Topic matching: MQTT wildcards for subscriptions, `*` globs for accessControl resources."""

from __future__ import annotations

import re
from functools import lru_cache


def valid_publish_topic(topic: str) -> str | None:
    """Return why `topic` can't be published to, or None when it is fine."""
    if not topic:
        return "topic is empty"
    if "+" in topic or "#" in topic:
        return f"topic {topic!r} contains a wildcard; wildcards are for subscriptions only"
    return None


def valid_topic_filter(topic_filter: str) -> str | None:
    """Return why `topic_filter` is not a valid MQTT filter, or None."""
    if not topic_filter:
        return "topic filter is empty"
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"'#' must be a whole last level in {topic_filter!r}"
        if "+" in level and level != "+":
            return f"'+' must be a whole level in {topic_filter!r}"
    return None


def mqtt_match(topic_filter: str, topic: str) -> bool:
    """MQTT matching of a (valid) filter against a concrete topic."""
    if topic_filter == topic:
        return True
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


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

    `*` globs always apply. For MQTT-style resources (subscribe, mqttproxy) a policy written as
    an MQTT filter (`a/+/c`, `a/#`) also covers what it would match; a requested filter's own
    wildcards are then treated as plain level names, so `a/#` covers a request for `a/+/c`
    while `a/b` does not cover `a/#`.
    """
    if pattern == "*" or pattern == resource:
        return True
    if _glob_regex(pattern).fullmatch(resource):
        return True
    return mqtt_wildcards and ("+" in pattern or "#" in pattern) and mqtt_match(pattern, resource)
