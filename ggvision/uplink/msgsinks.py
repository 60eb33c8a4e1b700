"""Messages (results, events, Uplink's own status) to IoT Core and (locally) an archive of JSON objects in the
directory bucket. SQS and Kinesis Data Streams take one item per message/record instead: streams.py.

Batching: consecutive queued messages with the same topic and camera travel as one `uplink-batch/1.0`
message of at most 128 KB (IoT Core's limit); each entry keeps its producer id, so a consumer can drop the
duplicates that at-least-once delivery allows. Batches leave in queue order and a lane stops at the first
failure, so per camera and topic nothing overtakes an earlier message.

IoT Core semantics: a batch counts as delivered when PublishToIoTCore (QoS 1) returns success, i.e. when the
runtime has accepted it. Our local runtime answers after the message is fsynced in its own disk spool (also
while the broker is down) and refuses with ServiceError when that spool is full; the Greengrass nucleus
answers once its MQTT client/spooler took it. Either way the message is then the runtime's to deliver; an
error or no answer within the timeout leaves it in our queue for the next attempt.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..component import error_text
from ..contract.keys import rule_archive_key
from .dirsink import write_atomic
from .errors import ItemError, TooLarge, TransientError, too_large
from .queue import Item

_ENVELOPE_SLACK = 256  # envelope fields outside the entries


@dataclass
class Batch:
    topic: str
    camera: str
    items: list[Item] = field(default_factory=list)
    entries: list[bytes] = field(default_factory=list)
    size: int = 0

    def body(self, thing: str, site: str) -> bytes:
        return _head(self.topic, self.camera, thing, site, len(self.items)) + b",".join(self.entries) + b"]}"


def _head(topic: str, camera: str, thing: str, site: str, count: int) -> bytes:
    """The envelope up to the first entry; `site` as in uplink-record/1.0, so the cloud needs no snapshot for it."""
    head = json.dumps({"schema": "uplink-batch/1.0", "thing": thing, "site": site, "camera": camera, "topic": topic,
                       "count": count}, separators=(",", ":"))[:-1].encode()
    return head + b',"items":['


def _entry(item: Item) -> bytes:
    assert item.data is not None
    meta = json.dumps({"id": item.id, "producer": item.producer, "priority": item.priority_name,
                       "start": item.start, "end": item.end}, separators=(",", ":"))[:-1].encode()
    return meta + b',"payload":' + item.data + b"}"


def build_batches(items: list[Item], max_bytes: int, thing: str = "", site: str = "") -> list[Batch]:
    """Group items (already in delivery order) by (topic, camera) into batches of at most max_bytes, keeping
    each group's order; batches are returned in the order of their first item."""
    out: list[Batch] = []
    open_batch: dict[tuple[str, str], Batch] = {}
    for it in items:
        entry = _entry(it)
        k = (it.target, it.camera)
        b = open_batch.get(k)
        # long thing, site and camera names make the envelope outgrow the slack: reserve what it really takes
        envelope = max(_ENVELOPE_SLACK, len(_head(it.target, it.camera, thing, site, 10**9)) + 2)
        if b is None or b.size + len(entry) + 1 + envelope > max_bytes:
            b = open_batch[k] = Batch(it.target, it.camera)
            out.append(b)
        b.items.append(it)
        b.entries.append(entry)
        b.size += len(entry) + 1
    return out


class IotSink:
    """PublishToIoTCore through the component's IPC client."""
    name = "iot"

    def __init__(self, client: Any, timeout_s: float = 10.0) -> None:
        self.client = client
        self.timeout_s = timeout_s

    def send(self, batch: Batch, body: bytes) -> None:
        from awsiot.greengrasscoreipc.model import InvalidArgumentsError, UnauthorizedError

        try:
            self.client.publish_to_iot_core_async(topic_name=batch.topic, qos="1", payload=body).result(self.timeout_s)
        except (UnauthorizedError, InvalidArgumentsError) as e:
            raise ItemError(f"PublishToIoTCore {batch.topic} refused: {error_text(e)}") from e
        except Exception as e:  # ServiceError (spool full, bridge down), timeout, IPC connection lost
            text = f"PublishToIoTCore {batch.topic}: {error_text(e)}"
            raise (TooLarge if too_large(text) else TransientError)(text) from e

    def close(self) -> None:
        pass


class ArchiveSink:
    """Writes each batch as a JSON object into the directory bucket where the cloud's IoT rule would archive it
    (contract.keys.rule_archive_key): results/iot-rules/{topic leaf}/{thing}/YYYY/MM/DD/HH/
    {camera}-{first item time ms}-{body sha256[:12]}.json — the local stand-in for routing.yaml's rules."""

    name = "archive"

    def __init__(self, root: Path, site: str, thing: str) -> None:
        self.root, self.site, self.thing = root, site, thing

    def send(self, batch: Batch, body: bytes) -> None:
        first = batch.items[0]
        digest = hashlib.sha256(body).hexdigest()[:12]
        name = f"{batch.camera or '_'}-{int(first.start * 1000)}-{digest}.json"
        path = self.root / rule_archive_key(batch.topic.rsplit("/", 1)[-1], self.thing, first.start, name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, lambda out: out.write(body))  # same name for a re-sent batch: idempotent
        except OSError as e:
            raise TransientError(f"archive: cannot write {path}: {e}") from e

    def close(self) -> None:
        pass


class FunctionSink:
    """A sink around a plain function(topic, body): for the engine without IPC (bench, tests)."""

    def __init__(self, name: str, fn: Callable[[str, bytes], None]) -> None:
        self.name = name
        self.fn = fn

    def send(self, batch: Batch, body: bytes) -> None:
        try:
            self.fn(batch.topic, body)
        except ItemError:
            raise
        except Exception as e:
            raise (TooLarge if too_large(str(e)) else TransientError)(f"{self.name}: {e}") from e

    def close(self) -> None:
        pass
