"""com.ggvision.Uplink without the network: request validation, the durable queue (idempotency, quota eviction
order, retention, corrupt payloads), priorities and the bandwidth cap with the directory bucket, the status CLI."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ggvision.config.base import parse, validator
from ggvision.config.uplink import UplinkConfig
from ggvision.uplink import PRIORITIES
from ggvision.uplink.dirsink import DirectorySink
from ggvision.uplink.engine import Engine
from ggvision.uplink.messages import PutRequest, Refused, parse_put
from ggvision.uplink.msgsinks import FunctionSink
from ggvision.uplink.queue import UplinkQueue
from ggvision_cli import app as cli_app

THING = "thing-1"
T0 = 1795000000.0
validate = validator(UplinkConfig)  # what the component gives ComponentApp


def put_msg(i: int, priority: str = "clips", size: int = 1000, camera: str = "door", **kw: Any) -> dict[str, Any]:
    data = hashlib.sha256(f"{i}".encode()).digest() * (size // 32 + 1)
    return {"schema": "uplink-put/1.0", "id": f"t:{camera}:{i}", "producer": "test", "priority": priority,
            "camera": camera, "start": T0 + i, "end": T0 + i + 4, "destination": "s3",
            "data_b64": base64.b64encode(data[:size]).decode(), "name": f"evt-{i}.jpg", "content_type": "image/jpeg",
            "metadata": {"event_ids": [f"e{i}"], "labels": {"person": 1}}, **kw}


def req(i: int, priority: str = "clips", size: int = 1000, **kw: Any) -> PutRequest:
    return parse_put(put_msg(i, priority, size, **kw), THING, 130000)


def test_configuration_errors_name_the_key() -> None:
    assert validate({}) is None and parse(UplinkConfig, {}).retention_days == 7
    for bad, key in (({"bogus": 1}, "bogus"), ({"sink": {"type": "ftp"}}, "sink.type"),
                     ({"sink": {"type": "s3"}}, "sink.bucket"),
                     ({"sink": {"type": "s3", "bucket": "B_x"}}, "sink.bucket"),
                     ({"sink": {"type": "directory", "bucket": "x"}}, "bucket"), ({"quotaBytes": 10}, "quotaBytes"),
                     ({"multipartPartBytes": 1024}, "multipartPartBytes"), ({"site": "a/b"}, "site"),
                     ({"cameraBandwidthKbps": {"door": -1}}, "cameraBandwidthKbps.door"),
                     ({"sqs": {"enabled": True}}, "sqs.queueUrl"), ({"retentionDays": 0}, "retentionDays"),
                     ({"sink": {"type": "s3", "bucket": "bkt", "endpointUrl": "ftp://x"}}, "sink.endpointUrl")):
        reason = validate(bad)
        assert reason and key in reason, (bad, reason)


def test_requests_are_validated_at_the_boundary(tmp_path: Path) -> None:
    ok = put_msg(1)
    cases = [({**ok, "schema": "uplink-put/2.0"}, "schema"), ({**ok, "priority": "urgent"}, "priority"),
             ({**ok, "camera": "../x"}, "camera"), ({**ok, "start": "yesterday"}, "start"),
             ({**ok, "end": T0 - 10}, "end"), ({**ok, "destination": "ftp"}, "destination"),
             ({**ok, "name": "a/b.jpg"}, "name"), ({**ok, "data_b64": "%%%"}, "data_b64"),
             ({**ok, "file": "/x"}, "exactly one"), ({**ok, "sha256": "XYZ"}, "sha256"),
             ({**ok, "metadata": {"k": "v" * 3000}}, "metadata"),
             ({k: v for k, v in ok.items() if k != "data_b64"} | {"file": "rel/path"}, "absolute"),
             ({**ok, "destination": "iot", "topic": "other/topic", "payload": {}}, "topic"),
             ({**ok, "destination": "iot", "topic": "ggvision/{thing}/results", "payload": [1]}, "payload"),
             ({**ok, "destination": "iot", "topic": "ggvision/{thing}/results", "payload": {"x": "y" * 200000}},
              "IoT Core"), ("text", "object")]
    for msg, word in cases:
        with pytest.raises(Refused, match=word):
            parse_put(msg, THING, 130000)
    r = parse_put({**ok, "destination": "iot", "topic": "ggvision/{thing}/events", "payload": {"a": 1}}, THING, 130000)
    assert r.topic == f"ggvision/{THING}/events" and r.payload == b'{"a":1}'


def test_put_is_idempotent_durable_and_refuses_bad_files(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q")
    src = tmp_path / "clip.ts"
    src.write_bytes(b"x" * 5000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    file_msg = {k: v for k, v in put_msg(2).items() if k != "data_b64"}
    reqs = [req(1), req(1), parse_put({**file_msg, "file": str(src), "sha256": good, "move": True}, THING, 1),
            parse_put({**file_msg, "id": "missing", "file": str(tmp_path / "nope")}, THING, 1),
            parse_put({**file_msg, "id": "badsum", "file": str(tmp_path / "clip.ts"), "sha256": "0" * 64}, THING, 1)]
    out = q.put_many(reqs)
    assert out[0] == ("persisted", "") and out[1] == ("duplicate", "") and out[2] == ("persisted", "")
    assert out[3][0] == "refused" and "does not exist" in out[3][1]
    assert out[4][0] == "refused" and "sha256" in out[4][1]  # the moved file is gone: it is missing by then
    assert not src.exists()  # moved: in the store, not copied
    q.close()
    q = UplinkQueue(tmp_path / "q")  # a new process sees exactly what was acknowledged
    assert q.put_many([req(1)]) == [("duplicate", "")]
    items = q.head("object", 10)
    assert [it.id for it in items] == ["t:door:1", "t:door:2"] and all(q.verify(it) == "" for it in items)
    assert not list((tmp_path / "q" / "staging").iterdir())
    q.close()


def test_quota_evicts_video_then_clips_then_results_never_more_important(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q", quota_bytes=10_000)
    # 2 items of each priority, 1000 bytes each, oldest first: alerts a0 a1, results r0 r1, clips c0 c1, video v0 v1
    order = []
    for p in PRIORITIES:
        for _ in range(2):
            r = req(len(order), p, camera=p[0] + "cam")
            order.append((p, r.id))
            assert q.put_many([r]) == [("persisted", "")]
    assert q.bytes_queued == 8000
    # 4000 more bytes of results: evicts both videos (oldest first) and nothing else
    assert q.put_many([req(100, "results", 2000), req(101, "results", 2000)]) == [("persisted", "")] * 2
    evicted = [e for _, e in q.unreported()]
    assert [(PRIORITIES[e.priority], e.reason) for e in evicted] == [("video", "quota"), ("video", "quota")]
    assert [e.id for e in evicted] == [order[6][1], order[7][1]]
    # an alert needing 3000 bytes: clips go (oldest first), then the oldest result
    assert q.put_many([req(102, "alerts", 3000)]) == [("persisted", "")]
    evicted = [e for _, e in q.unreported()][2:]
    assert [(PRIORITIES[e.priority], e.id) for e in evicted] == [("clips", order[4][1]), ("clips", order[5][1]),
                                                                 ("results", order[2][1])]
    # video cannot push out anything more important: refused, and the refusal says why
    status, reason = q.put_many([req(103, "video", 2000)])[0]
    assert status == "refused" and "over quota" in reason
    stats = q.stats()
    assert stats["evicted"] == {"alerts": 0, "results": 1, "clips": 2, "video": 2}
    assert stats["backlog_items"]["alerts"] == 3 and stats["evicted_by_reason"] == {"quota": 5}
    assert q.bytes_queued <= 10_000 == q.quota_bytes
    n = q.unreported()[-1][0]
    q.mark_reported(n)
    assert q.unreported() == []
    q.close()


def test_retention_deletes_old_items_whatever_their_priority(tmp_path: Path) -> None:
    now = [T0 + 100]
    q = UplinkQueue(tmp_path / "q", retention_s=50, clock=lambda: now[0])
    q.put_many([req(1, "alerts"), req(80, "video")])  # created = start: T0+1 and T0+80
    evicted = q.expire()
    assert [(e.id, e.reason) for e in evicted] == [("t:door:1", "retention")]
    assert [it.id for it in q.head("object", 5)] == ["t:door:80"]
    now[0] += 100
    assert len(q.expire()) == 1 and q.stats()["evicted"]["video"] == 1 and q.bytes_queued == 0
    q.close()


class Recorder(DirectorySink):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.keys: list[str] = []

    def put(self, item: Any, key: str, *args: Any, **kw: Any) -> None:
        super().put(item, key, *args, **kw)
        self.keys.append(key)


def _engine(tmp_path: Path, q: UplinkQueue, **cfg: Any) -> tuple[Engine, Recorder, list[bytes]]:
    sink = Recorder(tmp_path / "bucket")
    sent: list[bytes] = []
    iot = FunctionSink("iot", lambda t, b: sent.append(b))
    e = Engine(q, parse(UplinkConfig, {"site": "s1", "archive": {"enabled": False}, **cfg}), THING, sink, {"iot": iot})
    return e, sink, sent


def test_priority_order_corrupt_payloads_are_dropped_reported_and_the_queue_goes_on(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q")
    q.put_many([req(i, p) for i, p in enumerate(["video", "clips", "results", "alerts", "video", "clips"])])
    items = {it.id: it for it in q.head("object", 10)}
    items["t:door:4"].path.write_bytes(b"short")  # truncated  # type: ignore[union-attr]
    with open(items["t:door:1"].path, "r+b") as f:  # type: ignore[arg-type]
        f.seek(10)
        f.write(b"\xff\xfe")  # a bit flip: same size
    e, sink, _ = _engine(tmp_path, q)
    e.start()
    try:
        from harness import wait_until

        wait_until(lambda: not q.head("object"), 10, what="an empty queue")
    finally:
        e.stop()
    assert [k.rsplit("/", 1)[1] for k in sink.keys] == ["evt-3.jpg", "evt-2.jpg", "evt-5.jpg", "evt-0.jpg"]
    dropped = {ev.id: ev for _, ev in q.unreported()}
    assert set(dropped) == {"t:door:1", "t:door:4"} and {ev.reason for ev in dropped.values()} == {"corrupt"}
    assert "truncated" in dropped["t:door:4"].detail and "hashes to" in dropped["t:door:1"].detail
    # what arrived is exactly what was produced, with its metadata alongside
    key = sink.keys[0]
    body = (tmp_path / "bucket" / key).read_bytes()
    assert body == base64.b64decode(put_msg(3, "alerts")["data_b64"])
    assert key == "images/s1/thing-1/door/2026/11/18/" + time.strftime("%H", time.gmtime(T0 + 3)) + "/evt-3.jpg"
    meta = json.loads((tmp_path / "bucket" / (key + ".metadata.json")).read_text())
    assert meta["metadata"]["sha256"] == hashlib.sha256(body).hexdigest() and meta["metadata"]["event-ids"] == '["e3"]'
    assert q.stats()["backlog_items"] == dict.fromkeys(PRIORITIES, 0)
    q.close()


def test_messages_are_batched_per_topic_and_camera_in_order_within_128kb(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q")
    msgs = []
    for i in range(60):
        cam, topic = ("door", "results") if i % 3 else ("yard", "events")
        payload = {"n": i, "pad": "x" * 5000}
        msgs.append(parse_put({**put_msg(i, "results", camera=cam), "destination": "iot",
                               "topic": f"ggvision/{{thing}}/{topic}", "payload": payload}, THING, 130000))
    q.put_many(msgs)
    e, _, sent = _engine(tmp_path, q)
    e.start()
    try:
        from harness import wait_until

        wait_until(lambda: sum(json.loads(b)["count"] for b in sent) == 60, 10, what="all messages")
    finally:
        e.stop()
    assert all(len(b) <= 131072 for b in sent) and len(sent) < 10
    per_cam: dict[str, list[int]] = {}
    for b in sent:
        doc = json.loads(b)
        assert doc["schema"] == "uplink-batch/1.0" and doc["thing"] == THING
        per_cam.setdefault(doc["camera"], []).extend(x["payload"]["n"] for x in doc["items"])
    assert per_cam == {"door": [i for i in range(60) if i % 3], "yard": [i for i in range(60) if not i % 3]}
    q.close()


def test_batches_bigger_than_the_runtimes_spool_are_split_in_order_and_an_item_bigger_is_refused(
        tmp_path: Path) -> None:
    """A backlog (after an outage) batches up bigger than a small runtime spool (mqtt.spooler.maxSizeInBytes):
    the spool refuses such a message for good ("larger than the whole spool"), so the lane must send smaller
    batches instead of retrying the same one forever (tests/test_faults_network.py found it stuck so); a single
    item bigger than the spool is refused and reported, and the lane goes on. The real gglocal spool answers."""
    from gglocal.iotcore.spool import DiskSpool

    spool = DiskSpool(tmp_path / "spool.sqlite", 8192)
    q = UplinkQueue(tmp_path / "q")
    msgs = [parse_put({**put_msg(i, "results"), "destination": "iot", "topic": "ggvision/{thing}/results",
                       "payload": {"n": i, "pad": "x" * (9000 if i == 7 else 500)}}, THING, 130000) for i in range(30)]
    q.put_many(msgs)
    sent: list[bytes] = []

    def publish(topic: str, body: bytes) -> None:
        spool.put(topic, body)  # raises SpoolFullError with the runtime's words
        spool.remove(spool.peek(1)[0].id)  # the broker took it at once
        sent.append(body)

    e = Engine(q, parse(UplinkConfig, {"site": "s1", "archive": {"enabled": False}}), THING,
               Recorder(tmp_path / "bucket"), {"iot": FunctionSink("iot", publish)})
    e.start()
    try:
        from harness import wait_until

        wait_until(lambda: sum(json.loads(b)["count"] for b in sent) == 29 and q.unreported(), 20,
                   what="every message but the one bigger than the spool")
    finally:
        e.stop()
    got = [x["payload"]["n"] for b in sent for x in json.loads(b)["items"]]
    assert got == [i for i in range(30) if i != 7] and all(len(b) <= 8192 for b in sent)
    assert [(ev.id, ev.reason) for _, ev in q.unreported()] == [("t:door:7", "rejected")]
    q.close()
    spool.close()


def test_bandwidth_cap_paces_the_drain(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q")
    q.put_many([req(i, "video", 256 * 1024, camera="door") for i in range(6)])  # 1.5 MiB
    e, sink, _ = _engine(tmp_path, q, bandwidthKbps=8000)  # 1 MB/s
    t0 = time.monotonic()
    e.start()
    try:
        from harness import wait_until

        wait_until(lambda: len(sink.keys) == 6, 20, what="the drain")
    finally:
        e.stop()
    # at most one burst (64 KiB / 0.1 s) ahead of the cap; a loaded machine only makes it slower
    assert time.monotonic() - t0 >= (6 * 256 * 1024 - 100_000) / 1_000_000


def test_status_cli_reads_the_index_read_only(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q")
    q.put_many([req(1, "video", 3000, camera="door"), req(2, "alerts", 100, camera="yard")])
    q.set_state(online={"object": False}, last_error="S3 unreachable: timed out", rate_bytes_per_s=0.0,
                bandwidth_kbps=8, updated=time.time())
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "q").iterdir() if p.is_file()}
    r = CliRunner().invoke(cli_app, ["uplink", "status", "--queue", str(tmp_path / "q"), "--json"])
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)
    assert s["backlog_items"] == {"alerts": 1, "results": 0, "clips": 0, "video": 1}
    assert s["backlog_bytes"]["video"] == 3000 and s["bytes_queued"] == 3100
    assert s["cameras"]["door"]["by_priority"]["video"]["items"] == 1
    assert s["last_error"].startswith("S3 unreachable") and s["drain_eta_s"] == pytest.approx(3100 / 1000)
    assert s["oldest_age_s"] > 0
    r = CliRunner().invoke(cli_app, ["uplink", "status", "--queue", str(tmp_path / "q")])
    assert r.exit_code == 0 and "video" in r.output and "last error: S3 unreachable" in r.output
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "q").iterdir() if p.is_file()} == before
    r = CliRunner().invoke(cli_app, ["uplink", "status", "--queue", str(tmp_path / "none")])
    assert r.exit_code == 2 and "no uplink queue" in r.output
    q.close()


def test_concurrent_puts_and_drain_lose_nothing(tmp_path: Path) -> None:
    q = UplinkQueue(tmp_path / "q")
    e, sink, sent = _engine(tmp_path, q)
    e.start()
    try:
        def producer(k: int) -> None:
            for i in range(40):
                q.put_many([req(k * 1000 + i, "clips", 500)])

        threads = [threading.Thread(target=producer, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        from harness import wait_until

        wait_until(lambda: len(sink.keys) == 120, 20, what="every item")
    finally:
        e.stop()
    assert len(set(sink.keys)) == 120 and q.stats()["uploaded_items"] == 120
    assert not os.listdir(tmp_path / "q" / "payloads")
    q.close()


def test_recipe_grants_only_the_uplink_topics() -> None:
    from harness import REPO

    from gglocal.ipc.authorization import is_authorized
    from gglocal.nucleus.recipeparser import load_recipe

    recipe = load_recipe(REPO / "components" / "com.ggvision.Uplink" / "recipe.yaml")
    acl = recipe.default_configuration["accessControl"]
    assert validate(recipe.default_configuration) is None
    assert is_authorized(acl, "SubscribeToTopic", "ggvision/v1/uplink/put")
    assert not is_authorized(acl, "SubscribeToTopic", "ggvision/v1/frames/door")
    for topic in ("ggvision/v1/uplink/acks", "ggvision/v1/metrics/uplink"):
        assert is_authorized(acl, "PublishToTopic", topic)
    assert not is_authorized(acl, "PublishToTopic", "ggvision/v1/uplink/put")
    for kind in ("results", "events", "status"):
        assert is_authorized(acl, "PublishToIoTCore", f"ggvision/{THING}/{kind}")
    assert not is_authorized(acl, "PublishToIoTCore", f"ggvision/{THING}/metrics")
    assert not is_authorized(acl, "SubscribeToIoTCore", f"ggvision/{THING}/results")


def test_archive_writes_message_batches_into_the_directory_bucket(tmp_path: Path) -> None:
    """Locally (no AWS) results and events land in the bucket as JSON, as the cloud's IoT rule would archive them."""
    from harness import wait_until

    from ggvision.uplink.engine import run_engine

    cfg = parse(UplinkConfig, {"site": "s1", "archive": {"enabled": True}, "iot": {"enabled": False}})
    assert cfg.message_lanes == ("archive",)
    s3 = parse(UplinkConfig, {"archive": {"enabled": True},
                              "sink": {"type": "s3", "bucket": "site-media", "region": "x"}})
    assert s3.message_lanes == ("iot",)  # with S3, the cloud's IoT rule archives
    engine = run_engine(tmp_path / "q", cfg, tmp_path, THING)
    try:
        engine.queue.put_many([parse_put({**put_msg(i, "results"), "destination": "iot",
                                          "topic": "ggvision/{thing}/results", "payload": {"n": i}}, THING, 130000)
                               for i in range(5)])
        # where routing.yaml's rule writes ggvision/{thing}/results: results/iot-rules/results/{thing}/YYYY/MM/DD/HH/
        archive = tmp_path / "bucket" / "results" / "iot-rules" / "results" / THING
        files = wait_until(lambda: list(archive.rglob("door-*.json")), 10, what="the archived batch")
    finally:
        engine.stop()
        engine.queue.close()
    docs = [json.loads(f.read_bytes()) for f in files]
    assert [x["payload"]["n"] for d in docs for x in d["items"]] == list(range(5))
    assert all(d["schema"] == "uplink-batch/1.0" and d["topic"] == f"ggvision/{THING}/results" for d in docs)
