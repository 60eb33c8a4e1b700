"""Test helpers for the cloud ingest path (cloud/): the endpoint as a process, the ingest's AWS resources made in
moto's server by hand (the processing stack's tests deploy deploy/cloudformation/processing.yaml instead), and
objects written to the data bucket exactly as the edge writes them (the contract's keys, the Uplink's object
metadata and batch envelope, the IoT rule's added fields).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
from harness import REPO, wait_until
from uplink_dev import free_port

from cloud.local import template_doc, template_notifications  # noqa: F401 - one home, re-exported
from ggvision.contract import cloud as names
from ggvision.contract.keys import IMAGES, object_key, rule_archive_key
from ggvision.sim.scenes import SyntheticScene
from ggvision.uplink.dirsink import object_metadata
from ggvision.uplink.msgsinks import Batch, _entry

TEMPLATES = REPO / "deploy" / "cloudformation"
MODEL_DIR = REPO / "components" / "com.ggvision.Model.SyntheticDetector"
ENDPOINT_NAME = "ggvision-second-stage"
PREFIX = "ggvtest"
DATA_BUCKET = "ggvtest-data-us-east-1-123456789012"
RESULTS_BUCKET = names.results_bucket_name(PREFIX, "us-east-1", "123456789012")


class EndpointProcess:
    """`python -m cloud.endpoint` on a loopback port, up once /ping answers."""

    def __init__(self, log: Path, model_dir: Path = MODEL_DIR) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
        self.proc = subprocess.Popen([sys.executable, "-m", "cloud.endpoint", "--port", str(self.port), "--model",
                                      str(model_dir), "--threads", "1"], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env, cwd=REPO)

        def up() -> bool:
            try:
                return urllib.request.urlopen(f"{self.url}/ping", timeout=1).status == 200
            except OSError:
                return self.proc.poll() is not None

        wait_until(up, 60, interval=0.1, what="cloud.endpoint /ping")
        assert self.proc.poll() is None, f"cloud.endpoint exited: {log.read_text()[-2000:]}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self._log.close()


def person_jpeg(seed: int = 1) -> bytes:
    """A synthetic frame with people in it (what the demo detector was trained on), as a JPEG snapshot."""
    img, _ = SyntheticScene(320, 192, 10, seed, objects=2, classes=("person",)).render(5)
    return cv2.imencode(".jpg", img)[1].tobytes()


def empty_jpeg() -> bytes:
    """A synthetic street with nobody in it."""
    img, _ = SyntheticScene(320, 192, 10, 5, objects=0).render(0)
    return cv2.imencode(".jpg", img)[1].tobytes()


def make_ingest_world(moto: Any, *, max_receive: int = 2, visibility_s: int = 1) -> dict[str, str]:
    """The ingest's resources in moto, as storage.yaml and processing.yaml declare them: data and results buckets,
    the queue with its DLQ and redrive, the data bucket's notifications (storage.yaml's own), the table (TTL,
    both indexes), an event bus whose rule copies confirmed alerts to a capture queue (so a test can read what
    EventBridge got)."""
    s3, sqs, ddb, events = (moto.client(s) for s in ("s3", "sqs", "dynamodb", "events"))
    for b in (DATA_BUCKET, RESULTS_BUCKET):
        s3.create_bucket(Bucket=b)
    dlq = sqs.create_queue(QueueName=names.dlq_name(PREFIX))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    q = sqs.create_queue(QueueName=names.queue_name(PREFIX), Attributes={
        "VisibilityTimeout": str(visibility_s),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive})})["QueueUrl"]
    q_arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(Bucket=DATA_BUCKET, NotificationConfiguration=template_notifications(
        TEMPLATES / "storage.yaml", "DataBucket", {"IngestQueue": q_arn}))
    table = names.table_name(PREFIX)
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in (
            (names.ITEM_KEY, "S"), (names.ITEM_SITE, "S"), (names.ITEM_CAMERA_KEY, "S"), (names.ITEM_START, "N"))],
        KeySchema=[{"AttributeName": names.ITEM_KEY, "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": ix, "Projection": {"ProjectionType": "ALL"}, "KeySchema": [
            {"AttributeName": h, "KeyType": "HASH"}, {"AttributeName": names.ITEM_START, "KeyType": "RANGE"}]}
            for ix, h in ((names.INDEX_SITE_TIME, names.ITEM_SITE), (names.INDEX_CAMERA_TIME, names.ITEM_CAMERA_KEY))])
    ddb.update_time_to_live(TableName=table, TimeToLiveSpecification={"Enabled": True,
                                                                      "AttributeName": names.ITEM_TTL})
    bus = f"{PREFIX}-alerts"
    events.create_event_bus(Name=bus)
    cap = sqs.create_queue(QueueName=f"{PREFIX}-alerts-capture")["QueueUrl"]
    cap_arn = sqs.get_queue_attributes(QueueUrl=cap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="confirmed", EventBusName=bus, EventPattern=json.dumps(
        {"source": [names.EVENT_SOURCE], "detail-type": [names.DETAIL_TYPE_CONFIRMED]}))
    events.put_targets(Rule="confirmed", EventBusName=bus, Targets=[{"Id": "capture", "Arn": cap_arn}])
    return {"queue": q, "dlq": dlq, "table": table, "bus": bus, "capture": cap}


def ingest_env(moto_url: str, endpoint_url: str, world: dict[str, str]) -> dict[str, str]:
    """The function's environment, with boto3's endpoint variables pointing at moto and the endpoint process."""
    return {"TABLE_NAME": world["table"], "RESULTS_BUCKET": RESULTS_BUCKET, "DLQ_URL": world["dlq"],
            "ENDPOINT_NAME": ENDPOINT_NAME, "EVENT_BUS_NAME": world["bus"], "AWS_ENDPOINT_URL": moto_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint_url}


def put_snapshot(s3: Any, site: str, thing: str, camera: str, event_ids: list[str], taken: float, jpeg: bytes,
                 n: int = 1, content_type: str = "image/jpeg") -> tuple[str, str]:
    """A Filter snapshot as the Uplink uploads it: (its S3 key, its Uplink item id)."""
    item_id = f"filter:{camera}:{event_ids[0]}:snapshot-{n}"
    key = object_key("", IMAGES, site, thing, camera, taken, f"{event_ids[0]}-{n}.jpg")
    item = SimpleNamespace(id=item_id, producer="com.ggvision.Filter", camera=camera, priority_name="clips",
                           start=taken, end=taken, sha256="0" * 64,
                           metadata={"event_ids": event_ids, "labels": {"person": len(event_ids)}})
    s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=jpeg, ContentType=content_type, Metadata=object_metadata(item))
    return key, item_id


def end_event(camera: str, event_id: str, start: float, *, label: str = "person", score: float = 0.88,
              snapshot: str | None = None) -> dict[str, Any]:
    """An event/1.0 `end` as the Filter makes it (docs/messages.md)."""
    return {"schema": "event/1.0", "event_id": event_id, "camera": camera, "kind": "end", "label": label,
            "track_id": 17, "start": start, "end": start + 4.2,
            "best": {"score": score, "box": [40, 20, 90, 160], "timestamp": start + 2, "snapshot": snapshot},
            "boxes": [[start + 1, 40, 20, 90, 160], [start + 4, 44, 22, 94, 162]], "zones": [], "zone_events": [],
            "segments": [], "model": {"name": "synthetic-detector", "version": "1.0.0"}, "stationary": False,
            "frame_size": [320, 192]}


def put_record(s3: Any, thing: str, camera: str, payloads: list[dict[str, Any]], at: float | None = None,
               site: str | None = "site-7") -> str:
    """Results items as the Uplink batches them onto ggvision/{thing}/results and the IoT rule archives the batch
    (its SELECT adds thing and received_at; its S3 key is rule_archive_key with a new uuid): the object's key."""
    items = [SimpleNamespace(id=f"filter:{camera}:{p['event_id']}:{p['kind']}-{i + 1}", producer="com.ggvision.Filter",
                             priority_name="results", start=p["start"], end=p["end"],
                             data=json.dumps(p, separators=(",", ":")).encode()) for i, p in enumerate(payloads)]
    batch = Batch(f"ggvision/{thing}/results", camera, items, [_entry(it) for it in items])  # type: ignore[arg-type]
    doc = json.loads(batch.body(thing, site or ""))
    if site is None:  # an Uplink from before uplink-batch/1.0 carried the site
        del doc["site"]
    at = time.time() if at is None else at
    doc.update(thing=thing, received_at=int(at * 1000))
    key = rule_archive_key("results", thing, at, f"{uuid.uuid4()}.json")
    s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=json.dumps(doc).encode(), ContentType="application/json")
    return key


def drain(runner: Any, until: Any, timeout: float = 30.0, what: str = "the ingest queue") -> None:
    """Poll the runner until `until()` holds."""
    def step() -> bool:
        runner.poll_once()
        return bool(until())

    wait_until(step, timeout, interval=0.05, what=what)


def blank_png() -> bytes:
    return cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def kinesis_record(seq: int, thing: str, site: str, camera: str, payload: dict[str, Any], arrived: float,
                   region: str = "us-east-1", stream: str = f"{PREFIX}-uplink") -> dict[str, Any]:
    """A Kinesis event record (Lambda's shape) of an uplink-record/1.0 as the Uplink writes it."""
    doc = {"schema": "uplink-record/1.0", "id": f"filter:{camera}:{seq}", "thing": thing, "site": site,
           "camera": camera, "topic": f"ggvision/{thing}/results", "seq": seq, "producer": "com.ggvision.Filter",
           "priority": "results", "start": payload.get("start", arrived), "end": payload.get("end", arrived),
           "payload": payload}
    return {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": f"{thing}/{camera}",
                        "sequenceNumber": f"4959{seq:052d}",
                        "data": base64.b64encode(json.dumps(doc).encode()).decode(),
                        "approximateArrivalTimestamp": arrived},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventName": "aws:kinesis:record",
            "eventID": f"shardId-000000000000:4959{seq:052d}", "awsRegion": region,
            "eventSourceARN": f"arn:aws:kinesis:{region}:123456789012:stream/{stream}"}


def make_counts_table(moto: Any, prefix: str = PREFIX) -> str:
    """The real-time counts table as deploy/cloudformation/realtime.yaml declares it (keys and the sparse index)."""
    table = names.counts_table_name(prefix)
    moto.client("dynamodb").create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, t in (
            (names.COUNT_KEY, "S"), (names.COUNT_MINUTE, "N"), (names.COUNT_SITE, "S"), (names.CAMERA_SEEN_AT, "N"))],
        KeySchema=[{"AttributeName": names.COUNT_KEY, "KeyType": "HASH"},
                   {"AttributeName": names.COUNT_MINUTE, "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[{"IndexName": names.INDEX_SITE_SEEN, "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": names.COUNT_SITE, "KeyType": "HASH"},
                                               {"AttributeName": names.CAMERA_SEEN_AT, "KeyType": "RANGE"}]}])
    return table
