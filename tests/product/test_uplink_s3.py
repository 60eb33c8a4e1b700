"""com.ggvision.Uplink's engine against moto's S3 (and SQS, Kinesis) server over HTTP: key layout, metadata,
checksums, SSE-KMS, multipart; 50+ kill -9 at random moments while producing and uploading lose nothing and
leave no partial object."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import wait_until
from killloop import AckPipe, kill_loop
from uplink_dev import BUCKET, MotoProcess, aws_test_env, drained

from ggvision.config.base import parse
from ggvision.config.uplink import UplinkConfig
from ggvision.uplink.engine import run_engine
from ggvision.uplink.messages import parse_put

pytestmark = pytest.mark.timeout(120)
THING = "thing-1"
T0 = 1795000000.0
MIB = 1 << 20


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    aws_test_env()
    m = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield m
    finally:
        m.stop()


def _bucket(moto: MotoProcess, name: str) -> Any:
    s3 = moto.client()
    s3.create_bucket(Bucket=name)
    return s3


def _config(moto: MotoProcess, bucket: str, **kw: Any) -> dict[str, Any]:
    return {"site": "s1", "iot": {"enabled": False},
            "sink": {"type": "s3", "bucket": bucket, "region": "us-east-1", "endpointUrl": moto.url, "timeoutS": 2,
                     **kw.pop("sink", {})},
            "multipartThresholdBytes": 5 * MIB, "multipartPartBytes": 5 * MIB, **kw}


def _spec(i: int, path: Path, priority: str = "clips") -> dict[str, Any]:
    return {"schema": "uplink-put/1.0", "id": f"k:{i}", "producer": "test", "priority": priority, "camera": "door",
            "start": T0 + i * 60, "end": T0 + i * 60 + 10, "destination": "s3", "file": str(path),
            "name": path.name, "content_type": "video/mp2t", "metadata": {"event_ids": [f"evt-{i}"]}}


def _objects(s3: Any, bucket: str) -> dict[str, str]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out[o["Key"]] = hashlib.sha256(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()).hexdigest()
    return out


def test_objects_keys_metadata_checksums_sse_and_multipart(tmp_path: Path, moto: MotoProcess) -> None:
    s3 = _bucket(moto, "uplink-layout")
    files = {}
    for i, size in enumerate([2000, 11 * MIB]):
        p = tmp_path / f"seg-{i}.ts"
        p.write_bytes(os.urandom(size))
        files[i] = p
    cfg = parse(UplinkConfig, _config(moto, "uplink-layout", sink={"prefix": "edge/", "sseKmsKeyId": "alias/ggv"}))
    engine = run_engine(tmp_path / "q", cfg, tmp_path, THING)
    try:
        out = engine.queue.put_many([parse_put(_spec(i, p), THING, 1) for i, p in files.items()])
        assert out == [("persisted", "")] * 2
        wait_until(lambda: drained(tmp_path / "q"), 30, what="both objects uploaded")
    finally:
        engine.stop()
        engine.queue.close()
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime(T0 + 60))
    key = f"edge/clips/s1/{THING}/door/{hour}/seg-1.ts"  # video/mp2t at priority clips: a clip (contract.keys)
    head = s3.head_object(Bucket="uplink-layout", Key=key)
    want = hashlib.sha256(files[1].read_bytes()).hexdigest()
    assert head["ContentLength"] == 11 * MIB and head["ContentType"] == "video/mp2t"
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == "alias/ggv"
    meta = head["Metadata"]
    assert meta["sha256"] == want and meta["camera"] == "door" and meta["event-ids"] == '["evt-1"]'
    assert float(meta["start"]) == T0 + 60 and float(meta["end"]) == T0 + 70 and meta["id"] == "k:1"
    assert _objects(s3, "uplink-layout")[key] == want
    assert len(_objects(s3, "uplink-layout")) == 2


def test_sqs_and_kinesis_receive_the_result_batches(tmp_path: Path, moto: MotoProcess) -> None:
    sqs, kinesis = moto.client("sqs"), moto.client("kinesis")
    url = sqs.create_queue(QueueName="ggv-results")["QueueUrl"]
    kinesis.create_stream(StreamName="ggv-results", ShardCount=1)
    wait_until(lambda: kinesis.describe_stream(StreamName="ggv-results")["StreamDescription"]["StreamStatus"] ==
               "ACTIVE", 10, what="stream active")
    cfg = parse(UplinkConfig, _config(moto, "uplink-layout", sqs={"queueUrl": url, "region": "us-east-1",
                                                             "endpointUrl": moto.url},
                               kinesis={"streamName": "ggv-results", "region": "us-east-1", "endpointUrl": moto.url}))
    engine = run_engine(tmp_path / "q", cfg, tmp_path, THING)
    try:
        reqs = [parse_put({"schema": "uplink-put/1.0", "id": f"r{i}", "priority": "results", "camera": "door",
                           "start": T0 + i, "destination": "iot", "topic": "ggvision/{thing}/results",
                           "payload": {"n": i}}, THING, 100000) for i in range(5)]
        assert {s for s, _ in engine.queue.put_many(reqs)} == {"persisted"}
        wait_until(lambda: drained(tmp_path / "q"), 20, what="both lanes delivered")
    finally:
        engine.stop()
        engine.queue.close()
    # one uplink-record/1.0 per item (batching, order, failures: tests/product/test_uplink_streams.py)
    bodies = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert sorted(x["payload"]["n"] for x in bodies) == list(range(5))
    assert {x["topic"] for x in bodies} == {f"ggvision/{THING}/results"}
    shard = kinesis.describe_stream(StreamName="ggv-results")["StreamDescription"]["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName="ggv-results", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    recs = kinesis.get_records(ShardIterator=it["ShardIterator"])["Records"]
    assert [json.loads(r["Data"])["id"] for r in recs] == [f"r{i}" for i in range(5)]
    assert {r["PartitionKey"] for r in recs} == {f"{THING}/door"}


def _child(queue: Path, cfg: dict[str, Any], specs: list[dict[str, Any]], wfd: int, until_empty: bool) -> None:
    """A whole uplink process: produce (acks to the pipe once put_many returned) and drain, until killed."""
    code = 0
    try:
        engine = run_engine(queue, parse(UplinkConfig, cfg), queue.parent, THING)
        for spec in specs:
            status, reason = engine.queue.put_many([parse_put(spec, THING, 1)])[0]
            assert status != "refused", reason
            os.write(wfd, (spec["id"] + "\n").encode())
        while True:
            time.sleep(0.02)
            if until_empty and not engine.queue.head("object"):
                engine.stop()
                break
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


def test_kill9_loop_loses_nothing_and_leaves_no_partial_object(tmp_path: Path, moto: MotoProcess) -> None:
    s3 = _bucket(moto, BUCKET)
    rng = random.Random(7)
    src = tmp_path / "producer"
    src.mkdir()
    specs, want = [], {}
    for i in range(60):
        size = 10 * MIB + 12345 if i % 12 == 5 else rng.randrange(1, 400_000)  # 5 multipart objects (3 parts)
        p = src / f"seg-{i:03d}.ts"
        p.write_bytes(rng.randbytes(size))
        specs.append(_spec(i, p, ("alerts", "results", "clips", "video")[i % 4]))
        kind = "clips" if i % 4 in (0, 2) else "segments"  # video kept for an event is a clip (contract.keys)
        key = f"{kind}/s1/{THING}/door/{time.strftime('%Y/%m/%d/%H', time.gmtime(T0 + i * 60))}/{p.name}"
        want[key] = hashlib.sha256(p.read_bytes()).hexdigest()
    cfg = _config(moto, BUCKET, bandwidthKbps=800_000)  # 100 MB/s: a 5 MiB part takes ~50 ms
    queue = tmp_path / "work" / "q"
    queue.parent.mkdir()
    acks = AckPipe()
    wfd, read_acks, acked = acks.wfd, acks.read, acks.acked

    kills = kill_loop(lambda until_empty: _child(queue, cfg, specs, wfd, until_empty=until_empty),
                      55, (0.03, 0.45), rng,
                      read_acks)
    assert kills >= 50 and acked == {s["id"] for s in specs}
    got = _objects(s3, BUCKET)
    assert got == want  # every object, each exactly as produced (sha256), and nothing else
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []  # no partial upload left behind
    assert not list((queue / "payloads").iterdir()) and not list((queue / "staging").iterdir())
