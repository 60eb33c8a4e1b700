"""The real-time path: `handler(event, context)` for Lambda's Kinesis event source on the Uplink's stream
`{prefix}-uplink` (uplink-record/1.0 records, ggvision/contract/streams.py), and `silence_handler` for a
schedule. Names: ggvision/contract/cloud.py (the COUNT_* block).

- Counts: every `event/1.0` `end` (one per edge event: docs/filter.md) counts once in its camera's window, the
  minute the event started, by label: one UpdateItem per (camera, window) a batch touches, `ADD`ing the
  batch's counts. Idempotent per sequence number and window: the window keeps the highest sequence number it
  applied (`lastSeq`) and the update's condition refuses records at or below it (a shard is read in order, so
  a redelivered batch, a retry from a reported failure or a bisected half only brings numbers it has seen or
  newer ones; a mixed group is re-read and narrowed to the new records).
- The Filter's counting analytics (`counts/1.0`: line crossings, zone occupancy and entries, zone rule hits) go
  into the window of their interval's start, beside the events' counts (attributes COUNT_CROSSING ... in the
  contract): the window is read, the group's records it has not applied (`countsSeq`, as `lastSeq`) are added
  (crossings, entries, hits), the most at once kept as a maximum and the occupancy at the newest interval's end
  set, written on the condition that nobody wrote meanwhile. A malformed counts/1.0 is skipped with its reason.
- CloudWatch: `Events` {Site, Camera, Label}, one datum per applied window and label, timestamped with the
  window (CloudWatch sums them per minute); `Crossings` {Site, Camera, Line, Direction, Label},
  `ZoneRuleHits` {Site, Camera, Kind} (sums) and `ZoneOccupancy` {Site, Camera, Zone} (the window's most at
  once: read its Maximum). Only what the table applied is put: a redelivery adds nothing.
- Anomalies to EventBridge (detail-types in the contract, detail `camera-anomaly/1.0`):
  - high count: a window's count of a label is at least `high_min` and above lambda + k*sqrt(lambda), lambda the
    camera's mean count of the label per minute over the previous `baseline_s` (minutes without events count 0):
    a Poisson count's standard deviation is sqrt(lambda); k = 6 (default) with `high_min` 10 leaves at most about
    3 chance alarms in a million minutes at any level (docs/cloud.md). Only cameras known for `baseline_s`;
    raised once per window and label (condition on `alerted`).
  - silent: `silence_handler` (every minute) raises it once for each camera whose newest record is older than
    `silence_s`; the camera's next record clears it.

A malformed record is counted (`MalformedRecords`) and skipped: retrying cannot fix it and it must not stop
the shard. Any other failure reports the first record not applied in batchItemFailures (itemIdentifier =
its sequence number): Lambda (and cloud/runner.py's KinesisRunner) resumes the shard from it.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import ClientError

from ggvision.contract import cloud as names
from ggvision.contract.schemas import UPLINK_RECORD

log = logging.getLogger("cloud.realtime")

# The functions' environment (deploy/cloudformation/realtime.yaml sets these)
ENV_TABLE, ENV_EVENT_BUS, ENV_RETENTION_DAYS = "TABLE_NAME", "EVENT_BUS_NAME", "RETENTION_DAYS"
ENV_SILENCE_S, ENV_BASELINE_S, ENV_HIGH_SIGMA, ENV_HIGH_MIN = "SILENCE_S", "BASELINE_S", "HIGH_SIGMA", "HIGH_MIN"
ENV_VARS = (ENV_TABLE, ENV_EVENT_BUS, ENV_RETENTION_DAYS, ENV_SILENCE_S, ENV_BASELINE_S, ENV_HIGH_SIGMA, ENV_HIGH_MIN)
SEQ_DIGITS = 128  # Kinesis sequence numbers are decimal strings of up to 128 digits: padded, they sort as strings
EVENT_SCHEMA, END = "event/1.0", "end"


class Malformed(ValueError):
    """A stream record no retry can make good; the text says which record and what."""


@dataclass(frozen=True)
class Record:
    seq: str  # the Kinesis sequence number (the itemIdentifier of a failure)
    thing: str
    site: str
    camera: str
    arrived: float
    label: str | None = None  # an event's end: its label and window; None for any other message
    window: int = 0
    counts: dict[str, Any] | None = None  # a counts/1.0 body (validated; window: the minute of its start)


def parse(rec: dict[str, Any]) -> Record:
    """One Kinesis event record as a Record; Malformed naming the sequence number and the field."""
    k = rec.get("kinesis") if isinstance(rec, dict) else None
    seq = str(k.get("sequenceNumber", "?")) if isinstance(k, dict) else "?"
    where = f"record {seq}"
    if not isinstance(k, dict) or rec.get("eventSource") != "aws:kinesis":
        raise Malformed(f"{where}: not a Kinesis event record")
    if not seq.isdigit() or len(seq) > SEQ_DIGITS:
        raise Malformed(f"{where}: sequenceNumber is not a decimal string of at most {SEQ_DIGITS} digits")
    try:
        doc = json.loads(base64.b64decode(k.get("data", ""), validate=True))
    except (ValueError, TypeError) as e:
        raise Malformed(f"{where}: data is not base64 of a JSON document: {e}") from None
    if not isinstance(doc, dict) or doc.get("schema") != UPLINK_RECORD:
        raise Malformed(f"{where}: schema: expected {UPLINK_RECORD}, got "
                        f"{doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r}")
    slots = {f: doc.get(f) for f in ("thing", "site", "camera")}
    for f, v in slots.items():
        if not isinstance(v, str) or not v or len(v) > 256:
            raise Malformed(f"{where}: {f}: expected a non-empty string, got {str(v)[:80]!r}")
    arrived = k.get("approximateArrivalTimestamp")
    arrived = float(arrived) if isinstance(arrived, int | float) and not isinstance(arrived, bool) else time.time()
    p = doc.get("payload")
    if isinstance(p, dict) and p.get("schema") == EVENT_SCHEMA and p.get("kind") == END:
        label, start = p.get("label"), p.get("start")
        if not isinstance(label, str) or not label or len(label) > 128:
            raise Malformed(f"{where}: payload.label: expected a label, got {str(label)[:80]!r}")
        if isinstance(start, bool) or not isinstance(start, int | float) or not math.isfinite(start):
            raise Malformed(f"{where}: payload.start: expected epoch seconds, got {start!r}")
        return Record(seq, slots["thing"], slots["site"], slots["camera"], arrived, label,  # type: ignore[arg-type]
                      names.minute_of(start))
    if isinstance(p, dict) and p.get("schema") == names.COUNTS_SCHEMA:
        body = parse_counts(p, where)
        return Record(seq, slots["thing"], slots["site"], slots["camera"], arrived,  # type: ignore[arg-type]
                      window=names.minute_of(body["start"]), counts=body)
    return Record(seq, slots["thing"], slots["site"], slots["camera"], arrived)  # type: ignore[arg-type]


def _name(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v or len(v) > 128:
        raise ValueError(f"{what}: expected a name of 1..128 characters, got {str(v)[:80]!r}")
    return v


def _count(v: Any, what: str, limit: int = 10**9) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= limit:
        raise ValueError(f"{what}: expected a whole number 0..{limit}, got {str(v)[:80]!r}")
    return v


def parse_counts(p: dict[str, Any], where: str = "record") -> dict[str, Any]:
    """A counts/1.0 payload (docs/messages.md) reduced to what the table keeps: {start, end, lines {line: {in|out:
    {label: n}}}, zones {zone: {current, max, entered}}, hits {kind: n}}; Malformed naming the field."""
    try:
        start, end = p.get("start"), p.get("end")
        for f, v in (("start", start), ("end", end)):
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{f}: expected epoch seconds, got {v!r}")
        if end < start or end - start > 86400:  # type: ignore[operator]
            raise ValueError(f"end: expected start..start + 1 day, got start {start}, end {end}")
        lines_in, zones_in, hits_in = p.get("lines") or {}, p.get("zones") or {}, p.get("hits") or {}
        for f, v in (("lines", lines_in), ("zones", zones_in), ("hits", hits_in)):
            if not isinstance(v, dict) or len(v) > 64:
                raise ValueError(f"{f}: expected an object of at most 64 entries")
        lines: dict[str, dict[str, dict[str, int]]] = {}
        for ln, dirs in lines_in.items():
            _name(ln, "lines")
            if not isinstance(dirs, dict) or not set(dirs) <= {"in", "out"}:
                raise ValueError(f"lines.{ln}: expected {{\"in\": {{label: n}}, \"out\": {{label: n}}}}")
            for d, labels in dirs.items():
                if not isinstance(labels, dict) or len(labels) > 64:
                    raise ValueError(f"lines.{ln}.{d}: expected an object of label counts")
                lines.setdefault(ln, {})[d] = {_name(lb, f"lines.{ln}.{d}"): _count(n, f"lines.{ln}.{d}.{lb}")
                                               for lb, n in labels.items()}
        zones: dict[str, dict[str, int]] = {}
        for z, v in zones_in.items():
            _name(z, "zones")
            if not isinstance(v, dict):
                raise ValueError(f"zones.{z}: expected an object")
            zones[z] = {k: _count(v.get(k, 0), f"zones.{z}.{k}") for k in ("current", "max", "entered")}
        hits = {_name(k, "hits"): _count(n, f"hits.{k}") for k, n in hits_in.items()}
    except ValueError as e:
        raise Malformed(f"{where}: counts/1.0 payload.{e}") from None
    return {"start": float(start), "end": float(end), "lines": lines, "zones": zones,  # type: ignore[arg-type]
            "hits": hits}


def _pad(seq: str) -> str:
    return seq.zfill(SEQ_DIGITS)


@dataclass
class Realtime:
    """The handlers' settings and clients (made once per process: Lambda reuses its container)."""
    table_name: str
    event_bus: str = "default"
    retention_days: int = names.RETENTION_DAYS_MAX
    silence_s: float = 1800.0
    baseline_s: int = 3600
    high_sigma: float = 6.0
    high_min: int = 10
    clients: dict[str, Any] = field(default_factory=dict)
    session: Any = field(default_factory=boto3.session.Session)
    malformed: int = 0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Realtime:
        env = dict(os.environ if env is None else env)
        if not env.get(ENV_TABLE):
            raise RuntimeError(f"cloud.realtime: environment variable not set: {ENV_TABLE}")
        days = int(env.get(ENV_RETENTION_DAYS) or names.RETENTION_DAYS_MAX)
        names.expires_at(0, days)  # refuses more than the privacy rule allows, at start-up
        out = cls(env[ENV_TABLE], env.get(ENV_EVENT_BUS) or "default", days,
                  float(env.get(ENV_SILENCE_S) or 1800), int(env.get(ENV_BASELINE_S) or 3600),
                  float(env.get(ENV_HIGH_SIGMA) or 6.0), int(env.get(ENV_HIGH_MIN) or 10))
        if out.baseline_s < 120 or out.baseline_s % 60 or out.silence_s < 60 or out.high_sigma <= 0:
            raise RuntimeError(f"cloud.realtime: {ENV_BASELINE_S} must be whole minutes >= 120, {ENV_SILENCE_S} "
                               f">= 60 and {ENV_HIGH_SIGMA} > 0")
        return out

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = (self.session.resource("dynamodb").Table(self.table_name) if service == "table"
                                     else self.session.client(service))
        return self.clients[service]

    # ------------------------------------------------------------------ one Kinesis batch
    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        records: list[Record] = []
        malformed = 0
        for rec in event.get("Records", []):
            try:
                records.append(parse(rec))
            except Malformed as e:
                malformed += 1
                log.warning("skipped: %s", e)
        self.malformed += malformed
        done: set[str] = set()  # the records of the windows applied so far
        metrics: list[dict[str, Any]] = []
        try:
            self._seen(records)
            for group in self._groups(records):
                for label, n in self._apply(group).items():
                    metrics.append(self._datum(group[0], label, n))
                done.update(r.seq for r in group)
            for group in self._count_groups(records):
                metrics += self._apply_counts(group)
                done.update(r.seq for r in group)
        except Exception as e:  # DynamoDB, EventBridge: resume the shard at the first record not applied
            log.warning("batch of %d: %d record(s) applied, the rest is retried: %s: %s", len(records), len(done),
                        type(e).__name__, e)
            self._put_metrics(metrics, malformed)
            # the shard resumes at the earliest record not applied; what comes again after it and was applied
            # is a no-op (lastSeq, the seen condition)
            pending = [r.seq for r in records if r.seq not in done]
            return {"batchItemFailures": [{"itemIdentifier": min(pending, key=_pad)}] if pending else []}
        self._put_metrics(metrics, malformed)
        return {"batchItemFailures": []}

    @staticmethod
    def _groups(records: list[Record]) -> list[list[Record]]:
        """The end records by (camera, window), each group in stream order, groups by their first record."""
        out: dict[tuple[str, str, int], list[Record]] = {}
        for r in records:
            if r.label is not None:
                out.setdefault((r.thing, r.camera, r.window), []).append(r)
        return list(out.values())

    @staticmethod
    def _count_groups(records: list[Record]) -> list[list[Record]]:
        """The counts/1.0 records by (camera, window), each group in stream order."""
        out: dict[tuple[str, str, int], list[Record]] = {}
        for r in records:
            if r.counts is not None:
                out.setdefault((r.thing, r.camera, r.window), []).append(r)
        return list(out.values())

    def _apply_counts(self, group: list[Record]) -> list[dict[str, Any]]:
        """Add the group's counts/1.0 to its window unless the window has them (countsSeq, read then written on
        the condition that nobody wrote meanwhile: the most at once is a maximum, which an ADD cannot keep);
        the CloudWatch data of what was applied."""
        table = self.client("table")
        first = group[0]
        key = {names.COUNT_KEY: names.camera_key(first.thing, first.camera), names.COUNT_MINUTE: first.window}
        for _ in range(3):
            item = table.get_item(Key=key, ConsistentRead=True).get("Item", {})
            seen = item.get(names.COUNT_COUNTS_SEQ)
            todo = [r for r in group if seen is None or _pad(r.seq) > str(seen)]
            if not todo:
                return []
            adds: Counter[str] = Counter()
            sets: dict[str, Any] = {}
            peaks: dict[str, int] = {}
            for r in todo:
                c = r.counts or {}
                for ln, dirs in c["lines"].items():
                    for d, labels in dirs.items():
                        for lb, n in labels.items():
                            if n:
                                adds[names.count_attribute(names.COUNT_CROSSING, line=ln, direction=d, label=lb)] += n
                for z, v in c["zones"].items():
                    peaks[z] = max(peaks.get(z, 0), v["max"])
                    sets[names.count_attribute(names.COUNT_OCCUPANCY, zone=z)] = v["current"]
                    if v["entered"]:
                        adds[names.count_attribute(names.COUNT_ENTERED, zone=z)] += v["entered"]
                for k, n in c["hits"].items():
                    if n:
                        adds[names.count_attribute(names.COUNT_HITS, kind=k)] += n
            for z, n in peaks.items():
                attr = names.count_attribute(names.COUNT_OCCUPANCY_MAX, zone=z)
                sets[attr] = max(n, int(item.get(attr, 0)))
            sets[names.COUNT_COUNTS_END] = _decimal(max(max(r.counts["end"] for r in todo if r.counts),
                                                        float(item.get(names.COUNT_COUNTS_END, 0))))
            sets[names.COUNT_COUNTS_SEQ] = _pad(max((r.seq for r in todo), key=_pad))
            sets.update({names.COUNT_SITE: first.site, names.COUNT_THING: first.thing,
                         names.COUNT_CAMERA: first.camera})
            attr_names: dict[str, str] = {"#ttl": names.TTL_ATTRIBUTE, "#cseq": names.COUNT_COUNTS_SEQ}
            values: dict[str, Any] = {":ttl": names.expires_at(first.window, self.retention_days)}
            set_parts, add_parts = ["#ttl = if_not_exists(#ttl, :ttl)"], []
            for i, (attr, v) in enumerate(sets.items()):
                attr_names[f"#s{i}"], values[f":s{i}"] = attr, v
                set_parts.append(f"#s{i} = :s{i}")
            for i, (attr, n) in enumerate(sorted(adds.items())):
                attr_names[f"#a{i}"], values[f":a{i}"] = attr, n
                add_parts.append(f"#a{i} :a{i}")
            if seen is None:
                cond = "attribute_not_exists(#cseq)"
            else:
                cond, values[":seen"] = "#cseq = :seen", seen
            try:
                table.update_item(Key=key, UpdateExpression="SET " + ", ".join(set_parts)
                                  + (" ADD " + ", ".join(add_parts) if add_parts else ""),
                                  ConditionExpression=cond, ExpressionAttributeNames=attr_names,
                                  ExpressionAttributeValues=values)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue  # another batch wrote the window meanwhile: read it again
            return self._count_data(first, todo)
        raise RuntimeError(f"{key}: the window's counts kept changing under three updates")

    @staticmethod
    def _count_data(r: Record, todo: list[Record]) -> list[dict[str, Any]]:
        cam = names.camera_key(r.thing, r.camera)
        base = [{"Name": "Site", "Value": r.site}, {"Name": "Camera", "Value": cam}]
        sums: Counter[tuple[str, ...]] = Counter()
        peaks: dict[str, int] = {}
        for t in todo:
            c = t.counts or {}
            for ln, dirs in c["lines"].items():
                for d, labels in dirs.items():
                    for lb, n in labels.items():
                        sums[(names.METRIC_CROSSINGS, ln, d, lb)] += n
            for z, v in c["zones"].items():
                peaks[z] = max(peaks.get(z, 0), v["max"])
            for k, n in c["hits"].items():
                sums[(names.METRIC_ZONE_HITS, k)] += n
        out = []
        for k, n in sums.items():
            if k[0] == names.METRIC_CROSSINGS:
                dims = [{"Name": "Line", "Value": k[1]}, {"Name": "Direction", "Value": k[2]},
                        {"Name": "Label", "Value": k[3]}]
            else:
                dims = [{"Name": "Kind", "Value": k[1]}]
            out.append({"MetricName": k[0], "Timestamp": r.window, "Value": float(n), "Unit": "Count",
                        "Dimensions": base + dims})
        out += [{"MetricName": names.METRIC_ZONE_OCCUPANCY, "Timestamp": r.window, "Value": float(n), "Unit": "Count",
                 "Dimensions": [*base, {"Name": "Zone", "Value": z}]} for z, n in peaks.items()]
        return out

    def _apply(self, group: list[Record]) -> Counter[str]:
        """ADD the group's counts to its window unless the window has applied them; the counts applied."""
        table = self.client("table")
        first = group[0]
        key = {names.COUNT_KEY: names.camera_key(first.thing, first.camera), names.COUNT_MINUTE: first.window}
        todo, seen = group, None
        for _ in range(3):
            counts = Counter(r.label for r in todo if r.label)
            if not counts:
                return Counter()
            attr_names = {"#seq": names.COUNT_LAST_SEQ, "#total": names.COUNT_TOTAL, "#ttl": names.TTL_ATTRIBUTE,
                          "#site": names.COUNT_SITE, "#thing": names.COUNT_THING, "#camera": names.COUNT_CAMERA}
            values: dict[str, Any] = {":last": _pad(max((r.seq for r in todo), key=_pad)),
                                      ":total": sum(counts.values()), ":site": first.site, ":thing": first.thing,
                                      ":camera": first.camera,
                                      ":ttl": names.expires_at(first.window, self.retention_days)}
            adds = ["#total :total"]
            for i, (label, n) in enumerate(sorted(counts.items())):
                attr_names[f"#l{i}"], values[f":n{i}"] = names.label_attribute(label), n
                adds.append(f"#l{i} :n{i}")
            if seen is None:
                cond = "attribute_not_exists(#seq) OR #seq < :first"
                values[":first"] = _pad(min((r.seq for r in todo), key=_pad))
            else:  # the window as re-read: nobody applied anything since
                cond = "#seq = :seen"
                values[":seen"] = seen
            try:
                item = table.update_item(
                    Key=key, UpdateExpression="ADD " + ", ".join(adds) + " SET #seq = :last, #site = :site, "
                    "#thing = :thing, #camera = :camera, #ttl = if_not_exists(#ttl, :ttl)",
                    ConditionExpression=cond, ExpressionAttributeNames=attr_names, ExpressionAttributeValues=values,
                    ReturnValues="ALL_NEW")["Attributes"]
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                seen = str(table.get_item(Key=key, ConsistentRead=True).get("Item", {}).get(names.COUNT_LAST_SEQ, ""))
                todo = [r for r in todo if _pad(r.seq) > seen]  # a redelivery: only what the window has not seen
                continue
            self._high_count(first, counts, item)
            return counts
        raise RuntimeError(f"{key}: the window kept changing under three updates")

    def _seen(self, records: list[Record]) -> None:
        """The cameras' own items: newest arrival, first seen, and the end of a silence."""
        newest: dict[tuple[str, str], Record] = {}
        oldest: dict[tuple[str, str], float] = {}
        for r in records:
            k = (r.thing, r.camera)
            if k not in newest or r.arrived > newest[k].arrived:
                newest[k] = r
            oldest[k] = min(oldest.get(k, r.arrived), r.arrived)
        table = self.client("table")
        for (thing, camera), r in newest.items():
            try:
                table.update_item(
                    Key={names.COUNT_KEY: names.camera_key(thing, camera), names.COUNT_MINUTE: names.CAMERA_ITEM},
                    UpdateExpression="SET #seen = :t, #first = if_not_exists(#first, :t0), #site = :site, "
                                     "#thing = :thing, #camera = :camera REMOVE #silent",
                    ConditionExpression="attribute_not_exists(#seen) OR #seen < :t",
                    ExpressionAttributeNames={"#seen": names.CAMERA_SEEN_AT, "#first": names.CAMERA_FIRST_SEEN,
                                              "#site": names.COUNT_SITE, "#thing": names.COUNT_THING,
                                              "#camera": names.COUNT_CAMERA, "#silent": names.CAMERA_SILENT_SINCE},
                    ExpressionAttributeValues={":t": _decimal(r.arrived), ":t0": _decimal(oldest[(thing, camera)]),
                                               ":site": r.site, ":thing": thing,
                                               ":camera": camera})
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise  # (a newer record was seen already: nothing to do)

    # ------------------------------------------------------------------ anomalies
    def _high_count(self, r: Record, counts: Counter[str], item: dict[str, Any]) -> None:
        table = self.client("table")
        key = {names.COUNT_KEY: names.camera_key(r.thing, r.camera), names.COUNT_MINUTE: r.window}
        history: list[dict[str, Any]] | None = None
        for label in counts:
            n = int(item.get(names.label_attribute(label), 0))
            if n < self.high_min or label in item.get(names.COUNT_ALERTED, set()):
                continue
            if history is None:
                cam = table.get_item(Key={**key, names.COUNT_MINUTE: names.CAMERA_ITEM}).get("Item", {})
                if float(cam.get(names.CAMERA_FIRST_SEEN, r.window)) > r.window - self.baseline_s:
                    return  # no hour of history yet: no usual level to compare with
                history = self._window_items(key[names.COUNT_KEY], r.window - self.baseline_s, r.window - 60)
            usual = sum(int(h.get(names.label_attribute(label), 0)) for h in history) / (self.baseline_s / 60)
            threshold = usual + self.high_sigma * math.sqrt(usual)
            if n <= threshold:
                continue
            try:
                table.update_item(Key=key, UpdateExpression="ADD #alerted :label",
                                  ConditionExpression="NOT contains(#alerted, :one)",
                                  ExpressionAttributeNames={"#alerted": names.COUNT_ALERTED},
                                  ExpressionAttributeValues={":label": {label}, ":one": label})
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue  # raised already (a concurrent or earlier batch)
            self._anomaly(names.DETAIL_TYPE_HIGH_COUNT, {
                "kind": "high-count", "site": r.site, "thing": r.thing, "camera": r.camera, "label": label,
                "minute": r.window, "count": n, "usual_per_minute": round(usual, 3),
                "threshold": round(threshold, 3), "baseline_s": self.baseline_s, "sigma": self.high_sigma})

    def _window_items(self, camera_key: str, lo: int, hi: int) -> list[dict[str, Any]]:
        from boto3.dynamodb.conditions import Key

        out: list[dict[str, Any]] = []
        kw: dict[str, Any] = {"KeyConditionExpression": Key(names.COUNT_KEY).eq(camera_key)
                              & Key(names.COUNT_MINUTE).between(lo, hi)}
        while True:
            page = self.client("table").query(**kw)
            out += page["Items"]
            if "LastEvaluatedKey" not in page:
                return out
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def silence(self, now: float | None = None) -> list[str]:
        """Raise `silent` for each camera quiet for silence_s (once per silence): the cameras raised."""
        now = time.time() if now is None else now
        table, cut = self.client("table"), now - self.silence_s
        raised = []
        kw: dict[str, Any] = {"IndexName": names.INDEX_SITE_SEEN}
        while True:
            page = table.scan(**kw)
            for cam in page["Items"]:
                seen = float(cam[names.CAMERA_SEEN_AT])
                if seen >= cut or names.CAMERA_SILENT_SINCE in cam:
                    continue
                try:
                    table.update_item(
                        Key={names.COUNT_KEY: cam[names.COUNT_KEY], names.COUNT_MINUTE: names.CAMERA_ITEM},
                        UpdateExpression="SET #silent = :now",
                        ConditionExpression="attribute_not_exists(#silent) AND #seen < :cut",
                        ExpressionAttributeNames={"#silent": names.CAMERA_SILENT_SINCE, "#seen": names.CAMERA_SEEN_AT},
                        ExpressionAttributeValues={":now": _decimal(now), ":cut": _decimal(cut)})
                except ClientError as e:
                    if e.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                        raise
                    continue  # a record came meanwhile, or another run raised it
                self._anomaly(names.DETAIL_TYPE_SILENT, {
                    "kind": "silent", "site": cam.get(names.COUNT_SITE), "thing": cam.get(names.COUNT_THING),
                    "camera": cam.get(names.COUNT_CAMERA), "last_seen": seen, "silent_s": round(now - seen, 1),
                    "silence_s": self.silence_s})
                raised.append(str(cam[names.COUNT_KEY]))
            if "LastEvaluatedKey" not in page:
                return raised
            kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _anomaly(self, detail_type: str, detail: dict[str, Any]) -> None:
        r = self.client("events").put_events(Entries=[{
            "Source": names.EVENT_SOURCE, "DetailType": detail_type, "EventBusName": self.event_bus,
            "Detail": json.dumps({"schema": names.ANOMALY_SCHEMA, **detail})}])
        if r.get("FailedEntryCount"):
            e = r["Entries"][0]
            raise RuntimeError(f"PutEvents: {e.get('ErrorCode')}: {e.get('ErrorMessage')}")
        log.info("%s: %s", detail_type, detail)

    # ------------------------------------------------------------------ CloudWatch
    @staticmethod
    def _datum(r: Record, label: str, n: int) -> dict[str, Any]:
        return {"MetricName": names.METRIC_EVENTS, "Timestamp": r.window, "Value": float(n), "Unit": "Count",
                "Dimensions": [{"Name": "Site", "Value": r.site},
                               {"Name": "Camera", "Value": names.camera_key(r.thing, r.camera)},
                               {"Name": "Label", "Value": label}]}

    def _put_metrics(self, metrics: list[dict[str, Any]], malformed: int) -> None:
        if malformed:
            metrics = [*metrics, {"MetricName": names.METRIC_MALFORMED_RECORDS, "Value": float(malformed),
                                  "Unit": "Count"}]
        cw = self.client("cloudwatch")
        for i in range(0, len(metrics), 500):  # PutMetricData takes up to 1000 metrics a request
            try:
                cw.put_metric_data(Namespace=names.METRICS_NAMESPACE, MetricData=metrics[i:i + 500])
            except Exception as e:  # the counts are in the table already; a lost datum is not worth a redelivery
                log.error("PutMetricData: %s: %s", type(e).__name__, e)


def _decimal(v: float) -> Any:
    from decimal import Decimal

    return Decimal(str(round(v, 3)))


_REALTIME: Realtime | None = None


def _instance() -> Realtime:
    global _REALTIME
    if _REALTIME is None:
        _REALTIME = Realtime.from_env()
    return _REALTIME


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda's entry point for the Kinesis mapping (FunctionResponseTypes ReportBatchItemFailures)."""
    return _instance().handle(event, context)


def silence_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda's entry point for the schedule (every minute): the cameras that went silent."""
    return {"silent": _instance().silence()}
