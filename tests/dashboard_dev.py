"""Test helpers for the dashboard: a cloud world (moto's server over HTTP with the ingest's resources, the real
second-stage endpoint and cloud/ingest.py's handler fed by the SQS runner) whose items are produced by the real
handler, plus bulk items in the handler's item shape for paging at scale; and an edge runtime root laid out as the
real components leave it (tests/data/dashboard-edge-root: recorded from a short `ggvision run --no-cloud`)."""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
from cloud_dev import (
    DATA_BUCKET,
    EndpointProcess,
    drain,
    end_event,
    ingest_env,
    kinesis_record,
    make_counts_table,
    make_ingest_world,
    person_jpeg,
    put_record,
    put_snapshot,
)
from harness import REPO
from uplink_dev import MotoProcess, aws_test_env

from cloud.ingest import Ingest
from cloud.realtime import Realtime
from cloud.runner import SqsRunner
from ggvision.contract import cloud as names

SITE, THING, CAMERA = "site-7", "site-7-box", "door"
RECORDED_ROOT = REPO / "tests" / "data" / "dashboard-edge-root"


class CloudWorld:
    """moto + the endpoint + the ingest's resources; `env` is what the dashboard's cloud backend reads."""

    def __init__(self, d: Path) -> None:
        aws_test_env()
        self.moto = MotoProcess(d / "moto.log")
        self.endpoint = EndpointProcess(d / "endpoint.log")
        self.names = make_ingest_world(self.moto)
        # the handler's boto3 finds moto and the endpoint through boto3's endpoint variables, as in its own tests
        os.environ.update(ingest_env(self.moto.url, self.endpoint.url, self.names))
        self.ingest = Ingest.from_env()
        self.s3, self.sqs = self.moto.client("s3"), self.moto.client("sqs")
        self.table = boto3.resource("dynamodb", endpoint_url=self.moto.url, region_name="us-east-1").Table(
            self.names["table"])
        self.runner = SqsRunner(self.sqs, self.names["queue"], self.ingest.handle, visibility_timeout=1, wait_s=0)
        self.env = {"GGVISION_DASHBOARD_BACKEND": "cloud", "GGVISION_DASHBOARD_TABLE": self.names["table"],
                    "GGVISION_DASHBOARD_DATA_BUCKET": DATA_BUCKET, "AWS_ENDPOINT_URL": self.moto.url,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing"}

    def item(self, event_id: str, thing: str = THING) -> dict[str, Any]:
        return self.table.get_item(Key={names.ITEM_KEY: names.item_key(thing, event_id)}).get("Item", {})

    def real_event(self, event_id: str, start: float, label: str = "person", with_snapshot: bool = True,
                   camera: str = CAMERA) -> dict[str, Any]:
        """An event as the edge sends it (snapshot object, archived record) decided by the real handler."""
        snap_id = None
        if with_snapshot:
            _, snap_id = put_snapshot(self.s3, SITE, THING, camera, [event_id], start + 1, person_jpeg())
        put_record(self.s3, THING, camera, [end_event(camera, event_id, start, label=label, snapshot=snap_id)],
                   site=SITE)
        drain(self.runner, lambda: names.ITEM_VERDICT in self.item(event_id), timeout=60,
              what=f"a verdict on {event_id}")
        return self.item(event_id)

    def bulk(self, n: int, t0: float, site: str = SITE, labels: tuple[str, ...] = ("person", "car", "bicycle"),
             cameras: tuple[str, ...] = ("gate", "yard")) -> None:
        bulk_items(self.table, n, t0, site, labels, cameras)

    def counts(self, thing: str, camera: str, bodies: list[dict[str, Any]], site: str = SITE) -> None:
        """counts/1.0 bodies through the real real-time handler into the counts table (made on first use; the
        backend's env then names it), as Kinesis records of the Uplink's."""
        if "GGVISION_DASHBOARD_COUNTS_TABLE" not in self.env:
            self.env["GGVISION_DASHBOARD_COUNTS_TABLE"] = make_counts_table(self.moto)
            self.realtime = Realtime(self.env["GGVISION_DASHBOARD_COUNTS_TABLE"])
        self._seq = getattr(self, "_seq", 0)
        records = []
        for b in bodies:
            self._seq += 1
            records.append(kinesis_record(self._seq, thing, site, camera, b, b["end"]))
        assert self.realtime.handle({"Records": records}) == {"batchItemFailures": []}

    def stop(self) -> None:
        self.endpoint.stop()
        self.moto.stop()


def edge_root(dest: Path) -> Path:
    """A copy of the recorded runtime root (the dashboard only reads it; a copy keeps the repository's clean)."""
    root = dest / "root"
    shutil.copytree(RECORDED_ROOT, root)
    return root


def bulk_items(table: Any, n: int, t0: float, site: str = SITE, labels: tuple[str, ...] = ("person", "car", "bicycle"),
               cameras: tuple[str, ...] = ("gate", "yard"), snapshots: dict[int, str] | None = None) -> None:
    """`n` decided items in the ingest's item shape, one a minute back from t0 (the handler's own writes would take
    minutes at this size; the real ones come from CloudWorld.real_event). `snapshots`: item index -> snapshot key."""
    with table.batch_writer() as w:
        for i in range(n):
            cam, start = cameras[i % len(cameras)], t0 - 60 * i
            item = {
                names.ITEM_KEY: names.item_key(THING, f"{site}-{i:05d}"), names.ITEM_SITE: site,
                names.ITEM_THING: THING, names.ITEM_CAMERA: cam, names.ITEM_CAMERA_KEY: names.camera_key(THING, cam),
                names.ITEM_START: Decimal(str(round(start, 3))), names.ITEM_END: Decimal(str(round(start + 4, 3))),
                names.ITEM_LABEL: labels[i % len(labels)], names.ITEM_EDGE_SCORE: Decimal("0.8"),
                names.ITEM_BOXES: [[Decimal(str(round(start, 3))), 10, 10, 50, 90]],
                names.ITEM_VERDICT: names.UNVERIFIED, names.ITEM_TTL: names.expires_at(start)}
            if snapshots and i in snapshots:
                item[names.ITEM_SNAPSHOT_KEY] = snapshots[i]
            w.put_item(Item=item)
