"""Network faults under the running suite (docs/reliability.md): the IoT Core broker gone, and the link lost in the
middle of a deployment.

- The broker gone: the suite (Capture → Inference → Filter → Uplink, IoT Core on; Health left out: its summaries
  are one more publisher of the same path) runs under `ggvision nucleus` against a real mosquitto (the IoT Core
  stand-in, mutual TLS), which the test stops and later starts again. Messages wait in the runtime's spool (bounded
  like the nucleus' mqtt.spooler.maxSizeInBytes) and, once it is full, in the Uplink's own queue; when the broker
  returns every acknowledged record arrives on IoT Core, each topic in the order it was put. The short variant
  (20 s, an 8 KiB spool so the bound is reached) runs in `make test`; the 10-minute one (the nucleus' 2.5 MB
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
    bound = 8 << 10  # small, so that 20 s fill it and the Uplink's queue takes the rest
    _check_and_print("broker gone 20 s", _broker_gone(tmp_path, 20.0, bound), bound)


@pytest.mark.slowfault
@pytest.mark.timeout(1200)
def test_the_broker_gone_for_ten_minutes_spools_bounded_and_drains_in_order(tmp_path: Path) -> None:
    bound = 2621440  # the nucleus' mqtt.spooler.maxSizeInBytes default
    _check_and_print("broker gone 10 min", _broker_gone(tmp_path, 600.0, bound), bound)
