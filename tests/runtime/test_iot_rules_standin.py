"""The local runtime's stand-in for the cloud's archive rules (gglocal/iotcore/rules.py), checked against
deploy/cloudformation/routing.yaml (the rules' SQL and S3 keys) and run for real: a component publishes to IoT
Core through the runtime's bridge and mosquitto, and the objects land in moto's S3 (server mode, over HTTP)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from cfnlint.decode import cfn_yaml
from harness import REPO, Runtime, wait_until
from uplink_dev import MotoProcess, aws_test_env

from gglocal.iotcore.rules import archived

ROUTING = REPO / "deploy" / "cloudformation" / "routing.yaml"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _rules() -> dict[str, dict]:
    doc = json.loads(json.dumps(cfn_yaml.load(str(ROUTING))))
    return {r["Properties"]["TopicRulePayload"]["Sql"] if isinstance(r["Properties"]["TopicRulePayload"]["Sql"], str)
            else r["Properties"]["TopicRulePayload"]["Sql"]["Fn::Sub"]: r["Properties"]["TopicRulePayload"]
            for r in doc["Resources"].values() if r["Type"] == "AWS::IoT::TopicRule"}


def test_keys_and_fields_are_the_rules_own() -> None:
    now = 1796456982.5
    rules = _rules()
    for stream in ("results", "events", "metrics"):
        sql, payload = next((sql, p) for sql, p in rules.items() if f"FROM 'ggvision/+/{stream}'" in sql)
        key_template = next(a["S3"]["Key"] for a in payload["Actions"] if "S3" in a)
        assert key_template == (f"results/iot-rules/{stream}/${{topic(2)}}/"
                                '${parse_time("yyyy/MM/dd/HH", timestamp())}/${newuuid()}.json')
        key, body = archived(f"ggvision/box-1/{stream}", b'{"schema":"x/1.0","n":1}', now)
        assert re.fullmatch(rf"results/iot-rules/{stream}/box-1/2026/12/05/07/{UUID}\.json", key), key
        doc = json.loads(body)
        assert doc["schema"] == "x/1.0" and doc["thing"] == "box-1" and doc["received_at"] == int(now * 1000)
        assert "topic(2) AS thing" in sql and "timestamp() AS received_at" in sql
        if stream == "events":
            assert "AS sk" in sql and "AS expires_at" in sql
            assert doc["sk"].startswith(f"{int(now * 1000)}#") and doc["expires_at"] == int(now) + 7 * 86400
    assert archived("ggvision/box-1/status", b"{}", now) is None  # no rule selects it
    assert archived("other/box-1/results", b"{}", now) is None
    assert archived("ggvision/box-1/results", b"not json", now)[1] == b"not json"  # archived as it came


def test_messages_published_through_the_runtime_land_in_s3(tmp_path: Path) -> None:
    aws_test_env()
    moto = MotoProcess(tmp_path / "moto.log")
    s3 = moto.client()
    s3.create_bucket(Bucket="ggv-data")
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], iot=True,
                 args=["--rules-bucket", "ggv-data", "--rules-endpoint-url", moto.url])
    try:
        rt.start(wait_for={"com.ggvision.test.Agent": ("RUNNING",)})
        a = rt.agent()
        # the status message first: the rules select none, and once the later three are archived it would be too
        for stream in ("status", "results", "events", "metrics"):
            body = json.dumps({"schema": "uplink-batch/1.0", "stream": stream}).encode()
            a.call("publish_iot", topic=f"ggvision/test-thing/{stream}", b64=base64.b64encode(body).decode())

        def keys() -> list[str] | None:
            got = [o["Key"] for o in s3.list_objects_v2(Bucket="ggv-data").get("Contents", [])]
            return got if len(got) >= 3 else None

        wait_until(keys, 30, interval=0.2, what="three archived messages in S3")
    finally:
        rt.cleanup()
    got = [o["Key"] for o in s3.list_objects_v2(Bucket="ggv-data").get("Contents", [])]
    moto.stop()
    assert sorted(k.split("/")[2] for k in got) == ["events", "metrics", "results"]
    assert all(k.split("/")[3] == "test-thing" for k in got)
