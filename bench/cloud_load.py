"""Cloud load: the event rate of a 60-site x 32-camera fleet through the ingest and real-time handlers, measured
per event on this machine, turned into Lambda concurrency, DynamoDB capacity and monthly cost per site.

    .venv/bin/python bench/cloud_load.py                  # ~1-2 minutes
    .venv/bin/python bench/cloud_load.py --events 40      # a quick look
    .venv/bin/python bench/cloud_load.py --json out.json

The rate comes from the Filter's measurement (docs/filter.md, default `events` policy on vtest.avi: 55 events,
76 cloud messages and 55 snapshots in 13.5 s of a busy pedestrian street): a camera-hour of that street, times
1,920 cameras. This machine cannot carry that rate through moto, so the bench pushes a sample of it (events spread
over all 1,920 cameras, timestamps at the fleet's rate) as fast as the handlers take it and measures what each
event costs; Little's law (concurrency = rate x duration) turns the costs into the fleet's figures.

- ingest: each event is an archived results batch (its `end`) and a snapshot, written to moto's S3 as the edge
  writes them; the data bucket's notifications go to SQS; SqsRunner calls cloud.ingest.handler, which calls the
  second-stage endpoint process (cloud.endpoint, the demo detector) over loopback.
- realtime: each event is 76/55 uplink-record/1.0 records (every `end`, plus a `new` for the lasting ones) on a
  Kinesis stream in moto; KinesisRunner calls cloud.realtime.handler.

Measured inside the handler call only (not the runner's receive/delete, which Lambda's mapping does): process CPU
time, wall time (what Lambda bills; against moto on loopback, not DynamoDB's network), AWS calls by operation
(botocore's before-call event), the peak of Python allocations (tracemalloc) per invocation, and the process's
peak RSS. moto and the endpoint run in their own processes; the endpoint's CPU per snapshot is measured apart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import boto3  # noqa: E402
from machine import cpu_model  # noqa: E402 - bench/ is the script's folder

# ---- the rate: docs/filter.md (default `events` policy row) and docs/performance.md (13.5 s of vtest.avi)
FILTER_SECONDS, FILTER_EVENTS, FILTER_MESSAGES, FILTER_SNAPSHOTS = 13.5, 55, 76, 55
SITES, CAMERAS_PER_SITE = 60, 32
HOURS_PER_MONTH = 730

# ---- prices: AWS public on-demand prices, us-east-1, as of the author's knowledge (2024-2025): check them
PRICES: dict[str, tuple[float, str, str]] = {
    "lambda_gb_s_arm": (0.0000133334, "USD per GB-second (arm64)", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_request": (0.20e-6, "USD per request", "https://aws.amazon.com/lambda/pricing/"),
    "ddb_write": (0.625e-6, "USD per write request unit (on-demand)",
                  "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "ddb_read": (0.125e-6, "USD per read request unit (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "sqs_request": (0.40e-6, "USD per request (standard queue, 64 KB chunks)", "https://aws.amazon.com/sqs/pricing/"),
    "s3_put": (0.005e-3, "USD per PUT/POST request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"),
    "s3_get": (0.0004e-3, "USD per GET request (S3 Standard)", "https://aws.amazon.com/s3/pricing/"),
    "kinesis_stream_hour": (0.04, "USD per on-demand stream-hour", "https://aws.amazon.com/kinesis/data-streams/pricing/"),
    "kinesis_gb_in": (0.08, "USD per GB ingested (on-demand)", "https://aws.amazon.com/kinesis/data-streams/pricing/"),
    "kinesis_gb_out": (0.04, "USD per GB retrieved (on-demand)", "https://aws.amazon.com/kinesis/data-streams/pricing/"),
    "ddb_storage_gb_month": (0.25, "USD per GB-month (DynamoDB Standard table class)",
                             "https://aws.amazon.com/dynamodb/pricing/on-demand/"),
    "sagemaker_c5_large_hour": (0.119, "USD per hour, ml.c5.large real-time endpoint (2 vCPU; least sure of these)",
                                "https://aws.amazon.com/sagemaker/pricing/"),
    "events_put": (1.00e-6, "USD per custom event published (EventBridge)", "https://aws.amazon.com/eventbridge/pricing/"),
    "cw_metric_month": (0.30, "USD per custom metric-month (first 10,000)", "https://aws.amazon.com/cloudwatch/pricing/"),
    "cw_put_request": (0.01e-3, "USD per PutMetricData request", "https://aws.amazon.com/cloudwatch/pricing/"),
}
MEMORY_MB = {"ingest": 512, "realtime": 256}  # processing.yaml's and realtime.yaml's MemorySize
LABELS_PER_CAMERA = 2  # distinct labels a camera reports in a month (person, and one other): CloudWatch metrics


def fleet_rates() -> dict[str, float]:
    """Per camera-hour from the Filter's measurement, and per second for the fleet."""
    per_h = {k: v / FILTER_SECONDS * 3600 for k, v in (("events", FILTER_EVENTS), ("messages", FILTER_MESSAGES),
                                                       ("snapshots", FILTER_SNAPSHOTS))}
    cams = SITES * CAMERAS_PER_SITE
    return {"cameras": cams, **{f"{k}_per_camera_hour": v for k, v in per_h.items()},
            **{f"fleet_{k}_per_s": v * cams / 3600 for k, v in per_h.items()}}


class Meter:
    """Wraps a handler: CPU, wall, allocations and AWS calls of each invocation."""

    def __init__(self, handler: Callable[..., Any], session: Any) -> None:
        self.handler, self.cpu, self.wall, self.peak, self.invocations = handler, 0.0, 0.0, 0, 0
        self.calls: Counter[str] = Counter()
        self.durations: list[float] = []
        session.events.register("before-call", self._count)

    def reset(self) -> None:
        self.cpu, self.wall, self.peak, self.invocations = 0.0, 0.0, 0, 0
        self.calls.clear()
        self.durations.clear()

    def _count(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def __call__(self, event: dict[str, Any], context: Any) -> Any:
        tracemalloc.start()
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            return self.handler(event, context)
        finally:
            wall = time.perf_counter() - w0
            self.cpu += time.process_time() - c0
            self.wall += wall
            self.durations.append(wall)
            self.peak = max(self.peak, tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            self.invocations += 1


def _psutil_cpu(pid: int) -> float:
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def run_ingest(n: int, tmp: Path) -> dict[str, Any]:
    from cloud_dev import EndpointProcess, ingest_env, make_ingest_world
    from uplink_dev import MotoProcess

    moto, ep = MotoProcess(tmp / "moto.log"), EndpointProcess(tmp / "endpoint.log")
    try:
        world = make_ingest_world(moto, max_receive=5, visibility_s=30)
        env = ingest_env(moto.url, ep.url, world)
        with _Environ(**env):  # boto3 reads the endpoints from the environment (this run's moto and endpoint)
            return _ingest(n, moto, ep, world, env)
    finally:
        ep.stop()
        moto.stop()


def _ingest(n: int, moto: Any, ep: Any, world: dict[str, str], env: dict[str, str]) -> dict[str, Any]:
    from cloud_dev import end_event, person_jpeg, put_record, put_snapshot
    from harness import wait_until

    from cloud.ingest import Ingest
    from cloud.runner import SqsRunner
    from ggvision.contract import cloud as names

    ingest = Ingest.from_env(env)
    meter = Meter(ingest.handle, ingest.session)
    runner = SqsRunner(moto.client("sqs"), world["queue"], meter, batch_size=10, visibility_timeout=30, wait_s=0)
    s3, table = moto.client("s3"), boto3.resource("dynamodb", endpoint_url=moto.url).Table(world["table"])
    runner.poll_once()  # the s3:TestEvent
    meter.reset()
    rates, t0 = fleet_rates(), time.time() - 600
    jpeg = person_jpeg(1)
    for i in range(n):  # event i of the fleet's stream: its camera, its time
        cam = i % rates["cameras"]
        site, thing, camera = f"site-{cam // CAMERAS_PER_SITE}", f"box-{cam // CAMERAS_PER_SITE}", f"cam{cam % 32}"
        start = t0 + i / rates["fleet_events_per_s"]
        ev = f"{camera}-{int(start * 1000)}-{i}"
        _, snap = put_snapshot(s3, site, thing, camera, [ev], start + 2, jpeg)
        put_record(s3, thing, camera, [end_event(camera, ev, start, snapshot=snap)], site=site)
    ep_cpu0 = _psutil_cpu(ep.proc.pid)
    w0 = time.perf_counter()

    def all_decided() -> bool:
        runner.poll_once()
        return table.scan(Select="COUNT", FilterExpression="attribute_exists(verdict)")["Count"] >= n

    wait_until(all_decided, 600, interval=0, what="every verdict")
    elapsed = time.perf_counter() - w0
    sample = table.scan(Limit=1)["Items"][0]
    item_bytes = len(json.dumps(sample, default=str))  # JSON text of the item: close to DynamoDB's item size
    return {"events": n, "messages": 2 * n, "elapsed_s": elapsed, "invocations": meter.invocations,
            "cpu_ms_per_event": 1000 * meter.cpu / n, "wall_ms_per_event": 1000 * meter.wall / n,
            "wall_ms_per_invocation_p50": 1000 * sorted(meter.durations)[len(meter.durations) // 2],
            "calls_per_event": {k: v / n for k, v in sorted(meter.calls.items())},
            "alloc_peak_mb": meter.peak / 1e6, "item_bytes": item_bytes,
            "endpoint_cpu_ms_per_snapshot": 1000 * (_psutil_cpu(ep.proc.pid) - ep_cpu0) / n,
            "verdicts": {v: table.scan(Select="COUNT", FilterExpression="verdict = :v",
                                       ExpressionAttributeValues={":v": v})["Count"] for v in names.VERDICTS}}


def run_realtime(n: int, tmp: Path) -> dict[str, Any]:
    from uplink_dev import MotoProcess

    moto = MotoProcess(tmp / "moto-rt.log")
    try:
        with _Environ(AWS_ENDPOINT_URL=moto.url):
            return _realtime(n, moto)
    finally:
        moto.stop()


def _realtime(n: int, moto: Any) -> dict[str, Any]:
    from cloud_dev import end_event, template_doc
    from harness import wait_until

    from cloud.realtime import Realtime
    from cloud.runner import KinesisRunner
    from ggvision.contract import cloud as names
    from ggvision.contract import streams

    props = template_doc(REPO / "deploy" / "cloudformation" / "realtime.yaml")["Resources"]["CountsTable"][
        "Properties"]
    ddb, kin = moto.client("dynamodb"), moto.client("kinesis")
    ddb.create_table(TableName="bench-counts", BillingMode="PAY_PER_REQUEST", KeySchema=props["KeySchema"],
                     AttributeDefinitions=props["AttributeDefinitions"],
                     GlobalSecondaryIndexes=props["GlobalSecondaryIndexes"])
    kin.create_stream(StreamName="bench-uplink", ShardCount=2)
    wait_until(lambda: kin.describe_stream_summary(StreamName="bench-uplink")["StreamDescriptionSummary"][
        "StreamStatus"] == "ACTIVE", 10)
    rates, t0 = fleet_rates(), time.time() - 600
    extra = (FILTER_MESSAGES - FILTER_EVENTS) / FILTER_EVENTS  # a `new` for the lasting events
    records, size = [], 0
    for i in range(n):
        cam = i % rates["cameras"]
        site, thing, camera = f"site-{cam // CAMERAS_PER_SITE}", f"box-{cam // CAMERAS_PER_SITE}", f"cam{cam % 32}"
        start = t0 + i / rates["fleet_events_per_s"]
        end = end_event(camera, f"{camera}-{i}", start)
        kinds = [{**end, "kind": "new"}, end] if (i * extra) % 1 + extra >= 1 else [end]
        for k, p in enumerate(kinds):
            doc = {"schema": "uplink-record/1.0", "id": f"filter:{camera}:{i}:{k}", "thing": thing, "site": site,
                   "camera": camera, "topic": f"ggvision/{thing}/results", "seq": i, "producer": "f",
                   "priority": "results", "start": start, "end": start, "payload": p}
            data = json.dumps(doc, separators=(",", ":")).encode()
            size += len(data)
            records.append({"Data": data, "PartitionKey": streams.partition_key(thing, camera)})
    for i in range(0, len(records), 500):
        kin.put_records(StreamName="bench-uplink", Records=records[i:i + 500])
    session = boto3.session.Session()
    rt = Realtime("bench-counts", session=session)
    meter = Meter(rt.handle, session)
    runner = KinesisRunner(kin, "bench-uplink", meter, batch_size=500)
    w0 = time.perf_counter()
    got = 0
    while True:
        r, _ = runner.poll_once()
        if not r:
            break
        got += r
    elapsed = time.perf_counter() - w0
    assert got == len(records), (got, len(records))
    total = sum(int(it.get(names.COUNT_TOTAL, 0)) for it in
                boto3.resource("dynamodb", endpoint_url=moto.url).Table("bench-counts").scan()["Items"])
    assert total == n, (total, n)
    return {"events": n, "records": len(records), "record_bytes": size / len(records), "elapsed_s": elapsed,
            "invocations": meter.invocations, "cpu_ms_per_event": 1000 * meter.cpu / n,
            "wall_ms_per_event": 1000 * meter.wall / n,
            "calls_per_event": {k: v / n for k, v in sorted(meter.calls.items())},
            "alloc_peak_mb": meter.peak / 1e6}


def wcu(item_bytes: float) -> int:
    """Write request units of one write of an item this large (1 per started KB)."""
    return max(1, math.ceil(item_bytes / 1024))


def per_site_month(rates: dict[str, float], ing: dict[str, Any], rt: dict[str, Any],
                   memory_mb: dict[str, int]) -> dict[str, Any]:
    """Monthly USD for one site (32 cameras) at the fleet's rate and the measured per-event costs: what scales with
    events (per service), what does not, and the price of a million events."""
    p = {k: v[0] for k, v in PRICES.items()}
    events = rates["fleet_events_per_s"] / SITES * HOURS_PER_MONTH * 3600
    ic, rc = ing["calls_per_event"], rt["calls_per_event"]
    writes = sum(v for k, v in ic.items() if k.endswith(("UpdateItem", "PutItem")))
    reads = sum(v for k, v in ic.items() if k.endswith("GetItem"))
    per_event = {  # USD per event
        "ingest lambda": ing["wall_ms_per_event"] / 1000 * memory_mb["ingest"] / 1024 * p["lambda_gb_s_arm"]
        + 2 / 10 * p["lambda_request"],  # two messages an event, batches of 10
        "ingest dynamodb": writes * wcu(ing["item_bytes"]) * p["ddb_write"]
        + reads * math.ceil(ing["item_bytes"] / 4096) * p["ddb_read"],
        # S3 sends each notification (1), the mapping receives and deletes in batches of up to 10 (0.2)
        "ingest sqs": 2 * 1.2 * p["sqs_request"],
        "ingest s3": ic.get("s3:PutObject", 0) * p["s3_put"] + ic.get("s3:GetObject", 0) * p["s3_get"],
        "ingest eventbridge": ic.get("events:PutEvents", 0) * p["events_put"],
        "ingest cloudwatch": ic.get("cloudwatch:PutMetricData", 0) * p["cw_put_request"],
        "realtime lambda": rt["wall_ms_per_event"] / 1000 * memory_mb["realtime"] / 1024 * p["lambda_gb_s_arm"]
        + rt["invocations"] / rt["events"] * p["lambda_request"],
        "realtime dynamodb": rc.get("dynamodb:UpdateItem", 0) * p["ddb_write"]
        + (rc.get("dynamodb:GetItem", 0) + rc.get("dynamodb:Query", 0)) * p["ddb_read"],
        "realtime kinesis": rt["records"] / rt["events"] * (rt["record_bytes"] + 25) / 1e9
        * (p["kinesis_gb_in"] + p["kinesis_gb_out"]),
        "realtime cloudwatch": rc.get("cloudwatch:PutMetricData", 0) * p["cw_put_request"],
    }
    endpoint_cores = rates["fleet_snapshots_per_s"] / SITES * ing["endpoint_cpu_ms_per_snapshot"] / 1000
    fixed = {  # USD per site-month that does not follow the event count
        "realtime cloudwatch metrics": CAMERAS_PER_SITE * LABELS_PER_CAMERA * p["cw_metric_month"],
        "kinesis stream (a share)": HOURS_PER_MONTH * p["kinesis_stream_hour"] / SITES,
        # 7 days of verdict items (TTL), about item_bytes each
        "verdicts storage": events / 30.4 * 7 * ing["item_bytes"] / 1e9 * p["ddb_storage_gb_month"],
        # endpoint instances of 2 vCPU at 50 % CPU, shared by the fleet: this site's share
        "second-stage endpoint": endpoint_cores / 1.0 * HOURS_PER_MONTH * p["sagemaker_c5_large_hour"],
    }
    scaled = {k: v * events for k, v in per_event.items()}
    return {"events_per_month": events, "per_event_usd": per_event, "scaled": scaled, "fixed": fixed,
            "usd_per_million_events": 1e6 * sum(per_event.values()),
            "total": sum(scaled.values()) + sum(fixed.values())}


def fleet_capacity(rates: dict[str, float], ing: dict[str, Any], rt: dict[str, Any]) -> dict[str, float]:
    ev = rates["fleet_events_per_s"]
    return {
        "ingest_concurrency": ev * ing["wall_ms_per_event"] / 1000,
        "ingest_cpu_cores": ev * ing["cpu_ms_per_event"] / 1000,
        "realtime_concurrency": ev * rt["wall_ms_per_event"] / 1000,
        "ingest_wcu_per_s": ev * sum(v for k, v in ing["calls_per_event"].items()
                                     if k.endswith(("UpdateItem", "PutItem"))) * wcu(ing["item_bytes"]),
        "realtime_wcu_per_s": ev * rt["calls_per_event"].get("dynamodb:UpdateItem", 0),
        "endpoint_cpu_cores": rates["fleet_snapshots_per_s"] * ing["endpoint_cpu_ms_per_snapshot"] / 1000,
    }


class _Environ:
    """os.environ changed for a run and put back after it (boto3 reads endpoints from the environment)."""

    def __init__(self, **values: str) -> None:
        self.values, self.saved = values, {k: os.environ.get(k) for k in values}

    def __enter__(self) -> None:
        os.environ.update(self.values)

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=150, help="events through the ingest (realtime: 4x)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from uplink_dev import aws_test_env

    aws_test_env()
    rates = fleet_rates()
    with tempfile.TemporaryDirectory(prefix="ggv-cloud-load-") as tmp:
        t0 = time.perf_counter()
        ing = run_ingest(args.events, Path(tmp))
        rt = run_realtime(4 * args.events, Path(tmp))
        took = time.perf_counter() - t0
    memory = MEMORY_MB
    result = {"machine": {"cpu": cpu_model(), "python": platform.python_version()}, "bench_s": round(took, 1),
              "rates": rates, "ingest": ing, "realtime": rt, "capacity": fleet_capacity(rates, ing, rt),
              "per_site_month_usd": per_site_month(rates, ing, rt, memory),
              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "prices": {k: {"usd": v[0], "unit": v[1], "source": v[2]} for k, v in PRICES.items()}}
    print(json.dumps(result, indent=1, default=float))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
