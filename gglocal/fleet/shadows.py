"""The local fleet's Device Shadow service: the IoT Core stand-in's cloud copy of every device's shadows
(CloudShadowService) on the fleet's shared broker, and the client a tool uses to read and write them.

`ggvision fleet up` runs `FleetShadows` next to the broker, so each device's ShadowManager sync (its runtime
follows the `aws.greengrass.ShadowManager` configuration its deployments carry) has a cloud to sync with, and
`ggvision site apply|status --fleet DIR` reaches it with `fleet_shadow_client`: the same requests on the same
MQTT shadow topics as against a single runtime's stand-in (`--runtime`), with the fleet controller's certificate.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from ..iotcore.pki import Pki
from ..nucleus.shadowcloud import CloudShadowService, ShadowTopicsClient
from .layout import FleetError, FleetInfo, controller_pki


class FleetShadows:
    """CloudShadowService on an event loop of its own (the fleet runner is synchronous); its store persists under
    `root`, so a fleet restarted on the same folder keeps the cloud's shadows."""

    def __init__(self, root: Path, port: int, pki: Pki) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fleet-shadows", daemon=True)
        self.service = CloudShadowService(root, "127.0.0.1", port, pki)

    def _run(self, coro: Any, timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        try:
            self._run(self.service.start(), timeout)
            self._run(self.service.wait_connected(timeout), timeout + 5)
        except Exception as e:
            self.stop()
            raise FleetError(f"the Device Shadow service could not connect to the fleet's broker: {e}") from None

    def stop(self) -> None:
        if self._loop.is_running():
            try:
                self._run(self.service.stop(), 15.0)
            except Exception:
                pass  # stopping: the broker goes next anyway
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)


def fleet_shadow_client(fleet_dir: Path, work: Path) -> ShadowTopicsClient:
    """A client of the fleet's Device Shadow service (`ggvision fleet up` must be running on `fleet_dir`)."""
    info = FleetInfo.load(fleet_dir)
    try:
        return ShadowTopicsClient("127.0.0.1", info.port, controller_pki(Path(info.dir)), work)
    except ConnectionError as e:
        raise FleetError(f"fleet {fleet_dir}: {e} (is `ggvision fleet up --dir {fleet_dir}` running?)") from None
