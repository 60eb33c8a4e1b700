"""The Uplink's message streams in the cloud: the SQS queue and the Kinesis data stream of a stack, and the
keys each message carries so that a consumer can order it per camera and drop duplicates.

Names come from the stack's `NamePrefix` (deploy/cloudformation: `^[a-z0-9][a-z0-9-]{1,20}$`):

    SQS queue          {prefix}-uplink.fifo   FIFO: ordered per message group, de-duplicated for 5 minutes
    Kinesis stream     {prefix}-uplink        ordered per shard; partition key below

Every message is one queued item as an `uplink-record/1.0` document (docs/messages.md). Its idempotency key
is (`thing`, `id`): item ids are unique per device only, so the keys the services see include the thing:

    SQS MessageGroupId          {thing}/{camera}            (FIFO queues only; the order unit)
    SQS MessageDeduplicationId  sha256("{thing}/{id}") hex  (FIFO queues only; a re-send within 5 min is dropped)
    Kinesis PartitionKey        {thing}/{camera}            (all of a camera's records on one shard, in order)

A device needs `sqs:SendMessage` on the queue (SendMessageBatch is authorized as SendMessage) and
`kinesis:PutRecords` on the stream.
"""

from __future__ import annotations

import hashlib
import re

NAME_PREFIX = re.compile(r"^[a-z0-9][a-z0-9-]{1,20}$")  # deploy/cloudformation's NamePrefix AllowedPattern
QUEUE_TEMPLATE = "{prefix}-uplink.fifo"
STREAM_TEMPLATE = "{prefix}-uplink"
FIFO_SUFFIX = ".fifo"  # SQS: a FIFO queue's name ends so, a standard queue's never does

DEVICE_ACTIONS = {"sqs": ("sqs:SendMessage",), "kinesis": ("kinesis:PutRecords",)}
"""IAM actions the device role needs on the queue and on the stream (nothing else: the Uplink never reads)."""

MAX_GROUP_ID = 128  # SQS MessageGroupId / MessageDeduplicationId: at most 128 characters
MAX_PARTITION_KEY = 256  # Kinesis PartitionKey: at most 256 Unicode characters


def _prefix(prefix: str) -> str:
    if not NAME_PREFIX.match(prefix):
        raise ValueError(f"a stack name prefix is {NAME_PREFIX.pattern}, got {prefix!r}")
    return prefix


def queue_name(prefix: str) -> str:
    """The stack's SQS FIFO queue that receives the Uplink's messages: `{prefix}-uplink.fifo`."""
    return QUEUE_TEMPLATE.format(prefix=_prefix(prefix))


def stream_name(prefix: str) -> str:
    """The stack's Kinesis data stream that ingests the Uplink's messages: `{prefix}-uplink`."""
    return STREAM_TEMPLATE.format(prefix=_prefix(prefix))


def is_fifo(queue_url: str) -> bool:
    """Whether the queue at this URL (or of this name) is a FIFO queue."""
    return queue_url.rstrip("/").endswith(FIFO_SUFFIX)


def _bounded(key: str, limit: int) -> str:
    """`key` when it fits, else a digest of it (thing names and camera ids may each be 128 characters)."""
    return key if len(key) <= limit else "h-" + hashlib.sha256(key.encode()).hexdigest()


def group_id(thing: str, camera: str) -> str:
    """SQS MessageGroupId of a camera's messages: `{thing}/{camera}` (a digest when over 128 characters)."""
    return _bounded(f"{thing}/{camera}", MAX_GROUP_ID)


def partition_key(thing: str, camera: str) -> str:
    """Kinesis PartitionKey of a camera's records: `{thing}/{camera}` (a digest when over 256 characters)."""
    return _bounded(f"{thing}/{camera}", MAX_PARTITION_KEY)


def deduplication_id(thing: str, item_id: str) -> str:
    """SQS MessageDeduplicationId of an item: the sha256 of `{thing}/{id}` in hex (64 characters, valid
    whatever the id contains)."""
    return hashlib.sha256(f"{thing}/{item_id}".encode()).hexdigest()
