"""Local stand-in for the cloud's IoT rules that archive device messages to S3 (deploy/cloudformation/routing.yaml:
ResultsRule, EventsRule, MetricsRule), for a local cloud (`ggvision run`): each message on
`ggvision/{thing}/{results,events,metrics}` becomes an object at the contract's `rule_archive_key` in the data
bucket, its JSON extended the way the rules' SQL does (`SELECT *, topic(2) AS thing, timestamp() AS received_at`;
the events rule also `sk` and `expires_at`). The events rule's DynamoDB table and the rules' other actions are not
reproduced; a message that is not a JSON object is archived as it came, without the added fields.

S3 writes run in a worker thread so the broker's event loop never waits on them; a write that fails is logged
(IoT rules retry nothing either: their error action would get it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from ggvision.contract import topics
from ggvision.contract.keys import RETENTION_DAYS_MAX, RULE_STREAMS, rule_archive_key

log = logging.getLogger("gglocal.iotcore.rules")
# the device topics routing.yaml's archive rules select: ggvision/+/results, /events, /metrics
FILTERS = tuple(topics.every(t) for t in (topics.IOT_RESULTS, topics.IOT_EVENTS, topics.IOT_METRICS))
assert tuple(f.rsplit("/", 1)[1] for f in FILTERS) == RULE_STREAMS


@dataclass(frozen=True)
class ArchiveTarget:
    bucket: str
    endpoint_url: str = ""  # "" for AWS itself
    region: str = "us-east-1"


def archived(topic: str, payload: bytes, now: float) -> tuple[str, bytes] | None:
    """(key, body) the rule for `topic` writes, or None if no rule selects it."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != "ggvision" or parts[2] not in RULE_STREAMS:
        return None
    thing, stream = parts[1], parts[2]
    try:
        doc = json.loads(payload)
    except ValueError:
        doc = None
    name = str(uuid.uuid4())
    if isinstance(doc, dict):
        ms = int(now * 1000)
        added: dict[str, Any] = {"thing": thing, "received_at": ms}
        if stream == "events":  # routing.yaml's EventsRule: the table's sort key and TTL (EventRetentionDays)
            added.update(sk=f"{ms}#{name}", expires_at=ms // 1000 + RETENTION_DAYS_MAX * 86400)
        payload = json.dumps({**doc, **added}, separators=(",", ":")).encode()
    return rule_archive_key(stream, thing, now, f"{name}.json"), payload


class RuleArchive:
    """Subscribes on the local broker and writes what the archive rules would."""

    def __init__(self, target: ArchiveTarget, client: Any = None) -> None:
        self.target = target
        self.written = 0
        self.failed = 0
        if client is None:
            import boto3

            client = boto3.client("s3", region_name=target.region, endpoint_url=target.endpoint_url or None)
        self.s3 = client

    async def start(self, bridge: Any) -> None:
        for topic_filter in FILTERS:
            await bridge.subscribe(topic_filter, 1, self._on_message)

    def _on_message(self, topic: str, payload: bytes) -> None:
        out = archived(topic, payload, time.time())
        if out is not None:
            asyncio.get_running_loop().run_in_executor(None, self._put, *out)

    def _put(self, key: str, body: bytes) -> None:
        try:
            self.s3.put_object(Bucket=self.target.bucket, Key=key, Body=body, ContentType="application/json")
            self.written += 1
        except Exception as e:
            self.failed += 1
            if self.failed in (1, 10, 100) or self.failed % 1000 == 0:
                log.warning("IoT rules stand-in: cannot archive %s to s3://%s (%d so far): %s", key,
                            self.target.bucket, self.failed, e)
