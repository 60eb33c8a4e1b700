"""IPC bench component: a publisher or a subscriber, driven by its configuration (GetConfiguration).

Handshake with bench/ipc.py through files in this component's work folder (its working directory):
  ready        written once connected (publisher: after a warm-up; subscriber: once subscribed)
  go           written by the orchestrator when every component is ready; the publisher starts then
  result.json  this component's measurements, written atomically; then the process idles until stopped
Timestamps are time.monotonic() (CLOCK_MONOTONIC on Linux), so they compare across processes.
"""

from __future__ import annotations

import json
import os
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc.model import BinaryMessage, JsonMessage, PublishMessage, SubscriptionResponseMessage

WORK = Path.cwd()
WARMUP = 200


def write_file(name: str, obj: Any) -> None:
    tmp = WORK / f"{name}.tmp"
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, WORK / name)


def wait_for_file(name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not (WORK / name).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no '{name}' file within {timeout}s")
        time.sleep(0.001)


def message_factory(cfg: dict[str, Any]) -> Callable[[int], PublishMessage]:
    """Small JSON (about 50 bytes), or the same `size`-byte binary blob every time."""
    if cfg["format"] == "binary":
        blob = PublishMessage(binary_message=BinaryMessage(message=os.urandom(int(cfg["size"]))))
        return lambda seq: blob
    return lambda seq: PublishMessage(json_message=JsonMessage(message={"seq": seq, "camera": "cam-1", "score": 0.97}))


# -- publisher ------------------------------------------------------------------------------
def publish_sequential(ipc: GreengrassCoreIPCClientV2, topic: str, count: int, make: Callable[[int], PublishMessage],
                       timeout: float) -> list[str]:
    for seq in range(count):  # what publish_to_topic() does, with a timeout
        ipc.publish_to_topic_async(topic=topic, publish_message=make(seq)).result(timeout)
    return []


def publish_pipelined(ipc: GreengrassCoreIPCClientV2, topic: str, count: int, make: Callable[[int], PublishMessage],
                      in_flight: int, timeout: float) -> list[str]:
    """Keep `in_flight` publishes outstanding; a slot frees when the server's response arrives."""
    slots = threading.Semaphore(in_flight)
    errors: list[str] = []

    def finished(fut: Any) -> None:
        if fut.exception() is not None:
            errors.append(repr(fut.exception()))
        slots.release()

    for seq in range(count):
        if not slots.acquire(timeout=timeout):
            raise TimeoutError("publish responses stopped arriving")
        ipc.publish_to_topic_async(topic=topic, publish_message=make(seq)).add_done_callback(finished)
    for _ in range(in_flight):  # wait for the last responses
        if not slots.acquire(timeout=timeout):
            raise TimeoutError("publish responses stopped arriving")
    return errors


def run_publisher(ipc: GreengrassCoreIPCClientV2, cfg: dict[str, Any]) -> dict[str, Any]:
    make = message_factory(cfg)
    count, in_flight, timeout = int(cfg["count"]), int(cfg["inFlight"]), float(cfg["timeout"])
    for seq in range(WARMUP):  # warm-up (also checks authorization) on a topic nobody subscribes to
        ipc.publish_to_topic(topic="bench/ipc/warmup", publish_message=make(seq))
    write_file("ready", {})
    wait_for_file("go", timeout)
    first = time.monotonic()
    if in_flight <= 1:
        errors = publish_sequential(ipc, cfg["topic"], count, make, timeout)
    else:
        errors = publish_pipelined(ipc, cfg["topic"], count, make, in_flight, timeout)
    return {"sent": count, "first": first, "done": time.monotonic(), "errors": len(errors), "error": errors[:1]}


# -- subscriber -----------------------------------------------------------------------------
class Receiver:
    """Counts events; callbacks may run on several executor threads, hence the lock."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.lock = threading.Lock()
        self.received = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.complete = threading.Event()

    def on_event(self, event: SubscriptionResponseMessage) -> None:
        t = time.monotonic()
        size = len(event.binary_message.message) if event.binary_message is not None else 0
        with self.lock:
            self.received += 1
            self.bytes += size
            if self.first is None:
                self.first = t
            self.last = t
            if self.received >= self.expected:
                self.complete.set()

    def wait(self, timeout: float, idle: float = 2.0) -> None:
        """Until all expected arrived, nothing arrived for `idle` s after the first, or `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.complete.wait(0.2) and time.monotonic() < deadline:
            if self.last is not None and time.monotonic() - self.last > idle:
                return


def run_subscriber(ipc: GreengrassCoreIPCClientV2, cfg: dict[str, Any]) -> dict[str, Any]:
    rx = Receiver(int(cfg["count"]))
    ipc.subscribe_to_topic(topic=cfg["topic"], on_stream_event=rx.on_event, on_stream_error=lambda e: False)
    write_file("ready", {})
    rx.wait(float(cfg["timeout"]))
    with rx.lock:
        return {"received": rx.received, "bytes": rx.bytes, "first": rx.first, "last": rx.last}


def connect() -> tuple[GreengrassCoreIPCClientV2, dict[str, Any]]:
    # executor=None: stream callbacks run on the client's event-loop thread (a thread pool triples their cost)
    ipc = GreengrassCoreIPCClientV2(executor=None)
    cfg = ipc.get_configuration().value
    if cfg.get("executor"):  # the client's default: callbacks go through a ThreadPoolExecutor
        ipc = GreengrassCoreIPCClientV2(client=ipc.client)
    return ipc, cfg


def main() -> None:
    try:
        ipc, cfg = connect()
        result = run_publisher(ipc, cfg) if cfg["role"] == "publisher" else run_subscriber(ipc, cfg)
    except Exception as e:
        traceback.print_exc()
        result = {"error": [f"{type(e).__name__}: {e}"]}
    write_file("result.json", result)
    threading.Event().wait()  # stay alive: the orchestrator reads this process's CPU time, then stops the runtime


if __name__ == "__main__":
    main()
