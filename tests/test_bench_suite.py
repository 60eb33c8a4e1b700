"""bench/suite.py and bench/gpu.py keep working: one camera, the null model, a few seconds per side (the figures
are not checked; they come from the benchmarks, docs/performance.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from harness import REPO

from ggvision.capture.sources import cuda_decode_probe

SHARED = REPO.parent / "shared"


def _needs() -> None:
    for need in (SHARED / "data" / "video" / "vtest.avi", SHARED / "models" / "yolox_nano.onnx"):
        if not need.exists():
            pytest.skip(f"{need} is absent (it lives in ../shared, outside the project)")
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path("/usr/bin/python3").exists() or subprocess.run(["/usr/bin/python3", "-c", probe],
                                                               capture_output=True, timeout=30).returncode:
        pytest.skip("the RTSP test server needs Debian's python3 with GstRtspServer")


def test_suite_bench_runs_one_camera(tmp_path: Path) -> None:
    _needs()
    out = tmp_path / "suite.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "suite.py"), "--cameras", "1", "--warmup", "3",
                        "--window", "4", "--model", "null", "--hwdecode", "auto", "--json", str(out)],
                       capture_output=True, text=True, timeout=150, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    row = doc["rows"][0]
    assert row["n"] == 1
    for side in ("bare", "suite"):
        assert row[side]["analysed"] > 0 and row[side]["asked"] > 0 and "ratio_wall" in row[side], (side, row[side])
    assert set(row["suite"]["cpu"]) >= {"capture", "inference", "filter", "uplink", "health", "runtime"}
    assert "| N |" in r.stdout and "capacity:" in r.stdout
    # the provider the sessions registered and the decoders the cameras got are recorded (hwdecode auto: NVDEC
    # where a CUDA device opens, else the CPU; capture-metrics `decoder` on the suite's side)
    decoder = "cuda" if cuda_decode_probe()[0] else "cpu"
    for side in ("bare", "suite"):
        assert row[side]["provider"] == "CPUExecutionProvider" and row[side]["decoders"] == {decoder: 1}, row[side]
    assert row["bare"]["model_thread_ms"] > 0 and row["bare"]["model_thread_waited_ms"] >= 0, row["bare"]
    assert isinstance(row["suite"]["sampled_per_cam"], dict), row["suite"]  # the observer's detections per camera


def test_frame_counts_are_exact_to_the_frame_and_count_a_stalled_camera() -> None:
    """The analysed-vs-asked figure from per-camera (frames analysed, the last one's frame timestamp): a batch still
    in flight at either end of the window leaves the ratio at 1 (a wall-clock span against a counter that steps by
    a batch does not), and a camera whose last analysed frame is older than LAG_S at the end misses the frames
    since."""
    from bench.suite import DETECT_FPS, LAG_S, frame_counts

    period = 1 / DETECT_FPS
    # 20 s window at 5 fps; camera a analysed up to frame 3 at the start and frame 101 at the end (a batch of 8
    # taken but not done at the end: those count on neither side), camera b likewise, a few frames later
    before = {"a": (3, 100.0 + 3 * period), "b": (7, 100.0 + 7 * period)}
    after = {"a": (101, 100.0 + 101 * period), "b": (99, 100.0 + 99 * period)}
    analysed, asked = frame_counts(before, after, ["a", "b"], 100.7, 120.7)
    assert analysed == 98 + 92 and asked == pytest.approx(98 + 92)
    # one frame missed on b: one short
    analysed, asked = frame_counts(before, {**after, "b": (98, 100.0 + 99 * period)}, ["a", "b"], 100.7, 120.7)
    assert asked - analysed == pytest.approx(1)
    # b stopped at frame 50 while the window ran to 120.7: its frames up to end - LAG_S are asked, not analysed
    analysed, asked = frame_counts(before, {**after, "b": (50, 100.0 + 50 * period)}, ["a", "b"], 100.7, 120.7)
    assert analysed == 98 + 43 and asked == pytest.approx(98 + DETECT_FPS * (120.7 - LAG_S - (100.0 + 7 * period)))
    # a camera never analysed counts the whole window (less the lag allowance) as asked
    analysed, asked = frame_counts({}, {}, ["c"], 100.0, 120.0)
    assert analysed == 0 and asked == pytest.approx(DETECT_FPS * (20 - LAG_S))


def test_wakeups_bench_runs(tmp_path: Path) -> None:
    """bench/wakeups.py: both ring follower runs and both batcher runs, with their ratios (figures not checked)."""
    out = tmp_path / "wakeups.json"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "wakeups.py"), "--cameras", "12", "--seconds", "1",
                        "--json", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [f["coalesce"] for f in doc["follower"]] == [False, True]
    assert [b["shipped"] for b in doc["batcher"]] == [False, True]
    assert all(f["frames"] > 0 for f in doc["follower"]), doc["follower"]
    assert "ratio thread CPU shipped / baseline" in r.stdout and "ratio taker CPU shipped / baseline" in r.stdout


@pytest.mark.timeout(400)
def test_gpu_run_dry_run_exercises_every_step(tmp_path: Path) -> None:
    """bench/gpu.py --dry-run: the one-go GPU script's steps (preflight, inference bench, both suite ramps) on
    provider cpu, with its log, JSON files and summary, on a box without a GPU."""
    _needs()
    out = tmp_path / "gpu-run"
    r = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--dry-run", "--out", str(out)],
                       capture_output=True, text=True, timeout=380, cwd=REPO)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    doc = json.loads((out / "summary.json").read_text())
    assert [s["step"] for s in doc["steps"]] == ["preflight", "tests", "inference cpu", "suite cpu hwdecode auto",
                                                  "suite cpu hwdecode off"]
    assert doc["failed"] == [] and doc["dry_run"] is True
    fig = doc["figures"]
    pre = fig["preflight"]
    assert "CPUExecutionProvider" in pre["onnxruntime"]["available"] and "nvdec" in pre["pyav"]
    assert pre["gpu_inference"] is doc["gpu_ready"]
    assert fig["inference cpu"]["provider"] == "CPUExecutionProvider"
    decoder = "cuda" if cuda_decode_probe()[0] else "cpu"
    for hw, want in (("auto", decoder), ("off", "cpu")):
        (row,) = fig[f"suite cpu hwdecode {hw}"]["rows"]
        for side in ("bare", "suite"):
            assert row[side]["provider"] == "CPUExecutionProvider" and row[side]["decoders"] == {want: 1}, row
    log = (out / "gpu-run.log").read_text()
    assert "=== preflight" in log and "=== suite cpu hwdecode off" in log and "capacity:" in log
    report = subprocess.run([sys.executable, str(REPO / "bench" / "gpu.py"), "--report", str(out)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert report.returncode == 0 and report.stdout.strip() in log  # the tables the log ends with
    assert "suite cpu hwdecode auto: cameras per box suite" in report.stdout and "| inference cpu |" in report.stdout
