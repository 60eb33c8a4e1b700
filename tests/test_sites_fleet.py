"""Two sites on the local fleet, as a site would run them: `ggvision fleet up`'s runner with two devices of the
dev stage (real runtimes on one shared mosquitto, the IoT Core stand-in's Device Shadow service beside it), each
running the real Capture and Filter (synthetic cameras, 160x120 at 5 fps); a two-site file applied with
`ggvision site apply --fleet` and the rendered stage deployment sent to the devices' thing group.

From the devices' own state — Capture's rings in /dev/shm (named by camera and writer pid; the writer a process of
that device's runtime; new frames read from them), the components' `reported` shadows as the cloud sees them, the
device's configuration store — it checks that each device runs exactly its own cameras; that a camera's zone and
detect fps change live (the same component processes); that a camera is added and another removed; that a device
whose broker link is down during a change does not get it, and converges once the link returns; that a change a
device refuses keeps its cameras and shows the reason in `reported` and in `ggvision site status`; and that a stage
setting dropped from the site file leaves the devices' effective configuration (Greengrass `reset` through the
deployment).

The stage document names the product's components; the devices run their development recipes (the same code
under test names), so the test sends the rendered configuration of Capture, Filter and ShadowManager under the
names the devices run.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from faults_dev import TcpLink
from filter_dev import NAME as FILTER
from filter_dev import filter_dev_recipe
from harness import REPO, wait_until
from typer.testing import CliRunner

from gglocal.fleet.runner import Fleet
from gglocal.fleet.shadows import fleet_shadow_client
from gglocal.nucleus.shadowcloud import ShadowTopicsClient
from ggvision.config.site import load_site
from ggvision.contract import shadows
from ggvision.framebus.ring import FrameRing
from ggvision.framebus.ringfile import shm_dir
from rollout.backends.local import LocalBackend
from sites.apply import TopicsPlane, shadow_status
from sites.cli import app

GROUP = "ggvision-dev"
A, B = "ggv-dev-1", "ggv-dev-2"  # B reaches the broker through a link the test can cut
ROAD = [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]


def _camera(seed: int, fps: float = 5, zone: list[list[float]] | None = None) -> dict[str, Any]:
    return {"capture": {"source": {"type": "synthetic", "width": 160, "height": 120, "fps": 5, "seed": seed},
                        "detectFps": fps},
            "filter": {"zones": {"road": zone or ROAD}}}


@dataclass
class World:
    tmp: Path
    fleet: Fleet
    backend: LocalBackend
    link: TcpLink
    deployments: Path
    versions: dict[str, str]
    runner: CliRunner
    client: ShadowTopicsClient  # the fleet's Device Shadow service, as a tool reaches it

    def site(self, a: dict[str, Any], b: dict[str, Any], stage_config: dict[str, Any] | None = None) -> Path:
        path = self.tmp / "site.yaml"
        path.write_text(yaml.safe_dump({
            "stages": {"dev": {"thingGroup": GROUP, "configuration": stage_config or {}}},
            "sites": {"north": {"stage": "dev", "devices": {A: {"cameras": a}}},
                      "south": {"stage": "dev", "devices": {B: {"cameras": b}}}}}))
        return path

    def apply(self, site: Path) -> str:
        out = self.runner.invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(self.deployments),
                                       "--fleet", str(self.fleet.dir)])
        assert out.exit_code == 0, out.output
        return out.output

    def status(self, site: Path) -> Any:
        return self.runner.invoke(app, ["status", str(site), "--fleet", str(self.fleet.dir)])

    def deploy_stage(self, name: str) -> None:
        """The rendered stage document's configuration, under the names the devices run, to the group; waits
        until both devices applied it."""
        doc = json.loads((self.deployments / "dev.json").read_text())["components"]
        names = {CAPTURE: "com.ggvision.Capture", FILTER: "com.ggvision.Filter",
                 shadows.SHADOW_MANAGER: shadows.SHADOW_MANAGER}
        comps = {}
        for runs, product in names.items():
            spec: dict[str, Any] = {"componentVersion": self.versions[runs]}
            update = doc[product].get("configurationUpdate")
            if update:
                spec["configurationUpdate"] = update
            comps[runs] = spec
        dep = self.backend.deploy(GROUP, comps, name=name)

        def done() -> bool:
            st = [self.backend.device_status(t, dep.deployment_id) for t in (A, B)]
            failed = [s for s in st if s.status in ("FAILED", "REJECTED")]
            assert not failed, failed
            return all(s.status == "SUCCEEDED" for s in st)

        self.backend.client.wait_for(done, 120, f"deployment {name} on both devices")


def _tree(thing_proc: Any) -> set[int]:
    try:
        return {p.pid for p in psutil.Process(thing_proc.pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def rings(world: World, thing: str) -> dict[str, int]:
    """camera -> writer pid of every frame ring a process of `thing`'s runtime writes."""
    pids = _tree(world.fleet.procs[thing])
    out = {}
    for name in os.listdir(shm_dir()):
        head, _, pid = name.rpartition("-")
        if name.startswith("ggv-") and pid.isdigit() and int(pid) in pids:
            out[head[4:]] = int(pid)
    return out


def frames_flow(world: World, thing: str) -> bool:
    """Every ring of `thing` gets new frames (read as any reader does: the newest frame's sequence grows)."""
    for camera, pid in rings(world, thing).items():
        ring = FrameRing.attach(f"ggv-{camera}-{pid}")
        try:
            first = ring.latest()
            wait_until(lambda r=ring, f=first: (d := r.latest()) is not None and (f is None or d.sequence > f.sequence),
                       20, what=f"new frames from {camera} on {thing}")
        finally:
            ring.close()
    return True


def in_sync(world: World, site: Path, things: tuple[str, ...] = (A, B)) -> bool:
    """What `ggvision site status` shows: every shadow of `things` in sync (the device reports what the site file
    says)."""
    rows = [r for r in shadow_status(load_site(site), TopicsPlane(world.client)) if r.thing in things]
    return len(rows) == 2 * len(things) and all(r.state == "in sync" for r in rows)


def reported(world: World, thing: str, shadow: str) -> dict[str, Any]:
    return world.client.get(thing, shadow)["state"]["reported"]


def effective(world: World, thing: str, component: str) -> dict[str, Any]:
    """The device's configuration store (what its components get) for `component`."""
    path = world.fleet.dir / "devices" / thing / "root" / "config" / "config.json"
    return json.loads(path.read_text()).get(component, {})


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    if not Path("/usr/sbin/mosquitto").exists() and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    base = tmp_path / "base" / "recipes"

    def version(path: Path) -> str:
        return str(json.loads(path.read_text())["ComponentVersion"])

    versions = {CAPTURE: version(capture_dev_recipe(base, cameras={}, sensors={}, metricsPeriodS=1)),
                FILTER: version(filter_dev_recipe(base, cameras={}, metricsPeriodS=1)),
                shadows.SHADOW_MANAGER: shadows.SHADOW_MANAGER_VERSION}
    deployments = tmp_path / "deployments"
    shutil.copytree(REPO / "deploy" / "deployments", deployments)
    doc = json.loads((deployments / "dev.json").read_text())
    for product in ("com.ggvision.Capture", "com.ggvision.Filter"):  # the stage's document names what it configures
        doc["components"][product] = {"componentVersion": "0.1.0"}
    (deployments / "dev.json").write_text(json.dumps(doc))
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # components' python3
    link = TcpLink(("127.0.0.1", 0))

    class LinkedFleet(Fleet):  # B's broker address is the link's (the later --iot-endpoint wins)
        def _launch(self, thing: str, groups: list[str]) -> Any:
            if thing != B:
                return super()._launch(thing, groups)
            assert self.broker is not None
            link.upstream = ("127.0.0.1", self.broker.port)
            saved, self.extra_args = self.extra_args, [*self.extra_args, "--iot-endpoint", link.address]
            try:
                return super()._launch(thing, groups)
            finally:
                self.extra_args = saved

    fleet = LinkedFleet(tmp_path / "fleet", {A: [GROUP], B: [GROUP]}, base=tmp_path / "base", settle_s=0.5)
    backend = client = None
    try:
        backend = LocalBackend(fleet.start())
        (tmp_path / "client").mkdir()
        client = fleet_shadow_client(fleet.dir, tmp_path / "client")
        yield World(tmp_path, fleet, backend, link, deployments, versions, CliRunner(env={"COLUMNS": "250"}),
                    client)
    finally:
        if client is not None:
            client.close()
        if backend is not None:
            backend.close()
        fleet.stop()
        link.close()


def test_two_sites_follow_the_site_file_live(world: World) -> None:
    w = world
    # 1. Two sites, each device its own cameras; a stage setting for every device.
    north = {"n-door": _camera(1), "n-yard": _camera(2)}
    south = {"s-gate": _camera(3)}
    site = w.site(north, south, {"com.ggvision.Filter": {"metricsPeriodS": 3}})
    w.apply(site)
    w.deploy_stage("site v1")
    wait_until(lambda: in_sync(w, site), 90, interval=0.5, what="both devices in sync with the site file")
    wait_until(lambda: set(rings(w, A)) == {"n-door", "n-yard"} and set(rings(w, B)) == {"s-gate"}, 30,
               what="each device writing exactly its own cameras' rings")
    assert frames_flow(w, A) and frames_flow(w, B)
    assert effective(w, A, FILTER)["metricsPeriodS"] == 3
    pids = {t: _tree(w.fleet.procs[t]) for t in (A, B)}
    door_writer = rings(w, A)["n-door"]

    # 2. Live: n-door's zone and detect fps change; no process restarts.
    north["n-door"] = _camera(1, fps=2, zone=[[0, 0], [0.5, 0], [0.5, 1], [0, 1]])
    site = w.site(north, south, {"com.ggvision.Filter": {"metricsPeriodS": 3}})
    w.apply(site)
    wait_until(lambda: in_sync(w, site), 60, interval=0.5, what="the zone and fps change reported")
    cap = reported(w, A, shadows.CAPTURE)["cameras"]["n-door"]
    filt = reported(w, A, shadows.FILTER)["cameras"]["n-door"]
    assert cap["detectFps"] == 2 and filt["zones"]["road"][1] == [0.5, 0], (cap, filt)
    assert rings(w, A)["n-door"] == door_writer and {t: _tree(w.fleet.procs[t]) for t in (A, B)} == pids

    # 3. A camera added and another removed.
    north = {"n-door": north["n-door"], "n-porch": _camera(4)}
    site = w.site(north, south, {"com.ggvision.Filter": {"metricsPeriodS": 3}})
    w.apply(site)
    wait_until(lambda: set(rings(w, A)) == {"n-door", "n-porch"}, 30, what="n-porch added, n-yard removed")
    wait_until(lambda: in_sync(w, site), 60, interval=0.5, what="the add and remove reported")
    assert rings(w, A)["n-door"] == door_writer and {t: _tree(w.fleet.procs[t]) for t in (A, B)} == pids

    # 4. B's link is down during a change to both sites: A converges, B does not, until the link returns.
    w.link.down()
    north["n-door"] = _camera(1, fps=3, zone=north["n-door"]["filter"]["zones"]["road"])
    south = {"s-gate": _camera(3, fps=2), "s-dock": _camera(5)}
    site = w.site(north, south, {"com.ggvision.Filter": {"metricsPeriodS": 3}})
    w.apply(site)
    wait_until(lambda: in_sync(w, site, (A,)), 60, interval=0.5, what="the online device converging")
    assert set(rings(w, B)) == {"s-gate"} and not in_sync(w, site, (B,))  # B has not seen it
    w.link.up()
    t_up = time.monotonic()
    wait_until(lambda: in_sync(w, site), 90, interval=0.5, what="B converging after its link returned")
    converged = time.monotonic() - t_up
    wait_until(lambda: set(rings(w, B)) == {"s-gate", "s-dock"}, 30, what="s-dock running on B")
    assert frames_flow(w, B)
    assert {t: _tree(w.fleet.procs[t]) for t in (A, B)} == pids

    # 5. A change the device refuses (written past the site file's checks): the cameras stay, the reason shows.
    w.client.update(B, shadows.CAPTURE, json.dumps(
        {"state": {"desired": {"cameras": {"s-bad": {"source": {"type": "rtsp"}}}}}}).encode())

    def refused() -> Any:
        out = w.status(site)
        return out if out.exit_code == 1 and f"{B} {shadows.CAPTURE}: refused: " in out.output else None

    out = wait_until(refused, 60, interval=0.5, what="the refusal in site status")
    assert "s-bad" in out.output and "url" in out.output, out.output
    now = reported(w, B, shadows.CAPTURE)
    assert "s-bad" in now["error"]["message"] and set(now["cameras"]) == {"s-gate", "s-dock"}, now
    assert set(rings(w, B)) == {"s-gate", "s-dock"}

    # 6. A stage setting dropped from the site file: reset through the deployment, the devices lose it.
    site = w.site(north, south)
    assert "reset /metricsPeriodS" in w.apply(site)
    w.deploy_stage("site v2")
    for thing in (A, B):
        assert effective(w, thing, FILTER)["metricsPeriodS"] == 1, thing  # the recipe's default again
    for thing in (A, B):
        log = (w.fleet.dir / "devices" / thing / "runtime.log").read_text(errors="replace")
        assert "Traceback" not in log, log[-3000:]
    print(f"\ntwo sites on the fleet: B converged {converged:.1f} s after its link returned; live changes kept "
          f"the {len(pids[A])}+{len(pids[B])} component processes")
