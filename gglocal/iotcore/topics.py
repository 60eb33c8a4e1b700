"""IoT Core topic rules: which publish topics and subscription filters AWS IoT Core accepts.

`validate_topic` and `validate_topic_filter` raise ValueError with the reason (size, NUL, levels,
wildcards) before anything reaches the broker. MQTT's own rules (wildcard placement, matching) are
topicmatch's, shared with the product.
"""

from __future__ import annotations

from topicmatch import valid_topic_filter

MAX_TOPIC_BYTES = 256  # IoT Core topic / topic filter limit
MAX_TOPIC_SLASHES = 7  # IoT Core: at most 8 levels, not counting a $aws/rules/<rule>/ prefix


def _rules_stripped(topic: str) -> str:
    # IoT Core does not count the basic-ingest prefix $aws/rules/<rule-name>/ against the level limit.
    if topic.startswith("$aws/rules/"):
        parts = topic.split("/", 3)
        return parts[3] if len(parts) == 4 else ""
    return topic


def _check_common(kind: str, topic: str) -> None:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"{kind} must be a non-empty string")
    size = len(topic.encode())
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"{kind} is {size} bytes; AWS IoT Core allows at most {MAX_TOPIC_BYTES}")
    if "\0" in topic:
        raise ValueError(f"{kind} {topic!r} contains a NUL character")
    if _rules_stripped(topic).count("/") > MAX_TOPIC_SLASHES:
        raise ValueError(f"{kind} {topic!r} has more than {MAX_TOPIC_SLASHES} '/'; AWS IoT Core rejects it")


def validate_topic(topic: str) -> None:
    """Raise ValueError (with the reason) unless ``topic`` is a valid IoT Core publish topic."""
    _check_common("topic", topic)
    if "+" in topic or "#" in topic:
        raise ValueError(f"topic {topic!r} contains an MQTT wildcard ('+' or '#'); wildcards are only for subscribing")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ValueError (with the reason) unless ``topic_filter`` is a valid MQTT/IoT Core filter."""
    _check_common("topic filter", topic_filter)
    why = valid_topic_filter(topic_filter)
    if why:
        raise ValueError(why)
