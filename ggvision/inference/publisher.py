"""Publishing detections without waiting for each IPC round trip.

ComponentApp.publish waits for the runtime's response to every message; at one message per frame that idles
the inference thread for a round trip per frame. Here the request is sent and the worker moves on; at most
`max_inflight` requests are unanswered (then publish waits: back-pressure, never an unbounded queue). Requests
on one connection are sent and handled in order, so the messages of a camera keep their order.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from .stats import CameraCounts

log = logging.getLogger("ggvision.inference")


class AsyncPublisher:
    def __init__(self, client: Any, max_inflight: int = 64) -> None:
        self._client = client
        self.sent = CameraCounts()  # messages handed to the connection, per message `camera`
        self._slots = threading.BoundedSemaphore(max_inflight)
        self._max = max_inflight
        self.errors = 0

    def publish(self, topic: str, message: dict[str, Any]) -> None:
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        self._slots.acquire()
        try:
            fut = self._client.publish_to_topic_async(topic=topic, publish_message=PublishMessage(
                json_message=JsonMessage(message=message)))
        except Exception as e:
            self._slots.release()
            self._failed(topic, e)
            return
        fut.add_done_callback(lambda f: self._done(topic, f))
        camera = message.get("camera")
        if isinstance(camera, str):
            ts = message.get("timestamp")
            self.sent.note(camera, float(ts) if isinstance(ts, (int, float)) else None)

    def _done(self, topic: str, fut: Future) -> None:
        self._slots.release()
        e = fut.exception()
        if e is not None:
            self._failed(topic, e)

    def _failed(self, topic: str, e: BaseException) -> None:
        self.errors += 1
        if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
            log.warning("publish to %s failed (%d so far): %s: %s", topic, self.errors, type(e).__name__, e)

    def drain(self, timeout: float = 5.0) -> bool:
        """Wait until every request has been answered (before closing the connection)."""
        got = 0
        try:
            for _ in range(self._max):
                if not self._slots.acquire(timeout=timeout):
                    return False
                got += 1
            return True
        finally:
            for _ in range(got):
                self._slots.release()
