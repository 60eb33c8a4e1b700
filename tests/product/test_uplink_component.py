"""com.ggvision.Uplink under the local runtime with a real mosquitto (the IoT Core stand-in) and moto's S3 server:
requests over IPC are acknowledged once persisted; an outage of S3 and the broker followed by recovery delivers
every object and message exactly as produced; a full quota evicts and says so on IoT Core; metrics and the
status CLI show the backlog."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from harness import Runtime, wait_until
from typer.testing import CliRunner
from uplink_dev import NAME as UPLINK
from uplink_dev import MotoProcess, aws_test_env, uplink_dev_recipe

from gglocal.iotcore.broker import BrokerError, MosquittoBroker, find_mosquitto
from gglocal.iotcore.pki import ensure_pki
from ggvision_cli import app as cli_app


def _have_mosquitto() -> bool:
    try:
        find_mosquitto()
    except BrokerError:
        return False
    return True


pytestmark = [pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto not installed (apt-get install mosquitto)"),
              pytest.mark.timeout(150)]
AGENT = "com.ggvision.test.Agent"
BUCKET = "ggvision-site-bucket"
THING = "test-thing"
T0 = 1795000000.0
AGENT_ACL = {
    "aws.greengrass.ipc.pubsub": {
        "com.ggvision.test.Agent:pubsub:1": {"operations": ["aws.greengrass#PublishToTopic"],
                                             "resources": ["ggvision/v1/uplink/put"]},
        "com.ggvision.test.Agent:pubsub:2": {"operations": ["aws.greengrass#SubscribeToTopic"],
                                             "resources": ["ggvision/v1/*"]}},  # `#` would be literal
    "aws.greengrass.ipc.mqttproxy": {
        "com.ggvision.test.Agent:mqtt:1": {"operations": ["*"], "resources": ["ggvision/#"]}},
    "aws.greengrass.Cli": {
        "com.ggvision.test.Agent:cli:1": {"operations": ["aws.greengrass#ListComponents"], "resources": ["*"]}}}


def obj_put(i: int, priority: str, path: Path | None = None, data: bytes | None = None, **kw: Any) -> dict[str, Any]:
    msg = {"schema": "uplink-put/1.0", "id": f"cam:{i}", "producer": "test", "priority": priority, "camera": "door",
           "start": T0 + i, "end": T0 + i + 2, "destination": "s3", "name": f"obj-{i}.bin",
           "content_type": "application/octet-stream", "metadata": {"event_ids": [f"e{i}"]}, **kw}
    if path is not None:
        msg.update(file=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    else:
        msg["data_b64"] = base64.b64encode(data or b"").decode()
    return msg


def msg_put(i: int, camera: str, priority: str = "results") -> dict[str, Any]:
    return {"schema": "uplink-put/1.0", "id": f"res:{camera}:{i}", "producer": "test", "priority": priority,
            "camera": camera, "start": T0 + i, "destination": "iot", "topic": "ggvision/{thing}/results",
            "payload": {"camera": camera, "n": i, "labels": {"person": i % 3}}}


def test_outage_then_recovery_delivers_everything_and_quota_evictions_are_reported(tmp_path: Path) -> None:
    aws_test_env()
    pki = ensure_pki(tmp_path / "pki", THING)
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    moto = MotoProcess(tmp_path / "moto.log")
    s3 = moto.client()
    s3.create_bucket(Bucket=BUCKET)
    rt = Runtime(tmp_path, [AGENT], iot=True, config={AGENT: {"accessControl": AGENT_ACL}},
                 args=["--iot-endpoint", f"127.0.0.1:{broker.port}", "--iot-pki", str(tmp_path / "pki")])
    uplink_dev_recipe(rt.recipes, site="s1", metricsPeriodS=0.3, backoffMaxS=1,
                      sink={"type": "s3", "bucket": BUCKET, "region": "us-east-1", "endpointUrl": moto.url,
                            "timeoutS": 1})
    try:
        rt.start(wait_for={AGENT: ("RUNNING",), UPLINK: ("RUNNING",)})
        a = rt.agent()
        a.call("subscribe", id="acks", topic="ggvision/v1/uplink/acks")
        a.call("subscribe", id="metrics", topic="ggvision/v1/metrics/uplink")
        a.call("subscribe_iot", id="results", topic=f"ggvision/{THING}/results")
        a.call("subscribe_iot", id="status", topic=f"ggvision/{THING}/status")

        def acks() -> dict[str, dict[str, Any]]:
            return {e["json"]["id"]: e["json"] for e in a.call("events", id="acks", count=0, timeout=0)}

        def metrics() -> list[dict[str, Any]]:
            return [e["json"] for e in a.call("events", id="metrics", count=0, timeout=0)]

        wait_until(metrics, 20, what="the first metrics (the component has subscribed by then)")
        # a malformed request is refused with the reason
        a.call("publish_json", topic="ggvision/v1/uplink/put", message={**msg_put(0, "door"), "priority": "urgent"})
        bad = wait_until(lambda: acks().get("res:door:0"), 15, what="the refusal")
        assert bad["status"] == "refused" and "priority" in bad["reason"] and bad["schema"] == "uplink-ack/1.0"

        # -- the outage: S3 stops answering (VPN drop), the broker goes away --------------------------
        moto.pause()
        broker.stop()
        produced: dict[str, str] = {}
        puts = []
        for i in range(8):
            prio = ("alerts", "clips", "video", "results")[i % 4]
            if i % 2:
                p = tmp_path / f"clip-{i}.ts"
                p.write_bytes(os.urandom(50_000 + i * 1000))
                puts.append(obj_put(i, prio, path=p, move=i == 3))
                body = p.read_bytes()
            else:
                body = os.urandom(3000 + i)
                puts.append(obj_put(i, prio, data=body))
            # octet-stream without a kind: results (contract.keys.kind_for)
            key = f"results/s1/{THING}/door/{time.strftime('%Y/%m/%d/%H', time.gmtime(T0 + i))}/obj-{i}.bin"
            produced[key] = hashlib.sha256(body).hexdigest()
        puts += [msg_put(i, cam) for i in range(1, 16) for cam in ("door", "yard")]
        for m in puts:
            a.call("publish_json", topic="ggvision/v1/uplink/put", message=m)
        want_ids = {m["id"] for m in puts}
        got = wait_until(lambda: (lambda x: x if want_ids <= set(x) else None)(acks()), 20, what="every ack")
        assert {got[i]["status"] for i in want_ids} == {"persisted"}, [got[i] for i in want_ids]
        assert not (tmp_path / "clip-3.ts").exists()  # move: true hands the file over

        offline = wait_until(lambda: [m for m in metrics() if m["online"].get("s3") is False], 20,
                             what="S3 reported offline")[-1]
        assert offline["schema"] == "uplink-metrics/1.0" and offline["backlog_items"]["video"] >= 1
        assert sum(offline["backlog_bytes"].values()) > 0 and offline["last_error"]
        queue = str(rt.root / "work" / UPLINK / "queue")
        r = CliRunner().invoke(cli_app, ["uplink", "status", "--queue", queue, "--json"])
        assert r.exit_code == 0, r.output
        st = json.loads(r.output)
        assert st["bytes_queued"] > 0 and st["online"]["object"] is False and "S3" in st["last_error"]

        # -- recovery: everything arrives exactly as produced -------------------------------------------
        moto.resume()
        broker.start()

        def objects() -> dict[str, str]:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
            return {k: hashlib.sha256(s3.get_object(Bucket=BUCKET, Key=k)["Body"].read()).hexdigest() for k in keys}

        wait_until(lambda: len(objects()) == len(produced), 30, interval=0.2, what="every object in S3")
        assert objects() == produced

        def entries() -> list[dict[str, Any]]:
            out = []
            for e in a.call("events", id="results", count=0, timeout=0):
                doc = json.loads(base64.b64decode(e["b64"]))
                assert doc["schema"] == "uplink-batch/1.0" and len(base64.b64decode(e["b64"])) <= 131072
                out += [{**x, "camera": doc["camera"]} for x in doc["items"]]
            return out

        wanted = {m["id"] for m in puts if m["destination"] == "iot"}
        wait_until(lambda: wanted <= {x["id"] for x in entries()}, 30, interval=0.2, what="every result on IoT Core")
        seen: dict[str, list[int]] = {}
        for x in entries():  # at-least-once: ids may repeat; first arrivals keep the camera's order
            if x["payload"]["n"] not in seen.setdefault(x["camera"], []):
                seen[x["camera"]].append(x["payload"]["n"])
        assert seen == {"door": list(range(1, 16)), "yard": list(range(1, 16))}
        assert all(x["payload"] == msg_put(x["payload"]["n"], x["camera"])["payload"] for x in entries())
        wait_until(lambda: [m for m in metrics()[-3:] if m["online"].get("s3") and
                            sum(m["backlog_items"].values()) == 0], 20, what="an empty backlog, S3 online")

        # -- a full quota evicts video first, and the eviction is reported on IoT Core --------------------
        d = rt.deploy(component_to_configuration={UPLINK: {"MERGE": {"quotaBytes": 1 << 20}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        moto.pause()
        for i, prio, size in ((100, "video", 450_000), (101, "video", 450_000), (102, "video", 450_000),
                              (103, "alerts", 300_000)):
            a.call("publish_json", topic="ggvision/v1/uplink/put", message=obj_put(i, prio, data=os.urandom(size)))
        wait_until(lambda: {f"cam:{i}" for i in range(100, 104)} <= set(acks()), 20, what="acks")
        assert acks()["cam:103"]["status"] == "persisted"

        def evictions() -> list[dict[str, Any]]:
            return [ev for e in a.call("events", id="status", count=0, timeout=0)
                    for x in json.loads(base64.b64decode(e["b64"]))["items"] for ev in x["payload"]["evictions"]]

        evs = wait_until(lambda: [e for e in evictions() if e["reason"] == "quota"], 30, interval=0.2,
                         what="the eviction on ggvision/test-thing/status")
        assert {e["priority"] for e in evs} == {"video"} and evs[0]["id"] in {"cam:100", "cam:101"}
        m = wait_until(lambda: [m for m in metrics() if m["evicted"]["video"] >= 1], 10, what="counted")[-1]
        assert m["evicted"]["alerts"] == 0 and m["bytes_queued"] <= 1 << 20
        moto.resume()
        assert rt.state(UPLINK) == "RUNNING"
    finally:
        rt.cleanup()
        moto.stop()
        broker.stop()
