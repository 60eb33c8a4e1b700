"""deploy/cloudformation/processing.yaml deployed into moto's server (IAM enforced) after storage.yaml, and the
ingest path run end to end on it: objects written to the data bucket as the edge writes them, the bucket's S3 ->
SQS notification, the event-source runner standing in for the stack's event source mapping, the handler,
the endpoint process, DynamoDB and EventBridge.

moto cannot execute the function (Lambda execution needs Docker): the runner calls the same handler. The
ingest queue and the data bucket's notification are storage.yaml's; moto's CloudFormation ignores a bucket's
NotificationConfiguration, so the test puts exactly what the template declares.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.decode import cfn_yaml
from cloud_dev import EndpointProcess, end_event, person_jpeg, template_notifications
from harness import REPO, wait_until
from stack_dev import REGION, TEMPLATES, AuthMoto, moto_template
from uplink_dev import aws_test_env

from cloud.ingest import ENV_VARS, Ingest
from cloud.runner import SqsRunner
from ggvision.contract import cloud as names
from ggvision.contract.keys import IMAGES, object_key, rule_archive_key

PREFIX = "ggvision"


def _code_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for pkg in ("cloud", "ggvision/contract"):
            for p in sorted((REPO / pkg).rglob("*.py")):
                z.write(p, p.relative_to(REPO).as_posix())
    return buf.getvalue()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = Path(tmp_path_factory.mktemp("processing"))
    aws_test_env()
    moto = AuthMoto(d / "moto.log")
    ep = EndpointProcess(d / "endpoint.log")
    try:
        storage = moto.deploy("ggvision-storage", moto_template(TEMPLATES / "storage.yaml"))
        moto.client("s3").put_bucket_notification_configuration(
            Bucket=storage["DataBucketName"], NotificationConfiguration=template_notifications(
                TEMPLATES / "storage.yaml", "DataBucket", {"IngestQueue": storage["IngestQueueArn"]}))
        moto.client("s3").put_object(Bucket=storage["ArtifactsBucketName"], Key="cloud/ingest.zip", Body=_code_zip())
        moto.client("events").create_event_bus(Name=f"{PREFIX}-alerts")  # routing.yaml's bus
        out = moto.deploy("ggvision-processing", moto_template(TEMPLATES / "processing.yaml"))
        yield {"moto": moto, "endpoint": ep, "storage": storage, **storage, **out}  # the queues are storage's
    finally:
        ep.stop()
        moto.stop()


def _function() -> dict[str, Any]:
    """The function's properties as deployed (moto's server refuses every Lambda call's signature under IAM
    enforcement, so they are read from the template moto deployed)."""
    return moto_template(TEMPLATES / "processing.yaml")["Resources"]["IngestFunction"]["Properties"]


def test_the_stack_is_named_by_the_contract(stack: dict[str, Any]) -> None:
    assert stack["IngestQueueUrl"].endswith("/" + names.queue_name(PREFIX))
    assert stack["IngestDeadLetterQueueUrl"].endswith("/" + names.dlq_name(PREFIX))
    assert stack["VerdictsTableName"] == names.table_name(PREFIX)
    assert stack["ResultsBucketName"] == names.results_bucket_name(PREFIX, REGION, "123456789012")
    moto = stack["moto"]
    table = moto.client("dynamodb").describe_table(TableName=stack["VerdictsTableName"])["Table"]
    assert {ix["IndexName"] for ix in table["GlobalSecondaryIndexes"]} == {names.INDEX_SITE_TIME,
                                                                           names.INDEX_CAMERA_TIME}
    # moto's CloudFormation leaves TimeToLiveSpecification out (describe_time_to_live says DISABLED): the
    # template is read for it instead
    doc = moto_template(TEMPLATES / "processing.yaml")["Resources"]["VerdictsTable"]["Properties"]
    assert doc["TimeToLiveSpecification"] == {"AttributeName": names.ITEM_TTL, "Enabled": True}
    fn = _function()
    assert fn["Handler"] == "cloud.ingest.handler"
    assert set(fn["Environment"]["Variables"]) == set(ENV_VARS)
    mapping = moto_template(TEMPLATES / "processing.yaml")["Resources"]["IngestEventSource"]["Properties"]
    assert mapping["EventSourceArn"] == {"Fn::ImportValue": {"Fn::Sub": "${StorageStackName}-IngestQueueArn"}}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    redrive = json.loads(moto.client("sqs").get_queue_attributes(
        QueueUrl=stack["IngestQueueUrl"], AttributeNames=["RedrivePolicy"])["Attributes"]["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":" + names.dlq_name(PREFIX))


def test_the_data_bucket_notifies_the_ingest_queue_without_a_cycle() -> None:
    doc = moto_template(TEMPLATES / "storage.yaml")
    res = doc["Resources"]
    assert res["IngestQueue"]["Properties"]["QueueName"] == {"Fn::Sub": names.QUEUE_TEMPLATE.replace(
        "{prefix}", "${NamePrefix}")}
    assert res["IngestDeadLetterQueue"]["Properties"]["QueueName"] == {"Fn::Sub": names.DLQ_TEMPLATE.replace(
        "{prefix}", "${NamePrefix}")}
    conf = template_notifications(TEMPLATES / "storage.yaml", "DataBucket", {"IngestQueue": "arn:q"})
    assert sorted(r["Filter"]["Key"]["FilterRules"][0]["Value"] for r in conf["QueueConfigurations"]) == sorted(
        names.TRIGGER_PREFIXES)
    assert all(r["QueueArn"] == "arn:q" and r["Events"] == ["s3:ObjectCreated:*"] for r in conf["QueueConfigurations"])
    # S3 validates the destination when the notification is put: the queue policy comes first, and it names the
    # bucket by the ARN of its name (a GetAtt on the bucket would close a cycle bucket -> policy -> bucket)
    assert res["DataBucket"]["DependsOn"] == "IngestQueuePolicy"
    raw = cfn_yaml.load(str(TEMPLATES / "storage.yaml"))  # moto_template drops the policy (a moto gap)
    cond = raw["Resources"]["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]
    bucket = res["DataBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    assert cond["ArnEquals"]["aws:SourceArn"] == {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::{bucket}"}


def test_edge_objects_to_a_verdict_on_the_deployed_stack(stack: dict[str, Any],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    moto: AuthMoto = stack["moto"]
    env = {"TABLE_NAME": stack["VerdictsTableName"], "RESULTS_BUCKET": stack["ResultsBucketName"],
           "DLQ_URL": stack["IngestDeadLetterQueueUrl"], "ENDPOINT_NAME": "ggvision-second-stage",
           "EVENT_BUS_NAME": f"{PREFIX}-alerts", "RETENTION_DAYS": "7"}  # the template's values, defaults taken
    assert set(env) == set(_function()["Environment"]["Variables"])
    # The handler runs with the administrator's keys: moto's evaluator authorizes DynamoDB calls without the
    # table's ARN (AccessDenied for a role scoped to it), which tests/moto_authz.py does not supply yet.
    for k, v in {**env, **moto.admin.env(), "AWS_ENDPOINT_URL": moto.url,
                 "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": stack["endpoint"].url}.items():
        monkeypatch.setenv(k, v)
    ingest = Ingest.from_env()
    bucket = stack["storage"]["DataBucketName"]
    s3 = moto.client("s3")
    runner = SqsRunner(moto.client("sqs"), stack["IngestQueueUrl"], ingest.handle, visibility_timeout=2, wait_s=0)
    # the edge's writes: a snapshot (with the Uplink's metadata) and the IoT rule's archive of the end record
    t0, ev, thing = time.time() - 30, "gate-1795000002000-4", "site-1-box"
    snap_id = f"filter:gate:{ev}:snapshot-1"
    s3.put_object(Bucket=bucket, Key=object_key("", IMAGES, "site-1", thing, "gate", t0 + 2, f"{ev}-1.jpg"),
                  Body=person_jpeg(), ContentType="image/jpeg",
                  Metadata={"id": snap_id, "start": f"{t0 + 2:.3f}", "event-ids": json.dumps([ev])})
    batch = {"schema": "uplink-batch/1.0", "thing": thing, "camera": "gate", "topic": f"ggvision/{thing}/results",
             "count": 1, "items": [{"id": f"filter:gate:{ev}:end-3", "producer": "com.ggvision.Filter",
                                    "priority": "results", "start": t0, "end": t0 + 4,
                                    "payload": end_event("gate", ev, t0, snapshot=snap_id)}],
             "received_at": int(time.time() * 1000)}
    s3.put_object(Bucket=bucket, Key=rule_archive_key("results", thing, time.time(), "u-1.json"),
                  Body=json.dumps(batch).encode())
    table = boto3.resource("dynamodb", endpoint_url=moto.url, region_name=REGION,
                           aws_access_key_id=moto.admin.key, aws_secret_access_key=moto.admin.secret).Table(
        stack["VerdictsTableName"])

    def decided() -> dict[str, Any]:
        runner.poll_once()
        return table.get_item(Key={names.ITEM_KEY: names.item_key(thing, ev)}).get("Item", {}).get(
            names.ITEM_VERDICT)

    assert wait_until(decided, 40, what="the verdict") == names.CONFIRMED
    sqs = moto.client("sqs")
    wait_until(lambda: not sqs.receive_message(QueueUrl=stack["IngestQueueUrl"], WaitTimeSeconds=0).get("Messages"),
               10, what="an empty ingest queue")
    assert not sqs.receive_message(QueueUrl=stack["IngestDeadLetterQueueUrl"]).get("Messages")


def test_docs_name_what_the_code_uses() -> None:
    doc = (REPO / "docs" / "cloud.md").read_text()
    for name in (names.EVENT_SOURCE, names.DETAIL_TYPE_CONFIRMED, names.METRICS_NAMESPACE, names.METRIC_VERDICTS,
                 names.METRIC_DISAGREEMENTS, names.INDEX_SITE_TIME, names.INDEX_CAMERA_TIME, names.ITEM_TTL,
                 *names.VERDICTS, "cloud.ingest.handler", "ReportBatchItemFailures"):
        assert f"`{name}`" in doc or name in doc, f"docs/cloud.md does not name {name}"
    item = doc.split("## The item")[1].split("##")[0]
    for attr in (v for k, v in vars(names).items() if k.startswith("ITEM_") and k != "ITEM_KEY"):
        assert f"`{attr}`" in item, f"docs/cloud.md's item layout lacks {attr}"
