"""The IoT Core stand-in's Device Shadow service: the cloud copy of every thing's shadows, served over MQTT.

AWS IoT Core answers requests on the reserved shadow topics (developer guide, "Device Shadow MQTT topics"):
a device publishes to `$aws/things/{thing}/shadow[/name/{name}]/update|get|delete` and the service answers on
`.../accepted` or `.../rejected` (echoing the request's clientToken), and after an update publishes
`.../update/delta` and `.../update/documents`. This service does that on the stand-in broker with its own MQTT
client (the same bridge class the runtime uses) and its own ShadowStore, so ShadowManager's cloud sync
(shadowsync.py) and `ggvision site apply` talk to it exactly as they would to IoT Core.

`update`, `get` and `delete` are also callable directly: the IoT data plane's HTTP API (UpdateThingShadow ...),
which changes the cloud copy even while the devices are offline.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from ..iotcore.bridge import IoTCoreBridge
from ..iotcore.pki import Pki
from ..iotcore.spool import DiskSpool
from ..ipc.host import ShadowError, ShadowNotFound
from .shadows import ShadowStore, shadow_prefix

log = logging.getLogger("gglocal.shadowcloud")

CLIENT_ID = "gglocal-device-shadow-service"
# Requests on classic and named shadows of every thing (a `+` level each; IoT Core's own topic shape).
_REQUESTS = ("$aws/things/+/shadow/+", "$aws/things/+/shadow/name/+/+")


def _parse(topic: str) -> tuple[str, str, str] | None:
    """(thing, shadow name, operation) of a request topic, or None for anything else."""
    parts = topic.split("/")
    if parts[:2] != ["$aws", "things"] or len(parts) < 5 or parts[3] != "shadow":
        return None
    if len(parts) == 5:
        thing, name, op = parts[2], "", parts[4]
    elif len(parts) == 7 and parts[4] == "name":
        thing, name, op = parts[2], parts[5], parts[6]
    else:
        return None
    return (thing, name, op) if op in ("update", "get", "delete") else None


class CloudShadowService:
    """See the module docstring. Run `start()`/`stop()` on an asyncio loop; `update/get/delete` from anywhere."""

    def __init__(self, root: Path, host: str, port: int, pki: Pki) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.store = ShadowStore(root / "shadows.json", publish=self._publish)
        self._bridge = IoTCoreBridge(host, port, pki, CLIENT_ID, DiskSpool(root / "spool.sqlite", 2621440))
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._bridge.start()
        for topic_filter in _REQUESTS:
            await self._bridge.subscribe(topic_filter, 1, self._on_request)

    async def stop(self) -> None:
        await self._bridge.stop()

    async def wait_connected(self, timeout: float) -> None:
        await self._bridge.wait_connected(timeout)

    # -- the data plane (HTTP API in AWS) -----------------------------------------------------------
    def update(self, thing: str, name: str, payload: bytes) -> dict[str, Any]:
        return self.store.update(thing, name, payload, origin="cloud")

    def get(self, thing: str, name: str = "") -> dict[str, Any]:
        return self.store.get(thing, name)

    def delete(self, thing: str, name: str = "") -> dict[str, Any]:
        return self.store.delete(thing, name, origin="cloud")

    # -- MQTT -----------------------------------------------------------------------------------------
    def _publish(self, topic: str, payload: bytes) -> None:
        # Store callbacks may come from any thread (the data-plane calls); publishing belongs to the loop.
        loop = self._loop
        if loop is None or loop.is_closed():
            return

        def send() -> None:
            if self._bridge.connected:  # like IoT Core, notifications reach only those connected now
                asyncio.ensure_future(self._send(topic, payload))

        loop.call_soon_threadsafe(send)

    async def _send(self, topic: str, payload: bytes) -> None:
        try:
            await self._bridge.publish(topic, payload, qos=0)
        except Exception as e:
            log.warning("Device Shadow service: could not publish on %s: %s", topic, e)

    def _on_request(self, topic: str, payload: bytes) -> None:
        parsed = _parse(topic)
        if parsed is None:
            return
        thing, name, op = parsed
        prefix = shadow_prefix(thing, name)
        token = None
        try:
            req = json.loads(payload) if payload else {}
            token = req.get("clientToken") if isinstance(req, dict) else None
        except ValueError:
            req = None
        tok = {"clientToken": token} if isinstance(token, str) else {}
        try:
            if op == "update":
                self.store.update(thing, name, payload, origin="cloud")  # answers on accepted/rejected itself
            elif op == "get":
                self._publish(f"{prefix}/get/accepted", json.dumps({**self.store.get(thing, name), **tok}).encode())
            else:
                self.store.delete(thing, name, origin="cloud", token=tok.get("clientToken"))
        except ShadowNotFound as e:
            if op == "get":
                self._publish(f"{prefix}/get/rejected",
                              json.dumps({"code": 404, "message": str(e.args[0]), **tok}).encode())
        except ShadowError:
            pass  # the store published update/rejected with the reason
