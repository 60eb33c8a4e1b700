"""The dashboard's data layer on both backends: the cloud one against moto's server over HTTP with items the real
ingest handler decides (and 10,000 more for paging: only Query calls on the indexes, every event once, newest
first), the edge one on a runtime root recorded from a real run, with live frames from a real frame ring."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from dashboard_dev import CAMERA, SITE, THING, CloudWorld, edge_root
from filter_dev import filter_counts

from dashboard.data.base import EventQuery, counts_series, counts_table, decode_cursor
from dashboard.data.cloud import PRESIGN_MAX_S, CloudSettings, CloudSource
from dashboard.data.edge import EdgeSettings, EdgeSource
from dashboard.media import clip_to_mp4
from dashboard.render import decode
from ggvision.contract import cloud as names
from ggvision.framebus import FrameRing

BIG = "site-big"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudWorld]:
    w = CloudWorld(Path(tmp_path_factory.mktemp("dash-cloud")))
    yield w
    w.stop()


def calls(src: CloudSource) -> list[str]:
    """Every DynamoDB operation the backend makes from now on (botocore's event hook on its own client)."""
    seen: list[str] = []
    src.table.meta.client.meta.events.register("before-call.dynamodb.*",
                                               lambda model, **_: seen.append(model.name))
    return seen


def test_cloud_events_come_from_the_real_handlers_items(world: CloudWorld) -> None:
    t0 = time.time() - 600
    world.real_event("door-a", t0)
    world.real_event("door-b", t0 + 60)
    world.real_event("door-c", t0 + 120, label="car", with_snapshot=False)
    src = CloudSource(CloudSettings.from_env(world.env))
    ops = calls(src)
    page = src.events(EventQuery(site=SITE))
    assert [e.event_id for e in page.events] == ["door-c", "door-b", "door-a"] and page.cursor is None
    c, b, _ = page.events
    assert (b.verdict, b.label, b.thing, b.camera) == (names.CONFIRMED, "person", THING, CAMERA)
    assert b.cloud_score is not None and b.cloud_score > 0.3 and len(b.boxes) == 2 and b.edge_score == 0.88
    assert c.verdict == names.UNVERIFIED and c.snapshot is None and src.snapshot_url(c) is None
    # the snapshot: bytes for drawing, and a presigned URL a browser can open for at most 5 minutes
    pic = decode(src.snapshot(b) or b"")
    assert pic is not None and pic.shape[:2] == (192, 320)
    url = src.snapshot_url(b)
    assert url and url.startswith(world.moto.url)
    expires = int(url.split("Expires=")[1].split("&")[0])
    assert time.time() < expires <= time.time() + PRESIGN_MAX_S + 1
    assert urllib.request.urlopen(url, timeout=10).read()[:2] == b"\xff\xd8"  # a JPEG
    # filters: camera (the other index), label, verdict
    assert [e.event_id for e in src.events(EventQuery(camera_key=f"{THING}/{CAMERA}", labels=("car",))).events] == [
        "door-c"]
    assert [e.event_id for e in src.events(EventQuery(site=SITE, verdict=names.CONFIRMED)).events] == [
        "door-b", "door-a"]
    assert src.events(EventQuery(site=SITE, since=t0 + 30, until=t0 + 90)).events[0].event_id == "door-b"
    assert set(ops) == {"Query"}  # the indexes, never a Scan
    assert SITE in src.sites()
    [cam] = [c for c in src.cameras(SITE) if c.camera == CAMERA]
    assert cam.latest is not None and cam.latest.event_id == "door-b"  # the newest with a snapshot


def test_cloud_counts_are_the_real_time_handlers_windows(world: CloudWorld) -> None:
    """The Filter's counts/1.0 (the real camera pipeline) through the real real-time handler into the counts table;
    the backend reads a camera's windows in a range with Query calls on the table's key only."""
    t0 = names.minute_of(time.time()) - 1200
    world.counts(THING, CAMERA, [p["payload"] for p in filter_counts(CAMERA, t0)])
    world.counts(THING, "elsewhere", [p["payload"] for p in filter_counts("elsewhere", t0)][:1])
    src = CloudSource(CloudSettings.from_env(world.env))
    ops = calls(src)
    rows = src.counts(f"{THING}/{CAMERA}", t0 - 3600, time.time())
    assert [r.start for r in rows] == [t0, t0 + 60, t0 + 120] and rows[2].end == pytest.approx(t0 + 129.8)
    assert rows[0].crossings == {"entrance": {"in": {"person": 2}, "out": {"person": 1}}}
    assert (rows[0].occupancy, rows[0].entered) == ({"hall": 1}, {"hall": 1})
    assert rows[2].crossings == {"entrance": {"in": {"person": 2}}}  # the partial interval flushed at shutdown
    assert [r.start for r in src.counts(f"{THING}/{CAMERA}", t0 + 60, t0 + 60)] == [t0 + 60]
    assert set(ops) == {"Query"}  # never a Scan
    table = counts_table(rows)
    assert {"what": "line entrance", "count": "in · person", "value": 6} in table
    assert {"what": "zone hall", "count": "most at once", "value": 1} in table
    assert {"t": float(t0), "series": "entrance out person", "value": 1} in counts_series(rows)
    assert src.counts(f"{THING}/nobody", 0, time.time()) == []
    no_table = CloudSource(CloudSettings.from_env({k: v for k, v in world.env.items()
                                                   if k != "GGVISION_DASHBOARD_COUNTS_TABLE"}))
    assert no_table.counts(f"{THING}/{CAMERA}", 0, time.time()) == []


@pytest.fixture(scope="module")
def big(world: CloudWorld) -> CloudWorld:
    """10,000 events at one site (two cameras, three labels, one a minute back from now)."""
    world.bulk(10_000, time.time() - 60, site=BIG)
    return world


def test_ten_thousand_events_first_and_next_page_are_index_queries(big: CloudWorld) -> None:
    src = CloudSource(CloudSettings.from_env(big.env))
    ops = calls(src)
    first = src.events(EventQuery(site=BIG))
    second = src.events(EventQuery(site=BIG), first.cursor)
    assert len(first.events) == len(second.events) == 50 and first.cursor and second.cursor
    assert not {e.key for e in first.events} & {e.key for e in second.events}
    starts = [e.start for e in first.events + second.events]
    assert starts == sorted(starts, reverse=True) and starts[0] > time.time() - 120  # the newest first
    assert ops == ["Query", "Query"]  # one read per page: no Scan, no count
    # a filter applied after the index read still fills whole pages, and pages do not overlap
    q = EventQuery(site=BIG, labels=("car",), camera_key=f"{THING}/gate")
    p1 = src.events(q, limit=100)
    p2 = src.events(q, p1.cursor, limit=100)
    assert len(p1.events) == len(p2.events) == 100 and not {e.key for e in p1.events} & {e.key for e in p2.events}
    assert {(e.label, e.camera) for e in p1.events + p2.events} == {("car", "gate")}
    assert p1.events[-1].start > p2.events[0].start
    assert set(ops) == {"Query"}


@pytest.mark.slowfault
def test_ten_thousand_events_page_through_the_index_each_once(big: CloudWorld) -> None:
    """The whole table page by page (~30 s on moto on a busy 2-core machine: moto reads its index per query)."""
    src = CloudSource(CloudSettings.from_env(big.env))
    ops = calls(src)
    seen: list[Any] = []
    cursor, pages = None, 0
    while True:
        page = src.events(EventQuery(site=BIG), cursor, limit=1000)
        seen.extend(page.events)
        pages += 1
        if (cursor := page.cursor) is None:
            break
        assert len(page.events) == 1000
    assert pages == 10 and len(seen) == 10_000 and len({e.key for e in seen}) == 10_000
    starts = [e.start for e in seen]
    assert starts == sorted(starts, reverse=True)
    assert set(ops) == {"Query"} and len(ops) == 10
    cars: list[Any] = []
    cursor = None
    while True:
        page = src.events(EventQuery(site=BIG, labels=("car",), camera_key=f"{THING}/gate"), cursor, limit=1000)
        cars.extend(page.events)
        if (cursor := page.cursor) is None:
            break
    assert len(cars) == len({e.key for e in cars}) == sum(1 for i in range(10_000) if i % 3 == 1 and i % 2 == 0)


def test_cloud_settings_and_cursors_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="GGVISION_DASHBOARD_TABLE and GGVISION_DASHBOARD_DATA_BUCKET"):
        CloudSettings.from_env({})
    with pytest.raises(ValueError, match="presigned URLs live 1..300 s, got 3600"):
        CloudSettings("t", "b", presign_s=3600)
    with pytest.raises(ValueError, match="not a page cursor"):
        decode_cursor("not-base64!")
    with pytest.raises(ValueError, match="GGVISION_DASHBOARD_ROOT"):
        EdgeSettings.from_env({})
    with pytest.raises(ValueError, match="is not a folder"):
        EdgeSettings.from_env({"GGVISION_DASHBOARD_ROOT": "/nonexistent/root"})


@pytest.fixture
def edge(tmp_path: Path) -> EdgeSource:
    return EdgeSource(EdgeSettings(edge_root(tmp_path)))


def test_edge_reads_the_boxs_own_store(edge: EdgeSource) -> None:
    evs = edge.events(EventQuery()).events
    assert len(evs) >= 4 and [e.start for e in evs] == sorted((e.start for e in evs), reverse=True)
    assert {e.label for e in evs} == {"person", "bicycle"} and all(e.thing == "test-thing" for e in evs)
    assert all(e.verdict is None for e in evs)  # the box keeps no cloud verdicts
    # filters: label, zone, camera, time; paging by two covers everything once
    assert {e.label for e in edge.events(EventQuery(labels=("bicycle",))).events} == {"bicycle"}
    assert {e.event_id for e in edge.events(EventQuery(zone="road")).events} == {
        e.event_id for e in evs if "road" in e.zones}
    assert edge.events(EventQuery(camera_key="test-thing/other")).events == []
    assert edge.events(EventQuery(since=evs[0].start)).events == [evs[0]]
    got, cursor = [], None
    while True:
        page = edge.events(EventQuery(), cursor, limit=2)
        got.extend(page.events)
        if (cursor := page.cursor) is None:
            break
    assert got == evs
    # the snapshot the record names, and the Capture's local recording of the event, remuxed for the browser
    ev = next(e for e in evs if e.snapshot)
    pic = decode(edge.snapshot(ev) or b"")
    assert pic is not None and pic.shape[1] > 0
    mp4 = clip_to_mp4(edge.clip(ev) or b"")
    with av.open(__import__("io").BytesIO(mp4)) as c:
        assert c.duration and c.duration > 0
    # the box: backlog and link from the Uplink's queue, versions, cameras with their zones
    [dev] = edge.devices()
    assert (dev.thing, dev.site, dev.backlog_items, dev.link) == ("test-thing", "local", 11, "partial")
    assert dev.versions["com.ggvision.Filter"] == "0.1.0" and not dev.online  # recorded long ago
    assert any("IoT Core bridge" in a for a in dev.alerts)
    [cam] = edge.cameras()
    assert cam.key == "test-thing/synthetic-1" and "road" in cam.zones and cam.latest is not None
    assert cam.status == "unknown"  # Health is not running: no Prometheus answer, and no wait for one


def test_edge_live_view_reads_the_frame_ring(edge: EdgeSource, monkeypatch: pytest.MonkeyPatch) -> None:
    """The live view attaches to this runtime's rings only: a ring of the same camera written by a process outside
    the runtime's root (another runtime on the host) is not shown."""
    with FrameRing.create("synthetic-1", slots=2, max_frame_bytes=64) as foreign:  # written from outside the root
        foreign.write(np.zeros((4, 4, 3), np.uint8), time.time())
        assert edge.live_frame("test-thing/synthetic-1") is None
    work = edge.root / "work" / "com.ggvision.Capture"
    work.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(work)  # from here on this process writes its rings as the runtime's Capture would
    assert edge.live_frame("test-thing/synthetic-1") is None  # no Capture here
    frame = np.random.default_rng(1).integers(0, 255, (72, 128, 3), np.uint8)
    with FrameRing.create("synthetic-1", slots=4, max_frame_bytes=frame.nbytes) as ring:
        ring.write(frame, time.time())
        assert np.array_equal(edge.live_frame("test-thing/synthetic-1"), frame)
        frame2 = frame[::-1].copy()
        ring.write(frame2, time.time())
        assert np.array_equal(edge.live_frame("test-thing/synthetic-1"), frame2)  # the newest, same ring
    thermal = np.full((120, 160, 1), 22.0, np.float32)
    thermal[50:60, 70:80] = 180.0
    with FrameRing.create("thermal-1", slots=2, max_frame_bytes=thermal.nbytes) as ring:
        ring.write(thermal, time.time())
        [view] = edge.fire()
    assert view.sensor == "thermal-1" and view.frame is not None and view.frame.shape == (120, 160, 1)
    assert view.features["t_max"] == pytest.approx(180.0) and view.features["frac_above_150"] > 0
    assert "not recorded" in view.note


def test_edge_unions_the_local_log_with_the_bucket_each_event_once(edge: EdgeSource) -> None:
    """An event in both the Filter's local log and the directory bucket's archive is listed once, from the log (its
    whole box history); one only in the log (not sent yet, or sent to S3) is listed with the log's snapshot; a torn
    last line (a crash mid-write) is skipped."""
    import json
    import logging
    from urllib.parse import quote

    from ggvision.component.storage import StorageFaults
    from ggvision.config.filter import LocalLogConfig
    from ggvision.filter.locallog import EVENTS, LocalLog

    before = edge.events(EventQuery()).events
    sent = next(e for e in before if e.snapshot)
    thing = before[0].thing
    log = LocalLog(edge.log_dir(), LocalLogConfig(), thing, StorageFaults("test", logging.getLogger("test")))
    boxes = [[sent.start + i / 10, 1, 2, 30, 40] for i in range(20)]
    log.event({"schema": "event/1.0", "event_id": sent.event_id, "camera": sent.camera, "kind": "end",
               "label": sent.label, "start": sent.start, "end": sent.end, "boxes": boxes, "zones": list(sent.zones),
               "best": {"score": sent.edge_score, "snapshot": None}})
    snap = edge.log_dir() / "pic.jpg"
    snap.write_bytes(edge.snapshot(sent) or b"")
    log.snapshot("filter:synthetic-1:new-1:snapshot-1", str(snap))
    log.event({"schema": "event/1.0", "event_id": "new-1", "camera": "synthetic-1", "kind": "end", "label": "person",
               "start": time.time(), "end": time.time() + 2, "boxes": [],
               "best": {"score": 0.7, "snapshot": "filter:synthetic-1:new-1:snapshot-1"}})
    with open(next(edge.log_dir().glob(f"*/{EVENTS}")), "a") as f:
        f.write(json.dumps({"t": 1, "thing": thing, "event": {"kind": "end"}})[:20])  # torn
    after = edge.events(EventQuery()).events
    assert sorted(e.key for e in after) == sorted([e.key for e in before] + [f"{thing}#new-1"])
    dup = next(e for e in after if e.key == sent.key)
    assert len(dup.boxes) == 20 and dup.label == sent.label  # the log's copy (the archive keeps 8)
    new = after[0]
    assert new.event_id == "new-1" and new.snapshot and quote("filter:synthetic-1:new-1", safe="") in new.snapshot
    assert decode(edge.snapshot(new) or b"") is not None


def test_edge_counts_are_the_filters_local_log(edge: EdgeSource) -> None:
    """The Filter's counts/1.0 puts (the real camera pipeline) in its local log (the real LocalLog, as the component
    writes it): the edge backend reads a camera's intervals in a range; another camera's and other lines are not
    its."""
    import logging

    from ggvision.component.storage import StorageFaults
    from ggvision.config.filter import LocalLogConfig
    from ggvision.filter.locallog import LocalLog

    t0 = names.minute_of(time.time()) - 7200
    now = [t0]
    log = LocalLog(edge.log_dir(), LocalLogConfig(), "test-thing", StorageFaults("t", logging.getLogger("t")),
                   clock=lambda: now[0])
    for cam in ("synthetic-1", "other"):
        for put in filter_counts(cam, t0):
            now[0] = put["payload"]["end"]
            log.counts(put["payload"])
    log.event({"schema": "event/1.0", "kind": "end", "camera": "synthetic-1"})  # other lines of the log
    rows = edge.counts("test-thing/synthetic-1", t0 - 3600, time.time())
    assert [r.start for r in rows] == [t0, t0 + 60, t0 + 120]
    assert rows[1].crossings == {"entrance": {"in": {"person": 2}, "out": {"person": 1}}}
    assert rows[1].occupancy == {"hall": 1} and rows[1].hits == {"loitering": 0, "overcrowding": 0}
    assert [r.start for r in edge.counts("test-thing/synthetic-1", t0 + 1, t0 + 120)] == [t0 + 60, t0 + 120]
    assert edge.counts("test-thing/synthetic-1", t0 + 3600, time.time()) == []
    assert edge.counts("test-thing/nobody", 0, time.time()) == []
