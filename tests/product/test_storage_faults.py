"""Storage conditions a site must expect (docs/reliability.md), on real filesystems: a tmpfs filled to the last
byte or remounted read-only under the Filter's pipeline and the Uplink's queue, and the shared bookkeeping
(ggvision/component/storage.py) that counts them, logs each once and shows them in the metrics."""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from fsfill import Tmpfs

from ggvision.component.storage import StorageFaults, condition_of, short_of_space
from ggvision.config.filter import parse_camera
from ggvision.filter.events import CameraPipeline
from ggvision.filter.messages import parse_detections

T0 = 1_795_000_000.0


@pytest.fixture
def fs(tmp_path: Path):
    t = Tmpfs(tmp_path / "fs", 8)
    try:
        yield t
    finally:
        t.umount()


def _det(i: int, score: float = 0.9) -> dict:
    return {"schema": "detections/1.0", "camera": "cam", "sequence": i, "timestamp": T0 + i / 5,
            "frame": {"ring": "ggv-cam-1", "slot": 0, "generation": 2, "shape": [360, 640, 3]},
            "model": {"name": "truth", "version": "1"},
            "detections": [{"label": "person", "class_id": 0, "score": score,
                            "box": [10 + 5 * i, 100, 50 + 5 * i, 200]}]}


def _walk(p: CameraPipeline, frames: range, between=None) -> list:
    img = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)  # incompressible: a real JPEG size
    out = []
    for i in frames:
        out += p.on_detections(parse_detections(_det(i, min(0.5 + 0.05 * i, 0.95))), lambda: img)
        if between is not None:
            between(i)
    return out


def _events(outs: list, kind: str) -> list[dict]:
    return [o.message for o in outs if o.topic.startswith("ggvision/v1/events/") and o.message["kind"] == kind]


def _puts(outs: list, priority: str) -> list[dict]:
    return [o.message for o in outs if o.topic == "ggvision/v1/uplink/put" and o.message["priority"] == priority]


# -- the bookkeeping -------------------------------------------------------------------------------------------

def test_conditions_are_classified_from_the_error_and_its_causes() -> None:
    assert condition_of(OSError(errno.ENOSPC, "No space left on device")) == "disk-full"
    assert condition_of(OSError(errno.EDQUOT, "Disk quota exceeded")) == "disk-full"
    assert condition_of(OSError(errno.EROFS, "Read-only file system")) == "read-only"
    assert condition_of(PermissionError(errno.EACCES, "Permission denied")) == "permission-denied"
    assert condition_of(sqlite3.OperationalError("database or disk is full")) == "disk-full"
    assert condition_of(sqlite3.OperationalError("attempt to write a readonly database")) == "read-only"
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("muxing failed") from e
    except RuntimeError as wrapped:
        assert condition_of(wrapped) == "disk-full"
    assert condition_of(ValueError("not a storage problem")) is None
    assert condition_of(sqlite3.OperationalError("no such table: items")) is None


def test_a_condition_is_logged_once_counted_always_and_cleared_by_a_good_write(
        caplog: pytest.LogCaptureFixture) -> None:
    faults = StorageFaults("com.example.X", logging.getLogger("test.storage"))
    with caplog.at_level(logging.WARNING, "test.storage"):
        for _ in range(50):
            faults.failed("snapshot", OSError(errno.ENOSPC, "No space left on device", "/data/a.jpg"))
        faults.failed("queue", sqlite3.OperationalError("database or disk is full"))
    assert [r.getMessage() for r in caplog.records if "disk-full:" in r.getMessage()] == [
        "com.example.X: storage disk-full: snapshot: ENOSPC: No space left on device (/data/a.jpg) "
        "(logged once; counted in metrics until it clears)"]
    m = faults.metrics()
    assert m["errors"] == {"disk-full": 51} and m["failed_writes"] == {"snapshot": 50, "queue": 1}
    assert m["active"]["disk-full"]["what"] == ["queue", "snapshot"] and m["active"]["disk-full"]["failures"] == 51
    faults.ok("snapshot")
    assert faults.is_active("disk-full")  # the queue has not written since
    caplog.clear()
    with caplog.at_level(logging.WARNING, "test.storage"):
        faults.ok("queue")
    assert not faults.is_active() and faults.metrics()["errors"] == {"disk-full": 51}
    assert any("disk-full cleared after" in r.getMessage() for r in caplog.records)


def test_short_of_space_keeps_a_reserve(fs: Tmpfs) -> None:
    free = fs.free_bytes()
    assert short_of_space(fs.path, 0) == ""
    assert short_of_space(fs.path, free // 2) == ""
    assert "kept for event records and alerts" in short_of_space(fs.path, free // 2, need=free // 2 + 4096)
    assert short_of_space(fs.path / "not" / "yet", free + 1)  # the nearest existing folder's filesystem


# -- the Filter's pipeline -------------------------------------------------------------------------------------

def test_a_full_disk_gives_up_the_snapshot_never_the_event_and_its_end(fs: Tmpfs) -> None:
    p = CameraPipeline(parse_camera("cam", {}), fs.path / "filter")
    fs.fill()
    outs = _walk(p, range(12)) + p.flush()
    news, ends = _events(outs, "new"), _events(outs, "end")
    assert len(news) == len(ends) == 1  # the event and its end went out
    end = ends[0]
    assert end["best"]["snapshot"] is None and not _puts(outs, "clips")
    assert [m["kind"] for m in end["media_missing"]] == ["snapshot"]
    assert end["media_missing"][0]["reason"].startswith("disk-full: ENOSPC: No space left on device")
    cloud = [m["payload"] for m in _puts(outs, "results")]
    assert [e["kind"] for e in cloud] == ["end"] and cloud[0]["media_missing"] == end["media_missing"]
    storage = p.faults.metrics()
    assert storage["errors"]["disk-full"] >= 1 and "disk-full" in storage["active"]
    assert p.metrics()["media_missing"] == {"snapshot": 1}
    assert not list((fs.path / "filter").rglob("*.tmp"))  # nothing half-written left behind
    # space returns: the next event has its picture, the condition clears
    fs.free()
    outs = _walk(p, range(100, 112)) + p.flush()
    end = _events(outs, "end")[0]
    assert "media_missing" not in end and end["best"]["snapshot"] == _puts(outs, "clips")[0]["id"]
    assert not p.faults.is_active()


def test_a_picture_that_could_not_be_written_early_goes_up_at_the_end_once_there_is_room(fs: Tmpfs) -> None:
    p = CameraPipeline(parse_camera("cam", {"events": {"snapshotAfterS": 1}}), fs.path / "filter")
    fs.fill()
    # the early snapshot (after 1 s) fails; the disk has room again before the event ends
    outs = _walk(p, range(30), between=lambda i: fs.free() if i == 20 else None)
    update = [e for e in _events(outs, "update") if e.get("media_missing")]
    assert update and update[0]["best"]["snapshot"] is None
    outs += p.flush()
    end = _events(outs, "end")[0]
    snaps = _puts(outs, "clips")
    assert len(snaps) == 1 and end["best"]["snapshot"] == snaps[0]["id"] and "media_missing" not in end
    assert Path(snaps[0]["file"]).stat().st_size > 0


def test_a_read_only_work_dir_gives_up_snapshots_and_says_why(fs: Tmpfs) -> None:
    (fs.path / "filter").mkdir()
    p = CameraPipeline(parse_camera("cam", {}), fs.path / "filter")
    fs.read_only()
    try:
        outs = _walk(p, range(12)) + p.flush()
    finally:
        fs.read_write()
    end = _events(outs, "end")[0]
    assert end["media_missing"][0]["reason"].startswith("read-only: EROFS")
    assert p.faults.metrics()["errors"] == {"read-only": p.faults.metrics()["failed_writes"]["snapshot"]}


def test_below_the_reserve_media_waits_and_records_still_go(fs: Tmpfs) -> None:
    p = CameraPipeline(parse_camera("cam", {}), fs.path / "filter", min_free_bytes=fs.free_bytes() + 1)
    outs = _walk(p, range(12)) + p.flush()
    end = _events(outs, "end")[0]
    assert "kept for event records and alerts" in end["media_missing"][0]["reason"]
    assert _puts(outs, "results") and not _puts(outs, "clips")


def test_a_refused_clip_or_snapshot_is_named_on_the_events_still_open(tmp_path: Path) -> None:
    p = CameraPipeline(parse_camera("cam", {}), tmp_path)
    _walk(p, range(6))
    event_id = p.tracker.tracks[0].data["event"].event_id
    p.media_refused("clip", (event_id,), "disk-full: ENOSPC: No space left on device (uplink queue)")
    outs = _walk(p, range(6, 8)) + p.flush()
    end = _events(outs, "end")[0]
    assert {"kind": "clip", "reason": "uplink refused it: disk-full: ENOSPC: No space left on device (uplink "
            "queue)"} in end["media_missing"]



# -- Capture's recorder ----------------------------------------------------------------------------------------

def test_the_recorder_tells_the_time_it_could_not_record_and_recovers(fs: Tmpfs) -> None:
    from ggvision.capture.recorder import RecordError, SegmentRecorder
    from ggvision.capture.synthetic import H264Encoder, h264_encoder_name
    from ggvision.sim.scenes import SyntheticScene

    if h264_encoder_name() is None:
        pytest.skip("this PyAV build has no H.264 encoder")
    fps, enc = 10, H264Encoder(160, 96, 10, gop_s=1.0)
    scene = SyntheticScene(160, 96, fps, seed=2, objects=2)
    segments, gaps, errors = [], [], []
    rec: SegmentRecorder | None = None
    for i in range(90):  # 9 s: 1 s segments; the disk is full from 2.5 s to 5.5 s
        if i == 25:
            fs.fill()
        if i == 55:
            fs.free()
        for pkt in enc.encode(scene.render(i)[0], i):
            if rec is None and enc.template is not None:
                rec = SegmentRecorder("cam", fs.path / "segments", 1.0, enc.template, segments.append,
                                      time_offset=T0, on_gap=lambda a, b, why: gaps.append((a, b, why)))
            try:
                rec.mux(pkt)  # type: ignore[union-attr]
            except RecordError as e:
                errors.append(e)
    assert rec is not None
    rec.close()
    enc.close()
    assert errors and all(condition_of(e) == "disk-full" for e in errors)
    assert gaps and {a for a, _, _ in gaps} == {gaps[0][0]}, gaps  # one gap, told as it grew
    start, end, why = gaps[-1]
    assert why.startswith("disk-full: ENOSPC")
    # full from 2.5 s: the segment begun at 2.0 s is lost; at 5.5 s there is room again, in time for the
    # segment begun at 5.0 s (its bytes were still buffered): the gap is [2.0, 5.0]
    told = [(round(a - T0, 1), round(b - T0, 1)) for a, b, _ in gaps]
    assert told[0] == (2.0, 2.5) and told[-1] == (2.0, 5.0), told
    # what was recorded and what was not tile the time: the gap ends where the next segment starts
    after = [s for s in segments if s.start >= end - 1e-6]
    assert after and after[0].start == pytest.approx(end) and all(s.path.exists() for s in after)
    before = [s for s in segments if s.end <= start + 1e-6]
    assert before and before[-1].end == pytest.approx(start, abs=0.11)
    assert not list((fs.path / "segments").glob("cam-*.ts.tmp"))


def test_a_recording_gap_is_named_by_the_events_it_covers(tmp_path: Path) -> None:
    from ggvision.filter.messages import parse_segment

    p = CameraPipeline(parse_camera("cam", {}), tmp_path)
    gap = {"schema": "segment/1.0", "camera": "cam", "start": T0 - 3, "end": T0 + 1,
           "missing": "disk-full: ENOSPC: No space left on device"}
    assert p.on_segment(parse_segment(gap)) == []
    assert p.on_segment(parse_segment({**gap, "end": T0 + 2})) == []  # the same gap, grown
    outs = _walk(p, range(12)) + p.flush()
    end = _events(outs, "end")[0]
    assert [m for m in end["media_missing"] if m["kind"] == "segment"] == [
        {"kind": "segment", "start": T0 - 3, "end": T0 + 2, "reason": "disk-full: ENOSPC: No space left on device"}]
    with pytest.raises(ValueError, match="missing"):
        parse_segment({**gap, "missing": ""})


# -- Health ----------------------------------------------------------------------------------------------------

def test_health_exports_each_components_storage_condition() -> None:
    from ggvision.health.exporter import Collected, samples, summary
    from ggvision.health.state import AppState

    state = AppState()
    faults = StorageFaults("com.ggvision.Filter", logging.getLogger("test.storage"))
    faults.failed("snapshot", OSError(errno.ENOSPC, "No space left on device"))
    state.on_message("ggvision/v1/metrics/filter", {"schema": "filter-metrics/1.0", "component": "com.ggvision.Filter",
                                                    "cameras": {}, "storage": faults.metrics()}, now=1.0)
    state.on_message("ggvision/v1/metrics/uplink", {"schema": "uplink-metrics/1.0", "component": "com.ggvision.Uplink",
                                                    "backlog_bytes": {}, "storage": StorageFaults("u").metrics()},
                     now=1.0)
    state.on_message("ggvision/v1/metrics/capture", {"schema": "capture-metrics/1.0", "cameras": {},
                                                     "storage": {"errors": {"disk-full": -1}}}, now=1.0)
    c = Collected(timestamp=time.time(), uptime_s=1.0, app=state.view(30.0, now=2.0))
    m = samples(c)
    assert (("com.ggvision.Filter", "disk-full"), 1.0) in m["ggvision_storage_degraded"]
    assert (("com.ggvision.Filter", "read-only"), 0.0) in m["ggvision_storage_degraded"]
    assert (("com.ggvision.Filter", "disk-full"), 1.0) in m["ggvision_storage_errors"]
    assert (("com.ggvision.Uplink", "disk-full"), 0.0) in m["ggvision_storage_degraded"]
    assert c.app is not None and c.app.malformed == {"ggvision/v1/metrics/capture": 1}  # a bad block is counted
    doc = summary(c, "thing", 60)
    assert list(doc["storage"]) == ["com.ggvision.Filter"]
    assert doc["storage"]["com.ggvision.Filter"]["degraded"]["disk-full"].startswith("snapshot: ENOSPC")
    # it clears: the next metrics say so, the gauge drops to 0
    faults.ok("snapshot")
    state.on_message("ggvision/v1/metrics/filter", {"schema": "filter-metrics/1.0", "component": "com.ggvision.Filter",
                                                    "cameras": {}, "storage": faults.metrics()}, now=3.0)
    m = samples(Collected(timestamp=time.time(), uptime_s=1.0, app=state.view(30.0, now=4.0)))
    assert (("com.ggvision.Filter", "disk-full"), 0.0) in m["ggvision_storage_degraded"]


# -- the Uplink's queue ----------------------------------------------------------------------------------------

def test_the_uplink_queue_on_a_full_disk_fails_with_a_storage_condition_and_recovers(fs: Tmpfs) -> None:
    from ggvision.uplink.messages import parse_put
    from ggvision.uplink.queue import UplinkQueue

    q = UplinkQueue(fs.path / "queue", ("object", "iot"))
    q.faults = StorageFaults("com.ggvision.Uplink", logging.getLogger("test.storage"))

    def record(i: int) -> dict:
        return {"schema": "uplink-put/1.0", "id": f"r{i}", "producer": "t", "priority": "results", "camera": "cam",
                "start": T0 + i, "destination": "iot", "topic": "ggvision/{thing}/results",
                "payload": {"n": i, "pad": "x" * 2000}}

    def media(i: int) -> dict:
        return {"schema": "uplink-put/1.0", "id": f"m{i}", "producer": "t", "priority": "clips", "camera": "cam",
                "start": T0 + i, "destination": "s3", "name": f"m{i}.jpg", "content_type": "image/jpeg",
                "data_b64": "AAAA" * 4096}

    assert q.put_many([parse_put(record(0), "th", 130000)]) == [("persisted", "")]
    fs.fill()
    failed = None
    for i in range(1, 400):  # SQLite's WAL may still have room for a few: sooner or later the disk says no
        try:
            q.put_many([parse_put(record(i), "th", 130000)])
        except Exception as e:  # what it raises is what the component must classify
            failed = e
            break
    assert failed is not None and condition_of(failed) == "disk-full", failed
    status, reason = q.put_many([parse_put(media(1), "th", 130000)])[0]
    assert status == "refused" and "No space left on device" in reason
    assert q.faults.metrics()["errors"].get("disk-full", 0) >= 1
    fs.free()
    assert q.put_many([parse_put(record(1000), "th", 130000)]) == [("persisted", "")]
    assert q.put_many([parse_put(media(2), "th", 130000)]) == [("persisted", "")]
    assert not q.faults.is_active("disk-full")  # the payload written again cleared it
    q.close()
