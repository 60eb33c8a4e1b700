"""`rollout ab` end to end on a local fleet: real runtimes in thing groups on one shared mosquitto, each running
the real Capture (synthetic cameras), Inference and Health components; the CLI deploys B beside A through the
local backend's retained group deployments and reads the arms' figures from the health summaries the devices
publish to the IoT Core stand-in.

- shadow: 1.1.0 (the same box, score 0.62) beside 1.0.0 on ggvision-staging: the report PASSes (no per-label
  difference, full agreement), `ab promote` removes B and promotes 1.1.0 dev → staging;
- split: 3.0.0 (score threshold 0.9 above the model's 0.6: it finds nothing) serving half of the cameras: the
  report FAILs on the person rate, `ab promote` refuses, `ab stop` removes B from every device.

Set ROLLOUT_TRANSCRIPT=<file> to keep the CLI output (docs/rollout.md quotes it).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from click.testing import Result
from health_dev import NAME as HEALTH
from health_dev import health_dev_recipe
from inference_dev import NAME as INFERENCE
from inference_dev import inference_dev_recipe, tiny_detector_manifest, tiny_detector_onnx
from typer.testing import CliRunner

from gglocal.fleet.runner import Fleet
from ggvision.config.inference import split_point
from ggvision.model.manifest import write_model_dir
from model_registry.registry import Registry
from rollout.ab import b_component
from rollout.backends.local import LocalBackend
from rollout.cli import app
from rollout.config import load_config
from rollout.engine import Engine
from rollout.state import StateFile

MODEL, COMPONENT = "detector", "com.ggvision.Model.Detector"
SYNTH = {"source": {"type": "synthetic", "width": 160, "height": 120, "fps": 5, "seed": 1}, "detectFps": 5}
DEVICES = {"ggv-dev-1": ["ggvision-dev"], "ggv-staging-1": ["ggvision-staging"]}
SHARE = 0.5
# staging's cameras: two on each side of the split at 50% (by the sha256 of the camera id)
CAMERAS = sorted(f"cam-{i}" for i in range(12) if split_point(f"cam-{i}") < SHARE)[:2] + \
    sorted(f"cam-{i}" for i in range(12) if split_point(f"cam-{i}") >= SHARE)[:2]


def model_dir(tmp: Path, version: str, score: float, threshold: float | None = None) -> Path:
    manifest = tiny_detector_manifest(name=MODEL, version=version)
    if threshold is not None:
        manifest["thresholds"]["score"] = threshold
    return write_model_dir(tmp / f"model-{version}", tiny_detector_onnx(score), manifest)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Fleet]]:
    if not Path("/usr/sbin/mosquitto").exists() and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    assert len(CAMERAS) == 4
    tmp = tmp_path_factory.mktemp("fleet-ab")
    reg = Registry(tmp / "registry")
    reg.register(model_dir(tmp, "1.0.0", 0.6), metrics={"map50": 0.90})
    reg.register(model_dir(tmp, "1.1.0", 0.62), metrics={"map50": 0.91})
    reg.register(model_dir(tmp, "3.0.0", 0.6, threshold=0.9), metrics={"map50": 0.93})  # worse: finds nothing
    base = tmp / "base" / "recipes"

    def version(path: Path) -> str:
        return json.loads(path.read_text())["ComponentVersion"]

    versions = {
        CAPTURE: version(capture_dev_recipe(base, cameras=dict.fromkeys(CAMERAS, SYNTH), metricsPeriodS=1)),
        INFERENCE: version(inference_dev_recipe(
            base, models={MODEL: {"component": COMPONENT, "cameras": ["*"]}}, metricsPeriodS=1, provider="cpu",
            threads=1)),
        HEALTH: version(health_dev_recipe(base, promPort=0, periodS=1, summaryPeriodS=1,
                                          inferenceComponent=INFERENCE)),
    }
    (tmp / "rollout.yaml").write_text(yaml.safe_dump({
        "backend": "local", "registry": "registry", "state": "rollout-state.json", "local": {"fleet": "fleet"},
        "baseline_s": 30, "poll_s": 0.5, "soak_s": 8, "deployment_timeout_s": 180, "components": versions,
        "stages": [{"name": "dev", "group": "ggvision-dev"}, {"name": "staging", "group": "ggvision-staging"}],
        "gates": {"min_samples": 3, "inference_p95_ms": {"max_ratio": 3.0, "noise_ms": 2.0},
                  "detection_fps": {"min_ratio": 0.3}},
        "ab": {"inference_component": INFERENCE, "sample_rate": 1.0, "skip_when_queued": 64,
               "gates": {"min_intervals": 5, "inference_p95_ms": {"max_ratio": 3.0, "noise_ms": 2.0}}},
    }))
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # components' python3
    f = Fleet(tmp / "fleet", DEVICES, base=tmp / "base", settle_s=1.0)
    try:
        f.start()
        cfg = load_config(tmp / "rollout.yaml")
        backend = LocalBackend.from_config(cfg)
        try:  # setup (not a rollout): both groups on 1.0.0
            t0 = time.time()
            comps = Engine(cfg, backend)._components(None, MODEL, "1.0.0", COMPONENT)
            backend.prepare(MODEL, "1.0.0", COMPONENT)
            for group in ("ggvision-dev", "ggvision-staging"):
                backend.deploy(group, comps, name="initial")
            backend.client.wait_for(lambda: arms(backend, t0, "ggv-dev-1") == {"a": "1.0.0"}
                                    and arms(backend, t0, "ggv-staging-1") == {"a": "1.0.0"}, 240,
                                    "both devices reporting 1.0.0")
        finally:
            backend.close()
        yield tmp, f
    finally:
        f.stop()


def arms(backend: LocalBackend, since: float, thing: str) -> dict[str, str | None]:
    """arm -> version in the device's latest health summary (A alone: {"a": version})."""
    docs = backend.health([thing], since)
    if not docs:
        return {}
    out: dict[str, str | None] = {}
    for entry in docs[-1].get("inference", {}).values():
        ab = entry.get("ab") or {}
        out[ab.get("arm", "a")] = entry.get("version")
    return out


class Cli:
    def __init__(self, tmp: Path) -> None:
        self.cfg = ["--config", str(tmp / "rollout.yaml")]
        self.runner = CliRunner()
        self.log: list[str] = []

    def __call__(self, *args: str) -> Result:
        cmd = list(args)
        sub = cmd[:1] == ["ab"]
        full = ["ab", *self.cfg, *cmd[1:]] if sub else [*cmd, *self.cfg]
        r = self.runner.invoke(app, full, env={"COLUMNS": "150"})
        self.log.append(f"$ rollout {shlex.join(cmd)}\n{r.output}" + (f"(exit code {r.exit_code})\n"
                                                                     if r.exit_code else ""))
        return r

    def report_until(self, done: set[int], tries: int = 8) -> Result:
        """`ab report` (collecting 4 s per call) until its exit code is in `done` (0 PASS, 3 FAIL; 4 INCONCLUSIVE
        while there are too few intervals)."""
        for _ in range(tries):
            r = self("ab", "report", MODEL, "--wait", "4")
            if r.exit_code in done:
                return r
            assert r.exit_code == 4, r.output
            self.log.pop()  # keep only the conclusive report in the transcript
        raise AssertionError(f"no conclusive report: {r.output}")

    def transcript(self, title: str) -> None:
        out = os.environ.get("ROLLOUT_TRANSCRIPT")
        if out:
            with open(out, "a") as f:
                f.write(f"### {title}\n\n```\n" + "".join(self.log) + "```\n\n")
        self.log.clear()


def installed(tmp: Path, thing: str) -> dict[str, str]:
    cfg = load_config(tmp / "rollout.yaml")
    backend = LocalBackend.from_config(cfg)
    try:
        backend.client.wait_for(lambda: backend.client.statuses.get(thing), 10, f"{thing}'s deployment status")
        return backend.device_status(thing, "").components
    finally:
        backend.close()


def test_shadow_b_that_agrees_passes_and_is_promoted(fleet: tuple[Path, Fleet]) -> None:
    tmp, _ = fleet
    cli = Cli(tmp)
    r = cli("ab", "start", MODEL, "1.1.0", "--stage", "staging", "--mode", "shadow", "--for", "10m")
    assert r.exit_code == 0, r.output
    assert "ab_started" in r.output and installed(tmp, "ggv-staging-1").get(b_component(MODEL)) == "1.1.0"
    assert b_component(MODEL) not in installed(tmp, "ggv-dev-1")  # only the experiment's stage
    st = cli("ab", "status", MODEL)
    assert st.exit_code == 0 and "running" in st.output and "shadow @1" in st.output
    rep = cli.report_until({0, 3})
    assert rep.exit_code == 0, rep.output
    assert "verdict: PASS" in rep.output and "shadow agreement 1.00" in rep.output
    assert "person" in rep.output and "1.1.0 (B) vs 1.0.0 (A)" in rep.output
    r = cli("ab", "promote", MODEL)
    assert r.exit_code == 0, r.output
    assert "ab_stopped" in r.output and "passed detector 1.1.0 passed dev" in r.output
    assert "passed detector 1.1.0 passed staging" in r.output
    cli("ab", "status", MODEL)
    cli.transcript("shadow: 1.1.0 beside 1.0.0, PASS, promoted dev → staging")
    state = StateFile(tmp / "rollout-state.json")
    assert [state.stage(MODEL, s).get("version") for s in ("dev", "staging")] == ["1.1.0", "1.1.0"]
    exp = state.read()["experiments"][-1]
    assert (exp["status"], exp["verdict"], exp["mode"]) == ("promoted", "PASS", "shadow")
    comps = installed(tmp, "ggv-staging-1")
    assert comps.get(COMPONENT) == "1.1.0" and b_component(MODEL) not in comps


def test_split_b_that_finds_nothing_fails_the_report_and_is_stopped(fleet: tuple[Path, Fleet]) -> None:
    tmp, _ = fleet
    cli = Cli(tmp)
    a_version = StateFile(tmp / "rollout-state.json").stage(MODEL, "staging").get("version") or "1.0.0"
    r = cli("ab", "start", MODEL, "3.0.0", "--stage", "staging", "--mode", "split", "--share", "50%", "--for",
            "24h")
    assert r.exit_code == 0, r.output
    refused = cli("ab", "start", MODEL, "1.1.0", "--stage", "staging", "--mode", "split", "--share", "20%")
    assert refused.exit_code == 1 and "is running" in refused.output
    cli.log.pop()
    rep = cli.report_until({0, 3})
    assert rep.exit_code == 3, rep.output
    assert "verdict: FAIL" in rep.output and f"3.0.0 (B) vs {a_version} (A)" in rep.output
    assert "-100%" in rep.output, rep.output  # B finds no person where A finds one on every frame
    no = cli("ab", "promote", MODEL, "--wait", "0")
    assert no.exit_code == 1 and "verdict is FAIL" in no.output
    r = cli("ab", "stop", MODEL, "--reason", "report FAIL: B finds no person")
    assert r.exit_code == 0 and "ab_stopped" in r.output and "still installed" not in r.output, r.output
    cli("ab", "status", MODEL)
    hist = cli("history", MODEL)
    assert "ab-start" in hist.output and "ab-stop" in hist.output
    cli.transcript("split: 3.0.0 (a much higher score threshold) serving 50% of the cameras, FAIL, stopped")
    comps = installed(tmp, "ggv-staging-1")
    assert b_component(MODEL) not in comps and comps.get(COMPONENT) == a_version
    exp = StateFile(tmp / "rollout-state.json").read()["experiments"][-1]
    assert (exp["status"], exp["verdict"], exp["mode"]) == ("stopped", "FAIL", "split")
    # Health stops reporting a B arm once Inference dropped it
    cfg = load_config(tmp / "rollout.yaml")
    backend = LocalBackend.from_config(cfg)
    try:
        t = time.time()
        backend.client.wait_for(lambda: arms(backend, t, "ggv-staging-1") == {"a": a_version}, 30,
                                "ggv-staging-1 reporting A alone")
    finally:
        backend.close()
