"""Storage faults under the running suite (docs/reliability.md): a filesystem the kernel turns read-only, and a
component's folder its processes may not write.

Both run the whole suite (Capture → Inference → Filter → Uplink with a directory bucket, and Health) from the
product's recipes under `ggvision nucleus`, one synthetic camera, and print the figures of the table.

- Read-only (EROFS): the runtime's root on ext4 in a loop image mounted `errors=remount-ro`; the test raises a
  filesystem error through the kernel, which makes the whole filesystem read-only under every open file, as a
  failing disk does on a site box. ext4 keeps it so until it is unmounted, so it ends the way it ends at a site:
  the operator stops the suite, runs e2fsck and starts it again on the same root.
- Permission denied (EACCES): the components run without the capabilities that let root ignore file modes
  (suite_dev.NO_FILE_MODE_BYPASS: as Greengrass runs them as ggc_user), and the Filter's work folder is made
  read-only by its modes (an operator's chmod/chown) for a while, then given back.
"""

from __future__ import annotations

import os
import stat
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from faults_dev import Ext4Image
from harness import Runtime, wait_until
from suite_dev import (
    AGENT,
    AGENT_ACL,
    CAMERA,
    acked,
    archived,
    bucket_objects,
    degraded,
    received,
    start_suite,
    subscribe,
    write_suite,
)
from uplink_dev import drained, free_port

FAULT_S = 20.0  # how long the fault lasts (events begin and end meanwhile: tracker maxAgeS 1.5 s)
TOPICS = {"events": f"ggvision/v1/events/{CAMERA}", "puts": "ggvision/v1/uplink/put", "acks": "ggvision/v1/uplink/acks",
          "alerts": "ggvision/v1/alerts/health"}


def _kinds(agent: Any, kind: str) -> dict[str, dict[str, Any]]:
    return {e["event_id"]: e for e in received(agent, "events") if e["kind"] == kind}


def _ready(rt: Runtime, agent: Any, bucket: Path) -> None:
    wait_until(lambda: _kinds(agent, "end"), 60, interval=0.2, what="the suite's first finished event")
    wait_until(lambda: archived(bucket), 30, interval=0.2, what="the first upload")


@pytest.mark.timeout(300)
def test_a_read_only_filesystem_keeps_the_suite_running_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    disk = Ext4Image(tmp_path / "root.img", tmp_path / "root", 256)  # the harness's root is tmp_path/root
    port = free_port()
    rt = Runtime(tmp_path, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    names = write_suite(rt, prom_port=port)
    bucket = rt.root / "work" / names["uplink"] / "bucket"
    try:
        a = start_suite(rt, names)
        subscribe(a, **TOPICS)
        _ready(rt, a, bucket)
        began_before = set(_kinds(a, "new"))
        # -- the disk fails: the kernel turns the filesystem read-only --------------------------------------
        disk.fail()
        t_fault = time.monotonic()
        assert disk.read_only()
        shown = wait_until(lambda: {c: v for c, v in degraded(port).items() if "read-only" in v}, 30, interval=0.5,
                           what="Health showing a component cannot write (read-only)")
        t_shown = time.monotonic() - t_fault
        wait_until(lambda: time.monotonic() - t_fault >= FAULT_S and set(_kinds(a, "new")) - began_before
                   and set(_kinds(a, "end")) - began_before, FAULT_S + 30, interval=0.5,
                   what="events beginning and ending on the read-only filesystem")
        during = degraded(port)
        states_during = rt.states()
        news, ends = _kinds(a, "new"), _kinds(a, "end")
        open_ids = set(news) - set(ends)
        puts = {p["id"]: p for p in received(a, "puts")}
        acks = received(a, "acks")
        alerts = received(a, "alerts")
        records = acked(acks, puts, "iot")
        media = acked(acks, puts, "s3")
        ro_ends = {e for e in ends if e not in began_before}
        # -- the operator: stop the suite, e2fsck, start it again on the same root ------------------------
        assert rt.stop() == 0
        disk.repair()
        t_repaired = time.monotonic()
        a = start_suite(rt, names)
        subscribe(a, **TOPICS)
        t_up = time.monotonic() - t_repaired
        wait_until(lambda: _kinds(a, "end") and not degraded(port), 60, interval=0.5,
                   what="a new event finished, Health clear")
        queue = rt.root / "work" / names["uplink"] / "queue"
        wait_until(lambda: records <= {i["id"] for i in archived(bucket)}, 60, interval=0.5,
                   what="every record acknowledged before the stop uploaded")
        t_records = time.monotonic() - t_repaired
        rt.client.stop_component(component_name=names["capture"])
        wait_until(lambda: drained(queue), 60, interval=0.5, what="the Uplink's queue drained")
        out = rt.output()
        up = archived(bucket)
        objects = Counter(bucket_objects(bucket))
    finally:
        rt.cleanup()
        disk.cleanup()
    # -- what a user sees -----------------------------------------------------------------------------------
    assert all(str(states_during[n]) == "RUNNING" for n in names.values()), states_during  # nothing died
    assert "Traceback" not in out and "Task exception was never retrieved" not in out, out[-3000:]
    ids = Counter(i["id"] for i in up)
    lost_records = records - set(ids)
    lost_media = {m for m in media if puts[m]["name"] not in objects}
    assert not lost_records and not lost_media, (lost_records, lost_media)
    ro_ends_up = {i["payload"]["event_id"] for i in up if i["payload"].get("kind") == "end"} & ro_ends
    duplicates = sum(n - 1 for n in ids.values() if n > 1) + sum(n - 1 for n in objects.values() if n > 1)
    assert ro_ends, "events ended on the read-only filesystem and their ends were published"
    assert any(x["alert"] == "disk-low" for x in alerts) or shown  # an operator was told
    print(f"\nread-only: Health showed it {t_shown:.1f} s after the error ({shown}); while read-only: {during}; "
          f"states {sorted(set(map(str, states_during.values())))}; {len(ro_ends)} events ended while read-only "
          f"(ends published on IPC), {len(ro_ends_up)} of their end records reached the bucket after the repair; "
          f"{len(open_ids)} events open at the stop; suite back {t_up:.1f} s after the repair, every acknowledged "
          f"record uploaded {t_records:.1f} s after; acknowledged lost: records {len(lost_records)}/{len(records)}, "
          f"media {len(lost_media)}/{len(media)}; duplicates {duplicates}; alerts {[x['alert'] for x in alerts]}")


@pytest.mark.timeout(240)
def test_a_folder_its_component_may_not_write_degrades_it_and_recovers(tmp_path: Path) -> None:
    port = free_port()
    rt = Runtime(tmp_path, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    names = write_suite(rt, prom_port=port, run_as_user=True)
    bucket = rt.root / "work" / names["uplink"] / "bucket"
    folder = rt.root / "work" / names["filter"]
    try:
        a = start_suite(rt, names)
        subscribe(a, **TOPICS)
        _ready(rt, a, bucket)
        began_before = set(_kinds(a, "new"))
        # -- the Filter's folder becomes read-only by its modes -------------------------------------------
        dirs = [folder, *(d for d in folder.rglob("*") if d.is_dir())]
        modes = {d: stat.S_IMODE(d.stat().st_mode) for d in dirs}
        for d in dirs:
            os.chmod(d, 0o555)
        t_fault = time.monotonic()
        shown = wait_until(lambda: (lambda d: d if "permission-denied" in d.get("com.ggvision.Filter", []) else None)(
            degraded(port)), 30, interval=0.5, what="Health showing the Filter may not write")
        t_shown = time.monotonic() - t_fault
        wait_until(lambda: time.monotonic() - t_fault >= FAULT_S and set(_kinds(a, "new")) - began_before
                   and set(_kinds(a, "end")) - began_before, FAULT_S + 30, interval=0.5,
                   what="events beginning and ending while the Filter may not write")
        during = degraded(port)
        for d, m in modes.items():
            os.chmod(d, m)
        t_back = time.monotonic()
        wait_until(lambda: not degraded(port), 30, interval=0.5, what="Health showing every component writes again")
        t_clear = time.monotonic() - t_back
        rt.client.stop_component(component_name=names["capture"])  # no new events; the open ones end
        news = _kinds(a, "new")
        ends = wait_until(lambda: (lambda got: got if set(news) <= set(got) else None)(_kinds(a, "end")), 30,
                          interval=0.5, what="an end for every event")
        # The ends' records reach the Uplink over IPC after the ends themselves: wait for their acks (under
        # load the queue can look drained before the last puts arrive), then for the queue.
        def end_puts_acked() -> bool:
            want = {p["id"] for p in received(a, "puts") if p.get("payload", {}).get("kind") == "end"
                    and p["payload"].get("event_id") in news}
            return len({p["payload"]["event_id"] for p in received(a, "puts") if p["id"] in want}) >= len(news) \
                and want <= {x["id"] for x in received(a, "acks")}
        wait_until(end_puts_acked, 60, interval=0.5, what="an acknowledged end record for every event")
        queue = rt.root / "work" / names["uplink"] / "queue"
        wait_until(lambda: drained(queue), 60, interval=0.5, what="the Uplink's queue drained")
        t_drained = time.monotonic() - t_back
        states = rt.states()
        puts = {p["id"]: p for p in received(a, "puts")}
        acks = received(a, "acks")
        out = rt.output()
    finally:
        rt.cleanup()
    assert all(str(states[n]) == "RUNNING" for k, n in names.items() if k != "capture"), states
    assert "Traceback" not in out and "Task exception was never retrieved" not in out, out[-3000:]
    records, media = acked(acks, puts, "iot"), acked(acks, puts, "s3")
    ids = Counter(i["id"] for i in archived(bucket))
    objects = Counter(bucket_objects(bucket))
    lost_records, lost_media = records - set(ids), {m for m in media if puts[m]["name"] not in objects}
    end_records = {i["payload"]["event_id"] for i in archived(bucket) if i["payload"].get("kind") == "end"}
    lost_ends = set(news) - end_records
    missing = Counter(m["reason"].split(":")[0] for e in ends.values() for m in e.get("media_missing", []))
    assert not lost_records and not lost_media and not lost_ends, (lost_records, lost_media, lost_ends)
    assert missing.get("permission-denied"), missing  # the events of that time say which media is missing, why
    duplicates = sum(n - 1 for n in ids.values() if n > 1) + sum(n - 1 for n in objects.values() if n > 1)
    print(f"\npermission denied on {folder.name}: Health showed it {t_shown:.1f} s after ({shown}); while denied: "
          f"{during}; cleared {t_clear:.1f} s after the modes returned, queue drained {t_drained:.1f} s after; "
          f"events {len(news)}, end records lost {len(lost_ends)}; acknowledged lost: records "
          f"{len(lost_records)}/{len(records)}, media {len(lost_media)}/{len(media)}; media missing by reason "
          f"{dict(missing)}; duplicates {duplicates}")
