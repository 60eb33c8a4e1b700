"""The cloud's own names: the ingest path's queues, table and item layout, its results objects, the EventBridge
event of a confirmed alert and its CloudWatch metrics. cloud/ingest.py and deploy/cloudformation/processing.yaml
both use these (tests/test_contract.py and tests/cloud/test_processing*.py hold them together).

Names come from the stack's `NamePrefix` (`^[a-z0-9][a-z0-9-]{1,20}$`, as streams.py):

    SQS queue           {prefix}-ingest        S3 ObjectCreated notifications of the data bucket
    SQS dead letters    {prefix}-ingest-dlq    what failed maxReceiveCount times, and malformed objects
    DynamoDB table      {prefix}-verdicts      one item per edge event (ITEM_* below), TTL on TTL_ATTRIBUTE
    S3 bucket           {prefix}-results-{region}-{account}   processed result objects (RESULT_KEY)

What triggers the ingest (notification filters on the data bucket, keys.py's layout):

    results/iot-rules/results/{thing}/...   the IoT rule's archive of ggvision/{thing}/results: uplink-batch/1.0
                                            documents whose event/1.0 items of kind "end" are the edge's
                                            record of an event (label, edge score, boxes, the snapshot's id)
    images/{site}/{thing}/{camera}/...      the event's snapshot; its metadata names the events it shows

The real-time path (cloud/realtime.py, deploy/cloudformation/realtime.yaml) reads streams.py's Kinesis stream
`{prefix}-uplink` (uplink-record/1.0) and keeps:

    DynamoDB table      {prefix}-counts        per camera (COUNT_KEY) per minute (COUNT_MINUTE): events by label
                                               and the Filter's counts/1.0 (COUNT_CROSSING...); minute 0 is the
                                               camera's own item (last seen, silence)
    EventBridge         DETAIL_TYPE_SILENT, DETAIL_TYPE_HIGH_COUNT (source EVENT_SOURCE): anomalies
    CloudWatch          METRICS_NAMESPACE  METRIC_EVENTS {Site, Camera, Label} per minute; METRIC_CROSSINGS,
                                           METRIC_ZONE_OCCUPANCY, METRIC_ZONE_HITS (counts/1.0)

Automated model updates (cloud/model_updates.py, deploy/cloudformation/model-updates.yaml):

    S3 bucket           {prefix}-models-{region}-{account}   the model registry's versioned store
    SQS queue           {prefix}-model-updates (+ -dlq)      its ObjectCreated of `{name}/{version}/manifest.json`
    DynamoDB table      {prefix}-model-updates               one item per model version: what became of it
"""

from __future__ import annotations

import time
from urllib.parse import quote, unquote

from .keys import IMAGES, RETENTION_DAYS_MAX, RULE_ARCHIVE_PREFIX
from .streams import NAME_PREFIX

QUEUE_TEMPLATE = "{prefix}-ingest"
DLQ_TEMPLATE = "{prefix}-ingest-dlq"
TABLE_TEMPLATE = "{prefix}-verdicts"
RESULTS_BUCKET_TEMPLATE = "{prefix}-results-{region}-{account}"

RECORD_PREFIX = f"{RULE_ARCHIVE_PREFIX}results/"  # where the IoT rule archives ggvision/{thing}/results
SNAPSHOT_PREFIX = f"{IMAGES}/"
TRIGGER_PREFIXES = (RECORD_PREFIX, SNAPSHOT_PREFIX)
"""The data bucket's key prefixes whose ObjectCreated notifications go to the ingest queue (and nothing else)."""

MAX_RECORD_BYTES = 256 * 1024  # an archived batch is <= 128 KB plus the rule's fields: more is not ours
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024  # a full-HD JPEG is well under 1 MB; the endpoint takes at most 6 MB

# ---- the DynamoDB item: one per edge event (a thing's event id), written by both halves of the join
ITEM_KEY = "pk"  # "{thing}#{event_id}": event ids are unique per device only
ITEM_SITE, ITEM_THING, ITEM_CAMERA, ITEM_CAMERA_KEY = "site", "thing", "camera", "cameraKey"
ITEM_START, ITEM_END, ITEM_LABEL, ITEM_BOXES = "start", "end", "label", "boxes"
ITEM_EDGE_SCORE, ITEM_CLOUD_SCORE, ITEM_VERDICT = "edgeScore", "cloudScore", "verdict"
ITEM_SNAPSHOT_ID = "snapshotId"  # the Uplink item id the edge's record names as the best snapshot
ITEM_CLOUD_SNAPSHOT_ID = "cloudSnapshotId"  # the snapshot the cloud score was computed on
ITEM_RECORD_KEY, ITEM_SNAPSHOT_KEY, ITEM_RESULT_KEY = "recordKey", "snapshotKey", "resultKey"
ITEM_CLOUD_AT, ITEM_CLOUD_LABELS, ITEM_CLOUD_MODEL = "cloudAt", "cloudLabels", "cloudModel"
ITEM_EDGE_MODEL = "edgeModel"
TTL_ATTRIBUTE = "expires_at"
"""The TTL attribute of every ggvision table (epoch seconds; DynamoDB deletes the item after it, lagging up to days:
readers filter too): routing.yaml's events table (its IoT rule's SELECT names it), processing.yaml's verdicts and
realtime.yaml's counts. One name, so one reader filter and one privacy check serve them all."""
ITEM_TTL = TTL_ATTRIBUTE

INDEX_SITE_TIME = "bySiteTime"  # HASH site, RANGE start: a site's events in time order (the dashboard's list)
INDEX_CAMERA_TIME = "byCameraTime"  # HASH cameraKey "{thing}/{camera}" (camera ids are per device), RANGE start

CONFIRMED, DISPUTED, UNVERIFIED = "confirmed", "disputed", "unverified"
VERDICTS = (CONFIRMED, DISPUTED, UNVERIFIED)
"""confirmed: the cloud model sees the edge's label on the snapshot; disputed: it does not; unverified: the edge
sent no snapshot for the event (metadata policy, budget), so there is nothing to check."""

SITE_UNKNOWN = "_unknown"
"""The site of an event whose record came without one and whose snapshot never came (the batch envelope does not
carry the site yet; the snapshot's key does)."""

ALERT_LABELS = ("person",)  # an edge event of these labels that the cloud confirms is an alert

# ---- EventBridge: a confirmed alert
EVENT_SOURCE = "ggvision.cloud"
DETAIL_TYPE_CONFIRMED = "ggvision.event.confirmed"
"""Detail: {"schema": RESULT_SCHEMA, ...} — the processed result document (RESULT_SCHEMA below)."""

# ---- CloudWatch: the model-quality signal
METRICS_NAMESPACE = "ggvision/cloud"
METRIC_VERDICTS = "Verdicts"  # dimensions Verdict, Label: every decided event
METRIC_DISAGREEMENTS = "Disagreements"  # dimension Label: disputed events (edge and cloud disagree)

# ---- the processed result object in the results bucket
RESULT_SCHEMA = "event-verdict/1.0"
RESULT_KEY = "verdicts/{site}/{thing}/{camera}/{yyyy}/{mm}/{dd}/{hh}/{event_id}.json"


def _prefix(prefix: str) -> str:
    if not NAME_PREFIX.match(prefix):
        raise ValueError(f"a stack name prefix is {NAME_PREFIX.pattern}, got {prefix!r}")
    return prefix


def queue_name(prefix: str) -> str:
    """The ingest queue: `{prefix}-ingest` (a standard queue: S3 cannot notify a FIFO queue)."""
    return QUEUE_TEMPLATE.format(prefix=_prefix(prefix))


def dlq_name(prefix: str) -> str:
    """The ingest queue's dead-letter queue: `{prefix}-ingest-dlq`."""
    return DLQ_TEMPLATE.format(prefix=_prefix(prefix))


def table_name(prefix: str) -> str:
    """The verdicts table: `{prefix}-verdicts`, one item per edge event."""
    return TABLE_TEMPLATE.format(prefix=_prefix(prefix))


def results_bucket_name(prefix: str, region: str, account: str) -> str:
    """The processed-results bucket: `{prefix}-results-{region}-{account}` (as storage.yaml names its buckets)."""
    return RESULTS_BUCKET_TEMPLATE.format(prefix=_prefix(prefix), region=region, account=account)


def item_key(thing: str, event_id: str) -> str:
    """The item's partition key: `{thing}#{event_id}`."""
    return f"{thing}#{event_id}"


def camera_key(thing: str, camera: str) -> str:
    """The camera index's partition key: `{thing}/{camera}`."""
    return f"{thing}/{camera}"


def expires_at(start: float, days: int = RETENTION_DAYS_MAX) -> int:
    """The item's TTL: `days` after the event started (epoch seconds), never more than RETENTION_DAYS_MAX."""
    if not 1 <= days <= RETENTION_DAYS_MAX:
        raise ValueError(f"retention days must be 1..{RETENTION_DAYS_MAX} (the privacy rule), got {days}")
    return int(start) + days * 86400


def result_key(site: str, thing: str, camera: str, start: float, event_id: str) -> str:
    """The processed result object: `verdicts/{site}/{thing}/{camera}/YYYY/MM/DD/HH/{event_id}.json` (UTC)."""
    t = time.gmtime(start)
    return RESULT_KEY.format(site=site, thing=thing, camera=camera, yyyy=f"{t.tm_year:04d}", mm=f"{t.tm_mon:02d}",
                             dd=f"{t.tm_mday:02d}", hh=f"{t.tm_hour:02d}", event_id=event_id)


# ---- the real-time path: Kinesis {prefix}-uplink -> cloud.realtime -> counts per camera per minute
COUNTS_TABLE_TEMPLATE = "{prefix}-counts"
COUNT_KEY = "cameraKey"  # HASH: "{thing}/{camera}" (camera_key)
COUNT_MINUTE = "minute"  # RANGE: the window's start in epoch seconds (a multiple of 60)
CAMERA_ITEM = 0  # the COUNT_MINUTE of a camera's own item: site, last seen, silence
COUNT_SITE, COUNT_THING, COUNT_CAMERA = "site", "thing", "camera"
COUNT_TOTAL = "total"  # events in the window, all labels
COUNT_LABEL = "n:{label}"  # events of a label in the window
COUNT_LAST_SEQ = "lastSeq"  # the highest Kinesis sequence number applied to the window (zero-padded to 128 digits)
COUNT_ALERTED = "alerted"  # labels whose high-count anomaly was raised for the window (a string set)
CAMERA_SEEN_AT = "seenAt"  # camera item: arrival time of its newest record (only camera items have it)
CAMERA_FIRST_SEEN = "firstSeen"  # camera item: since when the path knows the camera (the baseline needs an hour)
CAMERA_SILENT_SINCE = "silentSince"  # camera item: set while the camera is silent (one anomaly per silence)
INDEX_SITE_SEEN = "bySiteSeen"  # HASH site, RANGE seenAt: sparse (camera items only): a site's cameras; silence scan
# The Filter's counts/1.0 (docs/messages.md) in the window of its interval's start, beside the events' counts; names
# in these attributes are percent-quoted (count_attribute), so "|" only separates
COUNTS_SCHEMA = "counts/1.0"
COUNT_CROSSING = "x|{line}|{direction}|{label}"  # crossings of a line by direction (in/out) and label (ADDed)
COUNT_OCCUPANCY_MAX = "omax|{zone}"  # the most objects at once in the zone over the window's counts messages
COUNT_OCCUPANCY = "occ|{zone}"  # objects in the zone at the end of the window's newest counts message
COUNT_ENTERED = "ent|{zone}"  # objects that entered the zone (ADDed)
COUNT_HITS = "hit|{kind}"  # zone rule alerts by kind: loitering, overcrowding (ADDed)
COUNT_COUNTS_SEQ = "countsSeq"  # the highest sequence number of a counts/1.0 record applied to the window
COUNT_COUNTS_END = "countsEnd"  # the latest `end` of the window's counts messages

METRIC_EVENTS = "Events"  # dimensions Site, Camera ("{thing}/{camera}"), Label: events per minute (Sum)
METRIC_MALFORMED_RECORDS = "MalformedRecords"  # no dimension: stream records that were counted and skipped
METRIC_CROSSINGS = "Crossings"  # dimensions Site, Camera, Line, Direction, Label: line crossings (Sum)
METRIC_ZONE_OCCUPANCY = "ZoneOccupancy"  # dimensions Site, Camera, Zone: objects at once (Maximum)
METRIC_ZONE_HITS = "ZoneRuleHits"  # dimensions Site, Camera, Kind (loitering, overcrowding): alerts (Sum)
DETAIL_TYPE_SILENT = "ggvision.camera.silent"
DETAIL_TYPE_HIGH_COUNT = "ggvision.count.high"
ANOMALY_SCHEMA = "camera-anomaly/1.0"
"""Detail of both anomalies: {"schema", "kind": "silent" | "high-count", "site", "thing", "camera", ...}
(docs/cloud.md, "The real-time path")."""


def counts_table_name(prefix: str) -> str:
    """The real-time counts table: `{prefix}-counts`."""
    return COUNTS_TABLE_TEMPLATE.format(prefix=_prefix(prefix))


def minute_of(t: float) -> int:
    """The start of the minute `t` falls in (epoch seconds): the window an event is counted in."""
    return int(t // 60) * 60


def count_attribute(template: str, **parts: str) -> str:
    """A window item's counts/1.0 attribute (COUNT_CROSSING, COUNT_OCCUPANCY...), its names percent-quoted."""
    return template.format(**{k: quote(v, safe="") for k, v in parts.items()})


def parse_count_attribute(name: str) -> tuple[str, ...] | None:
    """("x", line, direction, label), ("omax", zone), ...: a counts/1.0 attribute's parts; None for any other."""
    parts = name.split("|")
    if (parts[0], len(parts)) not in (("x", 4), ("omax", 2), ("occ", 2), ("ent", 2), ("hit", 2)):
        return None
    return (parts[0], *(unquote(p) for p in parts[1:]))


def label_attribute(label: str) -> str:
    """The window item's attribute that counts `label`: `n:{label}`."""
    return COUNT_LABEL.format(label=label)


# ---- automated model updates: registry upload -> SQS -> cloud.model_updates -> component version + rollout
MODELS_BUCKET_TEMPLATE = "{prefix}-models-{region}-{account}"
UPDATES_QUEUE_TEMPLATE = "{prefix}-model-updates"
UPDATES_DLQ_TEMPLATE = "{prefix}-model-updates-dlq"
UPDATES_TABLE_TEMPLATE = "{prefix}-model-updates"
MODEL_TRIGGER_SUFFIX = "/manifest.json"  # the registry writes a version's manifest last: then the version is whole
UPDATE_KEY = "pk"  # "{model}#{version}"
UPDATE_MODEL, UPDATE_VERSION, UPDATE_STATUS, UPDATE_REASON = "model", "version", "status", "reason"
UPDATE_COMPONENT, UPDATE_COMPONENT_ARN, UPDATE_STAGE = "component", "componentArn", "stage"
UPDATE_ROLLOUT = "rollout"  # the rollout engine's record of the promote (JSON: id, status, reason, events)
UPDATE_ATTEMPTS, UPDATE_UPDATED_AT = "attempts", "updatedAt"
VALIDATING, REFUSED, PUBLISHED, PASSED, ROLLED_BACK, ROLLOUT_REFUSED, RETRYING = (
    "validating", "refused", "published", "passed", "rolled_back", "rollout_refused", "retrying")
UPDATE_STATUSES = (VALIDATING, REFUSED, PUBLISHED, PASSED, ROLLED_BACK, ROLLOUT_REFUSED, RETRYING)
"""validating: claimed by a handler; refused: the version failed validation (no component version, no rollout;
`reason` says why); published: the component version exists, the rollout runs; passed / rolled_back: the first
stage's outcome; rollout_refused: the engine would not start (a paused stage, a canary it cannot apply);
retrying: a transient failure, the message is received again."""


def models_bucket_name(prefix: str, region: str, account: str) -> str:
    """The model registry's bucket: `{prefix}-models-{region}-{account}`."""
    return MODELS_BUCKET_TEMPLATE.format(prefix=_prefix(prefix), region=region, account=account)


def updates_queue_name(prefix: str) -> str:
    return UPDATES_QUEUE_TEMPLATE.format(prefix=_prefix(prefix))


def updates_dlq_name(prefix: str) -> str:
    return UPDATES_DLQ_TEMPLATE.format(prefix=_prefix(prefix))


def updates_table_name(prefix: str) -> str:
    return UPDATES_TABLE_TEMPLATE.format(prefix=_prefix(prefix))
