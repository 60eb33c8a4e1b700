"""The real-time path on moto's server (IAM enforced): storage.yaml, routing.yaml (the Uplink's Kinesis stream) and
deploy/cloudformation/realtime.yaml deployed; the real Uplink engine writes uplink-record/1.0 to the stream with
the device's own credentials; cloud/runner.py's KinesisRunner stands in for the stack's event source mapping and
calls cloud.realtime.handler; counts land in the deployed table and CloudWatch, anomalies on EventBridge.

moto cannot execute the functions (Lambda execution needs Docker), and its CloudFormation ignores the table's
TimeToLiveSpecification: both are read from the template instead.
"""

from __future__ import annotations

import base64
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cloud_dev import end_event
from cloud_dev import template_doc as _doc
from filter_dev import filter_counts
from harness import REPO, wait_until
from stack_dev import REGION, STACKS, TEMPLATES, AuthMoto, moto_template
from uplink_dev import aws_test_env

from cloud.realtime import ENV_VARS, Realtime
from cloud.runner import KinesisRunner
from ggvision.config.base import parse
from ggvision.config.uplink import UplinkConfig
from ggvision.contract import cloud as names
from ggvision.contract import streams
from ggvision.uplink.dirsink import DirectorySink
from ggvision.uplink.engine import Engine, stream_sinks
from ggvision.uplink.messages import parse_put
from ggvision.uplink.queue import UplinkQueue

PREFIX, SITE, THING = "ggvision", "site-3", "site-3-box"


def _code_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for pkg in ("cloud", "ggvision/contract"):
            for p in sorted((REPO / pkg).rglob("*.py")):
                z.write(p, p.relative_to(REPO).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = Path(tmp_path_factory.mktemp("realtime"))
    aws_test_env()
    moto = AuthMoto(d / "moto.log")
    try:
        out: dict[str, Any] = {}
        for name, template in STACKS:
            out.update(moto.deploy(name, moto_template(TEMPLATES / template)))
        moto.client("s3").put_object(Bucket=out["ArtifactsBucketName"], Key="cloud/realtime.zip", Body=_code_zip())
        out.update(moto.deploy("ggvision-realtime", moto_template(TEMPLATES / "realtime.yaml")))
        # what EventBridge gets: a rule on the alerts bus copies ggvision.cloud events to a capture queue
        sqs, events = moto.client("sqs"), moto.client("events")
        cap = sqs.create_queue(QueueName="anomaly-capture")["QueueUrl"]
        cap_arn = sqs.get_queue_attributes(QueueUrl=cap, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="anomalies", EventBusName=f"{PREFIX}-alerts",
                        EventPattern=json.dumps({"source": [names.EVENT_SOURCE]}))
        events.put_targets(Rule="anomalies", EventBusName=f"{PREFIX}-alerts", Targets=[{"Id": "c", "Arn": cap_arn}])
        yield {"moto": moto, "capture": cap, "device": moto.credentials_for("device-rt", moto.device_policy(THING)),
               **out}
    finally:
        moto.stop()


@pytest.fixture
def rt(stack: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Realtime:
    """The handler as the stack configures it (the template's environment, defaults taken), with the
    administrator's keys (moto authorizes DynamoDB without the table's ARN: see docs/cloud.md)."""
    moto: AuthMoto = stack["moto"]
    # botocore gzips a PutMetricData body of 10 KB or more; moto's signature check under IAM enforcement reads the
    # compressed body as it is and refuses the signature (SignatureDoesNotMatch): compression off for moto only
    for k, v in {**moto.admin.env(), "AWS_ENDPOINT_URL": moto.url, "AWS_DEFAULT_REGION": REGION,
                 "AWS_DISABLE_REQUEST_COMPRESSION": "true"}.items():
        monkeypatch.setenv(k, v)
    template = _doc(TEMPLATES / "realtime.yaml")
    env = {k: stack["CountsTableName"] if ref == {"Ref": "CountsTable"} else
           str(template["Parameters"][ref["Ref"]]["Default"])
           for k, ref in _function("RealtimeFunction")["Environment"]["Variables"].items()}
    assert set(env) == set(ENV_VARS) and env["EVENT_BUS_NAME"] == f"{PREFIX}-alerts"
    out = Realtime.from_env(env)
    assert (out.silence_s, out.baseline_s, out.high_sigma, out.high_min) == (1800, 3600, 6, 10)  # what tests assume
    return out


def _function(name: str) -> dict[str, Any]:
    return _doc(TEMPLATES / "realtime.yaml")["Resources"][name]["Properties"]


def _table(stack: dict[str, Any]) -> Any:
    moto = stack["moto"]
    return boto3.resource("dynamodb", endpoint_url=moto.url, region_name=REGION, aws_access_key_id=moto.admin.key,
                          aws_secret_access_key=moto.admin.secret).Table(stack["CountsTableName"])


def _anomalies(stack: dict[str, Any], wait: float = 5) -> list[dict[str, Any]]:
    sqs, out = stack["moto"].client("sqs"), []
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        got = sqs.receive_message(QueueUrl=stack["capture"], MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", [])
        for m in got:
            out.append(json.loads(m["Body"]))
            sqs.delete_message(QueueUrl=stack["capture"], ReceiptHandle=m["ReceiptHandle"])
        if out and not got:
            break
    return out


def _record(seq: int, thing: str, camera: str, payload: dict[str, Any], arrived: float,
            site: str = SITE) -> dict[str, Any]:
    """A Kinesis event record (Lambda's shape) of an uplink-record/1.0 as the Uplink writes it."""
    doc = {"schema": "uplink-record/1.0", "id": f"filter:{camera}:{seq}", "thing": thing, "site": site,
           "camera": camera, "topic": f"ggvision/{thing}/results", "seq": seq, "producer": "com.ggvision.Filter",
           "priority": "results", "start": payload.get("start", arrived), "end": payload.get("end", arrived),
           "payload": payload}
    return {"kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": streams.partition_key(thing, camera),
                        "sequenceNumber": f"4959{seq:052d}",
                        "data": base64.b64encode(json.dumps(doc).encode()).decode(),
                        "approximateArrivalTimestamp": arrived},
            "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventName": "aws:kinesis:record",
            "eventID": f"shardId-000000000000:4959{seq:052d}", "awsRegion": REGION,
            "eventSourceARN": f"arn:aws:kinesis:{REGION}:123456789012:stream/{PREFIX}-uplink"}


def test_the_stack_is_named_by_the_contract(stack: dict[str, Any]) -> None:
    assert stack["CountsTableName"] == names.counts_table_name(PREFIX)
    assert stack["UplinkStreamName"] == streams.stream_name(PREFIX)
    table = stack["moto"].client("dynamodb").describe_table(TableName=stack["CountsTableName"])["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == [names.COUNT_KEY, names.COUNT_MINUTE]
    assert [ix["IndexName"] for ix in table["GlobalSecondaryIndexes"]] == [names.INDEX_SITE_SEEN]
    res = _doc(TEMPLATES / "realtime.yaml")["Resources"]
    assert res["CountsTable"]["Properties"]["TimeToLiveSpecification"] == {"AttributeName": names.TTL_ATTRIBUTE,
                                                                           "Enabled": True}
    mapping = res["RealtimeEventSource"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True and mapping["ParallelizationFactor"] == 1
    assert _function("RealtimeFunction")["Handler"] == "cloud.realtime.handler"
    assert _function("SilenceFunction")["Handler"] == "cloud.realtime.silence_handler"
    assert _function("SilenceFunction")["Environment"] == _function("RealtimeFunction")["Environment"]
    # least privilege: no wildcard action, a resource on everything but PutMetricData (scoped by namespace)
    [policy] = res["RealtimeRole"]["Properties"]["Policies"]
    for st in policy["PolicyDocument"]["Statement"]:
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        assert all("*" not in a for a in actions), st
        if st["Resource"] == "*":
            assert actions == ["cloudwatch:PutMetricData"]
            assert st["Condition"] == {"StringEquals": {"cloudwatch:namespace": names.METRICS_NAMESPACE}}


def test_uplink_records_become_counts_per_camera_minute_once(stack: dict[str, Any], rt: Realtime,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = names.minute_of(time.time()) - 180 + 5
    payloads = [end_event("door", f"door-{i}", t0 + i, label=label)
                for i, label in enumerate(["person", "person", "car", "person", "car"])]
    payloads.append({**end_event("door", "door-9", t0 + 9), "kind": "new"})  # not counted: its end will be
    # the real Uplink engine, with the device's credentials, writes each item to the stream
    q = UplinkQueue(tmp_path / "q")
    cfg = parse(UplinkConfig, {"site": SITE, "iot": {"enabled": False}, "archive": {"enabled": False}, "kinesis": {
        "streamName": stack["UplinkStreamName"], "endpointUrl": stack["moto"].url, "region": REGION}})
    device = stack["device"]
    with monkeypatch.context() as m:
        for k, v in device.env().items():
            m.setenv(k, v)
        engine = Engine(q, cfg, THING, DirectorySink(tmp_path / "bucket"), stream_sinks(cfg, tmp_path, THING))
        # queued as the component queues a Filter message (its lanes: the configuration's, here kinesis only)
        q.put_many([parse_put({"schema": "uplink-put/1.0", "id": f"filter:door:{p['event_id']}:{p['kind']}-1",
                               "producer": "com.ggvision.Filter", "priority": "results", "camera": "door",
                               "start": p["start"], "end": p["end"], "destination": "iot",
                               "topic": "ggvision/{thing}/results", "payload": p}, THING, 130000) for p in payloads])
        engine.start()
        try:
            wait_until(lambda: q.stats()["backlog_items"]["results"] == 0, 30, what="the kinesis lane drained")
        finally:
            engine.stop()
            q.close()
    runner = KinesisRunner(stack["moto"].client("kinesis"), stack["UplinkStreamName"], rt.handle, batch_size=4)
    wait_until(lambda: runner.poll_once() == (0, 0) and runner.checkpoints, 20, interval=0.05,
               what="the stream read to its end")
    table = _table(stack)
    key = {names.COUNT_KEY: names.camera_key(THING, "door"), names.COUNT_MINUTE: names.minute_of(t0)}
    item = table.get_item(Key=key)["Item"]
    assert (item[names.label_attribute("person")], item[names.label_attribute("car")], item[names.COUNT_TOTAL]) == (
        3, 2, 5)
    assert item[names.COUNT_SITE] == SITE and item[names.TTL_ATTRIBUTE] == names.expires_at(names.minute_of(t0))
    camera = table.get_item(Key={**key, names.COUNT_MINUTE: names.CAMERA_ITEM})["Item"]
    assert camera[names.CAMERA_SEEN_AT] > t0 and names.CAMERA_SILENT_SINCE not in camera
    # redelivery: the whole stream again from the start (a lost checkpoint) changes nothing
    again = KinesisRunner(stack["moto"].client("kinesis"), stack["UplinkStreamName"], rt.handle, batch_size=100)
    assert again.poll_once() == (6, 0)
    assert table.get_item(Key=key)["Item"] == item
    cw = stack["moto"].client("cloudwatch")
    metrics = cw.list_metrics(Namespace=names.METRICS_NAMESPACE, MetricName=names.METRIC_EVENTS)["Metrics"]
    dims = sorted(tuple((d["Name"], d["Value"]) for d in m["Dimensions"]) for m in metrics)
    assert (("Site", SITE), ("Camera", f"{THING}/door"), ("Label", "person")) in dims
    stats = cw.get_metric_statistics(
        Namespace=names.METRICS_NAMESPACE, MetricName=names.METRIC_EVENTS, Statistics=["Sum"], Period=60,
        StartTime=names.minute_of(t0) - 60, EndTime=names.minute_of(t0) + 120,
        Dimensions=[{"Name": "Site", "Value": SITE}, {"Name": "Camera", "Value": f"{THING}/door"},
                    {"Name": "Label", "Value": "person"}])["Datapoints"]
    assert sum(p["Sum"] for p in stats) == 3  # put once: the redelivery added no datum


def test_a_count_far_above_its_usual_level_is_raised_once(stack: dict[str, Any], rt: Realtime) -> None:
    thing, camera = "site-3-box2", "gate"
    now = names.minute_of(time.time())
    hour_ago = now - 3600 - 120
    # an hour of one person a minute (the usual level), arriving when they happened
    usual = [_record(i, thing, camera, end_event(camera, f"u{i}", hour_ago + 60 * i + 1), hour_ago + 60 * i + 2)
             for i in range(60)]
    assert rt.handle({"Records": usual}) == {"batchItemFailures": []}
    _anomalies(stack, wait=1)
    # then 8 in a minute: over usual + 6 * sqrt(usual) = 7, but under HighMin (10): not raised
    burst = now - 60
    small = [_record(100 + i, thing, camera, end_event(camera, f"s{i}", burst - 60 + 1), burst - 59) for i in range(8)]
    rt.handle({"Records": small})
    assert _anomalies(stack, wait=2) == []
    # 20 in the next minute: raised, once, though the batch comes again
    big = [_record(200 + i, thing, camera, end_event(camera, f"b{i}", burst + 1), burst + 2) for i in range(20)]
    rt.handle({"Records": big})
    rt.handle({"Records": big})
    [ev] = _anomalies(stack)
    assert ev["detail-type"] == names.DETAIL_TYPE_HIGH_COUNT and ev["source"] == names.EVENT_SOURCE
    d = ev["detail"]
    assert (d["schema"], d["kind"], d["site"], d["thing"], d["camera"], d["label"], d["minute"], d["count"]) == (
        names.ANOMALY_SCHEMA, "high-count", SITE, thing, camera, "person", burst, 20)
    assert 0.9 < d["usual_per_minute"] < 1.2 and d["threshold"] == pytest.approx(
        d["usual_per_minute"] + 6 * d["usual_per_minute"] ** 0.5, abs=0.01)


def test_a_silent_camera_is_raised_once_and_cleared_by_its_next_record(stack: dict[str, Any], rt: Realtime) -> None:
    thing, camera = "site-3-box3", "yard"
    t = time.time() - 2000  # older than SILENCE_S (1800)
    assert rt.handle({"Records": [_record(1, thing, camera, end_event(camera, "y1", t), t)]})["batchItemFailures"] == []
    key = names.camera_key(thing, camera)
    assert key in rt.silence()
    assert key not in rt.silence()  # once per silence
    [ev] = [e for e in _anomalies(stack) if e["detail"]["camera"] == camera]
    assert ev["detail-type"] == names.DETAIL_TYPE_SILENT and ev["detail"]["silent_s"] >= 1800
    rt.handle({"Records": [_record(2, thing, camera, {"schema": "filter-alert/1.0"}, time.time())]})  # any record
    item = _table(stack).get_item(Key={names.COUNT_KEY: key, names.COUNT_MINUTE: names.CAMERA_ITEM})["Item"]
    assert names.CAMERA_SILENT_SINCE not in item
    assert key not in rt.silence()


def test_a_malformed_record_is_counted_and_skipped(stack: dict[str, Any], rt: Realtime) -> None:
    t = time.time() - 30
    good = _record(1, "site-3-box4", "door", end_event("door", "d1", t), t)
    bad = {**_record(2, "site-3-box4", "door", {}, t)}
    bad["kinesis"] = {**bad["kinesis"], "data": base64.b64encode(b"{not json").decode()}
    wrong = _record(3, "site-3-box4", "door", {}, t)
    wrong["kinesis"]["data"] = base64.b64encode(json.dumps({"schema": "uplink-batch/1.0"}).encode()).decode()
    assert rt.handle({"Records": [bad, good, wrong]}) == {"batchItemFailures": []}
    assert rt.malformed == 2
    item = _table(stack).get_item(Key={names.COUNT_KEY: names.camera_key("site-3-box4", "door"),
                                       names.COUNT_MINUTE: names.minute_of(t)})["Item"]
    assert item[names.COUNT_TOTAL] == 1


def test_a_failure_reports_the_first_record_not_applied(stack: dict[str, Any], rt: Realtime) -> None:
    t = time.time() - 30
    records = [_record(10 + i, "site-3-box5", "door", end_event("door", f"f{i}", t), t) for i in range(3)]
    gone = Realtime("no-such-table", session=rt.session)  # DynamoDB answers ResourceNotFound
    first = records[0]["kinesis"]["sequenceNumber"]
    assert gone.handle({"Records": records}) == {"batchItemFailures": [{"itemIdentifier": first}]}


class Flaky:
    """A handler around the real one that fails on one record: by reporting it, or by raising."""

    def __init__(self, inner: Any, poison: str, mode: str) -> None:
        self.inner, self.poison, self.mode, self.calls = inner, poison, mode, []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        seqs = [r["kinesis"]["sequenceNumber"] for r in event["Records"]]
        self.calls.append(len(seqs))
        if self.poison in seqs:
            if self.mode == "raise":
                raise RuntimeError("poisoned")
            ok = {"Records": event["Records"][:seqs.index(self.poison)]}
            self.inner(ok, context)
            return {"batchItemFailures": [{"itemIdentifier": self.poison}]}
        return self.inner(event, context)


@pytest.mark.parametrize("mode", ["report", "raise"])
def test_the_runner_resumes_at_the_failure_bisects_and_discards_after_retries(stack: dict[str, Any], rt: Realtime,
                                                                              mode: str) -> None:
    kin = stack["moto"].client("kinesis")
    name = f"rt-{mode}"
    kin.create_stream(StreamName=name, ShardCount=1)
    wait_until(lambda: kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
               == "ACTIVE", 10, what="the stream")
    t = time.time() - 30
    thing = f"site-3-{mode}"
    seqs = []
    for i in range(8):
        doc = {"schema": "uplink-record/1.0", "id": f"x{i}", "thing": thing, "site": SITE, "camera": "door",
               "payload": end_event("door", f"e{i}", t)}
        seqs.append(kin.put_record(StreamName=name, Data=json.dumps(doc).encode(), PartitionKey="k")["SequenceNumber"])
    flaky = Flaky(rt.handle, seqs[5], mode)
    runner = KinesisRunner(kin, name, flaky, batch_size=8, max_retries=2)
    assert runner.poll_once() == (8, 3)  # records 5, 6, 7 are left for a retry
    assert runner.checkpoints["shardId-000000000000"] == seqs[4]
    if mode == "raise":
        assert flaky.calls == [8, 4, 4, 2, 1, 1]  # halves down to the poisoned record; 6 and 7 wait behind it
    key = {names.COUNT_KEY: names.camera_key(thing, "door"), names.COUNT_MINUTE: names.minute_of(t)}
    assert _table(stack).get_item(Key=key)["Item"][names.COUNT_TOTAL] == 5
    assert runner.poll_once() == (3, 3)  # the second try
    assert runner.poll_once()[1] == 0 and runner.discarded == [("shardId-000000000000", seqs[5], (
        "reported in batchItemFailures" if mode == "report" else "RuntimeError: poisoned"))]  # the third: discarded
    assert runner.poll_once()[1] == 0  # the shard goes on behind it (bisect has done so in the same round)
    assert _table(stack).get_item(Key=key)["Item"][names.COUNT_TOTAL] == 7
    assert runner.poll_once() == (0, 0)


def test_docs_name_what_the_code_uses() -> None:
    doc = (REPO / "docs" / "cloud.md").read_text().split("## The real-time path")[1].split("\n## ")[0]
    for name in (names.DETAIL_TYPE_SILENT, names.DETAIL_TYPE_HIGH_COUNT, names.ANOMALY_SCHEMA, names.METRIC_EVENTS,
                 names.METRIC_MALFORMED_RECORDS, names.COUNT_LAST_SEQ, names.CAMERA_SEEN_AT, names.CAMERA_FIRST_SEEN,
                 names.CAMERA_SILENT_SINCE, names.COUNT_ALERTED, names.TTL_ATTRIBUTE, "cloud.realtime.handler",
                 names.METRIC_CROSSINGS, names.METRIC_ZONE_OCCUPANCY, names.METRIC_ZONE_HITS, names.COUNT_COUNTS_SEQ,
                 names.COUNT_COUNTS_END, names.COUNTS_SCHEMA,
                 "cloud.realtime.silence_handler", "ReportBatchItemFailures", "BisectBatchOnFunctionError",
                 "KinesisRunner"):
        assert name in doc, f"docs/cloud.md's real-time section does not name {name}"
    params = _doc(TEMPLATES / "realtime.yaml")["Parameters"]
    for p in ("HighMin", "BaselineSeconds", "HighSigma", "SilenceSeconds"):
        assert f"`{p}` ({params[p]['Default']})" in doc, f"docs/cloud.md does not give {p}'s default"


# ---------------------------------------------------------------------------------------------- counts/1.0

def test_the_filters_counts_reach_the_table_and_cloudwatch_once(stack: dict[str, Any], rt: Realtime, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    camera = "hall-door"
    t0 = names.minute_of(time.time()) - 600
    puts = filter_counts(camera, t0)
    assert [p["payload"]["start"] for p in puts] == [t0, t0 + 60, t0 + 120]  # the last: partial, at shutdown
    q = UplinkQueue(tmp_path / "q")
    cfg = parse(UplinkConfig, {"site": SITE, "iot": {"enabled": False}, "archive": {"enabled": False}, "kinesis": {
        "streamName": stack["UplinkStreamName"], "endpointUrl": stack["moto"].url, "region": REGION}})
    with monkeypatch.context() as m:
        for k, v in stack["device"].env().items():
            m.setenv(k, v)
        engine = Engine(q, cfg, THING, DirectorySink(tmp_path / "bucket"), stream_sinks(cfg, tmp_path, THING))
        q.put_many([parse_put(p, THING, 130000) for p in puts])
        engine.start()
        try:
            wait_until(lambda: q.stats()["backlog_items"]["results"] == 0, 30, what="the kinesis lane drained")
        finally:
            engine.stop()
            q.close()
    kin = stack["moto"].client("kinesis")
    runner = KinesisRunner(kin, stack["UplinkStreamName"], rt.handle, batch_size=2)
    wait_until(lambda: runner.poll_once() == (0, 0) and runner.checkpoints, 20, interval=0.05,
               what="the stream read to its end")
    table = _table(stack)
    key = names.camera_key(THING, camera)
    first = table.get_item(Key={names.COUNT_KEY: key, names.COUNT_MINUTE: t0})["Item"]
    cross = lambda d: names.count_attribute(names.COUNT_CROSSING, line="entrance", direction=d,  # noqa: E731
                                            label="person")
    assert (first[cross("in")], first[cross("out")]) == (2, 1)
    assert first[names.count_attribute(names.COUNT_OCCUPANCY_MAX, zone="hall")] == 1
    assert first[names.count_attribute(names.COUNT_ENTERED, zone="hall")] == 1
    assert first[names.COUNT_SITE] == SITE and first[names.TTL_ATTRIBUTE] == names.expires_at(t0)
    second = table.get_item(Key={names.COUNT_KEY: key, names.COUNT_MINUTE: t0 + 60})["Item"]
    assert (second[cross("in")], second[cross("out")]) == (2, 1)
    last = table.get_item(Key={names.COUNT_KEY: key, names.COUNT_MINUTE: t0 + 120})["Item"]
    assert last[cross("in")] == 2 and cross("out") not in last
    assert float(last[names.COUNT_COUNTS_END]) == pytest.approx(t0 + 129.8)  # partial: flushed at shutdown
    # redelivery: the whole stream again (a lost checkpoint) changes nothing
    again = KinesisRunner(kin, stack["UplinkStreamName"], rt.handle, batch_size=100)
    again.poll_once()
    assert table.get_item(Key={names.COUNT_KEY: key, names.COUNT_MINUTE: t0})["Item"] == first
    cw = stack["moto"].client("cloudwatch")
    dims = [{"Name": "Site", "Value": SITE}, {"Name": "Camera", "Value": key}, {"Name": "Line", "Value": "entrance"},
            {"Name": "Direction", "Value": "in"}, {"Name": "Label", "Value": "person"}]
    stats = cw.get_metric_statistics(Namespace=names.METRICS_NAMESPACE, MetricName=names.METRIC_CROSSINGS,
                                     Statistics=["Sum"], Period=60, StartTime=t0 - 60, EndTime=t0 + 300,
                                     Dimensions=dims)["Datapoints"]
    assert sum(p["Sum"] for p in stats) == 6  # three windows of 2, put once
    occ = cw.list_metrics(Namespace=names.METRICS_NAMESPACE, MetricName=names.METRIC_ZONE_OCCUPANCY)["Metrics"]
    assert any({"Name": "Zone", "Value": "hall"} in m["Dimensions"] for m in occ)


@pytest.mark.parametrize("bad, reason", [
    ({"start": "soon"}, "payload.start: expected epoch seconds"),
    ({"lines": {"entrance": {"up": {"person": 1}}}}, 'payload.lines.entrance: expected {"in"'),
    ({"lines": {"entrance": {"in": {"person": -2}}}}, "payload.lines.entrance.in.person: expected a whole number"),
    ({"zones": {"hall": {"max": 1.5}}}, "payload.zones.hall.max: expected a whole number"),
    ({"end": 1.0}, "payload.end: expected start..start + 1 day"),
])
def test_a_malformed_counts_record_is_skipped_with_its_reason(stack: dict[str, Any], rt: Realtime,
                                                              caplog: pytest.LogCaptureFixture, bad: dict[str, Any],
                                                              reason: str) -> None:
    t = names.minute_of(time.time()) - 60
    good = {"schema": names.COUNTS_SCHEMA, "camera": "bad-door", "start": t, "end": t + 60,
            "lines": {"entrance": {"in": {"person": 1}, "out": {}}}, "zones": {}, "hits": {}}
    before = rt.malformed
    with caplog.at_level("WARNING", logger="cloud.realtime"):
        assert rt.handle({"Records": [_record(1, "site-3-bad", "bad-door", {**good, **bad}, t)]}) == {
            "batchItemFailures": []}
    assert rt.malformed == before + 1
    assert any(reason in r.getMessage() and "counts/1.0" in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records]
