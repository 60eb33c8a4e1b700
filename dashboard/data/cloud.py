"""The cloud backend: events from the verdicts table that cloud/ingest.py writes (paged queries on its bySiteTime and
byCameraTime indexes, newest first: never a Scan), snapshots as presigned URLs of the data bucket (valid at most
5 minutes), clips read from the data bucket, devices from the health summaries the IoT rules archive
(results/iot-rules/metrics/{thing}/...), cameras and the counting analytics (counts/1.0 per minute window) from
the real-time counts table when it is deployed.

Names come from ggvision/contract/cloud.py and keys.py; settings from the environment (`CloudSettings.from_env`)
or a local cloud's cloud.json (`ggvision run`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import boto3
import numpy as np
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from ggvision.contract import cloud as names
from ggvision.contract.keys import CLIPS, IMAGES, RULE_ARCHIVE_PREFIX

from .base import (
    PAGE_SIZE,
    Box,
    Camera,
    Counts,
    Device,
    Event,
    EventPage,
    EventQuery,
    FireView,
    decode_cursor,
    encode_cursor,
)

PRESIGN_MAX_S = 300  # a presigned URL lives at most 5 minutes: a page reload makes new ones
METRICS_PREFIX = f"{RULE_ARCHIVE_PREFIX}metrics/"
OFFLINE_AFTER_S = 180.0
FILTER_READ = 200  # items per read when a filter may drop some  # three missed health summaries (one a minute)


@dataclass(frozen=True)
class CloudSettings:
    table: str
    data_bucket: str
    region: str = "us-east-1"
    endpoint_url: str | None = None  # moto's server locally; None: AWS
    counts_table: str | None = None
    presign_s: int = PRESIGN_MAX_S
    sites: tuple[str, ...] = ()  # known sites (the site file's), added to those with snapshots

    def __post_init__(self) -> None:
        if not 1 <= self.presign_s <= PRESIGN_MAX_S:
            raise ValueError(f"dashboard: presigned URLs live 1..{PRESIGN_MAX_S} s, got {self.presign_s}")

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> CloudSettings:
        """GGVISION_DASHBOARD_TABLE and _DATA_BUCKET (or _CLOUD_JSON, a local cloud's cloud.json), AWS_REGION,
        AWS_ENDPOINT_URL (boto3's own variable), GGVISION_DASHBOARD_COUNTS_TABLE, _PRESIGN_S, _SITES (a comma-separated
        list)."""
        env = dict(os.environ if env is None else env)
        info: dict[str, Any] = {}
        if env.get("GGVISION_DASHBOARD_CLOUD_JSON"):
            path = Path(env["GGVISION_DASHBOARD_CLOUD_JSON"])
            try:
                info = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise ValueError(f"dashboard: GGVISION_DASHBOARD_CLOUD_JSON={path}: {e}") from None
        table = env.get("GGVISION_DASHBOARD_TABLE") or info.get("table")
        bucket = env.get("GGVISION_DASHBOARD_DATA_BUCKET") or info.get("data_bucket")
        missing = [n for n, v in (("GGVISION_DASHBOARD_TABLE", table), ("GGVISION_DASHBOARD_DATA_BUCKET", bucket))
                   if not v]
        if missing:
            raise ValueError(f"dashboard (cloud backend): set {' and '.join(missing)} "
                             "(or GGVISION_DASHBOARD_CLOUD_JSON to a local cloud's cloud.json)")
        return cls(str(table), str(bucket), env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
                   or info.get("region") or "us-east-1",
                   env.get("AWS_ENDPOINT_URL") or info.get("endpoint_url"),
                   env.get("GGVISION_DASHBOARD_COUNTS_TABLE") or None,
                   int(env.get("GGVISION_DASHBOARD_PRESIGN_S") or PRESIGN_MAX_S),
                   tuple(s.strip() for s in (env.get("GGVISION_DASHBOARD_SITES") or "").split(",") if s.strip()))


def _plain(v: Any) -> Any:
    if isinstance(v, Decimal):
        return int(v) if v == int(v) else float(v)
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def event_of(item: dict[str, Any]) -> Event:
    """A verdicts item (either half may be missing yet) as an Event."""
    it = _plain(item)
    thing, _, event_id = str(it[names.ITEM_KEY]).partition("#")
    boxes = tuple(Box(*map(float, b[:5])) for b in it.get(names.ITEM_BOXES) or [] if len(b) >= 5)
    return Event(thing=thing, event_id=event_id, site=str(it.get(names.ITEM_SITE, names.SITE_UNKNOWN)),
                 camera=str(it.get(names.ITEM_CAMERA, "?")), label=str(it.get(names.ITEM_LABEL, "?")),
                 start=float(it.get(names.ITEM_START, 0)), end=float(it.get(names.ITEM_END, 0) or 0),
                 edge_score=float(it.get(names.ITEM_EDGE_SCORE, 0) or 0), boxes=boxes,
                 verdict=it.get(names.ITEM_VERDICT), cloud_score=it.get(names.ITEM_CLOUD_SCORE),
                 snapshot=it.get(names.ITEM_SNAPSHOT_KEY))


class CloudSource:
    name: Literal["cloud"] = "cloud"

    def __init__(self, settings: CloudSettings, session: Any = None) -> None:
        self.settings = settings
        self._session = session or boto3.session.Session(region_name=settings.region)
        kw = {"endpoint_url": settings.endpoint_url} if settings.endpoint_url else {}
        self._ddb = self._session.resource("dynamodb", **kw)
        self._s3 = self._session.client("s3", **kw)
        self.table = self._ddb.Table(settings.table)

    # ------------------------------------------------------------------ events: paged index queries
    def events(self, query: EventQuery, cursor: str | None = None, limit: int = PAGE_SIZE) -> EventPage:
        if query.camera_key:
            index, hash_name, hash_value = names.INDEX_CAMERA_TIME, names.ITEM_CAMERA_KEY, query.camera_key
        elif query.site:
            index, hash_name, hash_value = names.INDEX_SITE_TIME, names.ITEM_SITE, query.site
        else:
            raise ValueError("dashboard: an event query names a site or a camera (the table's indexes need one)")
        cond = Key(hash_name).eq(hash_value)
        if query.since is not None or query.until is not None:
            cond = cond & Key(names.ITEM_START).between(Decimal(str(query.since or 0)),
                                                        Decimal(str(query.until or 2**40)))
        flt = Attr(names.ITEM_TTL).gt(int(time.time()))  # TTL deletes lag (up to days): readers filter too
        if query.labels:
            flt = flt & Attr(names.ITEM_LABEL).is_in(list(query.labels))
        if query.verdict:
            flt = flt & Attr(names.ITEM_VERDICT).eq(query.verdict)
        if query.site and query.camera_key:
            flt = flt & Attr(names.ITEM_SITE).eq(query.site)
        kw: dict[str, Any] = {"IndexName": index, "KeyConditionExpression": cond, "FilterExpression": flt,
                              "ScanIndexForward": False}
        start_key = _key_in(decode_cursor(cursor)) if cursor else None
        filtering = bool(query.labels or query.verdict or (query.site and query.camera_key))
        out: list[dict[str, Any]] = []
        while True:
            if start_key:
                kw["ExclusiveStartKey"] = start_key
            # DynamoDB applies Limit before the filter: when filtering, read more than a page at a time (one page
            # of results may cost several reads, never one read per missing item); the cursor is the last item
            # taken, so what a read returned beyond the page is read again next page, not lost.
            r = self.table.query(Limit=limit - len(out) if not filtering else max(2 * limit, FILTER_READ), **kw)
            items = r.get("Items", [])
            for i, it in enumerate(items):
                out.append(it)
                if len(out) == limit:
                    more = i + 1 < len(items) or "LastEvaluatedKey" in r
                    last = {k: it[k] for k in (names.ITEM_KEY, hash_name, names.ITEM_START)}
                    return EventPage([event_of(x) for x in out], encode_cursor(_key_out(last)) if more else None)
            start_key = r.get("LastEvaluatedKey")
            if not start_key:
                return EventPage([event_of(x) for x in out], None)

    def labels(self) -> list[str]:
        return list(dict.fromkeys([*names.ALERT_LABELS, "person", "car", "bicycle"]))

    # ------------------------------------------------------------------ media
    def snapshot(self, event: Event) -> bytes | None:
        if not event.snapshot:
            return None
        try:
            return bytes(self._s3.get_object(Bucket=self.settings.data_bucket, Key=event.snapshot)["Body"].read())
        except ClientError:
            return None  # expired (lifecycle) or not there yet

    def snapshot_url(self, event: Event) -> str | None:
        if not event.snapshot:
            return None
        return str(self._s3.generate_presigned_url("get_object", Params={
            "Bucket": self.settings.data_bucket, "Key": event.snapshot}, ExpiresIn=self.settings.presign_s))

    def clip(self, event: Event) -> bytes | None:
        """The clip objects (clips/{site}/{thing}/{camera}/YYYY/MM/DD/HH/...) whose metadata names the event."""
        hours = {time.strftime("%Y/%m/%d/%H", time.gmtime(t)) for t in (event.start, event.end or event.start)}
        parts: list[tuple[str, bytes]] = []
        for hour in sorted(hours):
            prefix = f"{CLIPS}/{event.site}/{event.thing}/{event.camera}/{hour}/"
            for obj in self._s3.list_objects_v2(Bucket=self.settings.data_bucket, Prefix=prefix).get("Contents", []):
                r = self._s3.get_object(Bucket=self.settings.data_bucket, Key=obj["Key"])
                if event.event_id in (r.get("Metadata", {}).get("event-ids") or ""):
                    parts.append((obj["Key"], r["Body"].read()))
                else:
                    r["Body"].close()
        return b"".join(b for _, b in sorted(parts)) or None  # MPEG-TS segments concatenate

    def live_frame(self, camera_key: str) -> np.ndarray | None:
        return None  # frames never leave the box

    # ------------------------------------------------------------------ fleet
    def sites(self) -> list[str]:
        """The configured sites and those with snapshots in the data bucket (its images/{site}/ prefixes: one LIST
        call; a site whose events never had a snapshot is known only from the configuration)."""
        r = self._s3.list_objects_v2(Bucket=self.settings.data_bucket, Prefix=f"{IMAGES}/", Delimiter="/")
        return sorted({*self.settings.sites,
                       *(p["Prefix"][len(IMAGES) + 1:].rstrip("/") for p in r.get("CommonPrefixes", []))})

    def _summary(self, thing: str) -> dict[str, Any] | None:
        """The thing's newest archived health summary (the newest hour folder, the newest object in it)."""
        now = time.time()
        for back in range(0, 48):
            hour = time.strftime("%Y/%m/%d/%H", time.gmtime(now - back * 3600))
            objs = self._s3.list_objects_v2(Bucket=self.settings.data_bucket,
                                            Prefix=f"{METRICS_PREFIX}{thing}/{hour}/").get("Contents", [])
            if objs:
                newest = max(objs, key=lambda o: o["LastModified"])
                body = self._s3.get_object(Bucket=self.settings.data_bucket, Key=newest["Key"])["Body"].read()
                try:
                    doc = json.loads(body)
                except ValueError:
                    return None
                return doc if isinstance(doc, dict) else None
        return None

    def devices(self) -> list[Device]:
        r = self._s3.list_objects_v2(Bucket=self.settings.data_bucket, Prefix=METRICS_PREFIX, Delimiter="/")
        out = []
        for p in r.get("CommonPrefixes", []):
            thing = p["Prefix"][len(METRICS_PREFIX):].rstrip("/")
            doc = self._summary(thing) or {}
            seen = doc.get("timestamp") or (doc.get("received_at", 0) / 1000 or None)
            comps = doc.get("components") or {}
            alerts = doc.get("alerts") or []
            out.append(Device(
                thing=thing, site=str(doc.get("site") or "?"), last_seen=seen,
                online=bool(seen and time.time() - float(seen) < OFFLINE_AFTER_S),
                versions={c: str(v.get("version", "?")) for c, v in comps.items() if isinstance(v, dict)},
                backlog_bytes=doc.get("uplink_backlog_bytes"), link="reporting" if seen else "unknown",
                alerts=tuple(str(a.get("name", a)) if isinstance(a, dict) else str(a) for a in alerts)))
        return out

    def cameras(self, site: str | None = None) -> list[Camera]:
        """A site's cameras: the counts table's camera items when it is deployed, else those of its newest events;
        each with its newest event that has a snapshot."""
        sites = [site] if site else self.sites()
        cams: dict[str, Camera] = {}
        for s in sites:
            for key, seen, silent in self._counted_cameras(s):
                thing, _, camera = key.partition("/")
                cams[key] = Camera(thing, camera, s, "silent" if silent else "up", last_seen=seen)
            for ev in self.events(EventQuery(site=s), limit=100).events:
                k = f"{ev.thing}/{ev.camera}"
                cam = cams.get(k) or Camera(ev.thing, ev.camera, s, last_seen=ev.start)
                if cam.latest is None and ev.snapshot:
                    cam = Camera(cam.thing, cam.camera, s, cam.status, last_seen=cam.last_seen or ev.start, latest=ev)
                cams[k] = cam
        return sorted(cams.values(), key=lambda c: c.key)

    def _counted_cameras(self, site: str) -> list[tuple[str, float, bool]]:
        if not self.settings.counts_table:
            return []
        try:
            r = self._ddb.Table(self.settings.counts_table).query(
                IndexName=names.INDEX_SITE_SEEN, KeyConditionExpression=Key(names.COUNT_SITE).eq(site))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                return []
            raise
        return [(str(i[names.COUNT_KEY]), float(i.get(names.CAMERA_SEEN_AT, 0)), names.CAMERA_SILENT_SINCE in i)
                for i in r.get("Items", [])]

    def counts(self, camera_key: str, since: float, until: float) -> list[Counts]:
        """The camera's minute windows in the counts table that hold counts/1.0 (cloud/realtime.py), oldest first:
        one Query on the table's key (paged), never a Scan. Empty when the table is not deployed."""
        if not self.settings.counts_table:
            return []
        table = self._ddb.Table(self.settings.counts_table)
        kw: dict[str, Any] = {"KeyConditionExpression": Key(names.COUNT_KEY).eq(camera_key) & Key(
            names.COUNT_MINUTE).between(max(1, int(since // 60) * 60), int(min(until, 2**40)))}
        out = []
        while True:
            try:
                r = table.query(**kw)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                    return []
                raise
            for it in r.get("Items", []):
                c = counts_item(it)
                if c is not None:
                    out.append(c)
            if "LastEvaluatedKey" not in r:
                return out
            kw["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def fire(self) -> list[FireView]:
        return []  # thermal frames and fire-risk outputs stay on the box (not uplinked yet)


def counts_item(item: dict[str, Any]) -> Counts | None:
    """A window item's counts/1.0 attributes as Counts; None for a window without any (events only)."""
    if names.COUNT_COUNTS_SEQ not in item:
        return None
    it = _plain(item)
    crossings: dict[str, dict[str, dict[str, int]]] = {}
    occ: dict[str, int] = {}
    ent: dict[str, int] = {}
    hits: dict[str, int] = {}
    for name, v in it.items():
        parts = names.parse_count_attribute(name)
        if parts is None or not isinstance(v, int | float):
            continue
        if parts[0] == "x":
            crossings.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = int(v)
        elif parts[0] == "omax":
            occ[parts[1]] = int(v)
        elif parts[0] == "ent":
            ent[parts[1]] = int(v)
        elif parts[0] == "hit":
            hits[parts[1]] = int(v)
    start = float(it[names.COUNT_MINUTE])
    return Counts(start, float(it.get(names.COUNT_COUNTS_END) or start + 60), crossings, occ, ent, hits)


def _key_out(key: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Decimal) else v for k, v in key.items()}


def _key_in(doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in doc.items():
        if not isinstance(k, str) or not isinstance(v, str | int | float):
            raise ValueError(f"dashboard: a page cursor holds key values, got {k!r}: {v!r}")
        out[k] = Decimal(str(v)) if k == names.ITEM_START else v
    return out
