"""Uplink benchmark: drain rate against a configured cap, CPU per uploaded MB, enqueue rate of small results.

    .venv/bin/python bench/uplink.py                 # ~1 minute on a laptop
    .venv/bin/python bench/uplink.py --json out.json

Each figure is a ratio against a baseline taken in the same run:
- drain: achieved rate / configured cap (bandwidthKbps), to the directory bucket and to moto's S3 server over
  loopback HTTP (moto in its own process, so its CPU is not counted);
- CPU per uploaded MB: the uplink process's CPU seconds per MB to S3 (moto), uncapped, next to the CPU of a bare
  boto3 put_object loop of the same objects (baseline);
- enqueue: small results (1 KB JSON) persisted per second with group commit (256 per commit) and one by one,
  against the disk's rate of bare fsynced appends (baseline).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from machine import cpu_model  # noqa: E402 - bench/ is the script's folder
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from ggvision.config.base import parse  # noqa: E402
from ggvision.config.uplink import UplinkConfig  # noqa: E402
from ggvision.uplink.engine import Engine, object_sink  # noqa: E402
from ggvision.uplink.messages import parse_put  # noqa: E402
from ggvision.uplink.queue import UplinkQueue  # noqa: E402

THING = "bench-thing"
T0 = 1795000000.0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _obj(i: int, data: bytes) -> Any:
    return parse_put({"schema": "uplink-put/1.0", "id": f"b:{i}", "priority": "video", "camera": f"cam{i % 4}",
                      "start": T0 + i, "destination": "s3", "data_b64": base64.b64encode(data).decode(),
                      "name": f"seg-{i}.ts"}, THING, 1)


def drain(tmp: Path, cfg: dict[str, Any], n: int, size: int) -> tuple[float, float]:
    """(bytes/s achieved, CPU seconds) draining n objects of `size` bytes."""
    q = UplinkQueue(tmp / "q", ("object",))
    blob = os.urandom(size)
    q.put_many([_obj(i, blob[:-8] + i.to_bytes(8, "big")) for i in range(n)])
    c = parse(UplinkConfig, {**cfg, "iot": {"enabled": False}, "archive": {"enabled": False}})  # objects only
    e = Engine(q, c, THING, object_sink(c, tmp), {})
    cpu0, t0 = _cpu(), time.perf_counter()
    e.start()
    while q.head("object"):
        time.sleep(0.01)
    wall, cpu = time.perf_counter() - t0, _cpu() - cpu0
    e.stop()
    q.close()
    return n * size / wall, cpu


def bare_boto3(url: str, bucket: str, n: int, size: int) -> float:
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    blob = os.urandom(size)
    cpu0 = _cpu()
    for i in range(n):
        s3.put_object(Bucket=bucket, Key=f"bare/{i}", Body=blob)
    return _cpu() - cpu0


def enqueue(tmp: Path, n: int, group: int) -> float:
    q = UplinkQueue(tmp / f"e{group}", ("object", "iot"))
    reqs = [parse_put({"schema": "uplink-put/1.0", "id": f"r:{group}:{i}", "priority": "results", "camera": "door",
                       "start": T0 + i, "destination": "iot", "topic": "ggvision/{thing}/results",
                       "payload": {"n": i, "pad": "x" * 1000}}, THING, 131072) for i in range(n)]
    t0 = time.perf_counter()
    for i in range(0, n, group):
        q.put_many(reqs[i:i + group])
    rate = n / (time.perf_counter() - t0)
    q.close()
    return rate


def fsync_appends(tmp: Path, n: int) -> float:
    t0 = time.perf_counter()
    with open(tmp / "appends", "ab") as f:
        for _ in range(n):
            f.write(b"x" * 1024)
            f.flush()
            os.fsync(f.fileno())
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    from uplink_dev import MotoProcess

    console = Console()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        moto = MotoProcess(tmp / "moto.log")
        try:
            moto.client().create_bucket(Bucket="bench")
            s3cfg = {"sink": {"type": "s3", "bucket": "bench", "region": "us-east-1", "endpointUrl": moto.url}}
            for name, cfg, kbps in (("directory", {}, 40_000), ("s3 (moto)", s3cfg, 40_000)):
                rate, _ = drain(tmp / f"d-{name[:2]}", {**cfg, "bandwidthKbps": kbps}, 24, 512 * 1024)  # 12 MiB
                results[f"drain {name}"] = {"cap_bytes_per_s": kbps * 125, "bytes_per_s": round(rate),
                                           "ratio": round(rate / (kbps * 125), 3)}
            rate, cpu = drain(tmp / "cpu", s3cfg, 40, 1 << 20)  # 40 MiB uncapped (single PUTs)
            mp_rate, mp_cpu = drain(tmp / "cpu-mp", {**s3cfg, "multipartThresholdBytes": 5 << 20,
                                                     "multipartPartBytes": 5 << 20}, 4, 12 << 20)  # multipart
            bare = bare_boto3(moto.url, "bench", 40, 1 << 20)
            results["cpu per MB"] = {"uplink_s_per_mb": round(cpu / 40, 4), "bare_boto3_s_per_mb": round(bare / 40, 4),
                                     "ratio": round(cpu / bare, 2), "uncapped_mb_per_s": round(rate / 2**20, 1),
                                     "multipart_s_per_mb": round(mp_cpu / 48, 4),
                                     "multipart_mb_per_s": round(mp_rate / 2**20, 1)}
        finally:
            moto.stop()
        base = fsync_appends(tmp, 300)
        single = enqueue(tmp, 300, 1)
        grouped = enqueue(tmp, 5000, 256)
        results["enqueue 1 KB results"] = {"fsync_appends_per_s": round(base), "one_by_one_per_s": round(single),
                                           "grouped_per_s": round(grouped), "one_by_one_ratio": round(single / base, 2),
                                           "grouped_ratio": round(grouped / base, 1)}
    machine = {"cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "platform": platform.platform()}
    table = Table("figure", "values", title=f"ggvision uplink — {machine['cpu_count']} CPU {machine['cpu_model']}, "
                                            f"Python {machine['python']}")
    for k, v in results.items():
        table.add_row(k, ", ".join(f"{a}={b}" for a, b in v.items()))
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
