"""Network faults under the running suite (docs/reliability.md): the IoT Core broker gone, and the link lost in the
middle of a deployment.

- The broker gone: the suite (Capture → Inference → Filter → Uplink, IoT Core on; Health left out: its summaries
  are one more publisher of the same path) runs under `ggvision nucleus` against a real mosquitto (the IoT Core
  stand-in, mutual TLS), which the test stops and later starts again. Messages wait in the runtime's spool (bounded
  like the nucleus' mqtt.spooler.maxSizeInBytes) and, once it is full, in the Uplink's own queue; when the broker
  returns every acknowledged record arrives on IoT Core, each topic in the order it was put. The short variant
  (15 s, an 8 KiB spool so the bound is reached) runs in `make test`; the 10-minute one (the nucleus' 2.5 MB
  spool) is @slowfault (`make faults`).
- A deployment during an outage: a local fleet (gglocal/fleet: one shared mosquitto, a device runtime following its
  thing group's deployments) whose device reaches the broker through a TcpLink; the link drops, a deployment is
  published, the link returns: the device applies it and reports it, nothing is applied twice.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from harness import Runtime, wait_until
from suite_dev import AGENT, AGENT_ACL, acked, received, start_suite, subscribe, write_suite
from uplink_dev import drained

from gglocal.iotcore.broker import BrokerError, MosquittoBroker, find_mosquitto
from gglocal.iotcore.pki import ensure_pki

THING = "test-thing"


def _have_mosquitto() -> bool:
    try:
        find_mosquitto()
        return True
    except BrokerError:
        return False


pytestmark = pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto not installed (apt-get install mosquitto)")


def _iot_items(agent: Any, sub: str) -> list[dict[str, Any]]:
    """The items of every uplink-batch/1.0 the agent got on IoT Core subscription `sub`, in arrival order."""
    out = []
    for e in agent.call("events", id=sub, timeout=0.05):
        doc = json.loads(base64.b64decode(e["b64"]))
        out += doc.get("items", [])
    return out


def _spool_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
    try:
        return int(db.execute("SELECT COALESCE(SUM(size), 0) FROM messages").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        db.close()


def _broker_gone(tmp: Path, outage_s: float, spool_bytes: int) -> dict[str, Any]:
    pki = ensure_pki(tmp / "pki", THING)
    broker = MosquittoBroker(tmp / "broker", pki)
    broker.start()
    rt = Runtime(tmp, [AGENT], iot=True, config={AGENT: {"accessControl": AGENT_ACL}},
                 args=["--iot-endpoint", f"127.0.0.1:{broker.port}", "--iot-pki", str(tmp / "pki"),
                       "--spool-max-bytes", str(spool_bytes)])
    names = write_suite(rt, ("capture", "inference", "filter", "uplink"),
                        overrides={"uplink": {"iot": {"enabled": True}}})
    spool = rt.root / "iotcore" / "spool.sqlite"
    topics = {"events": f"ggvision/{THING}/events", "results": f"ggvision/{THING}/results"}
    try:
        a = start_suite(rt, names)
        subscribe(a, puts="ggvision/v1/uplink/put", acks="ggvision/v1/uplink/acks",
                  uplink="ggvision/v1/metrics/uplink")
        for sub, topic in topics.items():
            a.call("subscribe_iot", id=sub, topic=topic)
        wait_until(lambda: _iot_items(a, "results"), 60, interval=0.2, what="the first results on IoT Core")
        # -- the broker goes ------------------------------------------------------------------------------
        broker.stop()
        t_down = time.monotonic()
        high, told = 0, None
        while time.monotonic() - t_down < outage_s:  # the outage itself; the spool and the Uplink watched meanwhile
            high = max(high, _spool_bytes(spool))
            if told is None and any(m["online"].get("iot") is False for m in received(a, "uplink")):
                told = time.monotonic() - t_down
            time.sleep(0.5)
        # -- it comes back ----------------------------------------------------------------------------------
        broker.start()
        t_up = time.monotonic()
        puts = {p["id"]: p for p in received(a, "puts")}
        want = acked(received(a, "acks"), puts, "iot")
        wait_until(lambda: want <= {i["id"] for s in topics for i in _iot_items(a, s)}, max(60, outage_s / 2),
                   interval=0.5, what="every acknowledged record on IoT Core")
        t_arrived = time.monotonic() - t_up
        rt.client.stop_component(component_name=names["capture"])
        wait_until(lambda: drained(rt.root / "work" / names["uplink"] / "queue") and _spool_bytes(spool) == 0, 60,
                   interval=0.5, what="the Uplink's queue and the runtime's spool drained")
        puts = {p["id"]: p for p in received(a, "puts")}
        acks = received(a, "acks")
        arrived = {s: [i["id"] for i in _iot_items(a, s)] for s in topics}
        states = rt.states()
        out = rt.output()
    finally:
        rt.cleanup()
        broker.stop()
    want = acked(acks, puts, "iot")
    got = Counter(i for ids in arrived.values() for i in ids)
    order_ok = {}
    for s, ids in arrived.items():  # first arrivals, against the order the Filter put them
        first = list(dict.fromkeys(ids))
        put_order = [i for i in puts if i in set(first)]
        order_ok[s] = first == put_order
    return {"lost": sorted(want - set(got)), "acked": len(want),
            "duplicates": sum(n - 1 for n in got.values() if n > 1),
            "order_ok": order_ok, "spool_high": high, "t_arrived": t_arrived, "offline_told": told,
            "states": {k: str(states[n]) for k, n in names.items()}, "out": out,
            "during": sum(1 for p in puts.values() if p.get("destination") == "iot")}


def _check_and_print(label: str, f: dict[str, Any], bound: int) -> None:
    assert not f["lost"], f["lost"]
    assert all(f["order_ok"].values()), f["order_ok"]
    assert f["spool_high"] <= bound, f"the spool held {f['spool_high']} bytes, over its {bound}-byte bound"
    assert all(s == "RUNNING" for k, s in f["states"].items() if k != "capture"), f["states"]  # (stopped last)
    assert "Traceback" not in f["out"], f["out"][-3000:]
    print(f"\n{label}: records put {f['during']}, acknowledged {f['acked']}, lost {len(f['lost'])}, duplicates "
          f"{f['duplicates']}, in order per topic {f['order_ok']}; spool high-water {f['spool_high']} of {bound} "
          f"bytes; every acknowledged record on IoT Core {f['t_arrived']:.1f} s after the broker returned; the Uplink "
          f"reported IoT offline (its spool full) after: "
          f"{'never' if f['offline_told'] is None else format(f['offline_told'], '.1f') + ' s'}")


@pytest.mark.timeout(180)
def test_the_broker_gone_for_a_while_spools_bounded_and_drains_in_order(tmp_path: Path) -> None:
    bound = 8 << 10  # small, so that 15 s fill it and the Uplink's queue takes the rest
    f = _broker_gone(tmp_path, 15.0, bound)
    _check_and_print("broker gone 15 s", f, bound)
    assert f["offline_told"] is not None  # the spool filled, the Uplink said so and kept the rest in its queue


@pytest.mark.slowfault
@pytest.mark.timeout(1200)
def test_the_broker_gone_for_ten_minutes_spools_bounded_and_drains_in_order(tmp_path: Path) -> None:
    bound = 2621440  # the nucleus' mqtt.spooler.maxSizeInBytes default
    _check_and_print("broker gone 10 min", _broker_gone(tmp_path, 600.0, bound), bound)


# -- a deployment during a network outage -------------------------------------------------------------------

THING_D, GROUP = "ggv-fault-1", "ggvision-fault"


def _device_effective(fleet_dir: Path, deployment_id: str) -> str | None:
    """The device's own record of a deployment's outcome (its root, not the network)."""
    path = fleet_dir / "devices" / THING_D / "root" / "deployments" / "group-deployment.json"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return next((e["status"] for e in state.get("effective", {}).values() if e["deploymentId"] == deployment_id), None)


@pytest.mark.timeout(240)
def test_a_deployment_during_a_network_outage_finishes_when_the_link_returns(tmp_path: Path) -> None:
    """The device reaches the fleet's broker through a TcpLink. (1) A deployment published while the link is down
    reaches the device when it returns, is applied once and reported. (2) The link drops while the device applies
    one: it finishes on the device, and its outcome reaches the fleet when the link returns. Deployed: the product's
    Uplink, then Health added (the Capture/Inference/Filter path is not what a deployment outage tests)."""
    import os
    import sys

    from faults_dev import TcpLink
    from health_dev import NAME as HEALTH
    from health_dev import health_dev_recipe
    from uplink_dev import NAME as UPLINK
    from uplink_dev import uplink_dev_recipe

    from gglocal.fleet.runner import Fleet
    from rollout.backends.local import LocalBackend

    base = tmp_path / "base" / "recipes"
    v_up = json.loads(uplink_dev_recipe(base, iot={"enabled": False}, metricsPeriodS=1).read_text())["ComponentVersion"]
    v_he = json.loads(health_dev_recipe(base, promPort=0, periodS=1, summaryPeriodS=3600,
                                        inferenceComponent="none").read_text())["ComponentVersion"]
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # components' python3
    link = TcpLink(("127.0.0.1", 0))

    class LinkedFleet(Fleet):  # the device's broker address is the link's (the later --iot-endpoint wins)
        def _launch(self, thing: str, groups: list[str]) -> Any:
            assert self.broker is not None
            link.upstream = ("127.0.0.1", self.broker.port)
            return super()._launch(thing, groups)

    fleet = LinkedFleet(tmp_path / "fleet", {THING_D: [GROUP]}, base=tmp_path / "base", settle_s=0.5,
                        extra_args=["--iot-endpoint", link.address])
    b: LocalBackend | None = None
    try:
        b = LocalBackend(fleet.start())

        def outcome(dep_id: str) -> str | None:
            st = b.device_status(THING_D, dep_id).status
            return st if st in ("SUCCEEDED", "FAILED", "REJECTED") else None

        first = b.deploy(GROUP, {UPLINK: {"componentVersion": v_up}}, name="uplink")
        assert b.client.wait_for(lambda: outcome(first.deployment_id), 120, "the first deployment") == "SUCCEEDED"
        # (1) published during the outage
        link.down()
        second = b.deploy(GROUP, {UPLINK: {"componentVersion": v_up}, HEALTH: {"componentVersion": v_he}},
                          name="add health")
        time.sleep(10)  # the outage itself: the device must not learn of the deployment meanwhile
        unseen = _device_effective(tmp_path / "fleet", second.deployment_id) is None
        link.up()
        t_up = time.monotonic()
        got2 = b.client.wait_for(lambda: outcome(second.deployment_id), 120, "the deployment after the outage")
        t2 = time.monotonic() - t_up
        # (2) the link drops while the device applies a deployment
        third = b.deploy(GROUP, {UPLINK: {"componentVersion": v_up}}, name="remove health")
        b.client.wait_for(lambda: b.device_status(THING_D, third.deployment_id).status != "QUEUED", 60,
                          "the device starting the third deployment")
        link.down()
        applied = wait_until(lambda: _device_effective(tmp_path / "fleet", third.deployment_id) in
                             ("SUCCEEDED", "FAILED"), 60, interval=0.2, what="the device finishing it offline")
        time.sleep(8)  # the outage goes on after the device finished: its report waits meanwhile
        reported_offline = outcome(third.deployment_id)
        link.up()
        t_up = time.monotonic()
        got3 = b.client.wait_for(lambda: outcome(third.deployment_id), 120, "its outcome after the outage")
        t3 = time.monotonic() - t_up
        comps = b.device_status(THING_D, "").components
        states = b.client.statuses[THING_D].get("states", {})
        log = (tmp_path / "fleet" / "devices" / THING_D / "runtime.log").read_text(errors="replace")
    finally:
        if b is not None:
            b.close()
        fleet.stop()
        link.close()
    assert unseen and got2 == "SUCCEEDED" and applied and reported_offline is None and got3 == "SUCCEEDED"
    assert HEALTH not in comps and comps.get(UPLINK) == v_up, comps
    assert "Traceback" not in log, log[-3000:]
    started = sum(1 for ln in log.splitlines() if f"{HEALTH} | state" in ln and ln.endswith("-> RUNNING"))
    assert started == 1, started  # the deployment that added Health was applied once, not again at the reconnect
    print(f"\ndeployment during an outage: published while the link was down, applied and SUCCEEDED "
          f"{t2:.1f} s after the link returned; the link dropped while the device applied one: it finished offline, "
          f"its outcome reached the fleet {t3:.1f} s after the link returned; device states {states}; "
          f"Health started {started} time(s) (applied once)")
