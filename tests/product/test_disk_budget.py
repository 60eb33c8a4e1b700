"""The suite's disk budget, part by part: Health's count and decision, the disk-low alert that comes first, and
what each holder gives up (the Uplink's queue by class, Capture's oldest segments). The whole suite under the
budget, on a filling disk: tests/test_reliability.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from ggvision.capture.recorder import evict_oldest, recorded
from ggvision.config.base import parse
from ggvision.config.health import DiskBudgetConfig, HealthConfig
from ggvision.contract import disk
from ggvision.health.budget import plan, suite_bytes
from ggvision.health.state import AppView
from ggvision.health.watchdog import Watchdogs
from ggvision.uplink.messages import PutRequest
from ggvision.uplink.queue import UplinkQueue

MIB = 1 << 20


def _cfg(**kw: int) -> DiskBudgetConfig:
    return parse(HealthConfig, {"diskBudget": kw}).disk_budget


def test_levels_and_eviction_order() -> None:
    cfg = _cfg(budgetBytes=100 * MIB, reserveBytes=10 * MIB, lowBytes=20 * MIB)
    held = {"capture": {"video": 30 * MIB}, "uplink": {"video": 25 * MIB, "clips": 40 * MIB, "snapshots": 5 * MIB,
                                                       "results": 1 * MIB, "records": 50 * MIB}}
    ok = plan(70 * MIB, 500 * MIB, cfg, held)
    assert (ok.level, ok.headroom, ok.evict) == ("ok", 30 * MIB, {})
    low = plan(85 * MIB, 500 * MIB, cfg, held)  # under lowBytes of headroom: disk-low, nothing given up yet
    assert (low.level, low.evict) == ("low", {})
    over = plan(150 * MIB, 500 * MIB, cfg, held)  # 50 MiB over: back to half of lowBytes -> 60 MiB
    assert over.level == "evicting" and over.headroom == -50 * MIB
    # video first (the larger holder's share: the two hold the same inodes), then clips; records never
    assert over.evict == {"video": 30 * MIB, "clips": 30 * MIB}
    all_of_it = plan(400 * MIB, 500 * MIB, cfg, held)
    assert all_of_it.evict == {"video": 30 * MIB, "clips": 40 * MIB, "snapshots": 5 * MIB, "results": 1 * MIB}
    # without a budget of its own only the filesystem's reserve counts
    free_only = plan(10**12, 5 * MIB, _cfg(reserveBytes=10 * MIB, lowBytes=20 * MIB), held)
    assert free_only.headroom == -5 * MIB and free_only.evict == {"video": 15 * MIB}


def test_suite_bytes_counts_a_hard_linked_file_once(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "seg.ts").write_bytes(os.urandom(MIB))
    os.link(tmp_path / "a" / "seg.ts", tmp_path / "b" / "queued.ts")  # the Uplink's link to Capture's segment
    (tmp_path / "b" / "other").write_bytes(os.urandom(MIB // 2))
    n = suite_bytes(tmp_path)
    assert 1.5 * MIB <= n < 1.6 * MIB


def test_disk_low_fires_before_the_first_eviction() -> None:
    cfg = HealthConfig(prom_port=0)
    dogs = Watchdogs(0.0)
    app = AppView({}, {}, {}, {}, False)
    b = cfg.disk_budget
    seen = []
    for t, used in enumerate((0, b.low_bytes // 2, b.low_bytes + 2)):  # free falls: ok, low, evicting
        budget = plan(0, b.reserve_bytes + b.low_bytes - used + 1, b, {"uplink": {"video": 10 * MIB}})
        events, _ = dogs.evaluate(cfg, app, None, None, True, now=float(t), budget=budget, budget_root="/gg")
        seen.append((budget.level, [(e["alert"], e["state"]) for e in events]))
    assert seen == [("ok", []), ("low", [("disk-low", "firing")]), ("evicting", [])]
    back = plan(0, b.reserve_bytes + 2 * b.low_bytes, b, {})
    events, _ = dogs.evaluate(cfg, app, None, None, True, now=5.0, budget=back, budget_root="/gg")
    assert [(e["alert"], e["state"], e["where"]) for e in events] == [("disk-low", "resolved", "budget:/gg")]


def _put(q: UplinkQueue, tmp: Path, rid: str, name: str, prio: int, size: int, dest: str = "s3") -> None:
    if dest == "iot":
        q.put_many([PutRequest(rid, "t", prio, "door", time.time(), time.time(), "iot", topic="ggvision/x/results",
                               payload=b"{}", lanes=("iot",))])
        return
    src = tmp / f"{rid}.src"
    src.write_bytes(os.urandom(size))
    kind, _, base = name.partition("/")
    q.put_many([PutRequest(rid, "t", prio, "door", time.time(), time.time(), "s3", file=str(src), name=base,
                           content_type="image/jpeg" if kind == "images" else "video/mp2t", kind=kind)])


def test_queue_gives_up_a_class_oldest_first_and_never_records(tmp_path: Path) -> None:
    pytest.importorskip("sqlite3")
    q = UplinkQueue(tmp_path / "q", ("object", "iot"))
    try:
        for i in range(3):
            _put(q, tmp_path, f"seg{i}", "segments/s.ts", 3, 1000)
        _put(q, tmp_path, "clip", "clips/c.ts", 2, 500)
        _put(q, tmp_path, "snap", "images/i.jpg", 2, 200)
        _put(q, tmp_path, "rec", "", 1, 0, dest="iot")
        held = q.class_bytes()
        assert held["video"] == 3000 and held["clips"] == 500 and held["snapshots"] == 200 and held["records"] > 0
        gone = q.evict_class("video", 1500)  # the two oldest segments
        assert [e.id for e in gone] == ["seg0", "seg1"] and all(e.reason == "budget" for e in gone)
        assert q.class_bytes()["video"] == 1000 and q.stats()["budget_evicted_bytes"] == {"video": 2000}
        with pytest.raises(ValueError, match="not a class"):
            q.evict_class(disk.RECORDS, 10)
        assert len(list((tmp_path / "q" / "payloads").iterdir())) == 3  # the payload files went with the rows
    finally:
        q.close()


def test_capture_deletes_its_oldest_segments_across_cameras(tmp_path: Path) -> None:
    now = time.time()
    for i, cam in enumerate(("a", "b", "a", "b")):
        p = tmp_path / f"{cam}-{i}.ts"
        p.write_bytes(b"x" * 100)
        os.utime(p, (now - 100 + i, now - 100 + i))
    (tmp_path / ".a-9.ts.tmp").write_bytes(b"x" * 100)  # being written: never touched
    places = [(tmp_path, "a"), (tmp_path, "b")]
    assert sum(s for _, s, _ in recorded(places)) == 400
    assert evict_oldest(places, 150) == (2, 200)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a-9.ts.tmp", "a-2.ts", "b-3.ts"]


def test_malformed_budget_messages_say_what() -> None:
    with pytest.raises(ValueError, match="schema"):
        disk.parse_evict({"evict": {}})
    with pytest.raises(ValueError, match="evict.records"):
        disk.parse_evict({"schema": disk.SCHEMA, "evict": {"records": 5}})
    with pytest.raises(ValueError, match="evict.video"):
        disk.parse_evict({"schema": disk.SCHEMA, "evict": {"video": -1}})
    with pytest.raises(ValueError, match="disk.held.bogus"):
        disk.parse_held({"held": {"bogus": 1}})
