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


class ShadowTopicsClient:
    """get/update of any thing's shadow over the MQTT shadow topics of the stand-in broker: what a tool uses where
    AWS would offer the IoT data plane's HTTPS API (`ggvision site apply` against a local runtime). Synchronous;
    its MQTT client runs on a loop of its own."""

    def __init__(self, host: str, port: int, pki: Pki, work: Path, timeout_s: float = 10.0) -> None:
        import threading
        import uuid

        self._timeout = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="shadow-topics", daemon=True)
        self._thread.start()
        self._bridge = IoTCoreBridge(host, port, pki, f"shadow-client-{uuid.uuid4().hex[:12]}",
                                     DiskSpool(work / "spool.sqlite", 1024 * 1024))
        self._pending: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self._subscribed: set[str] = set()
        try:
            self._run(self._start())
        except Exception as e:
            self.close()
            raise ConnectionError(f"cannot reach the IoT Core stand-in on {host}:{port}: {e}") from None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout + 5)

    async def _start(self) -> None:
        await self._bridge.start()
        await self._bridge.wait_connected(self._timeout)

    def _on_answer(self, topic: str, payload: bytes) -> None:
        if not topic.endswith(("/accepted", "/rejected")):
            return  # update/delta and update/documents echo the clientToken too; they are no answer
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        fut = self._pending.get(msg.get("clientToken")) if isinstance(msg, dict) else None
        if fut is not None and not fut.done():
            fut.set_result((topic.rsplit("/", 1)[-1], msg))

    async def _request(self, prefix: str, op: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        import uuid

        answers = f"{prefix}/{op}/+"
        if answers not in self._subscribed:
            await self._bridge.subscribe(answers, 1, self._on_answer)
            self._subscribed.add(answers)
        token = uuid.uuid4().hex
        fut: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._pending[token] = fut
        try:
            await self._bridge.publish(f"{prefix}/{op}", json.dumps({**body, "clientToken": token}).encode(), qos=0)
            return await asyncio.wait_for(fut, self._timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no answer on {prefix}/{op}/accepted|rejected within {self._timeout}s") from None
        finally:
            self._pending.pop(token, None)

    def get(self, thing: str, name: str = "") -> dict[str, Any] | None:
        """The shadow document (state, version), or None when there is none."""
        outcome, msg = self._run(self._request(shadow_prefix(thing, name), "get", {}))
        if outcome == "rejected":
            if msg.get("code") == 404:
                return None
            raise ShadowError(f"get {shadow_prefix(thing, name)} rejected ({msg.get('code')}): {msg.get('message')}")
        return msg

    def update(self, thing: str, name: str, payload: bytes) -> dict[str, Any]:
        outcome, msg = self._run(self._request(shadow_prefix(thing, name), "update", json.loads(payload)))
        if outcome == "rejected":
            raise ShadowError(f"update {shadow_prefix(thing, name)} rejected ({msg.get('code')}): "
                              f"{msg.get('message')}")
        return msg

    def close(self) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._bridge.stop(), self._loop).result(10)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    @classmethod
    def for_runtime(cls, root: Path, work: Path) -> ShadowTopicsClient:
        """A client of the IoT Core stand-in a local runtime (`ggvision nucleus --root ROOT`) runs itself."""
        iot = Path(root) / "iotcore"
        try:
            port = int((iot / "port").read_text())
        except (OSError, ValueError):
            raise ConnectionError(f"{root}: no IoT Core stand-in of its own (no {iot / 'port'}); was the runtime "
                                  "started with --iot and without --iot-endpoint?") from None
        d = iot / "pki"
        pki = Pki(ca_cert=d / "ca.pem", ca_key=d / "ca.key", server_cert=d / "server.pem",
                  server_key=d / "server.key", client_cert=d / "thing.pem", client_key=d / "thing.key")
        return cls("127.0.0.1", port, pki, work)
