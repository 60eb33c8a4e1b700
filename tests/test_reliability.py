"""Faults a site sees, rehearsed on the real suite under `ggvision nucleus` (docs/reliability.md).

The full disk: the runtime's root (every component's work folder, the Uplink's queue and directory bucket, the
logs) on a small tmpfs that the test fills to the last byte while the real Capture → Inference → Filter →
Uplink → Health run, then frees. Every event that began while or before the disk was full gets its `end`
(published on ggvision/v1/events/{camera} and put to the Uplink, and — once there is room — stored and
uploaded), no component dies or restarts, Health shows the condition, and uploads resume. The figures this
prints are the ones docs/reliability.md reports.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from closing_dev import archived
from fsfill import Tmpfs
from harness import REPO, Runtime, wait_until
from suite_dev import scrape

CAMERA = "door"
AGENT = "com.ggvision.test.Agent"
SUB = "aws.greengrass#SubscribeToTopic"
AGENT_ACL = {"aws.greengrass.ipc.pubsub": {f"{AGENT}:pubsub:1": {"operations": [SUB], "resources": ["ggvision/v1/*"]}}}
FULL_S = 25.0  # how long the disk stays full (events begin and end meanwhile: tracker maxAgeS 1.5 s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _suite(rt: Runtime, prom_port: int, cameras: tuple[str, ...] = (CAMERA,), policy: str = "events",
           uplink: dict[str, Any] | None = None, budget: dict[str, Any] | None = None) -> dict[str, str]:
    from capture_dev import NAME as CAPTURE
    from capture_dev import capture_dev_recipe
    from filter_dev import NAME as FILTER
    from filter_dev import filter_dev_recipe
    from health_dev import NAME as HEALTH
    from health_dev import health_dev_recipe
    from inference_dev import NAME as INFERENCE
    from inference_dev import inference_dev_recipe, model_component
    from uplink_dev import NAME as UPLINK
    from uplink_dev import uplink_dev_recipe

    model = "com.ggvision.Model.SyntheticDetector"
    model_dir = REPO / "components" / model
    version = json.loads((model_dir / "manifest.json").read_text())["version"]
    model_component(rt.recipes, rt.artifacts, model, version, model_dir)
    reserve = 1 << 20  # the tmpfs is small: the free-space reserves of a real disk would stop media at once
    capture_dev_recipe(rt.recipes, cameras={cam: {
        "source": {"type": "synthetic", "width": 320, "height": 180, "fps": 10, "seed": 3 + i, "objects": 4},
        "detectFps": 5, "record": {"enabled": True, "segmentSeconds": 4, "retainS": 30 if budget is None else 3600,
                                   "dir": "segments", "minFreeBytes": reserve}} for i, cam in enumerate(cameras)},
        metricsPeriodS=1)
    inference_dev_recipe(rt.recipes, models={"detector": {"component": model, "cameras": ["*"]}}, provider="cpu",
                         threads=1, metricsPeriodS=2)
    filter_dev_recipe(rt.recipes, cameras={cam: {"policy": policy, "clipsFor": "all", "budgetKbps": 0,
                                                 "tracker": {"maxAgeS": 1.5}} for cam in cameras},
                      metricsPeriodS=1, minFreeBytes=reserve)
    uplink_dev_recipe(rt.recipes, **{"iot": {"enabled": False}, "minFreeBytes": reserve, "metricsPeriodS": 1,
                                     "backoffMaxS": 2, **(uplink or {})})
    health_dev_recipe(rt.recipes, promPort=prom_port, promBind="127.0.0.1", periodS=1, summaryPeriodS=3600,
                      hungAfterS=600, inferenceComponent=INFERENCE,
                      diskBudget=budget or {"reserveBytes": reserve, "lowBytes": 4 * reserve, "periodS": 2})
    return {"capture": CAPTURE, "inference": INFERENCE, "filter": FILTER, "uplink": UPLINK, "health": HEALTH}


def _degraded(port: int) -> dict[str, list[str]]:
    """component -> conditions Health shows as degraded (ggvision_storage_degraded == 1)."""
    out: dict[str, list[str]] = {}
    for (name, labels), v in scrape(port).items():
        if name == "ggvision_storage_degraded" and v == 1:
            d = dict(labels)
            out.setdefault(d["component"], []).append(d["condition"])
    return out


@pytest.mark.timeout(240)
def test_a_full_disk_loses_no_event_record_and_everything_recovers(tmp_path: Path) -> None:
    _full_disk(tmp_path, FULL_S)


@pytest.mark.slowfault
@pytest.mark.timeout(600)
def test_a_150_s_full_disk_as_reported_in_the_issue(tmp_path: Path) -> None:
    _full_disk(tmp_path, 150.0)


def _full_disk(tmp_path: Path, full_s: float) -> None:
    fs = Tmpfs(tmp_path / "root", 256)  # the harness puts the runtime's root at tmp_path/root
    port = _free_port()
    rt = Runtime(tmp_path, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    names = _suite(rt, port)
    t_start = time.monotonic()
    try:
        rt.start(wait_for={AGENT: ("RUNNING",)}, timeout=90)
        for name in names.values():
            rt.wait_state(name, ("RUNNING",), 90)
        a = rt.agent()
        for sub, topic in (("events", f"ggvision/v1/events/{CAMERA}"), ("puts", "ggvision/v1/uplink/put"),
                           ("segments", f"ggvision/v1/segments/{CAMERA}"), ("uplink", "ggvision/v1/metrics/uplink"),
                           ("alerts", "ggvision/v1/alerts/health")):
            a.call("subscribe", id=sub, topic=topic)

        def events(kind: str) -> list[dict[str, Any]]:
            return [e["json"] for e in a.call("events", id="events", timeout=0.05) if e["json"]["kind"] == kind]

        wait_until(lambda: events("end"), 60, interval=0.2, what="the suite's first finished event")
        bucket = rt.root / "work" / names["uplink"] / "bucket"
        wait_until(lambda: archived(bucket), 90, interval=0.2, what="the first upload")
        # -- the disk fills to the last byte --------------------------------------------------------------
        began_full = {e["event_id"] for e in events("new")}
        filled = fs.keep_full()  # whatever the suite frees meanwhile (retention, uploads) is taken again
        t_full = time.monotonic()
        shown = wait_until(lambda: _degraded(port).get("com.ggvision.Filter"), 30, interval=0.5,
                           what="Health showing the Filter cannot write")
        t_shown = time.monotonic() - t_full
        wait_until(lambda: time.monotonic() - t_full >= full_s and
                   {e["event_id"] for e in events("new")} - began_full and
                   {e["event_id"] for e in events("end")} - began_full,
                   full_s + 30, interval=0.5, what="events beginning and ending on the full disk")
        during = _degraded(port)
        fs.free()
        t_freed, freed_at = time.monotonic(), time.time()
        # -- space returns -------------------------------------------------------------------------------
        wait_until(lambda: not _degraded(port), 30, interval=0.5, what="Health showing every component writes again")
        t_clear = time.monotonic() - t_freed
        rt.client.stop_component(component_name=names["capture"])  # no new events; the open ones end
        news = {e["event_id"]: e for e in events("new")}
        ends = wait_until(lambda: (lambda got: got if set(news) <= set(got) else None)(
            {e["event_id"]: e for e in events("end")}), 30, interval=0.5, what="an end for every event")

        def end_puts() -> dict[str, dict[str, Any]]:
            return {p["json"]["payload"]["event_id"]: p["json"]
                    for p in a.call("events", id="puts", timeout=0.05)
                    if p["json"].get("priority") == "results" and p["json"]["payload"].get("kind") == "end"}

        puts = wait_until(lambda: (lambda got: got if set(news) <= set(got) else None)(end_puts()), 20,
                          interval=0.5, what="every end put to the Uplink")

        def uploaded() -> list[dict[str, Any]] | None:
            got = [i for i in archived(bucket) if i["payload"].get("kind") == "end"]
            return got if set(news) <= {i["payload"]["event_id"] for i in got} else None

        ends_up = wait_until(uploaded, 60, interval=0.5, what="every end record uploaded")
        t_uploaded = time.monotonic() - t_freed
        wait_until(lambda: [f for f in (bucket / "images").rglob("*") if f.is_file() and f.stat().st_mtime > freed_at],
                   30, interval=0.5, what="a snapshot uploaded after the disk was freed (media resumes too)")
        states = rt.states()
        metrics = scrape(port)
        alerts = [x["json"] for x in a.call("events", id="alerts", timeout=0.05)]
        gaps = [x["json"] for x in a.call("events", id="segments", timeout=0.05) if "missing" in x["json"]]
        uplink = a.call("events", id="uplink", timeout=0.05)[-1]["json"]
    finally:
        rt.cleanup()
        fs.umount()
    total_s = time.monotonic() - t_start
    # -- what a user sees -----------------------------------------------------------------------------------
    assert all(str(states[n]) == "RUNNING" for k, n in names.items() if k != "capture"), states
    restarts = {dict(k[1])["component"]: v for k, v in metrics.items() if k[0] == "ggvision_component_restarts_total"}
    assert not any(restarts.values()), restarts  # no component died or restarted
    out = rt.output()
    assert "Traceback" not in out and "Task exception was never retrieved" not in out, out[-3000:]
    full_events = set(news) - began_full
    missing = Counter(m["kind"] for e in ends.values() for m in e.get("media_missing", []))
    lost = set(news) - set(ends)
    assert not lost and set(news) <= set(puts)
    ids = Counter(i["id"] for i in ends_up)
    duplicates = sum(n - 1 for n in ids.values() if n > 1)
    assert full_events and missing, "events began on the full disk and said what media they lack"
    assert any(m["reason"].startswith("disk-full") for e in ends.values() for m in e.get("media_missing", []))
    assert gaps and all(g["missing"].startswith("disk-full") for g in gaps)  # Capture told what it could not record
    assert any(x["alert"] == "disk-low" and x["state"] == "firing" for x in alerts)  # and Health's own alert
    print(f"\nfull disk: {filled} filler bytes; full {t_freed - t_full:.0f} s; Health showed it after {t_shown:.1f} s "
          f"({shown}); degraded while full: {during}; cleared {t_clear:.1f} s after space returned; every end record "
          f"uploaded {t_uploaded:.1f} s after; events {len(news)} ({len(full_events)} began on the full disk), ends "
          f"lost {len(lost)}, media missing by kind {dict(missing)}, duplicate uploads {duplicates}; uplink "
          f"{uplink['storage']['degraded']}, topped up {fs.topped_up} bytes; "
          f"whole test {total_s:.0f} s")


# -- the disk budget in an outage --------------------------------------------------------------------------------
BUDGET_RESERVE = 16 << 20
BUDGET_LOW = 16 << 20
RESERVE_FLOOR = 1 << 20  # the components' own minFreeBytes in these rehearsals (_suite's `reserve`)
EVENT_RECORD = re.compile(r":(new|update|end)-\d+$")  # the Filter's ids of event records (contract: never evicted)


def _budget_outage(tmp_path: Path, cameras: tuple[str, ...], outage_s: float, fs_mib: int,
                   headroom_mib: int = 8) -> None:
    """The link to S3 is down (moto SIGSTOPped: connections hang like a dropped VPN) while `cameras` record and
    send every segment; a ballast file leaves the suite `headroom_mib` above its budget's disk-low line, so the
    queue grows into the budget and stays there for `outage_s`. The filesystem must never fill: the budget
    gives up video first, Capture never reaches its own floor, and no event record is given up."""
    import subprocess
    import sys
    import threading

    from uplink_dev import MotoProcess, aws_test_env

    aws_test_env()
    moto = MotoProcess(tmp_path / "moto.log")
    moto.client().create_bucket(Bucket="ggv-budget")
    fs = Tmpfs(tmp_path / "root", fs_mib)
    port = _free_port()
    rt = Runtime(tmp_path, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    names = _suite(rt, port, cameras=cameras, policy="continuous", uplink={"sink": {
        "type": "s3", "bucket": "ggv-budget", "region": "us-east-1", "endpointUrl": moto.url, "timeoutS": 2}},
        budget={"reserveBytes": BUDGET_RESERVE, "lowBytes": BUDGET_LOW, "periodS": 2})
    samples: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample() -> None:  # the filesystem's free bytes, 10 times a second, for the whole outage
        while not stop.wait(0.1):
            samples.append((time.time(), fs.free_bytes()))

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        rt.start(wait_for={AGENT: ("RUNNING",)}, timeout=90)
        for name in names.values():
            rt.wait_state(name, ("RUNNING",), 90)
        a = rt.agent()
        for sub, topic in (("events", "ggvision/v1/events/+"), ("segments", "ggvision/v1/segments/+"),
                           ("budget", "ggvision/v1/disk/budget"), ("alerts", "ggvision/v1/alerts/health")):
            a.call("subscribe", id=sub, topic=topic)
        wait_until(lambda: [e for e in a.call("events", id="events", timeout=0.05)], 60, interval=0.2,
                   what="the suite's first event")
        moto.pause()  # the VPN drops
        t_down = time.time()
        ballast = tmp_path / "root" / "ballast"  # someone else's file on the same disk
        with open(ballast, "wb") as f:
            f.truncate(0)
            left = fs.free_bytes() - (BUDGET_RESERVE + BUDGET_LOW + (headroom_mib << 20))
            chunk = b"\0" * (1 << 20)
            while left > 0:
                left -= f.write(chunk[:min(len(chunk), left)])
            f.flush()
            os.fsync(f.fileno())
        sampler.start()
        def evicting() -> bool:  # the agent returns every message since it subscribed
            return any(x["json"]["evict"] for x in a.call("events", id="budget", timeout=0.05))

        wait_until(evicting, 120, interval=0.5, what="the budget evicting")
        t_evict = time.time()
        metrics_evicting = scrape(port)
        time.sleep(max(0.0, outage_s - (time.time() - t_down)))  # the outage lasts its length: the fault itself
        stop.set()
        sampler.join()
        budgets = [x["json"] for x in a.call("events", id="budget", timeout=0.05)]
        metrics = scrape(port)
        cli = [sys.executable, "-m", "ggvision_cli", "uplink", "status", "--queue",
               str(rt.root / "work" / names["uplink"] / "queue")]
        status = subprocess.run(cli, capture_output=True, text=True, timeout=60)
        status_json = json.loads(subprocess.run([*cli, "--json"], capture_output=True, text=True, timeout=60).stdout)
        moto.resume()  # the link returns
        rt.client.stop_component(component_name=names["capture"])  # no new events; the open ones end
        events = [e["json"] for e in a.call("events", id="events", timeout=0.05)]
        news = {e["event_id"] for e in events if e["kind"] == "new"}
        ends = wait_until(lambda: (lambda got: got if news <= got else None)(
            {e["event_id"] for e in events + [x["json"] for x in a.call("events", id="events", timeout=0.05)]
             if e["kind"] == "end"}), 30, interval=0.5, what="an end for every event")
        gaps = [x["json"] for x in a.call("events", id="segments", timeout=0.05) if "missing" in x["json"]]
        alerts = [x["json"] for x in a.call("events", id="alerts", timeout=0.05)]
        from ggvision.uplink.queue import open_readonly

        db = open_readonly(rt.root / "work" / names["uplink"] / "queue")
        try:
            evicted = db.execute("SELECT id, reason, priority FROM evictions").fetchall()
        finally:
            db.close()
        states = rt.states()
    finally:
        stop.set()
        rt.cleanup()
        moto.stop()
        fs.umount()
    # -- what a user sees (figures first: docs/reliability.md quotes them) ----------------------------------------
    min_free = min(f for _, f in samples)
    low = [x for x in alerts if x["alert"] == "disk-low" and x["where"].startswith("budget:")]
    first_evict = min(b["timestamp"] for b in budgets if b["evict"])
    given = {(dict(k[1])["component"], dict(k[1])["class"]): v for k, v in metrics.items()
             if k[0] == "ggvision_disk_evicted_bytes_total" and v}
    below = sum(1 for _, f in samples if f < BUDGET_RESERVE) / max(1, len(samples))
    by_reason = Counter(r for _, r, _ in evicted)
    print(f"\nbudget outage: {len(cameras)} cameras, link down {outage_s:.0f} s, tmpfs {fs_mib} MiB; min free "
          f"{min_free / 2**20:.1f} MiB (reserve {BUDGET_RESERVE >> 20} MiB, under it {below:.0%} of the time); "
          f"gaps in recording {len(gaps)}; disk-low {first_evict - low[0]['timestamp'] if low else float('nan'):.1f} s "
          f"before the first eviction ({t_evict - t_down:.0f} s into "
          f"the outage); given up {{{', '.join(f'{c}/{k}: {v / 2**20:.1f} MiB' for (c, k), v in given.items())}}}; "
          f"queue evictions by reason {dict(by_reason)}; events {len(news)}, ends lost {len(news - ends)}; "
          f"budget messages {len(budgets)}, last level {budgets[-1]['level']}")
    # the filesystem never filled: not even the components' own last-resort floors (1 MiB here) were reached,
    # so Capture recorded every second (a floor reached would have announced a gap)
    assert min_free > RESERVE_FLOOR, f"the filesystem came within {min_free} bytes of full"
    assert not gaps, gaps[:3]
    assert low and low[0]["state"] == "firing" and low[0]["timestamp"] <= first_evict, (low, first_evict)
    assert next(iter(next(b for b in budgets if b["evict"])["evict"])) == "video"  # video goes first
    assert not [e for e in evicted if EVENT_RECORD.search(e[0]) or e[2] == 0], evicted[:5]  # records stay
    assert news and news <= ends
    assert all(str(states[n]) == "RUNNING" for k, n in names.items() if k != "capture"), states
    restarts = {dict(k[1])["component"]: v for k, v in metrics.items() if k[0] == "ggvision_component_restarts_total"}
    assert not any(restarts.values()), restarts
    out = rt.output()
    assert "Traceback" not in out and "Task exception was never retrieved" not in out, out[-3000:]
    assert metrics_evicting[("ggvision_disk_budget_level", ())] >= 1
    # Capture's local recordings went first; the queue gave up what it held of the cheapest classes (continuous
    # recording with events all the time: mostly clips), never records
    assert given.get(("com.ggvision.Capture", "video")) and any(
        v for (c, k), v in given.items() if c == "com.ggvision.Uplink" and k != "records"), given
    assert "disk budget:" in status.stdout and "given up for the disk budget:" in status.stdout, status.stdout
    assert status_json["disk_budget"]["level"] in ("low", "evicting")



@pytest.mark.timeout(300)
def test_the_disk_budget_keeps_the_disk_from_filling_in_an_outage(tmp_path: Path) -> None:
    _budget_outage(tmp_path, (CAMERA,), outage_s=60, fs_mib=160)


@pytest.mark.slowfault
@pytest.mark.timeout(1800)
def test_the_disk_budget_holds_a_20_minute_outage_at_4_cameras(tmp_path: Path) -> None:
    _budget_outage(tmp_path, ("cam1", "cam2", "cam3", "cam4"), outage_s=1200, fs_mib=256)
