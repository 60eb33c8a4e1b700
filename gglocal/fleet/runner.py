"""`ggvision fleet up`: one shared mosquitto + N `ggvision nucleus` devices following their groups' deployments.

Devices are named ``<prefix>-<stage>-<i>`` and belong to the stage's thing group (``<group prefix><stage>``);
with ``canary`` the first k devices of a stage are also in ``<group prefix><stage>-canary``. Each device has its
own root, thing name and client certificate (same fleet CA), publishes its IoT Core messages (Health's
health-summary/1.0 on ggvision/{thing}/metrics) to the shared broker and follows the retained deployment documents
of its groups and of its own thing there, as a Greengrass core device does (gglocal/nucleus/groupdeploy.py).
The IoT Core stand-in's Device Shadow service runs on the same broker (shadows.py): the devices' ShadowManager
syncs their shadows with it, and `ggvision site apply --fleet` writes their desired state there.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from ..iotcore.broker import MosquittoBroker
from .layout import FleetInfo, check_name, controller_pki, device_pki
from .shadows import FleetShadows


def plan_devices(groups: dict[str, int], canary: dict[str, int], prefix: str = "ggv",
                 group_prefix: str = "ggvision-") -> dict[str, list[str]]:
    devices: dict[str, list[str]] = {}
    for stage, n in groups.items():
        k = canary.get(stage, 0)
        for i in range(1, n + 1):
            thing = check_name(f"{prefix}-{stage}-{i}", "thing")
            devices[thing] = [f"{group_prefix}{stage}"] + ([f"{group_prefix}{stage}-canary"] if i <= k else [])
    return devices


class Fleet:
    def __init__(self, fleet_dir: Path, devices: dict[str, list[str]], base: Path | None = None,
                 settle_s: float = 1.0, extra_args: list[str] | None = None) -> None:
        self.dir = Path(fleet_dir).resolve()
        self.devices = devices
        self.base = base
        self.settle_s = settle_s
        self.extra_args = extra_args or []
        self.broker: MosquittoBroker | None = None
        self.shadows: FleetShadows | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.info: FleetInfo | None = None

    def start(self) -> FleetInfo:
        self.dir.mkdir(parents=True, exist_ok=True)
        store = self.dir / "store"
        for sub in ("recipes", "artifacts"):
            (store / sub).mkdir(parents=True, exist_ok=True)
        if self.base is not None:  # components every deployment may name (Health, Inference, ...)
            for sub in ("recipes", "artifacts"):
                if (self.base / sub).is_dir():
                    shutil.copytree(self.base / sub, store / sub, dirs_exist_ok=True)
        pki = controller_pki(self.dir)
        self.broker = MosquittoBroker(self.dir / "broker", pki)
        self.broker.start()
        self.shadows = FleetShadows(self.dir / "cloud-shadows", self.broker.port, pki)
        try:
            self.shadows.start()  # before the devices: their first shadow sync finds the cloud answering
        except Exception:
            self.broker.stop()
            raise
        self.info = FleetInfo(dir=str(self.dir), port=self.broker.port, devices=self.devices, store=str(store))
        self.info.save()
        for thing, groups in self.devices.items():
            self.procs[thing] = self._launch(thing, groups)
        return self.info

    def _launch(self, thing: str, groups: list[str]) -> subprocess.Popen[bytes]:
        ddir = self.dir / "devices" / thing
        pki = device_pki(self.dir, thing)
        cmd = [sys.executable, "-m", "gglocal.cli", "nucleus", "--root", str(ddir / "root"), "--thing-name", thing,
               "--iot-endpoint", f"127.0.0.1:{self.broker.port if self.broker else 0}", "--iot-pki", str(pki),
               "--thing-groups", ",".join(groups), "--settle", str(self.settle_s), "--no-dashboard",
               *self.extra_args]
        log = open(ddir / "runtime.log", "ab")  # noqa: SIM115 - lives as long as the process
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(os.environ))

    def alive(self) -> dict[str, int | None]:
        return {t: p.poll() for t, p in self.procs.items()}

    def stop(self, timeout: float = 60.0) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.shadows is not None:
            self.shadows.stop()
        if self.broker is not None:
            self.broker.stop()

    def run_until_signal(self) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        try:
            while not stop.wait(2.0):  # process liveness has no event to wait on
                for thing, code in self.alive().items():
                    if code is not None:
                        print(f"fleet: device {thing} exited with {code}; see {self.dir}/devices/{thing}/runtime.log",
                              file=sys.stderr)
                        self.procs[thing] = self._launch(thing, self.devices[thing])
        finally:
            self.stop()
