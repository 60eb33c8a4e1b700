"""The box's local log (ggvision/filter/locallog.py) and the edge dashboard that reads it during a VPN outage.

- The real Filter and Uplink under the local runtime, the Uplink's sink S3 on moto's server and IoT Core a real
  mosquitto: events flow, everything is sent (the queue drains), moto is stopped — and the edge backend still lists
  the events with their snapshots and the fire-risk history; a disk-budget/1.0 takes the log's pictures, not its
  records.
- The privacy rule with an injectable clock (no sleeps): whole hours go once they began retentionDays ago.
- Health's own budget plan over what the log reports: snapshots are asked for, records never.
- The Fire risk page (Streamlit's AppTest) on the edge backend plots the probability over time.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from dashboard_dev import edge_root
from filter_dev import NAME as FILTER
from filter_dev import filter_dev_recipe
from harness import Runtime, wait_until
from uplink_dev import NAME as UPLINK
from uplink_dev import MotoProcess, aws_test_env, drained, uplink_dev_recipe

from dashboard.data.base import EventQuery
from dashboard.data.edge import EdgeSettings, EdgeSource
from gglocal.iotcore.broker import BrokerError, MosquittoBroker, find_mosquitto
from gglocal.iotcore.pki import ensure_pki
from ggvision.component.storage import StorageFaults
from ggvision.config.base import ConfigError, parse
from ggvision.config.filter import FilterConfig, LocalLogConfig
from ggvision.config.health import DiskBudgetConfig
from ggvision.filter.locallog import EVENTS, SNAPSHOTS, LocalLog, hour_of, parse_fire
from ggvision.framebus import FrameRing
from ggvision.health.budget import plan
from ggvision.sim.scenes import SyntheticScene

AGENT = "com.ggvision.test.Agent"
CAM, SENSOR, THING, BUCKET = "loglog-1", "thermal-9", "test-thing", "ggvision-log-bucket"
PUB, SUB = "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"
AGENT_ACL = {
    "aws.greengrass.ipc.pubsub": {
        f"{AGENT}:pubsub:1": {"operations": [SUB], "resources": ["ggvision/v1/*"]},
        f"{AGENT}:pubsub:2": {"operations": [PUB], "resources": [
            f"ggvision/v1/frames/{CAM}", f"ggvision/v1/detections/{CAM}", f"ggvision/v1/detections/{SENSOR}",
            "ggvision/v1/disk/budget"]}}}


def _have_mosquitto() -> bool:
    try:
        find_mosquitto()
    except BrokerError:
        return False
    return True


def _log(root: Path, now: list[float], **cfg: Any) -> LocalLog:
    return LocalLog(root, LocalLogConfig(**cfg), THING, StorageFaults("test", logging.getLogger("test")),
                    clock=lambda: now[0])


def _end(event_id: str, start: float, snapshot: str | None = None, camera: str = CAM) -> dict[str, Any]:
    return {"schema": "event/1.0", "event_id": event_id, "camera": camera, "kind": "end", "label": "person",
            "start": start, "end": start + 3, "best": {"score": 0.8, "box": [1, 2, 30, 40], "snapshot": snapshot},
            "boxes": [[start, 1, 2, 30, 40]], "zones": [], "frame_size": [320, 240]}


@pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto not installed (apt-get install mosquitto)")
@pytest.mark.timeout(180)
def test_sent_events_stay_on_the_box_and_the_edge_lists_them_while_s3_is_down(tmp_path: Path) -> None:
    aws_test_env()
    pki = ensure_pki(tmp_path / "pki", THING)
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    moto = MotoProcess(tmp_path / "moto.log")
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    rt = Runtime(tmp_path, [AGENT], iot=True, config={AGENT: {"accessControl": AGENT_ACL}},
                 args=["--iot-endpoint", f"127.0.0.1:{broker.port}", "--iot-pki", str(tmp_path / "pki")])
    # where the product Filter keeps it by default (./filter in its work folder), which the edge backend reads
    work = rt.root / "work" / "com.ggvision.Filter" / "filter"
    filter_dev_recipe(rt.recipes, cameras={CAM: {
        "policy": "events", "classes": ["person", "car", "bicycle"], "tracker": {"maxAgeS": 1.0},
        "snapshot": {"format": "jpeg", "crop": False}}}, workDir=str(work), metricsPeriodS=0.5,
        localLog={"enabled": True, "retentionDays": 7, "fireEveryS": 10})
    uplink_dev_recipe(rt.recipes, site="s1", metricsPeriodS=0.5, backoffMaxS=1,
                      sink={"type": "s3", "bucket": BUCKET, "region": "us-east-1", "endpointUrl": moto.url,
                            "timeoutS": 1})
    scene = SyntheticScene(320, 240, 5, seed=4, objects=1)
    ring = FrameRing.create(CAM, slots=4, max_frame_bytes=320 * 240 * 3)
    try:
        rt.start(wait_for={AGENT: ("RUNNING",), FILTER: ("RUNNING",), UPLINK: ("RUNNING",)})
        a = rt.agent()
        for sub, topic in (("events", f"ggvision/v1/events/{CAM}"), ("fm", "ggvision/v1/metrics/filter"),
                           ("um", "ggvision/v1/metrics/uplink")):
            a.call("subscribe", id=sub, topic=topic)
        a.call("events", id="fm", count=1, timeout=30)  # both subscribed by their first metrics
        a.call("events", id="um", count=1, timeout=30)
        t0 = time.time()
        for i in range(15):
            img, boxes = scene.render(i)
            desc = ring.write(img, t0 + i / 5)
            a.call("publish_json", topic=f"ggvision/v1/detections/{CAM}", message={
                "schema": "detections/1.0", "camera": CAM, "sequence": desc.sequence, "timestamp": desc.timestamp,
                "frame": {"ring": desc.ring, "slot": desc.slot, "generation": desc.generation, "shape": [240, 320, 3]},
                "model": {"name": "truth", "version": "1"},
                "detections": [{"label": b.label, "class_id": b.class_id, "score": 0.9, "box": list(b.box)}
                               for b in boxes]})
        # fire risk: three results, the second within fireEveryS of the first (not kept), and a malformed one
        for dt, p in ((0, 0.12), (4, 0.5), (300, 0.93)):  # 300 s: apart on the page too
            a.call("publish_json", topic=f"ggvision/v1/detections/{SENSOR}", message={
                "schema": "detections/1.0", "camera": SENSOR, "sequence": dt, "timestamp": t0 + dt, "task": "tabular",
                "model": {"name": "fire-risk", "version": "1.1.0"}, "outputs": {"fire_probability": p,
                                                                               "label": "fire" if p > .5 else "no"}})
        a.call("publish_json", topic=f"ggvision/v1/detections/{SENSOR}", message={
            "schema": "detections/1.0", "camera": SENSOR, "timestamp": t0, "task": "tabular", "outputs": {}})
        ends = wait_until(lambda: [e["json"] for e in a.call("events", id="events", timeout=0.1)
                                   if e["json"]["kind"] == "end"], 20, what="an end event")
        assert ends[0]["best"]["snapshot"]
        # everything is sent: the snapshot is in S3, the record went to IoT Core; nothing is left in the queue
        queue = rt.root / "work" / UPLINK / "queue"
        wait_until(lambda: drained(queue), 30, interval=0.2, what="the Uplink's queue drained")
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
        assert any(k.startswith("images/") for k in keys)
        assert not (rt.root / "work" / UPLINK / "bucket").exists()  # an S3 sink: no directory bucket on the box

        moto.stop()  # the VPN is down: the technician opens the edge dashboard
        edge = EdgeSource(EdgeSettings(rt.root))
        evs = edge.events(EventQuery()).events
        assert [e.event_id for e in evs] == [e["event_id"] for e in ends]
        ev = evs[0]
        assert ev.camera == CAM and ev.snapshot and Path(ev.snapshot).is_relative_to(work / "local")
        pic = cv2.imdecode(np.frombuffer(edge.snapshot(ev) or b"", np.uint8), cv2.IMREAD_COLOR)
        assert pic is not None and pic.shape == (240, 320, 3) and pic.std() > 5
        assert len(ev.boxes) == len(ends[0]["boxes"]) >= 2
        [fire] = [v for v in edge.fire() if v.sensor == SENSOR]
        assert [p for _, p in fire.history] == [0.12, 0.93] and "local log" in fire.note

        def filter_metrics() -> dict[str, Any] | None:
            ms = [e["json"] for e in a.call("events", id="fm", timeout=0.1)]
            return next((m for m in reversed(ms) if m["disk"]["held"].get("snapshots")), None)

        lines = [ln for f in (work / "local").glob(f"*/{EVENTS}") for ln in f.read_bytes().splitlines()]
        assert len(lines) == len(ends) and all(len(ln) < 3000 for ln in lines)  # docs/filter.md's figure
        m = wait_until(filter_metrics, 10, what="the log's bytes in the Filter's metrics")
        assert m["disk"]["held"]["records"] > 0 and m["malformed"].get("detections", 0) >= 1
        # the disk budget asks for snapshots: the log's pictures go, its records stay
        a.call("publish_json", topic="ggvision/v1/disk/budget", message={
            "schema": "disk-budget/1.0", "timestamp": time.time(), "root": str(rt.root), "used_bytes": 1,
            "budget_bytes": 0, "free_bytes": 0, "reserve_bytes": 0, "low_bytes": 0, "headroom_bytes": -1,
            "level": "evicting", "evict": {"snapshots": 1 << 30}})
        wait_until(lambda: not list((work / "local").glob(f"*/{SNAPSHOTS}/*")), 10, what="pictures given up")
        after = edge.events(EventQuery()).events
        assert [e.event_id for e in after] == [e.event_id for e in evs] and edge.snapshot(after[0]) is None
        assert rt.state(FILTER) == "RUNNING"
    finally:
        ring.close()
        rt.cleanup()
        moto.stop()
        broker.stop()


def test_the_privacy_rule_deletes_whole_hours_once_they_are_retention_days_old(tmp_path: Path) -> None:
    now = [1795000000.0 - 1795000000.0 % 3600]  # the start of an hour
    log = _log(tmp_path / "local", now, retentionDays=2)
    snap = tmp_path / "s.jpg"
    snap.write_bytes(b"\xff\xd8 picture")
    for h in range(3):  # one event and its snapshot in each of three hours
        log.snapshot(f"filter:{CAM}:e{h}:snapshot-1", str(snap))
        log.event(_end(f"e{h}", now[0], f"filter:{CAM}:e{h}:snapshot-1"))
        log.event({**_end(f"x{h}", now[0]), "kind": "new"})  # only ends are kept
        now[0] += 3600
    assert len(log.hours()) == 3 and snap.stat().st_nlink == 4  # hard links: the bytes are on disk once
    lines = [json.loads(raw) for raw in (tmp_path / "local" / hour_of(now[0] - 3 * 3600) / EVENTS).read_text()
             .splitlines()]
    assert [(x["thing"], x["event"]["event_id"]) for x in lines] == [(THING, "e0")]
    h0, h1, h2 = (t for t, _ in log.hours())
    # an hour goes once it began 2 days ago, less the expiry period (so nothing is ever kept longer)
    now[0] = h0 + 2 * 86400 - 61
    assert log.expire() == 0
    now[0] += 1
    assert log.expire() == 1 and [t for t, _ in log.hours()] == [h1, h2]
    now[0] = h2 + 2 * 86400 - 60
    assert log.expire() == 2 and log.hours() == [] and snap.stat().st_nlink == 1
    assert log.held() == {"snapshots": 0, "records": 0}
    # the rule's ceiling is the configuration's: more than 7 days is refused, naming the key
    with pytest.raises(ConfigError, match=r"localLog\.retentionDays"):
        parse(FilterConfig, {"localLog": {"retentionDays": 8}})
    assert parse(FilterConfig, {}).local_log == LocalLogConfig(enabled=True, retention_days=7, fire_every_s=10)


def test_the_budget_asks_for_the_logs_pictures_and_never_its_records(tmp_path: Path) -> None:
    now = [1795000000.0]
    log = _log(tmp_path / "local", now)
    for i in range(6):
        snap = tmp_path / f"s{i}.jpg"
        snap.write_bytes(bytes(range(256)) * 40)  # ~10 kB each
        log.snapshot(f"filter:{CAM}:e{i}:snapshot-1", str(snap))
        log.event(_end(f"e{i}", now[0] + i, f"filter:{CAM}:e{i}:snapshot-1"))
        snap.unlink()  # the Filter's own copy is gone (the Uplink took it): the log's link holds the bytes
        now[0] += 1800
    held = log.held()
    assert held["snapshots"] >= 6 * 10240 and held["records"] > 0
    cfg = DiskBudgetConfig(budget_bytes=1 << 20, reserve_bytes=0, low_bytes=40_000)
    b = plan((1 << 20) + 20_000, 1 << 40, cfg, {"com.ggvision.Filter": held})
    assert b.level == "evicting" and set(b.evict) == {"snapshots"}  # records are never asked for
    freed = log.evict_snapshots(b.evict["snapshots"])
    assert freed >= b.evict["snapshots"]
    names = [f"filter%3A{CAM}%3Ae{i}%3Asnapshot-1.jpg" for i in range(6)]
    left = sorted(p.name for p in (tmp_path / "local").glob(f"*/{SNAPSHOTS}/*"))
    assert 0 < len(left) < 6 and left == names[-len(left):]  # the oldest went first
    assert log.held()["records"] == held["records"] and log.evicted == freed
    # even asked for more than there is, no record goes
    log.evict_snapshots(1 << 40)
    assert not list((tmp_path / "local").glob(f"*/{SNAPSHOTS}/*"))
    assert sum(len((h / EVENTS).read_text().splitlines()) for _, h in log.hours()) == 6


def test_the_fire_page_plots_the_probability_from_the_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from streamlit import config as st_config
    from streamlit.testing.v1 import AppTest

    root = edge_root(tmp_path)
    work = root / "work" / "com.ggvision.Filter" / "filter"
    t0 = (time.time() - 2 * 3600) // 120 * 120 + 1  # on the page's grid of 24 h / 720 points = 120 s
    now = [t0]
    log = _log(work / "local", now, fireEveryS=0)
    for i in range(40):  # one result every 150 s; a spike 10 s after the 20th falls in its plotted interval
        for dt, p in ((0, min(1.0, i / 30)), *([(10, 0.99)] if i == 20 else [])):
            now[0] = t0 + 150 * i + dt
            assert log.fire({"schema": "detections/1.0", "camera": "thermal-1", "timestamp": now[0],
                             "task": "tabular", "outputs": {"fire_probability": p, "label": "x"}})
    edge = EdgeSource(EdgeSettings(root))
    [view] = edge.fire()
    assert len(view.history) == 40 and view.history[-1][1] == 1.0 and view.history[20][1] == 0.99
    monkeypatch.setenv("GGVISION_DASHBOARD_BACKEND", "edge")
    monkeypatch.setenv("GGVISION_DASHBOARD_ROOT", str(root))
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "127.0.0.1")  # the technician on loopback
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py"),
                               default_timeout=60).run()
        at.switch_page("views/fire.py").run()
    finally:
        st_config.set_option("server.address", before)
    assert not at.exception, [e.value for e in at.exception]
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    assert any(s.get("title") == "fire probability" and s.get("mark", {}).get("type", s.get("mark")) == "line"
               for s in specs), specs
    assert any("local log" in c.value for c in at.caption)
    shutil.rmtree(root)


def test_the_docs_figures_are_the_codes() -> None:
    from dashboard.data import edge as edge_mod

    repo = Path(__file__).resolve().parents[2]
    dash, filt = ((repo / "docs" / f).read_text() for f in ("dashboard.md", "filter.md"))
    assert (edge_mod.FIRE_WINDOW_S, edge_mod.FIRE_POINTS) == (86400, 720)
    assert "last\n  24 h" in dash and "at most 720 points" in dash
    assert "| `localLog.retentionDays` | 7 | 1/24 to 7 days |" in filt and "| `localLog.fireEveryS` | 10 |" in filt
    # a week of one sensor's fire results at the default 10 s stays under the 10 MB the doc says
    now = [1795000000.0]
    with_model = {"camera": "thermal-1", "timestamp": now[0], "task": "tabular", "outputs": {
        "fire_probability": 0.123456, "label": "no-fire"}, "model": {"name": "fire-risk", "version": "1.1.0"}}
    line = len(json.dumps(parse_fire(with_model), separators=(",", ":"))) + 1
    assert line * 7 * 86400 / 10 < 10e6
