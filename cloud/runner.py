"""A local stand-in for Lambda's SQS event source mapping: receive a batch from the queue (batch size,
visibility timeout), build the SQS event document Lambda builds (Records[] with messageId, receiptHandle, body,
attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN, awsRegion), call the handler, and delete
the messages the handler did not report in batchItemFailures (ReportBatchItemFailures). A handler that raises
fails the whole batch. Failed messages become visible again after the visibility timeout, and the queue's
redrive policy (SQS itself; moto's server honours maxReceiveCount) moves them to the dead-letter queue.

`KinesisRunner` stands in for Lambda's Kinesis event source mapping the same way: per shard, GetShardIterator
(the starting position, then AFTER_SEQUENCE_NUMBER of the checkpoint) and GetRecords (batch size), the Kinesis
event document (Records[] with kinesis.{data (base64), partitionKey, sequenceNumber,
approximateArrivalTimestamp}, eventID, eventSourceARN, ...), the handler, and the checkpoint:
- batchItemFailures (ReportBatchItemFailures): the shard resumes at the lowest sequence number reported
  (itemIdentifier); the records before it are done;
- a handler that raises: with bisect (BisectBatchOnFunctionError) the batch is split in two halves, each
  invoked on its own, down to the failing record; without it the whole batch is retried;
- a record retried more than max_retries times (MaximumRetryAttempts) is discarded and reported in
  `discarded` (Lambda's on-failure destination) so the shard moves on.

Lambda's execution itself needs Docker under moto; these runners call the same handler function in-process.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cloud.runner")

Handler = Callable[[dict[str, Any], Any], dict[str, Any] | None]


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda passes for received SQS messages (ReceiveMessage with all attributes)."""
    return {"Records": [{
        "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
        "attributes": m.get("Attributes", {}),
        "messageAttributes": {k: {"stringValue": v.get("StringValue"), "binaryValue": v.get("BinaryValue"),
                                  "stringListValues": [], "binaryListValues": [], "dataType": v["DataType"]}
                              for k, v in m.get("MessageAttributes", {}).items()},
        "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs", "eventSourceARN": queue_arn, "awsRegion": region,
    } for m in messages]}


class SqsRunner:
    def __init__(self, sqs: Any, queue_url: str, handler: Handler, *, batch_size: int = 10,
                 visibility_timeout: int = 30, wait_s: int = 1) -> None:
        if not 1 <= batch_size <= 10:
            raise ValueError(f"batch_size: 1..10 (ReceiveMessage's MaxNumberOfMessages), got {batch_size}")
        self.sqs, self.queue_url, self.handler = sqs, queue_url, handler
        self.batch_size, self.visibility_timeout, self.wait_s = batch_size, visibility_timeout, wait_s
        attrs = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]
        self.queue_arn = attrs["QueueArn"]
        self.region = self.queue_arn.split(":")[3]

    def poll_once(self) -> tuple[int, int]:
        """One receive → handler → delete round: (messages received, messages failed)."""
        r = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=self.batch_size,
                                     VisibilityTimeout=self.visibility_timeout, WaitTimeSeconds=self.wait_s,
                                     AttributeNames=["All"], MessageAttributeNames=["All"])
        messages = r.get("Messages", [])
        if not messages:
            return 0, 0
        try:
            answer = self.handler(sqs_event(messages, self.queue_arn, self.region), None) or {}
            failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
        except Exception:
            log.exception("handler raised: the whole batch of %d is retried", len(messages))
            return len(messages), len(messages)
        done = [m for m in messages if m["MessageId"] not in failed]
        for i in range(0, len(done), 10):
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(j), "ReceiptHandle": m["ReceiptHandle"]} for j, m in enumerate(done[i:i + 10])])
        return len(messages), len(messages) - len(done)


def kinesis_event(records: list[dict[str, Any]], stream_arn: str, shard_id: str, region: str) -> dict[str, Any]:
    """The event Lambda passes for records GetRecords returned."""
    return {"Records": [{
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"], "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp()},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard_id}:{r['SequenceNumber']}",
        "eventName": "aws:kinesis:record", "invokeIdentityArn": "", "awsRegion": region,
        "eventSourceARN": stream_arn,
    } for r in records]}


class KinesisRunner:
    def __init__(self, kinesis: Any, stream_name: str, handler: Handler, *, batch_size: int = 100,
                 starting_position: str = "TRIM_HORIZON", bisect_on_error: bool = True, max_retries: int = 3) -> None:
        if not 1 <= batch_size <= 10000:
            raise ValueError(f"batch_size: 1..10000 (the mapping's BatchSize, GetRecords' Limit), got {batch_size}")
        if starting_position not in ("TRIM_HORIZON", "LATEST"):
            raise ValueError(f"starting_position: TRIM_HORIZON or LATEST, got {starting_position!r}")
        self.kinesis, self.stream, self.handler = kinesis, stream_name, handler
        self.batch_size, self.starting_position = batch_size, starting_position
        self.bisect, self.max_retries = bisect_on_error, max_retries
        summary = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        self.stream_arn = summary["StreamARN"]
        self.region = self.stream_arn.split(":")[3]
        self.checkpoints: dict[str, str] = {}  # shard -> the last sequence number done
        self.attempts: dict[str, int] = {}  # sequence number a retry starts at -> tries
        self.discarded: list[tuple[str, str, str]] = []  # (shard, sequence number, why)
        self.invocations = 0

    def _iterator(self, shard: str) -> str:
        cp = self.checkpoints.get(shard)
        kw = ({"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": cp} if cp
              else {"ShardIteratorType": self.starting_position})
        return self.kinesis.get_shard_iterator(StreamName=self.stream, ShardId=shard, **kw)["ShardIterator"]

    def poll_once(self) -> tuple[int, int]:
        """One GetRecords -> handler round per shard: (records received, records left for a retry)."""
        got = left = 0
        for shard in [s["ShardId"] for s in self.kinesis.list_shards(StreamName=self.stream)["Shards"]]:
            records = self.kinesis.get_records(ShardIterator=self._iterator(shard), Limit=self.batch_size)["Records"]
            if records:
                got += len(records)
                left += self._invoke(shard, records)
        return got, left

    def _invoke(self, shard: str, records: list[dict[str, Any]]) -> int:
        """Invoke for `records` and move the checkpoint; the number of records left for a retry."""
        self.invocations += 1
        try:
            answer = self.handler(kinesis_event(records, self.stream_arn, shard, self.region), None) or {}
        except Exception as e:
            log.warning("handler raised on %d record(s) of %s: %s: %s", len(records), shard, type(e).__name__, e)
            if self.bisect and len(records) > 1:
                half = len(records) // 2
                left = self._invoke(shard, records[:half])
                return left + (len(records) - half if left else self._invoke(shard, records[half:]))
            return self._retry(shard, records, 0, f"{type(e).__name__}: {e}")
        seqs = [r["SequenceNumber"] for r in records]
        failed = {f.get("itemIdentifier") for f in answer.get("batchItemFailures", [])}
        if not failed:
            self._done(shard, seqs[-1])
            return 0
        if not failed <= set(seqs):  # Lambda treats an unknown identifier as a failure of the whole batch
            return self._retry(shard, records, 0, f"batchItemFailures names records not in the batch: {failed}")
        at = min(seqs.index(f) for f in failed)
        if at:
            self._done(shard, seqs[at - 1])
        return self._retry(shard, records, at, "reported in batchItemFailures")

    def _done(self, shard: str, seq: str) -> None:
        self.checkpoints[shard] = seq

    def _retry(self, shard: str, records: list[dict[str, Any]], at: int, why: str) -> int:
        seq = records[at]["SequenceNumber"]
        self.attempts[seq] = self.attempts.get(seq, 0) + 1
        if self.attempts[seq] <= self.max_retries:
            return len(records) - at
        # MaximumRetryAttempts spent: Lambda sends the batch's description to the on-failure destination and
        # goes on; here the failing record is discarded so the shard moves on
        self.discarded.append((shard, seq, why))
        log.error("discarded record %s of %s after %d retries: %s", seq, shard, self.max_retries, why)
        self._done(shard, seq)
        return 0
