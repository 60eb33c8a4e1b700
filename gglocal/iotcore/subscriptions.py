"""The bridge's subscription table: local subscribers by topic filter, and where a received message goes.

Every local subscriber of a topic filter shares one broker subscription (ref-counted, at the highest
QoS asked), tagged with its own MQTT5 subscription identifier. `route` uses the identifiers a
message arrived with to find exactly the subscribers of the broker subscriptions it matched
(mosquitto sends one copy per overlapping subscription, so topic matching alone would duplicate
messages), falling back to topic matching for a broker that sends none. A filter whose last
subscriber left stays a pending unsubscribe until the broker confirms it. No I/O here: the bridge
talks to the broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topicmatch import mqtt_match

MessageCallback = Callable[[str, bytes], Any]

MAX_SUBSCRIPTION_ID = 268_435_455


@dataclass
class BrokerSubscription:
    """One broker subscription shared by all local subscribers of the same topic filter."""

    topic_filter: str
    qos: int
    sub_id: int
    callbacks: dict[int, MessageCallback] = field(default_factory=dict)


class SubscriptionTable:
    """Local subscribers (by handle) grouped into broker subscriptions (by topic filter and sub id)."""

    def __init__(self) -> None:
        self._filters: dict[str, BrokerSubscription] = {}
        self._by_sub_id: dict[int, BrokerSubscription] = {}
        self._handles: dict[int, BrokerSubscription] = {}
        self._pending_unsubscribes: set[str] = set()
        self._next_handle = 1
        self._next_sub_id = 1

    def add(self, topic_filter: str, qos: int, callback: MessageCallback) -> tuple[int, BrokerSubscription, bool]:
        """Register ``callback``; returns (handle, its broker subscription, whether the broker must be
        asked: a new topic filter, or a higher QoS than the subscription has)."""
        entry = self._filters.get(topic_filter)
        need_broker = entry is None or qos > entry.qos
        if entry is None:
            entry = BrokerSubscription(topic_filter, qos, self._new_sub_id())
            self._filters[topic_filter] = entry
            self._by_sub_id[entry.sub_id] = entry
        entry.qos = max(entry.qos, qos)
        handle = self._next_handle
        self._next_handle += 1
        entry.callbacks[handle] = callback
        self._handles[handle] = entry
        self._pending_unsubscribes.discard(topic_filter)
        return handle, entry, need_broker

    def _new_sub_id(self) -> int:
        sub_id = self._next_sub_id
        self._next_sub_id = sub_id % MAX_SUBSCRIPTION_ID + 1
        return sub_id

    def remove(self, handle: int) -> BrokerSubscription | None:
        """Drop one local subscriber. Returns its broker subscription when that was the last subscriber
        (the filter is then a pending unsubscribe), otherwise None."""
        entry = self._handles.pop(handle, None)
        if entry is None:
            return None
        entry.callbacks.pop(handle, None)
        if entry.callbacks:
            return None
        self._filters.pop(entry.topic_filter, None)
        self._by_sub_id.pop(entry.sub_id, None)
        self._pending_unsubscribes.add(entry.topic_filter)
        return entry

    def unsubscribed(self, topic_filter: str) -> None:
        """The broker confirmed an UNSUBSCRIBE: no longer pending, unless subscribed again meanwhile."""
        if topic_filter not in self._filters:
            self._pending_unsubscribes.discard(topic_filter)

    def subscriptions(self) -> list[BrokerSubscription]:
        """Every broker subscription that has local subscribers."""
        return list(self._filters.values())

    def pending_unsubscribes(self) -> list[str]:
        """Topic filters whose UNSUBSCRIBE the broker has not confirmed yet."""
        return list(self._pending_unsubscribes)

    def route(self, topic: str, sub_ids: list[int]) -> list[BrokerSubscription]:
        """The broker subscriptions a message on ``topic`` that carried ``sub_ids`` was delivered for."""
        if sub_ids:
            return [self._by_sub_id[i] for i in sub_ids if i in self._by_sub_id]
        # broker without subscription identifiers: fall back to local matching
        return [e for e in self._filters.values() if mqtt_match(e.topic_filter, topic)]
