"""The ingest handler (cloud/ingest.py) on moto's server over HTTP, fed by the real S3 → SQS notifications of
objects written as the edge writes them, through the SQS event-source runner (cloud/runner.py), calling the
second-stage endpoint process with boto3's sagemaker-runtime client."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from cloud_dev import (
    DATA_BUCKET,
    RESULTS_BUCKET,
    EndpointProcess,
    drain,
    empty_jpeg,
    end_event,
    ingest_env,
    make_ingest_world,
    person_jpeg,
    put_record,
    put_snapshot,
)
from harness import wait_until
from uplink_dev import MotoProcess, aws_test_env, free_port

from cloud.ingest import REASON_ATTRIBUTE, Ingest
from cloud.runner import SqsRunner
from ggvision.contract import cloud as names
from ggvision.contract.keys import RETENTION_DAYS_MAX

SITE, THING, CAMERA = "site-7", "site-7-box", "door"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MotoProcess, EndpointProcess]]:
    d = Path(tmp_path_factory.mktemp("ingest"))
    aws_test_env()
    moto = MotoProcess(d / "moto.log")
    ep = EndpointProcess(d / "endpoint.log")
    yield moto, ep
    ep.stop()
    moto.stop()


class World:
    def __init__(self, moto: MotoProcess, ep: EndpointProcess, mp: pytest.MonkeyPatch) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{moto.url}/moto-api/reset", method="POST"), timeout=10)
        self.moto = moto
        self.names = make_ingest_world(moto)
        for k, v in ingest_env(moto.url, ep.url, self.names).items():
            mp.setenv(k, v)
        self.ingest = Ingest.from_env()
        self.s3, self.sqs = moto.client("s3"), moto.client("sqs")
        self.table = boto3.resource("dynamodb", endpoint_url=moto.url).Table(self.names["table"])
        self.runner = SqsRunner(self.sqs, self.names["queue"], self.ingest.handle, visibility_timeout=1, wait_s=0)
        # configuring the notification made S3 send its s3:TestEvent: the handler takes it without a failure
        wait_until(lambda: self.queue_count(self.names["queue"]) == 1, 10, what="the s3:TestEvent")
        assert self.runner.poll_once() == (1, 0) and self.queue_count(self.names["queue"]) == 0

    def item(self, event_id: str, thing: str = THING) -> dict[str, Any]:
        return self.table.get_item(Key={names.ITEM_KEY: names.item_key(thing, event_id)}).get("Item", {})

    def decided(self, event_id: str) -> dict[str, Any]:
        drain(self.runner, lambda: names.ITEM_VERDICT in self.item(event_id), what=f"a verdict on {event_id}")
        return self.item(event_id)

    def queue_count(self, url: str) -> int:
        attrs = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(v) for v in attrs.values())

    def received(self, url: str, n: int, wait: float = 10) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []

        def more() -> bool:
            got.extend(self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                                MessageAttributeNames=["All"]).get("Messages", []))
            return len(got) >= n

        wait_until(more, wait, what=f"{n} message(s) on {url}")
        return got


@pytest.fixture
def world(servers: tuple[MotoProcess, EndpointProcess], monkeypatch: pytest.MonkeyPatch) -> World:
    return World(*servers, monkeypatch)


def test_a_person_the_cloud_confirms_is_one_item_a_result_and_an_alert(world: World) -> None:
    t0 = time.time() - 60
    ev = "door-1795000002000-17"
    snap_key, snap_id = put_snapshot(world.s3, SITE, THING, CAMERA, [ev], t0 + 2, person_jpeg())
    # the usual order: the record (results priority) lands before its snapshot (clips priority)
    record_key = put_record(world.s3, THING, CAMERA, [
        {**end_event(CAMERA, ev, t0), "kind": "new"}, end_event(CAMERA, ev, t0, snapshot=snap_id)])
    item = world.decided(ev)
    assert item[names.ITEM_VERDICT] == names.CONFIRMED
    assert (item[names.ITEM_SITE], item[names.ITEM_THING], item[names.ITEM_CAMERA]) == (SITE, THING, CAMERA)
    assert item[names.ITEM_LABEL] == "person" and item[names.ITEM_EDGE_SCORE] == Decimal("0.88")
    assert item[names.ITEM_CLOUD_SCORE] > Decimal("0.3") and len(item[names.ITEM_BOXES]) == 2
    assert (item[names.ITEM_RECORD_KEY], item[names.ITEM_SNAPSHOT_KEY]) == (record_key, snap_key)
    assert int(t0) < item[names.ITEM_TTL] <= t0 + RETENTION_DAYS_MAX * 86400
    # the dashboard's indexes find it by site and by camera, in time order
    by_site = world.table.query(IndexName=names.INDEX_SITE_TIME, KeyConditionExpression=Key(names.ITEM_SITE).eq(SITE))
    by_cam = world.table.query(IndexName=names.INDEX_CAMERA_TIME, KeyConditionExpression=Key(
        names.ITEM_CAMERA_KEY).eq(names.camera_key(THING, CAMERA)) & Key(names.ITEM_START).gt(Decimal(int(t0))))
    assert [i[names.ITEM_KEY] for i in by_site["Items"]] == [i[names.ITEM_KEY] for i in by_cam["Items"]] == [
        names.item_key(THING, ev)]
    result = json.loads(world.s3.get_object(Bucket=RESULTS_BUCKET, Key=item[names.ITEM_RESULT_KEY])["Body"].read())
    assert result["schema"] == names.RESULT_SCHEMA and result["verdict"] == names.CONFIRMED
    assert result["cloud_model"] == {"name": "synthetic-detector", "version": "1.0.0"}
    [alert] = world.received(world.names["capture"], 1)
    body = json.loads(alert["Body"])
    assert (body["source"], body["detail-type"]) == (names.EVENT_SOURCE, names.DETAIL_TYPE_CONFIRMED)
    assert body["detail"]["event_id"] == ev and body["detail"]["site"] == SITE
    assert world.queue_count(world.names["queue"]) == 0 and world.queue_count(world.names["dlq"]) == 0


def test_a_disagreement_is_counted_and_raises_no_alert(world: World) -> None:
    t0 = time.time() - 60
    ev = "door-1795000009000-3"
    _, snap_id = put_snapshot(world.s3, SITE, THING, CAMERA, [ev], t0 + 1, empty_jpeg())
    drain(world.runner, lambda: names.ITEM_CLOUD_AT in world.item(ev), what="the snapshot's cloud half")
    assert names.ITEM_VERDICT not in world.item(ev)  # the snapshot came first: waiting for the record
    put_record(world.s3, THING, CAMERA, [end_event(CAMERA, ev, t0, snapshot=snap_id)])
    item = world.decided(ev)
    assert item[names.ITEM_VERDICT] == names.DISPUTED and item[names.ITEM_CLOUD_SCORE] == 0
    cw = world.moto.client("cloudwatch")
    metrics = cw.list_metrics(Namespace=names.METRICS_NAMESPACE, MetricName=names.METRIC_DISAGREEMENTS)["Metrics"]
    assert [m["Dimensions"] for m in metrics] == [[{"Name": "Label", "Value": "person"}]]
    assert world.sqs.receive_message(QueueUrl=world.names["capture"], WaitTimeSeconds=1).get("Messages") is None


def test_an_event_without_a_snapshot_is_unverified_and_has_its_site_from_the_batch(world: World) -> None:
    t0 = time.time() - 60
    put_record(world.s3, THING, CAMERA, [end_event(CAMERA, "door-1-1", t0, label="car", snapshot=None)], site=SITE)
    item = world.decided("door-1-1")
    assert item[names.ITEM_VERDICT] == names.UNVERIFIED and names.ITEM_CLOUD_SCORE not in item
    assert item[names.ITEM_SITE] == SITE  # uplink-batch/1.0 carries the site: no snapshot needed for it
    assert item[names.ITEM_RESULT_KEY].startswith(f"verdicts/{SITE}/{THING}/{CAMERA}/")
    by_site = world.table.query(IndexName=names.INDEX_SITE_TIME, KeyConditionExpression=Key(names.ITEM_SITE).eq(SITE))
    assert names.item_key(THING, "door-1-1") in [i[names.ITEM_KEY] for i in by_site["Items"]]
    # a batch from an older Uplink (no site) and no snapshot: the result object says the site is unknown
    put_record(world.s3, THING, CAMERA, [end_event(CAMERA, "door-1-2", t0, label="car", snapshot=None)], site=None)
    item = world.decided("door-1-2")
    assert names.ITEM_SITE not in item
    assert item[names.ITEM_RESULT_KEY].startswith(f"verdicts/{names.SITE_UNKNOWN}/{THING}/{CAMERA}/")


def test_redelivery_and_a_resent_batch_leave_one_item(world: World) -> None:
    t0 = time.time() - 60
    ev = "door-5-5"
    _, snap_id = put_snapshot(world.s3, SITE, THING, CAMERA, [ev], t0 + 1, person_jpeg(2))
    payload = end_event(CAMERA, ev, t0, snapshot=snap_id)
    put_record(world.s3, THING, CAMERA, [payload])
    first = world.decided(ev)
    # the same batch again (QoS 1 at least once: the IoT rule archives it under a new uuid), and the same SQS
    # message handled twice (a visibility timeout that ran out before the delete)
    put_record(world.s3, THING, CAMERA, [payload])
    [msg] = world.received(world.names["queue"], 1)
    event = {"Records": [{"messageId": msg["MessageId"], "receiptHandle": msg["ReceiptHandle"], "body": msg["Body"],
                          "eventSource": "aws:sqs"}]}
    assert world.ingest.handle(event) == {"batchItemFailures": []}
    assert world.ingest.handle(event) == {"batchItemFailures": []}
    items = world.table.scan()["Items"]
    assert [i[names.ITEM_KEY] for i in items] == [names.item_key(THING, ev)]
    assert items[0] == first  # decided once: nothing rewritten


def test_a_malformed_object_goes_to_the_dlq_with_its_reason(world: World) -> None:
    key = f"{names.RECORD_PREFIX}{THING}/2026/11/18/11/broken.json"
    world.s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=b"{not json")
    drain(world.runner, lambda: world.queue_count(world.names["dlq"]) == 1, what="the dead letter")
    [dead] = world.received(world.names["dlq"], 1)
    reason = dead["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
    assert reason.startswith(f"{key}: not JSON"), reason
    assert json.loads(dead["Body"])["Records"][0]["s3"]["object"]["key"].endswith("broken.json")
    assert world.queue_count(world.names["queue"]) == 0  # sent once, not retried


def test_endpoint_down_retries_only_that_message_and_the_redrive_keeps_it(world: World) -> None:
    t0 = time.time() - 60
    dead = boto3.client("sagemaker-runtime", endpoint_url=f"http://127.0.0.1:{free_port()}")
    live = world.ingest.client("sagemaker-runtime")
    world.ingest.clients["sagemaker-runtime"] = dead
    _, snap_id = put_snapshot(world.s3, SITE, THING, CAMERA, ["door-8-8"], t0 + 1, person_jpeg(3))
    put_record(world.s3, THING, CAMERA, [end_event(CAMERA, "door-8-8", t0, snapshot=snap_id),
                                         end_event(CAMERA, "door-9-9", t0, snapshot=None)])
    wait_until(lambda: world.queue_count(world.names["queue"]) == 2, 10, what="both notifications")
    received, failed = world.runner.poll_once()
    assert (received, failed) == (2, 1)  # the record went through; only the snapshot is retried
    assert world.item("door-9-9")[names.ITEM_VERDICT] == names.UNVERIFIED
    assert names.ITEM_VERDICT not in world.item("door-8-8")
    # the endpoint comes back before maxReceiveCount (2): the second receive decides it
    world.ingest.clients["sagemaker-runtime"] = live
    assert world.decided("door-8-8")[names.ITEM_VERDICT] == names.CONFIRMED
    # down for good: after two receives SQS's redrive moves the message to the DLQ (moto honours it)
    world.ingest.clients["sagemaker-runtime"] = dead
    put_snapshot(world.s3, SITE, THING, CAMERA, ["door-10-1"], t0 + 1, person_jpeg(4))
    drain(world.runner, lambda: world.queue_count(world.names["dlq"]) == 1, what="the redrive to the DLQ")
    assert "door-10-1-1.jpg" in world.received(world.names["dlq"], 1)[0]["Body"]


def test_a_batch_puts_its_verdict_counts_in_one_request(world: World) -> None:
    calls: list[int] = []
    world.ingest.session.events.register(
        "provide-client-params.cloudwatch.PutMetricData", lambda params, **_: calls.append(len(params["MetricData"])))
    t0 = time.time() - 60
    for i in range(3):  # three archived batches: three messages, one SQS batch
        put_record(world.s3, THING, CAMERA, [end_event(CAMERA, f"door-20-{i}", t0, label="car", snapshot=None)])
    wait_until(lambda: world.queue_count(world.names["queue"]) == 3, 10, what="three notifications")
    assert world.runner.poll_once() == (3, 0)
    assert all(world.item(f"door-20-{i}")[names.ITEM_VERDICT] == names.UNVERIFIED for i in range(3))
    assert calls == [3]  # one request, a datum per decided event
