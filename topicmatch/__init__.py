"""MQTT topic rules shared by the product and the local runtime: is a topic publishable, is a filter valid,
does a filter match a topic (MQTT 3.1.1 section 4.7). Pure functions, no dependencies; both wings import it."""

from __future__ import annotations


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
    """MQTT matching of a (valid) filter against a concrete topic; a filter starting with a wildcard does not
    match a `$`-topic (MQTT 3.1.1 section 4.7.2)."""
    if topic_filter == topic:
        return True
    if "+" not in topic_filter and "#" not in topic_filter:
        return False
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
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
