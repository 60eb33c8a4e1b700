"""bench/cloud_load.py and its section of docs/performance.md: the rate is the Filter's measured one, the section
states the rate, the prices and their sources the bench computes with, the bench's memory sizes are the
templates', and its real-time run works (a small one)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from cloud_dev import template_doc
from harness import REPO
from uplink_dev import aws_test_env

TEMPLATES = REPO / "deploy" / "cloudformation"


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cloud_load", REPO / "bench" / "cloud_load.py")
    assert spec and spec.loader
    sys.path.insert(0, str(REPO / "bench"))  # its machine.py
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(REPO / "bench"))
    return mod


def _section() -> str:
    return (REPO / "docs" / "performance.md").read_text().split("## Cloud handlers under the fleet's event rate")[1]


def test_the_rate_is_the_filters_measurement_and_the_docs_state_it() -> None:
    b = _bench()
    filt = (REPO / "docs" / "filter.md").read_text()
    default = next(line for line in filt.splitlines() if line.startswith("| **default**"))
    cells = [c.strip() for c in default.strip("|").split("|")]
    assert (int(cells[2]), int(cells[3].split()[0])) == (b.FILTER_SNAPSHOTS, b.FILTER_MESSAGES)
    assert f"{b.FILTER_EVENTS} person events" in filt and f"{b.FILTER_SECONDS} s" in filt
    r = b.fleet_rates()
    doc = _section()
    for figure in (r["events_per_camera_hour"], r["messages_per_camera_hour"], r["fleet_events_per_s"],
                   r["fleet_messages_per_s"]):
        assert f"{figure:,.0f}" in doc, figure
    assert f"{b.SITES} sites × {b.CAMERAS_PER_SITE} cameras" in doc


def test_the_docs_give_every_price_with_its_source() -> None:
    doc = _section().replace("\n", " ")
    for key, (usd, _, url) in _bench().PRICES.items():
        assert url in doc, key
        # as written: per unit, per 1,000 or per million, with 2 decimals or as short as it goes
        shown = {f"{v:{f}} USD" for v in (usd, usd * 1e3, usd * 1e6) for f in (".2f", "g", ".10g")}
        assert any(x in doc for x in shown), (key, sorted(shown))


def test_the_bench_sizes_functions_as_the_templates_do() -> None:
    b = _bench()
    ingest = template_doc(TEMPLATES / "processing.yaml")["Resources"]["IngestFunction"]["Properties"]
    realtime = template_doc(TEMPLATES / "realtime.yaml")["Resources"]["RealtimeFunction"]["Properties"]
    assert {"ingest": ingest["MemorySize"], "realtime": realtime["MemorySize"]} == b.MEMORY_MB
    assert re.search(rf"functions' {ingest['MemorySize']} MB \(ingest\) and {realtime['MemorySize']} MB", _section())


def test_a_small_realtime_run_counts_every_event(tmp_path: Path) -> None:
    aws_test_env()
    out = _bench().run_realtime(40, tmp_path)  # asserts inside: every record read, every event counted once
    assert out["events"] == 40 and out["records"] >= 40 and out["cpu_ms_per_event"] > 0
    assert out["calls_per_event"]["dynamodb:UpdateItem"] >= 1
