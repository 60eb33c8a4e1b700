"""`ggvision run`, what `make run` starts: the local cloud (cloud/local.py: moto's server with storage, routing and
processing deployed from deploy/cloudformation, the second-stage endpoint, the ingest runner) and the runtime on
the build output, with the Uplink writing to that cloud's data bucket and the runtime standing in for the IoT
rules' archive. The demo camera's events must become verdict items in DynamoDB — the whole path edge → S3 → SQS
→ handler → endpoint → DynamoDB, with every part real except Lambda's execution (moto needs Docker for it)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import boto3
import pytest
from harness import REPO, wait_until

GGVISION = [sys.executable, "-m", "ggvision_cli"]


@pytest.mark.timeout(420)
def test_make_run_turns_the_demo_cameras_events_into_verdicts(tmp_path: Path) -> None:
    subprocess.run([*GGVISION, "build"], cwd=REPO, check=True, capture_output=True, timeout=180)
    root = tmp_path / "root"
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115
    t0 = time.monotonic()
    proc = subprocess.Popen([*GGVISION, "run", "--root", str(root), "--build", str(REPO / "greengrass-build")],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "GGVISION_ROOT": str(root)})
    try:
        info_file = root / "cloud" / "cloud.json"
        info = wait_until(lambda: json.loads(info_file.read_text()) if info_file.exists() else None, 180,
                          interval=0.5, what="the local cloud up (cloud.json)")
        t_cloud = time.monotonic() - t0
        kw = {"endpoint_url": info["endpoint_url"], "region_name": info["region"], "aws_access_key_id": "testing",
              "aws_secret_access_key": "testing"}
        ddb, s3 = boto3.client("dynamodb", **kw), boto3.client("s3", **kw)

        def verdicts() -> list[dict] | None:
            items = ddb.scan(TableName=info["table"])["Items"]
            return items if any(i.get("verdict", {}).get("S") == "confirmed" for i in items) else None

        items = wait_until(verdicts, 180, interval=1.0, what="a confirmed verdict in DynamoDB")
        t_verdict = time.monotonic() - t0
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=info["data_bucket"]).get("Contents", [])]
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the runtime, then the local cloud, stop
        code = proc.wait(60)
        log.close()
    out = (tmp_path / "run.log").read_text(errors="replace")
    assert code == 0, out[-3000:]
    assert not info_file.exists()  # the local cloud went down with it
    assert "BROKEN" not in out and "invalid configuration" not in out, out[-3000:]
    kinds = Counter(k.split("/")[0] if not k.startswith("results/iot-rules/") else "/".join(k.split("/")[:3])
                    for k in keys)
    assert kinds["images"] and kinds["results/iot-rules/results"], kinds  # snapshots and archived records
    item = next(i for i in items if i.get("verdict", {}).get("S") == "confirmed")
    assert item["label"]["S"] in ("person", "car", "bicycle") and item["site"]["S"]
    assert item["snapshotKey"]["S"].startswith("images/")
    print(f"\nggvision run: cloud up after {t_cloud:.0f} s, first confirmed verdict after {t_verdict:.0f} s; "
          f"{len(items)} items {dict(Counter(i.get('verdict', {}).get('S') for i in items))}; objects {dict(kinds)}")
