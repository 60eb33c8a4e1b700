"""Test helpers for shadows: the IoT Core stand-in's Device Shadow service on a loop of its own (the "cloud"
next to a runtime), and the test agent allowed to watch a shadow's local topics."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from pathlib import Path
from typing import Any

import yaml
from harness import RECIPES

from gglocal.iotcore.pki import Pki
from gglocal.nucleus.shadowcloud import CloudShadowService


class Cloud:
    """CloudShadowService on a background event loop; `service.update/get` are the data plane."""

    def __init__(self, root: Path, port: int, pki: Pki) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cloud-shadows", daemon=True)
        self.thread.start()
        self.service = CloudShadowService(root, "127.0.0.1", port, pki)
        self.run(self.service.start())
        self.run(self.service.wait_connected(30))

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def update(self, thing: str, name: str, state: dict[str, Any]) -> dict[str, Any]:
        return self.service.update(thing, name, json.dumps({"state": state}).encode())

    def state(self, thing: str, name: str) -> dict[str, Any] | None:
        doc = self.service.store.document(thing, name)
        return doc["state"] if doc else None

    def close(self) -> None:
        try:
            self.run(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)


def agent_watching_shadows() -> dict[str, dict[str, Any]]:
    """Runtime(config=...) for the test agent: its own policies plus SubscribeToTopic on every shadow topic."""
    doc = yaml.safe_load((RECIPES / "com.ggvision.test.Agent.yaml").read_text())
    acl = doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    acl["aws.greengrass.ipc.pubsub"]["com.ggvision.test.Agent:pubsub:shadows"] = {
        "operations": ["aws.greengrass#SubscribeToTopic"], "resources": ["$aws/things/*"]}
    return {"com.ggvision.test.Agent": {"accessControl": acl}}


def decoded(event: dict[str, Any]) -> dict[str, Any]:
    """A shadow topic event as the agent heard it (ShadowManager publishes binary JSON)."""
    return json.loads(base64.b64decode(event["b64"]))
