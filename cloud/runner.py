"""A local stand-in for Lambda's SQS event source mapping: receive a batch from the queue (batch size,
visibility timeout), build the SQS event document Lambda builds (Records[] with messageId, receiptHandle, body,
attributes, messageAttributes, md5OfBody, eventSource, eventSourceARN, awsRegion), call the handler, and delete
the messages the handler did not report in batchItemFailures (ReportBatchItemFailures). A handler that raises
fails the whole batch. Failed messages become visible again after the visibility timeout, and the queue's
redrive policy (SQS itself; moto's server honours maxReceiveCount) moves them to the dead-letter queue.

Lambda's execution itself needs Docker under moto; this runner calls the same handler function in-process.
"""

from __future__ import annotations

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
