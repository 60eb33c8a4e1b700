"""The fleet controller's MQTT connection (IoTCoreBridge on a background event loop): publishes the deployment
documents of thing groups and of single things (thing targets), and collects device deployment statuses and, when
asked, the devices' health summaries (the caller names their topic filter and schema: the runtime knows no
product's messages)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

from ..iotcore.bridge import IoTCoreBridge
from ..iotcore.spool import DiskSpool
from ..nucleus.groupdeploy import GROUP_TOPIC, THING_TARGET_TOPIC, THING_TOPIC
from .layout import CONTROLLER, FleetError, FleetInfo, controller_pki


class FleetClient:
    def __init__(self, info: FleetInfo, connect_timeout: float = 20.0, max_summaries: int = 100_000,
                 summaries: tuple[str, str] | None = None) -> None:
        """`summaries`: (MQTT topic filter, schema prefix) of the device summaries to collect, e.g.
        ("example/+/metrics", "summary/1."); None collects none."""
        self.info = info
        self._summary_topics = summaries
        self.groups: dict[str, dict[str, Any]] = {}
        self.thing_targets: dict[str, dict[str, Any]] = {}  # thing -> its own (thing target) deployment
        self.statuses: dict[str, dict[str, Any]] = {}
        self.summaries: list[dict[str, Any]] = []
        self.malformed = 0
        self._max = max_summaries
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-client", daemon=True)
        self._thread.start()
        fleet_dir = Path(info.dir)
        pki = controller_pki(fleet_dir)
        spool = DiskSpool(fleet_dir / "controller-spool.sqlite", 16 * 1024 * 1024)
        self.bridge = IoTCoreBridge("127.0.0.1", info.port, pki, f"{CONTROLLER}-{id(self):x}", spool)
        try:
            self._run(self._start(connect_timeout), connect_timeout + 5)
        except Exception as e:
            self.close()
            raise FleetError(f"cannot reach the fleet's broker on 127.0.0.1:{info.port}: {e}") from None

    def _run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _start(self, timeout: float) -> None:
        await self.bridge.start()
        await self.bridge.wait_connected(timeout)
        await self.bridge.subscribe(GROUP_TOPIC.format(group="+"), 1, self._on_group)
        await self.bridge.subscribe(THING_TARGET_TOPIC.format(thing="+"), 1, self._on_thing_target)
        await self.bridge.subscribe(THING_TOPIC.format(thing="+"), 1, self._on_status)
        if self._summary_topics is not None:
            await self.bridge.subscribe(self._summary_topics[0], 1, self._on_metrics)

    def _json(self, payload: bytes) -> dict[str, Any] | None:
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self.malformed += 1
            return None
        return doc

    def _on_group(self, topic: str, payload: bytes) -> None:
        doc = self._json(payload) if payload else None
        if doc is not None:
            with self._cond:
                self.groups[topic.split("/")[3]] = doc
                self._cond.notify_all()

    def _on_thing_target(self, topic: str, payload: bytes) -> None:
        doc = self._json(payload) if payload else None
        if doc is not None:
            with self._cond:
                self.thing_targets[topic.split("/")[3]] = doc
                self._cond.notify_all()

    def _on_status(self, topic: str, payload: bytes) -> None:
        doc = self._json(payload) if payload else None
        if doc is not None:
            with self._cond:
                self.statuses[topic.split("/")[3]] = doc
                self._cond.notify_all()

    def _on_metrics(self, topic: str, payload: bytes) -> None:
        doc = self._json(payload)
        if doc is None or self._summary_topics is None or not str(doc.get("schema", "")).startswith(
                self._summary_topics[1]):
            return
        doc.setdefault("thing", topic.split("/")[1])
        with self._cond:
            self.summaries.append(doc)
            del self.summaries[:-self._max]
            self._cond.notify_all()

    def publish_group(self, group: str, doc: dict[str, Any]) -> None:
        """Publish (retained, QoS 1) and wait until the broker has it (our own subscription echoes it)."""
        self._run(self.bridge.publish(GROUP_TOPIC.format(group=group), json.dumps(doc).encode(), qos=1, retain=True))
        with self._cond:
            self.groups[group] = doc
        self._run(self.bridge.wait_drained(20.0), 25.0)

    def publish_thing(self, thing: str, doc: dict[str, Any]) -> None:
        """A thing target's deployment: like publish_group, on the thing's own topic."""
        self._run(self.bridge.publish(THING_TARGET_TOPIC.format(thing=thing), json.dumps(doc).encode(), qos=1,
                                      retain=True))
        with self._cond:
            self.thing_targets[thing] = doc
        self._run(self.bridge.wait_drained(20.0), 25.0)

    def wait(self, timeout: float) -> None:
        """Until any message arrives or `timeout` passes."""
        with self._cond:
            self._cond.wait(timeout)

    def health(self, things: list[str], since: float) -> list[dict[str, Any]]:
        with self._cond:
            return [s for s in self.summaries if s.get("thing") in things and (s.get("timestamp") or 0) >= since]

    def wait_for(self, predicate: Any, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FleetError(f"timed out after {timeout:g} s waiting for {what}")
                self._cond.wait(left)

    def close(self) -> None:
        try:
            if self._loop.is_running():
                self._run(self.bridge.stop(), 15.0)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
