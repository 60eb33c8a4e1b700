"""Dashboard page load with 10,000 events in moto's DynamoDB: the Events page (first page, then the next), against
the raw paged index query it is built on, measured in the same run.

    .venv/bin/python bench/dashboard.py             # ~1 minute
    .venv/bin/python bench/dashboard.py --runs 3 --json out.json

Setup: moto's server in its own process on loopback (as in the tests) with the verdicts table and its indexes as
processing.yaml declares them (tests/cloud_dev.py make_ingest_world); 10,000 items in the ingest's item shape at
one site, two cameras, three labels, one a minute; the newest 12 with a JPEG snapshot in the data bucket.

Measured (medians of --runs, wall time in this process; moto's own work included, it is the "database" here):
- baseline: `Table.query` on bySiteTime, Limit 50, newest first — the first page, then the next (ExclusiveStartKey);
- data layer: CloudSource.events for the same two pages (filters, TTL filter, cursor encoding);
- page: the whole Events page script through Streamlit's AppTest (filters, the 50-row list, the timeline over the
  newest 500 events, 12 snapshots fetched and boxes drawn, the clip lookup), the first load and the "Next page"
  click. Streamlit's caches are cleared before each first load, so the timeline's reads are counted every run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import boto3  # noqa: E402
from boto3.dynamodb.conditions import Key  # noqa: E402
from cloud_dev import DATA_BUCKET, make_ingest_world, person_jpeg  # noqa: E402
from dashboard_dev import SITE, bulk_items  # noqa: E402
from machine import cpu_model  # noqa: E402 - bench/ is the script's folder
from uplink_dev import MotoProcess, aws_test_env  # noqa: E402

from ggvision.contract import cloud as names  # noqa: E402

N_EVENTS = 10_000
APP = str(REPO / "dashboard" / "app.py")


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    aws_test_env()
    d = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    moto = MotoProcess(d / "moto.log")
    try:
        world = make_ingest_world(moto)
        table = boto3.resource("dynamodb", endpoint_url=moto.url, region_name="us-east-1").Table(world["table"])
        s3 = moto.client("s3")
        jpeg = person_jpeg()
        snaps = {}
        for i in range(12):
            key = f"images/{SITE}/bench/{i}.jpg"
            s3.put_object(Bucket=DATA_BUCKET, Key=key, Body=jpeg, ContentType="image/jpeg")
            snaps[i] = key
        t = time.perf_counter()
        bulk_items(table, N_EVENTS, time.time() - 60, SITE, snapshots=snaps)
        load_s = time.perf_counter() - t
        env = {"GGVISION_DASHBOARD_BACKEND": "cloud", "GGVISION_DASHBOARD_TABLE": world["table"],
               "GGVISION_DASHBOARD_DATA_BUCKET": DATA_BUCKET, "AWS_ENDPOINT_URL": moto.url,
               "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(env)
        import streamlit as st
        from streamlit import config as st_config
        from streamlit.testing.v1 import AppTest

        from dashboard.data.base import EventQuery
        from dashboard.data.cloud import CloudSettings, CloudSource

        st_config.set_option("server.address", "127.0.0.1")
        src = CloudSource(CloudSettings.from_env())
        kc = Key(names.ITEM_SITE).eq(SITE)

        def raw() -> None:
            r = table.query(IndexName=names.INDEX_SITE_TIME, KeyConditionExpression=kc, Limit=50,
                            ScanIndexForward=False)
            table.query(IndexName=names.INDEX_SITE_TIME, KeyConditionExpression=kc, Limit=50,
                        ScanIndexForward=False, ExclusiveStartKey=r["LastEvaluatedKey"])

        def layer() -> None:
            p = src.events(EventQuery(site=SITE))
            src.events(EventQuery(site=SITE), p.cursor)

        figures: dict[str, list[float]] = {"raw": [], "layer": [], "page_first": [], "page_next": []}
        raw()
        layer()  # warm both clients
        for _ in range(args.runs):
            figures["raw"].append(timed(raw))
            figures["layer"].append(timed(layer))
            st.cache_data.clear()
            at = AppTest.from_file(APP, default_timeout=120).run()  # the app (Fleet), then the Events page
            t = time.perf_counter()
            at.switch_page("views/events.py").run()
            figures["page_first"].append(time.perf_counter() - t)
            assert not at.exception and len(at.dataframe[0].value) == 50, at.exception
            nxt = next(b for b in at.button if b.label == "Next page")
            t = time.perf_counter()
            nxt.click().run()
            figures["page_next"].append(time.perf_counter() - t)
            assert not at.exception and any("page 2" in c.value for c in at.caption)
        med = {k: statistics.median(v) for k, v in figures.items()}
        out = {"events": N_EVENTS, "runs": args.runs, "load_s": round(load_s, 1),
               "median_s": {k: round(v, 3) for k, v in med.items()},
               "ratio_page_first_to_raw": round(med["page_first"] / med["raw"], 1),
               "ratio_page_next_to_raw": round(med["page_next"] / med["raw"], 1),
               "ratio_layer_to_raw": round(med["layer"] / med["raw"], 2),
               "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                           "load_avg": [round(x, 2) for x in os.getloadavg()]}}
        print(json.dumps(out, indent=1))
        if args.json:
            args.json.write_text(json.dumps(out, indent=1))
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
