"""uplink-batch/1.0 carries the site: the Uplink's engine writes it (within IoT Core's 128 KB even with the
longest names), and the cloud's record parser gives every ended event of the batch that site."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from cloud_dev import end_event
from harness import wait_until

from cloud.records import parse_record
from ggvision.config.base import parse
from ggvision.config.uplink import UplinkConfig
from ggvision.contract.keys import rule_archive_key
from ggvision.uplink.dirsink import DirectorySink
from ggvision.uplink.engine import Engine
from ggvision.uplink.messages import parse_put
from ggvision.uplink.msgsinks import FunctionSink, build_batches
from ggvision.uplink.queue import UplinkQueue


def _run(tmp_path: Path, thing: str, site: str, camera: str, payloads: list[dict[str, Any]]) -> list[bytes]:
    q = UplinkQueue(tmp_path / "q")
    q.put_many([parse_put({"schema": "uplink-put/1.0", "id": f"filter:{camera}:{p['event_id']}:end-{i}",
                           "producer": "com.ggvision.Filter", "priority": "results", "camera": camera,
                           "start": p["start"], "end": p["end"], "destination": "iot",
                           "topic": "ggvision/{thing}/results", "payload": p}, thing, 130000)
                for i, p in enumerate(payloads)])
    sent: list[bytes] = []
    cfg = parse(UplinkConfig, {"site": site, "archive": {"enabled": False}})
    e = Engine(q, cfg, thing, DirectorySink(tmp_path / "bucket"),
               {"iot": FunctionSink("iot", lambda t, b: sent.append(b))})
    e.start()
    try:
        wait_until(lambda: sum(json.loads(b)["count"] for b in sent) == len(payloads), 20, what="every message")
    finally:
        e.stop()
        q.close()
    return sent


def test_the_batch_names_its_site_and_the_cloud_reads_it(tmp_path: Path) -> None:
    t0 = time.time() - 60
    sent = _run(tmp_path, "site-7-box", "site-7", "door", [end_event("door", "door-1-1", t0)])
    [body] = sent
    doc = json.loads(body)
    assert (doc["schema"], doc["thing"], doc["site"], doc["camera"]) == ("uplink-batch/1.0", "site-7-box", "site-7",
                                                                         "door")
    doc.update(received_at=int(t0 * 1000))  # what the IoT rule adds; the thing it adds is the same
    key = rule_archive_key("results", "site-7-box", t0, "u.json")
    [ev] = parse_record(key, json.dumps(doc).encode())
    assert (ev.site, ev.thing, ev.camera, ev.event_id) == ("site-7", "site-7-box", "door", "door-1-1")


def test_long_names_still_fit_iot_cores_limit() -> None:
    # the envelope grows with the thing (twice: thing and topic), the site and the camera: batches packed to the
    # last byte must stay <= 128 KB with the longest names the configuration allows, whatever the entries' size
    thing, site, camera = "t" * 128, "s" * 128, "c" * 64
    for pad in range(3000, 3400):
        items = [SimpleNamespace(id=f"filter:{camera}:{i}", producer="com.ggvision.Filter", priority_name="results",
                                 start=1795000000.0 + i, end=1795000000.0 + i, target=f"ggvision/{thing}/results",
                                 camera=camera, data=json.dumps({"n": i, "pad": "x" * pad}).encode())
                 for i in range(100, 180)]
        batches = build_batches(items, 131072, thing, site)  # type: ignore[arg-type]
        bodies = [b.body(thing, site) for b in batches]
        assert all(len(body) <= 131072 for body in bodies), (pad, [len(body) for body in bodies])
        assert sum(json.loads(body)["count"] for body in bodies) == len(items)
