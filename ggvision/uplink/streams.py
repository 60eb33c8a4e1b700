"""Messages to an SQS queue and a Kinesis data stream, in batches, each item with its own outcome.

One queued item is one SQS message / Kinesis record: an `uplink-record/1.0` document (docs/messages.md) whose
idempotency key is (`thing`, `id`). Items are packed, in the lane's delivery order, into SendMessageBatch /
PutRecords requests within the services' limits (ggvision/config/uplink.py: SQS at most 10 entries and
`sqs.maxRequestBytes`; Kinesis at most 500 records, `kinesis.maxRecordBytes` a record and
`kinesis.maxRequestBytes` a request). A camera's items stay in order: an item that does not fit in a request
keeps the camera's later items out of it too, requests go one after the other, and the round stops at the
first request in which something has to be retried, so nothing later can overtake it.

Each item ends a round
- delivered: the service accepted it (the lane acks it; it is never sent again by this lane),
- retry: a transient failure of its entry (throttled, internal error) or of the whole request (unreachable,
  credentials, throttled, queue/stream missing): it stays queued and is sent again after a backoff, without the
  entries of the same request that were accepted,
- rejected: it can never be accepted as it is (larger than the configured or the service's limit, or refused by
  the service for its content): it leaves this lane only, counted and reported (docs/uplink.md).

Ordering: SQS FIFO queues keep a message group's order (MessageGroupId = thing/camera) and drop a re-send
within 5 minutes (MessageDeduplicationId from thing/id); standard queues keep no order. Kinesis keeps a
shard's order (PartitionKey = thing/camera); PutRecords does not when some records of a request fail and
others succeed (API reference, PutRecords), so such a failed record lands after later ones of its camera: it
is counted (`reordered`) and every record carries `seq` to restore the order. `strictOrder` puts at most one
item per camera in a request, which rules that out. (SequenceNumberForOrdering exists on PutRecord only,
one record a request; we batch instead.)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..config.uplink import KINESIS_MAX_RECORDS, SQS_MAX_BYTES, SQS_MAX_ENTRIES, KinesisConfig, SqsConfig
from ..contract import streams
from ..contract.schemas import UPLINK_RECORD
from .errors import Throttled, TransientError
from .queue import Item

# Whole-request errors (after the service-specific prefix is cut off: AWS.SimpleQueueService.X, com.amazonaws.sqs#X)
SQS_REFUSED = frozenset({"InvalidParameterValue", "InvalidMessageContents", "BatchRequestTooLong"})
SQS_THROTTLED = frozenset({"RequestThrottled", "ThrottlingException", "Throttling", "KmsThrottled"})
KINESIS_THROTTLED = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException",
                               "KMSThrottlingException", "ThrottlingException"})

# An entry's result: None = accepted, else (RETRY | THROTTLED | REJECT, why)
RETRY, THROTTLED, REJECT = "retry", "throttled", "reject"
Result = tuple[str, str] | None


class RequestRefused(Exception):
    """The service refused a whole request because of something in its entries (a message too long for the
    queue, say): the request is split to find the entry, which alone is then rejected."""


@dataclass
class Entry:
    item: Item
    key: str  # the unit of order: MessageGroupId / PartitionKey
    size: int  # bytes as the service counts them against its limits
    request: dict[str, Any]  # the API's entry


@dataclass
class Outcome:
    delivered: list[Item] = field(default_factory=list)
    retry: list[Item] = field(default_factory=list)
    rejected: list[tuple[Item, str]] = field(default_factory=list)
    error: str = ""  # the last transient error
    unreachable: bool = False  # a retry for another reason than throttling
    reordered: int = 0  # accepted entries that overtook a failed entry of their camera
    sent_bytes: int = 0
    requests: int = 0

    @property
    def throttled(self) -> bool:
        """Every retry was asked for by the service: it is up, only busy."""
        return bool(self.retry) and not self.unreachable


def record_body(item: Item, thing: str, site: str) -> bytes:
    """The `uplink-record/1.0` document of a queued message (its payload is embedded as queued)."""
    assert item.data is not None
    head = json.dumps({"schema": UPLINK_RECORD, "id": item.id, "thing": thing, "site": site, "camera": item.camera,
                       "topic": item.target, "seq": item.seq, "producer": item.producer,
                       "priority": item.priority_name, "start": item.start, "end": item.end},
                      separators=(",", ":"))[:-1].encode()
    return head + b',"payload":' + item.data + b"}"


def plan(entries: list[Entry], max_entries: int, max_bytes: int, strict: bool) -> list[list[Entry]]:
    """Requests in sending order: each within the limits, each key's entries in their order across requests
    (an entry left out of a request keeps the later entries of its key out too); with `strict`, at most one
    entry of a key per request. Every entry must fit a request on its own."""
    out: list[list[Entry]] = []
    pending = entries
    while pending:
        req: list[Entry] = []
        size = 0
        held: set[str] = set()  # keys with an entry left for a later request
        in_req: set[str] = set()
        rest: list[Entry] = []
        for e in pending:
            if e.key in held or len(req) >= max_entries or size + e.size > max_bytes or (strict and e.key in in_req):
                held.add(e.key)
                rest.append(e)
                continue
            req.append(e)
            in_req.add(e.key)
            size += e.size
        out.append(req)
        pending = rest
    return out


class BatchSink:
    """What SqsSink and KinesisSink share: limits, entries, one request (see `deliver`)."""

    name = ""
    unit = "entry"
    max_entries = 1
    max_request_bytes = 1
    max_entry_bytes = 1
    strict_order = False
    client: Any = None

    def entry(self, item: Item, body: bytes, thing: str) -> Entry:
        raise NotImplementedError

    def call(self, entries: list[Entry]) -> list[Result]:
        """Send one request: a result per entry, or TransientError / Throttled / RequestRefused for all."""
        raise NotImplementedError

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def deliver(sink: BatchSink, items: list[Item], thing: str, site: str, take: Callable[[str, int], None],
            stopping: Callable[[], bool]) -> Outcome:
    """Send `items` (in delivery order) through `sink` and say what became of each. `take(camera, bytes)` paces
    the bytes (the bandwidth caps); `stopping()` ends the round between requests."""
    out = Outcome()
    entries = []
    limit = min(sink.max_entry_bytes, sink.max_request_bytes)
    for it in items:
        e = sink.entry(it, record_body(it, thing, site), thing)
        if e.size > limit:
            out.rejected.append((it, f"{e.size} bytes is over the {limit}-byte limit of a {sink.name} {sink.unit}"))
        else:
            entries.append(e)
    for req in plan(entries, sink.max_entries, sink.max_request_bytes, sink.strict_order):
        if stopping() or not _send(sink, req, out, take):
            break
    return out


def _send(sink: BatchSink, req: list[Entry], out: Outcome, take: Callable[[str, int], None]) -> bool:
    """One request (split when refused as a whole); False when something must be retried (the round stops)."""
    for e in req:
        take(e.item.camera, e.size)
    try:
        results = sink.call(req)
    except RequestRefused as err:
        if len(req) == 1:
            out.rejected.append((req[0].item, str(err)))
            return True
        half = len(req) // 2
        return _send(sink, req[:half], out, take) and _send(sink, req[half:], out, take)
    except TransientError as err:
        out.retry += [e.item for e in req]
        out.error = str(err)
        out.unreachable |= not isinstance(err, Throttled)
        return False
    out.requests += 1
    failed: set[str] = set()
    for e, r in zip(req, results, strict=True):
        if r is None:
            out.delivered.append(e.item)
            out.sent_bytes += e.size
            out.reordered += e.key in failed
        elif r[0] == REJECT:
            out.rejected.append((e.item, r[1]))
        else:
            out.unreachable |= r[0] != THROTTLED
            out.retry.append(e.item)
            out.error = r[1]
            failed.add(e.key)
    return not failed


def _code(err: dict[str, Any]) -> str:
    """A service error code without its namespace (AWS.SimpleQueueService.X, com.amazonaws.sqs#X → X)."""
    return str(err.get("Code", "")).rsplit("#", 1)[-1].rsplit(".", 1)[-1]


def _request_error(what: str, e: Exception, refused: frozenset[str], throttled: frozenset[str]) -> Exception:
    from botocore.exceptions import ClientError

    if isinstance(e, ClientError):
        err = e.response.get("Error", {})
        code = _code(err)
        text = f"{what}: {code}: {err.get('Message', '')}"
        if code in refused:
            return RequestRefused(text)
        if code in throttled:
            return Throttled(text)
        return TransientError(text)  # access denied, missing queue/stream, 5xx: a configuration or service problem
    return TransientError(f"{what} unreachable: {type(e).__name__}: {e}")


def aws_client(service: str, region: str, endpoint_url: str, timeout_s: float = 20.0) -> Any:
    """A boto3 client that tries once (the lane retries with its own backoff) within `timeout_s`."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(service, region_name=region or None, endpoint_url=endpoint_url or None,
                                          config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                                                        retries={"total_max_attempts": 1, "mode": "standard"}))


class SqsSink(BatchSink):
    """SendMessageBatch. FIFO queues (`.fifo`): MessageGroupId and MessageDeduplicationId (contract.streams);
    every message has the attributes id, thing, camera and topic (String)."""

    name = "sqs"
    unit = "message"

    def __init__(self, cfg: SqsConfig, client: Any = None) -> None:
        self.queue_url = cfg.queue_url
        self.fifo = streams.is_fifo(cfg.queue_url)
        self.max_entries = SQS_MAX_ENTRIES
        self.max_request_bytes = cfg.max_request_bytes
        self.max_entry_bytes = SQS_MAX_BYTES
        self.strict_order = cfg.strict_order
        self.client = client or aws_client("sqs", cfg.region, cfg.endpoint_url, cfg.timeout_s)

    def entry(self, item: Item, body: bytes, thing: str) -> Entry:
        attrs = {"id": item.id, "thing": thing, "camera": item.camera, "topic": item.target}
        request: dict[str, Any] = {"MessageBody": body.decode(), "MessageAttributes": {
            k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}}
        key = streams.group_id(thing, item.camera)
        if self.fifo:
            request["MessageGroupId"] = key
            request["MessageDeduplicationId"] = streams.deduplication_id(thing, item.id)
        # SQS counts the body and each attribute's name, type and value against the message size
        size = len(body) + sum(len(k) + len("String") + len(v.encode()) for k, v in attrs.items())
        return Entry(item, key, size, request)

    def call(self, entries: list[Entry]) -> list[Result]:
        batch = [{"Id": str(i), **e.request} for i, e in enumerate(entries)]
        try:
            resp = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=batch)
        except Exception as e:
            raise _request_error(f"SQS {self.queue_url}", e, SQS_REFUSED, SQS_THROTTLED) from e
        out: list[Result] = [(RETRY, "SQS gave no result for the message")] * len(entries)
        for ok in resp.get("Successful", []):
            out[int(ok["Id"])] = None
        for f in resp.get("Failed", []):
            code = _code(f)
            why = f"SQS {self.queue_url} refused the message: {code}: {f.get('Message', '')}"
            kind = THROTTLED if code in SQS_THROTTLED else REJECT if f.get("SenderFault") else RETRY
            out[int(f["Id"])] = (kind, why)
        return out


class KinesisSink(BatchSink):
    """PutRecords; PartitionKey = thing/camera (contract.streams), so a camera's records share a shard."""

    name = "kinesis"
    unit = "record"

    def __init__(self, cfg: KinesisConfig, client: Any = None) -> None:
        self.stream = cfg.stream_name
        self.max_entries = KINESIS_MAX_RECORDS
        self.max_request_bytes = cfg.max_request_bytes
        self.max_entry_bytes = cfg.max_record_bytes
        self.strict_order = cfg.strict_order
        self.client = client or aws_client("kinesis", cfg.region, cfg.endpoint_url, cfg.timeout_s)

    def entry(self, item: Item, body: bytes, thing: str) -> Entry:
        key = streams.partition_key(thing, item.camera)
        return Entry(item, key, len(body) + len(key.encode()), {"Data": body, "PartitionKey": key})

    def call(self, entries: list[Entry]) -> list[Result]:
        try:
            resp = self.client.put_records(StreamName=self.stream, Records=[e.request for e in entries])
        except Exception as e:
            # sizes are checked before sending, so a refusal of the whole request is not an item's fault
            raise _request_error(f"Kinesis {self.stream}", e, frozenset(), KINESIS_THROTTLED) from e
        records = resp.get("Records", [])
        if len(records) != len(entries):
            raise TransientError(f"Kinesis {self.stream}: {len(records)} results for {len(entries)} records")
        out: list[Result] = []
        for r in records:
            code = r.get("ErrorCode")
            if not code:
                out.append(None)
            else:
                kind = THROTTLED if code in KINESIS_THROTTLED else RETRY
                out.append((kind, f"Kinesis {self.stream}: {code}: {r.get('ErrorMessage', '')}"))
        return out
