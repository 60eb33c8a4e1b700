"""bench/suite.py keeps working: one camera, the null model, a few seconds per side (the figures are not checked;
they come from the benchmark, docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO

SHARED = REPO.parent / "shared"


def test_suite_bench_runs_one_camera(tmp_path: Path) -> None:
    for need in (SHARED / "data" / "video" / "vtest.avi", SHARED / "models" / "yolox_nano.onnx"):
        if not need.exists():
            pytest.skip(f"{need} is absent (it lives in ../shared, outside the project)")
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path("/usr/bin/python3").exists() or subprocess.run(["/usr/bin/python3", "-c", probe],
                                                               capture_output=True, timeout=30).returncode:
        pytest.skip("the RTSP test server needs Debian's python3 with GstRtspServer")
    out = tmp_path / "suite.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "suite.py"), "--cameras", "1", "--warmup", "3",
                        "--window", "4", "--model", "null", "--json", str(out)],
                       capture_output=True, text=True, timeout=150, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    row = doc["rows"][0]
    assert row["n"] == 1
    for side in ("bare", "suite"):
        assert row[side]["analysed"] > 0, (side, row[side])
    assert set(row["suite"]["cpu"]) >= {"capture", "inference", "filter", "uplink", "health", "runtime"}
    assert "| N |" in r.stdout and "capacity:" in r.stdout
