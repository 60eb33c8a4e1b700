"""The ingest handler: `handler(event, context)` for Lambda's SQS event source, whose messages are the data
bucket's S3 ObjectCreated notifications (ggvision/contract/cloud.py, TRIGGER_PREFIXES).

One DynamoDB item per edge event, keyed `{thing}#{event_id}`, joins two objects that arrive in either order
(the Uplink sends results before snapshots, and a queue does not keep order):

- the event record (archived `end`): the edge half — label, edge score, boxes, the named snapshot — written
  once (condition: no edge half yet);
- a snapshot: the cloud half — the second-stage model's best score per label on that picture — written when it
  is the latest picture of the event seen so far (condition on its time).

Whichever write completes the pair decides the verdict (ReturnValues ALL_NEW shows both halves to exactly that
writer): the processed result object goes to the results bucket, a confirmed alert (the edge's label is in
ALERT_LABELS and the cloud agrees) to EventBridge, and last the verdict to the item (condition: none yet); the
verdict counts go to CloudWatch in one request at the end of the batch. A crash before the verdict write is redone
by the redelivery: EventBridge is at least once (the detail carries the event id), the item and the result object
exactly one; the counts are at most once (a crash after the verdicts and before the batch's PutMetricData loses
them).
An event whose record names no snapshot is decided `unverified` at once.

Failures: a message whose object is malformed or oversized goes to the dead-letter queue at once, with the reason
as a message attribute (retrying cannot fix it, and the redrive would carry no reason); any other failure is
reported in batchItemFailures and retried by SQS, and after maxReceiveCount receives the redrive policy moves it
to the same dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ggvision.contract import cloud as names

from .records import EdgeEvent, Snapshot, parse_record, parse_snapshot
from .s3events import Malformed, S3Object, parse_body
from .secondstage import classify

log = logging.getLogger("cloud.ingest")

# The function's environment (deploy/cloudformation/processing.yaml sets these)
ENV_TABLE, ENV_RESULTS_BUCKET, ENV_DLQ_URL = "TABLE_NAME", "RESULTS_BUCKET", "DLQ_URL"
ENV_ENDPOINT, ENV_EVENT_BUS, ENV_RETENTION_DAYS = "ENDPOINT_NAME", "EVENT_BUS_NAME", "RETENTION_DAYS"
ENV_VARS = (ENV_TABLE, ENV_RESULTS_BUCKET, ENV_DLQ_URL, ENV_ENDPOINT, ENV_EVENT_BUS, ENV_RETENTION_DAYS)
REASON_ATTRIBUTE = "reason"  # the dead-letter message's attribute that says why


@dataclass
class Ingest:
    """The handler's settings and clients (made once per process: Lambda reuses its container)."""
    table_name: str
    results_bucket: str
    dlq_url: str
    endpoint: str
    event_bus: str = "default"
    retention_days: int = names.RETENTION_DAYS_MAX
    clients: dict[str, Any] = field(default_factory=dict)
    session: Any = field(default_factory=boto3.session.Session)  # its own: credentials as the environment has them now
    pending_metrics: list[dict[str, Any]] = field(default_factory=list)  # the batch's verdict counts, put at its end

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ingest:
        env = dict(os.environ if env is None else env)
        missing = [k for k in (ENV_TABLE, ENV_RESULTS_BUCKET, ENV_DLQ_URL, ENV_ENDPOINT) if not env.get(k)]
        if missing:
            raise RuntimeError(f"cloud.ingest: environment variables not set: {', '.join(missing)}")
        days = int(env.get(ENV_RETENTION_DAYS) or names.RETENTION_DAYS_MAX)
        names.expires_at(0, days)  # refuses more than the privacy rule allows, at start-up
        return cls(env[ENV_TABLE], env[ENV_RESULTS_BUCKET], env[ENV_DLQ_URL], env[ENV_ENDPOINT],
                   env.get(ENV_EVENT_BUS) or "default", days)

    def client(self, service: str) -> Any:
        if service not in self.clients:  # "table": the verdicts table (boto3's resource: plain values in and out)
            self.clients[service] = (self.session.resource("dynamodb").Table(self.table_name) if service == "table"
                                     else self.session.client(service))
        return self.clients[service]

    # ------------------------------------------------------------------ one SQS event
    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        failures = []
        for rec in event.get("Records", []):
            mid = rec.get("messageId", "?")
            try:
                for obj in parse_body(rec.get("body"), mid):
                    self.ingest(obj)
            except Malformed as e:
                log.warning("to the dead-letter queue: %s", e)
                if not self._dead_letter(rec, str(e)):
                    failures.append({"itemIdentifier": mid})
            except Exception as e:  # the endpoint, S3, DynamoDB, ...: SQS delivers the message again
                log.warning("message %s retried: %s: %s", mid, type(e).__name__, e)
                failures.append({"itemIdentifier": mid})
        self._put_metrics()
        return {"batchItemFailures": failures}

    def _put_metrics(self) -> None:
        """The batch's verdict counts in one request (PutMetricData is billed per request: one per event cost
        more than all the rest of the ingest at a busy site, docs/performance.md). A failure here loses counts
        but not verdicts: the items are decided already."""
        data, self.pending_metrics = self.pending_metrics, []
        for i in range(0, len(data), 500):  # PutMetricData takes up to 1000 metrics a request
            try:
                self.client("cloudwatch").put_metric_data(Namespace=names.METRICS_NAMESPACE,
                                                          MetricData=data[i:i + 500])
            except Exception as e:
                log.error("PutMetricData: %s: %s", type(e).__name__, e)

    def _dead_letter(self, rec: dict[str, Any], reason: str) -> bool:
        try:
            self.client("sqs").send_message(
                QueueUrl=self.dlq_url, MessageBody=rec.get("body") or "(empty)",
                MessageAttributes={REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]},
                                   "sourceMessageId": {"DataType": "String",
                                                       "StringValue": str(rec.get("messageId", "?"))}})
            return True
        except Exception as e:  # left to the retries and, at last, the redrive
            log.error("cannot send to the dead-letter queue: %s", e)
            return False

    def ingest(self, obj: S3Object) -> None:
        if obj.key.startswith(names.RECORD_PREFIX):
            if obj.size > names.MAX_RECORD_BYTES:
                raise Malformed(f"{obj.key}: {obj.size} bytes is over the {names.MAX_RECORD_BYTES}-byte record limit")
            body, _, _ = self._get(obj)
            for ev in parse_record(obj.key, body):
                self._edge_half(ev, obj.key)
        elif obj.key.startswith(names.SNAPSHOT_PREFIX):
            if obj.size > names.MAX_SNAPSHOT_BYTES:
                raise Malformed(f"{obj.key}: {obj.size} bytes is over the {names.MAX_SNAPSHOT_BYTES}-byte "
                                "snapshot limit")
            body, meta, ctype = self._get(obj)
            snap = parse_snapshot(obj.key, meta)
            answer = classify(self.client("sagemaker-runtime"), self.endpoint, body, ctype, obj.key)
            for event_id in snap.event_ids:
                self._cloud_half(snap, event_id, answer.label_scores, answer.model)
        else:
            raise Malformed(f"{obj.key}: the ingest reads only {' and '.join(names.TRIGGER_PREFIXES)} keys "
                            "(check the bucket's notification filters)")

    def _get(self, obj: S3Object) -> tuple[bytes, dict[str, str], str]:
        try:
            r = self.client("s3").get_object(Bucket=obj.bucket, Key=obj.key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise Malformed(f"{obj.key}: announced but gone from s3://{obj.bucket} (deleted since)") from None
            raise
        return r["Body"].read(), r.get("Metadata", {}), r.get("ContentType", "application/octet-stream")

    # ------------------------------------------------------------------ the two halves and the verdict
    def _update(self, key: str, sets: dict[str, Any], condition: str, values: dict[str, Any]) -> dict[str, Any]:
        """SET `sets` (a value, or ("if_not_exists", value)) under `condition`; the item after it. When the
        condition fails (redelivery, an older picture), the item as it is."""
        exprs, attr_names, attr_values = [], {}, dict(values)
        for i, (name, v) in enumerate(sets.items()):
            attr_names[f"#a{i}"] = name
            if isinstance(v, tuple):
                exprs.append(f"#a{i} = if_not_exists(#a{i}, :v{i})")
                v = v[1]
            else:
                exprs.append(f"#a{i} = :v{i}")
            attr_values[f":v{i}"] = v
        table = self.client("table")
        try:
            return table.update_item(
                Key={names.ITEM_KEY: key}, UpdateExpression="SET " + ", ".join(exprs),
                ConditionExpression=condition, ExpressionAttributeNames=attr_names,
                ExpressionAttributeValues=_dynamo(attr_values), ReturnValues="ALL_NEW")["Attributes"]
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return table.get_item(Key={names.ITEM_KEY: key}, ConsistentRead=True).get("Item", {})

    def _slots(self, thing: str, camera: str, site: str | None, start: float) -> dict[str, Any]:
        out: dict[str, Any] = {names.ITEM_THING: ("if_not_exists", thing), names.ITEM_CAMERA: ("if_not_exists", camera),
                               names.ITEM_CAMERA_KEY: ("if_not_exists", names.camera_key(thing, camera)),
                               names.ITEM_TTL: ("if_not_exists", names.expires_at(start, self.retention_days))}
        if site:
            out[names.ITEM_SITE] = ("if_not_exists", site)
        return out

    def _edge_half(self, ev: EdgeEvent, record_key: str) -> None:
        item = self._update(names.item_key(ev.thing, ev.event_id), {
            **self._slots(ev.thing, ev.camera, ev.site, ev.start),
            names.ITEM_START: ev.start, names.ITEM_END: ev.end, names.ITEM_LABEL: ev.label,
            names.ITEM_EDGE_SCORE: ev.score, names.ITEM_BOXES: ev.boxes, names.ITEM_SNAPSHOT_ID: ev.snapshot_id,
            names.ITEM_RECORD_KEY: record_key, names.ITEM_EDGE_MODEL: ev.model,
            names.ITEM_TTL: names.expires_at(ev.start, self.retention_days),  # the event's start rules
        }, f"attribute_not_exists({names.ITEM_EDGE_SCORE})", {})
        self._decide(item, ev.event_id)

    def _cloud_half(self, snap: Snapshot, event_id: str, scores: dict[str, float], model: dict[str, str]) -> None:
        item = self._update(names.item_key(snap.thing, event_id), {
            **self._slots(snap.thing, snap.camera, snap.site, snap.taken),
            names.ITEM_SITE: snap.site,  # the key's site is authoritative
            names.ITEM_CLOUD_SNAPSHOT_ID: snap.item_id, names.ITEM_SNAPSHOT_KEY: snap.key,
            names.ITEM_CLOUD_AT: snap.taken, names.ITEM_CLOUD_LABELS: scores, names.ITEM_CLOUD_MODEL: model,
        }, f"attribute_not_exists({names.ITEM_CLOUD_AT}) OR {names.ITEM_CLOUD_AT} < :taken", {":taken": snap.taken})
        self._decide(item, event_id)

    def _decide(self, item: dict[str, Any], event_id: str) -> None:
        if not item or names.ITEM_VERDICT in item or names.ITEM_EDGE_SCORE not in item:
            return  # decided already, or the record has not come yet
        snapshot_id = item.get(names.ITEM_SNAPSHOT_ID)
        label = str(item[names.ITEM_LABEL])
        cloud_score: float | None = None
        if snapshot_id is None:
            verdict = names.UNVERIFIED
        elif item.get(names.ITEM_CLOUD_SNAPSHOT_ID) != snapshot_id:
            return  # the snapshot the record names has not been classified yet
        else:
            cloud_score = float(item.get(names.ITEM_CLOUD_LABELS, {}).get(label, 0))
            verdict = names.CONFIRMED if cloud_score > 0 else names.DISPUTED
        doc = self._result(item, event_id, verdict, cloud_score)
        self.client("s3").put_object(Bucket=self.results_bucket, Key=doc["result_key"], ContentType="application/json",
                                     Body=json.dumps(doc, separators=(",", ":")).encode())
        if verdict == names.CONFIRMED and label in names.ALERT_LABELS:
            r = self.client("events").put_events(Entries=[{
                "Source": names.EVENT_SOURCE, "DetailType": names.DETAIL_TYPE_CONFIRMED,
                "Detail": json.dumps(doc), "EventBusName": self.event_bus,
                "Resources": [f"arn:aws:s3:::{self.results_bucket}/{doc['result_key']}"]}])
            if r.get("FailedEntryCount"):
                e = r["Entries"][0]
                raise RuntimeError(f"PutEvents: {e.get('ErrorCode')}: {e.get('ErrorMessage')}")
        metrics = [{"MetricName": names.METRIC_VERDICTS, "Value": 1.0, "Unit": "Count",
                    "Dimensions": [{"Name": "Verdict", "Value": verdict}, {"Name": "Label", "Value": label}]}]
        if verdict == names.DISPUTED:
            metrics.append({"MetricName": names.METRIC_DISAGREEMENTS, "Value": 1.0, "Unit": "Count",
                            "Dimensions": [{"Name": "Label", "Value": label}]})
        self.pending_metrics.extend(metrics)  # put at the end of the batch (handle)
        sets: dict[str, Any] = {names.ITEM_VERDICT: verdict, names.ITEM_RESULT_KEY: doc["result_key"]}
        if cloud_score is not None:
            sets[names.ITEM_CLOUD_SCORE] = cloud_score
        self._update(str(item[names.ITEM_KEY]), sets, f"attribute_not_exists({names.ITEM_VERDICT})", {})
        log.info("%s: %s (%s edge %s cloud %s)", item[names.ITEM_KEY], verdict, label, item[names.ITEM_EDGE_SCORE],
                 cloud_score)

    def _result(self, item: dict[str, Any], event_id: str, verdict: str, cloud_score: float | None) -> dict[str, Any]:
        site = str(item.get(names.ITEM_SITE) or names.SITE_UNKNOWN)
        thing, camera, start = str(item[names.ITEM_THING]), str(item[names.ITEM_CAMERA]), float(item[names.ITEM_START])
        return _plain({
            "schema": names.RESULT_SCHEMA, "site": site, "thing": thing, "camera": camera, "event_id": event_id,
            "label": item[names.ITEM_LABEL], "start": start, "end": item[names.ITEM_END],
            "edge_score": item[names.ITEM_EDGE_SCORE], "cloud_score": cloud_score, "verdict": verdict,
            "boxes": item.get(names.ITEM_BOXES, []), "cloud_labels": item.get(names.ITEM_CLOUD_LABELS, {}),
            "edge_model": item.get(names.ITEM_EDGE_MODEL, {}), "cloud_model": item.get(names.ITEM_CLOUD_MODEL, {}),
            "record_key": item.get(names.ITEM_RECORD_KEY), "snapshot_key": item.get(names.ITEM_SNAPSHOT_KEY),
            "result_key": names.result_key(site, thing, camera, start, event_id), "decided_at": round(time.time(), 3),
        })


def _dynamo(v: Any) -> Any:
    """Floats as Decimal (boto3's DynamoDB serializer takes no float)."""
    return json.loads(json.dumps(v), parse_float=Decimal)


def _plain(v: Any) -> Any:
    """DynamoDB's Decimals back to JSON numbers."""
    return json.loads(json.dumps(v, default=lambda d: float(d) if d % 1 else int(d)))


_INGEST: Ingest | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda's entry point (Handler `cloud.ingest.handler`, FunctionResponseTypes ReportBatchItemFailures)."""
    global _INGEST
    if _INGEST is None:
        _INGEST = Ingest.from_env()
    return _INGEST.handle(event, context)
