"""Local publish/subscribe between components (PublishToTopic / SubscribeToTopic)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from topicmatch import mqtt_match

from .server import Stream

EVENT_SHAPE = "SubscriptionResponseMessage"


def _event_payload(kind: str, message: object, topic: str) -> bytes:
    """The SubscriptionResponseMessage JSON, encoded once per publish for all subscribers."""
    if isinstance(message, str) and kind == "binaryMessage" and _json_safe(message):
        # Base64 text needs no escaping: splice it in rather than re-encoding megabytes of JSON.
        return b"".join((b'{"binaryMessage": {"message": "', message.encode("ascii"),
                         b'", "context": {"topic": ', json.dumps(topic).encode(), b"}}}"))
    return json.dumps({kind: {"message": message, "context": {"topic": topic}}}).encode()


def _json_safe(s: str) -> bool:
    return s.isascii() and s.isprintable() and '"' not in s and "\\" not in s


@dataclass(eq=False)
class Subscription:
    topic_filter: str
    stream: Stream
    from_others_only: bool
    wildcard: bool


class LocalPubSub:
    """Routes messages to subscriptions; the match list per topic is cached until subscriptions change."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._cache: dict[str, list[Subscription]] = {}
        self.published = 0
        self.delivered = 0
        self.dropped = 0
        # In-process observers (the runtime's own views), called as tap(topic, message) for JSON messages.
        self.taps: list[tuple[str, Callable[[str, object], None]]] = []

    def subscribe(self, topic_filter: str, stream: Stream, from_others_only: bool) -> Subscription:
        sub = Subscription(topic_filter, stream, from_others_only, "+" in topic_filter or "#" in topic_filter)
        self._subs.append(sub)
        self._cache.clear()
        stream.on_close.append(lambda: self.unsubscribe(sub))
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        try:
            self._subs.remove(sub)
        except ValueError:
            return
        self._cache.clear()

    def _matching(self, topic: str) -> list[Subscription]:
        subs = self._cache.get(topic)
        if subs is None:
            subs = [s for s in self._subs
                    if s.topic_filter == topic or (s.wildcard and mqtt_match(s.topic_filter, topic))]
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[topic] = subs
        return subs

    def publish(self, publisher: str, topic: str, kind: str, message: object) -> int:
        """Deliver a `jsonMessage` or `binaryMessage` (base64 text already) to every match."""
        self.published += 1
        if self.taps and kind == "jsonMessage":
            for topic_filter, tap in self.taps:
                if mqtt_match(topic_filter, topic):
                    tap(topic, message)
        subs = self._matching(topic)
        if not subs:
            return 0
        payload = _event_payload(kind, message, topic)
        n = 0
        for s in subs:
            if s.from_others_only and s.stream.component == publisher:
                continue
            if s.stream.send_event(EVENT_SHAPE, payload):
                n += 1
            else:
                self.dropped += 1
        self.delivered += n
        return n
