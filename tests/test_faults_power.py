"""Power loss under the running suite (docs/reliability.md): every process — `ggvision nucleus` and all its
components — killed at once (faults_dev.power_cut: frozen, then SIGKILL; no component sees a SIGTERM), then the
runtime started again on the same root. Nothing the Uplink acknowledged (`persisted`) may be lost.

The suite: Capture → Inference → Filter → Uplink, with S3 on moto's server (over HTTP, through a TcpLink standing
in for the site's WAN link; the bucket versioned, so an object uploaded twice shows as two versions). Health is
left out (it keeps nothing on disk; the operator learns of the outage from the Uplink's metrics, which these
tests read). Records go to the Uplink's archive lane (the directory bucket on the box), media to S3.

- during an outage: the link is down, media waits in the Uplink's queue, the power goes;
- during an upload: the link is slow (a paced uplink), the power goes while an object is on its way to S3.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from faults_dev import TcpLink, power_cut
from harness import Runtime, wait_until
from suite_dev import AGENT, AGENT_ACL, acked, received, start_suite, subscribe, write_suite
from uplink_dev import MotoProcess, aws_test_env, drained

BUCKET = "ggvision-fault-bucket"
PARTS = ("capture", "inference", "filter", "uplink")
TOPICS = {"puts": "ggvision/v1/uplink/put", "acks": "ggvision/v1/uplink/acks", "uplink": "ggvision/v1/metrics/uplink"}


class Site:
    """The suite under a runtime, S3 on moto behind a TcpLink; what was put and acknowledged, across restarts."""

    def __init__(self, tmp: Path, rate_bps: float = 0.0) -> None:
        aws_test_env()
        self.moto = MotoProcess(tmp / "moto.log")
        self.s3 = self.moto.client()
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.link = TcpLink(("127.0.0.1", self.moto.port), rate_bps=rate_bps)
        self.rt = Runtime(tmp, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
        self.names = write_suite(self.rt, PARTS, overrides={"uplink": {"sink": {
            "type": "s3", "bucket": BUCKET, "region": "us-east-1", "endpointUrl": f"http://{self.link.address}",
            "timeoutS": 2}}})
        self.puts: dict[str, dict[str, Any]] = {}
        self.acks: list[dict[str, Any]] = []
        self.agent: Any = None

    def start(self) -> None:
        self.agent = start_suite(self.rt, self.names)
        subscribe(self.agent, **TOPICS)

    def observe(self) -> None:
        """Fold what the agent heard into puts/acks (the agent forgets at a restart; this does not)."""
        self.puts.update({p["id"]: p for p in received(self.agent, "puts")})
        seen = {(a["id"], a["status"], a["reason"]) for a in self.acks}
        self.acks += [a for a in received(self.agent, "acks") if (a["id"], a["status"], a["reason"]) not in seen]

    def media_acked(self) -> set[str]:
        self.observe()
        return acked(self.acks, self.puts, "s3")

    def versions(self) -> Counter[str]:
        """Object name (the key's last part) -> how many times it was uploaded."""
        out: Counter[str] = Counter()
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=BUCKET):
            for v in page.get("Versions", []):
                out[v["Key"].rsplit("/", 1)[-1]] += 1
        return out

    def complete(self) -> list[str]:
        """Objects that are not whole: an MPEG-TS segment not a multiple of 188-byte packets, a JPEG without its
        end marker."""
        bad = []
        for o in self.s3.list_objects_v2(Bucket=BUCKET).get("Contents", []):
            body = self.s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
            if (o["Key"].endswith(".ts") and len(body) % 188) or (o["Key"].endswith(".jpg")
                                                                     and not body.rstrip(b"\0").endswith(b"\xff\xd9")):
                bad.append(o["Key"])
        return bad

    def offline_seen(self) -> bool:
        return any(m["online"].get("s3") is False for m in received(self.agent, "uplink"))

    def close(self) -> None:
        try:
            self.rt.cleanup()
        finally:
            self.link.close()
            self.moto.stop()


def _power_cut_and_recover(site: Site) -> dict[str, Any]:
    """Cut the power, start again on the same root with the link up; the figures for the table."""
    site.observe()
    killed = power_cut(site.rt)
    uploaded = set(site.versions())
    waiting = {site.puts[i]["name"] for i in acked(site.acks, site.puts, "s3")} - uploaded  # acked, not in S3
    site.link.rate_bps = 0.0
    site.link.up()
    t0 = time.monotonic()
    site.start()
    t_running = time.monotonic() - t0
    wait_until(lambda: waiting <= set(site.versions()), 90, interval=0.5,
               what="every object acknowledged before the power cut in S3")
    t_arrived = time.monotonic() - t0
    site.rt.client.stop_component(component_name=site.names["capture"])
    queue = site.rt.root / "work" / site.names["uplink"] / "queue"
    wait_until(lambda: drained(queue), 60, interval=0.5, what="the Uplink's queue drained")
    acked_all = site.media_acked()
    versions = site.versions()
    return {"killed": killed, "waiting": len(waiting), "t_running": t_running, "t_arrived": t_arrived,
            "lost": sorted(i for i in acked_all if site.puts[i]["name"] not in versions),
            "duplicates": sum(n - 1 for n in versions.values() if n > 1), "incomplete": site.complete(),
            "objects": len(versions), "acked": len(acked_all),
            "states": {k: str(site.rt.state(n)) for k, n in site.names.items()}}


@pytest.mark.timeout(240)
def test_power_loss_during_an_outage_loses_nothing_acknowledged(tmp_path: Path) -> None:
    site = Site(tmp_path)
    try:
        site.start()
        wait_until(lambda: site.versions(), 60, interval=0.5, what="the first object in S3")
        site.link.down()
        uploaded = set(site.versions())
        wait_until(lambda: (lambda w: w if len(w) >= 6 else None)(
            {i for i in site.media_acked() if site.puts[i]["name"] not in uploaded}), 60, interval=0.5,
            what="media acknowledged and waiting in the outage")
        told = wait_until(site.offline_seen, 30, interval=0.5, what="the Uplink reporting S3 offline")
        figures = _power_cut_and_recover(site)
    finally:
        site.close()
    assert not figures["lost"] and not figures["incomplete"], figures
    assert told and figures["states"]["uplink"] == "RUNNING"
    print(f"\npower loss during an outage: {figures['killed']} processes killed at once with {figures['waiting']} "
          f"acknowledged objects waiting; runtime and suite RUNNING again {figures['t_running']:.1f} s after the "
          f"restart, every waiting object in S3 {figures['t_arrived']:.1f} s after; acknowledged lost "
          f"{len(figures['lost'])}/{figures['acked']}, incomplete objects {len(figures['incomplete'])}, duplicate "
          f"uploads {figures['duplicates']} of {figures['objects']} objects")


@pytest.mark.timeout(240)
def test_power_loss_during_an_upload_leaves_no_partial_object_and_loses_nothing(tmp_path: Path) -> None:
    site = Site(tmp_path, rate_bps=64_000)  # a 512 kbit/s uplink: each segment takes seconds to go up
    try:
        site.start()
        wait_until(lambda: site.versions(), 90, interval=0.5, what="the first object in S3")
        wait_until(lambda: site.link.uploading(32_768), 60, interval=0.02, what="an upload in flight")
        figures = _power_cut_and_recover(site)
    finally:
        site.close()
    assert not figures["lost"] and not figures["incomplete"], figures
    assert figures["states"]["uplink"] == "RUNNING"
    print(f"\npower loss during an upload: {figures['killed']} processes killed at once with an upload in flight and "
          f"{figures['waiting']} acknowledged objects waiting; "
          f"suite RUNNING again {figures['t_running']:.1f} s after the restart; queue drained; acknowledged lost "
          f"{len(figures['lost'])}/{figures['acked']}, incomplete objects {len(figures['incomplete'])}, duplicate "
          f"uploads {figures['duplicates']} of {figures['objects']} objects")
