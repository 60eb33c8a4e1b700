"""End to end on the local fleet: real runtimes (devices) in thing groups on one shared mosquitto, each running
the real Capture (synthetic camera), Inference and Health components; the rollout CLI's local backend drives
them through retained group deployments.

- a good model version promotes dev → staging → production;
- a much slower version is stopped at the dev canary by the p95 gate (and one that errors on some inputs by the
  error-ratio gate) and rolled back automatically, with no
  device left on it and the reason in the rollout history.

The devices follow their targets as Greengrass core devices do (test_fleet_targets.py): the canary is a
subdeployment of the stage group, which ggv-dev-1 applies in ggvision-dev's place; a deployment of the canary
group's own would be combined with ggvision-dev's and fail on the model's two pinned versions.

Set ROLLOUT_TRANSCRIPT=<file> to keep the rollout console output (docs/rollout.md quotes it).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from health_dev import NAME as HEALTH
from health_dev import health_dev_recipe
from inference_dev import NAME as INFERENCE
from inference_dev import inference_dev_recipe, tiny_detector_manifest, tiny_detector_onnx
from rich.console import Console
from typer.testing import CliRunner

from gglocal.fleet.layout import parse_groups
from gglocal.fleet.runner import Fleet, plan_devices
from ggvision.model.manifest import write_model_dir
from model_registry.registry import Registry
from rollout.backends.local import LocalBackend
from rollout.cli import app
from rollout.config import load_config
from rollout.engine import Engine
from rollout.state import StateFile

MODEL, COMPONENT = "detector", "com.ggvision.Model.Detector"
SYNTH = {"source": {"type": "synthetic", "width": 160, "height": 120, "fps": 5, "seed": 1}, "detectFps": 5}
DEVICES = {"ggv-dev-1": ["ggvision-dev", "ggvision-dev-canary"], "ggv-staging-1": ["ggvision-staging"],
           "ggv-production-1": ["ggvision-production"]}


def slow_detector_onnx(score: float, layers: int = 20, channels: int = 64) -> Any:
    """The tiny detector plus a chain of 3x3 convolutions whose result is multiplied by 0 and added to the score:
    the same detections, many times the compute (a regression only latency shows)."""
    from onnx import helper, numpy_helper

    m = tiny_detector_onnx(score)
    g = m.graph
    add = next(n for n in g.node if n.output[0] == "s1")
    add.output[0] = "s1a"
    rng = np.random.default_rng(0)
    nodes, inits, prev, cin = [], [], "images", 3
    for i in range(layers):
        w = (rng.standard_normal((channels, cin, 3, 3)) * 0.05).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"cw{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"cw{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"]))
        prev, cin = f"r{i}", channels
    nodes += [helper.make_node("ReduceMean", [prev], ["slow"], axes=[1, 2, 3], keepdims=0),
              helper.make_node("Mul", ["slow", "zero"], ["slow0"]),
              helper.make_node("Add", ["s1a", "slow0"], ["s1"])]
    idx = list(g.node).index(add) + 1
    for j, n in enumerate(nodes):
        g.node.insert(idx + j, n)
    g.initializer.extend(inits)
    return m


def failing_detector_onnx(score: float, size: int = 32) -> Any:
    """The tiny detector, except that a run fails when the batch's mean pixel value has an odd integer part (a
    Reshape to a width that does not divide the input): it loads and warms up (zeros) fine and then errors on
    about half of the frames of a scene whose brightness drifts (a regression only the error ratio shows)."""
    from onnx import TensorProto, helper

    m = tiny_detector_onnx(score)
    g = m.graph
    add = next(n for n in g.node if n.output[0] == "s1")
    add.output[0] = "s1a"
    c = helper.make_tensor
    nodes = [helper.make_node("ReduceMean", ["images"], ["em"], axes=[0, 1, 2, 3], keepdims=1),  # [1,1,1,1]
             helper.make_node("Reshape", ["em", "one"], ["em1"]),  # [1]
             helper.make_node("Floor", ["em1"], ["ef"]),
             helper.make_node("Cast", ["ef"], ["ei"], to=TensorProto.INT64),
             helper.make_node("Mod", ["ei", "two"], ["parity"]),
             helper.make_node("Add", ["parity", "width"], ["w1"]),
             helper.make_node("Concat", ["minus1", "w1"], ["shape"], axis=0),
             helper.make_node("Reshape", ["images", "shape"], ["flat"]),  # fails when parity == 1
             helper.make_node("ReduceMean", ["flat"], ["fm"], keepdims=0),
             helper.make_node("Mul", ["fm", "zero"], ["fm0"]),
             helper.make_node("Add", ["s1a", "fm0"], ["s1"])]
    idx = list(g.node).index(add) + 1
    for j, n in enumerate(nodes):
        g.node.insert(idx + j, n)
    g.initializer.extend([c("one", TensorProto.INT64, [1], [1]), c("two", TensorProto.INT64, [1], [2]),
                          c("width", TensorProto.INT64, [1], [3 * size * size]),
                          c("minus1", TensorProto.INT64, [1], [-1])])
    return m


def model_dir(tmp: Path, version: str, onnx_model: Any) -> Path:
    return write_model_dir(tmp / f"model-{version}", onnx_model, tiny_detector_manifest(name=MODEL, version=version))


def recipe_version(path: Path) -> str:
    return json.loads(path.read_text())["ComponentVersion"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Fleet]]:
    if not Path("/usr/sbin/mosquitto").exists() and shutil.which("mosquitto") is None:
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    tmp = tmp_path_factory.mktemp("fleet")
    reg = Registry(tmp / "registry")
    reg.register(model_dir(tmp, "1.0.0", tiny_detector_onnx(0.6)), metrics={"map50": 0.90})
    reg.register(model_dir(tmp, "1.1.0", tiny_detector_onnx(0.62)), metrics={"map50": 0.91})
    reg.register(model_dir(tmp, "2.0.0", slow_detector_onnx(0.6)), metrics={"map50": 0.91})
    reg.register(model_dir(tmp, "2.1.0", failing_detector_onnx(0.6)), metrics={"map50": 0.92})
    base = tmp / "base" / "recipes"
    versions = {
        CAPTURE: recipe_version(capture_dev_recipe(base, cameras={"cam-1": SYNTH}, metricsPeriodS=1)),
        INFERENCE: recipe_version(inference_dev_recipe(
            base, models={"detector": {"component": COMPONENT, "cameras": ["*"]}}, metricsPeriodS=1,
            provider="cpu", threads=1)),
        HEALTH: recipe_version(health_dev_recipe(base, promPort=0, periodS=1, summaryPeriodS=1,
                                                 inferenceComponent=INFERENCE)),
    }
    (tmp / "rollout.yaml").write_text(yaml.safe_dump({
        "backend": "local", "registry": "registry", "state": "rollout-state.json", "local": {"fleet": "fleet"},
        "baseline_s": 30, "poll_s": 0.5, "soak_s": 8, "deployment_timeout_s": 180,
        "components": versions,
        "stages": [{"name": "dev", "group": "ggvision-dev", "canary": {"group": "ggvision-dev-canary", "soak_s": 8}},
                   {"name": "staging", "group": "ggvision-staging"},
                   {"name": "production", "group": "ggvision-production"}],
        "gates": {"min_samples": 3, "inference_error_ratio": {"max": 0.05, "max_increase": 0.05},
                  "inference_p95_ms": {"max_ratio": 3.0, "noise_ms": 2.0}, "detection_fps": {"min_ratio": 0.3},
                  "score_drift": {"max_abs": 0.15}},
    }))
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # components' python3
    f = Fleet(tmp / "fleet", DEVICES, base=tmp / "base", settle_s=1.0)
    try:
        f.start()
        yield tmp, f
    finally:
        f.stop()


def engine(tmp: Path, console: Console) -> tuple[Engine, LocalBackend]:
    cfg = load_config(tmp / "rollout.yaml")
    backend = LocalBackend.from_config(cfg)
    return Engine(cfg, backend, console=console), backend


def transcript(console: Console, title: str) -> None:
    out = os.environ.get("ROLLOUT_TRANSCRIPT")
    if out:
        with open(out, "a") as f:
            f.write(f"### {title}\n\n```\n{console.export_text()}```\n\n")


def reported_versions(backend: LocalBackend, since: float) -> dict[str, str | None]:
    from rollout.gates import sample

    out: dict[str, str | None] = {}
    for doc in backend.health(sorted(DEVICES), since):
        s = sample(doc, MODEL)
        if s is not None:
            out[s.thing] = s.version
    return out


def test_plan_and_fleet_layout() -> None:
    assert plan_devices(parse_groups("dev=1,staging=2"), {"staging": 1}) == {
        "ggv-dev-1": ["ggvision-dev"], "ggv-staging-1": ["ggvision-staging", "ggvision-staging-canary"],
        "ggv-staging-2": ["ggvision-staging"]}


def test_good_version_promotes_through_all_stages_bad_one_is_rolled_back(fleet: tuple[Path, Fleet]) -> None:
    tmp, f = fleet
    console = Console(record=True, width=140, force_terminal=False)
    eng, backend = engine(tmp, console)
    try:
        # Setup (not a rollout): every group starts on 1.0.0.
        t0 = time.time()
        for group in ("ggvision-dev", "ggvision-staging", "ggvision-production"):
            comps = eng._components(None, MODEL, "1.0.0", COMPONENT)
            backend.prepare(MODEL, "1.0.0", COMPONENT)
            backend.deploy(group, comps, name="initial")
        backend.client.wait_for(lambda: all(v == "1.0.0" for v in reported_versions(backend, t0).values())
                                and len(reported_versions(backend, t0)) == len(DEVICES), 240,
                                "every device reporting 1.0.0 health summaries")

        for stage in ("dev", "staging", "production"):
            assert eng.promote(MODEL, "1.1.0", stage), StateFile(tmp / "rollout-state.json").rollouts()[-1]
        transcript(console, "good version 1.1.0: dev → staging → production")
        st = StateFile(tmp / "rollout-state.json")
        assert [st.stage(MODEL, s)["version"] for s in ("dev", "staging", "production")] == ["1.1.0"] * 3
        t1 = time.time()
        # What Health reports follows within a summary period or two (the model swaps after the deployment).
        backend.client.wait_for(lambda: reported_versions(backend, t1) == dict.fromkeys(DEVICES, "1.1.0"), 30,
                                "every device's latest health summary reporting 1.1.0")

        console2 = Console(record=True, width=140, force_terminal=False)
        eng.console = console2
        assert not eng.promote(MODEL, "2.0.0", "dev")
        transcript(console2, "bad version 2.0.0 (much slower): stopped at the dev canary, rolled back")
        last = st.rollouts()[-1]
        assert last["status"] == "rolled_back" and "p95 latency" in last["reason"]
        assert "ggv-dev-1" in last["reason"]
        events = [e["event"] for e in last["events"]]
        assert events.index("gate_failed") < events.index("rollback") < events.index("rolled_back")
        assert "ggvision-dev" not in [e.get("group") for e in last["events"] if e["event"] == "deployed"]
        # No device is left on 2.0.0: installed components and what Health reports.
        for thing in DEVICES:
            assert backend.device_status(thing, "").components.get(COMPONENT) == "1.1.0", thing
        # ggv-dev-1 applied the canary's subdeployments (the candidate and its rollback) as ggvision-dev's.
        applied_as = {e["source"]: e["target"] for e in backend.client.statuses["ggv-dev-1"]["deployments"]}
        assert applied_as == {"thinggroup/ggvision-dev": "thinggroup/ggvision-dev",
                              "thinggroup/ggvision-dev-canary": "thinggroup/ggvision-dev"}, applied_as
        t2 = time.time()
        # What Health reports follows within a summary period or two (the model swaps after the deployment).
        backend.client.wait_for(lambda: reported_versions(backend, t2) == dict.fromkeys(DEVICES, "1.1.0"), 30,
                                "every device's latest health summary reporting 1.1.0")
        assert st.stage(MODEL, "dev")["status"] == "rolled_back" and st.stage(MODEL, "dev")["version"] == "1.1.0"

        # A version that loads fine but fails on about half of the frames: the error-ratio gate stops it.
        console3 = Console(record=True, width=140, force_terminal=False)
        eng.console = console3
        assert not eng.promote(MODEL, "2.1.0", "dev")
        transcript(console3, "bad version 2.1.0 (errors on some inputs): stopped at the dev canary, rolled back")
        last = st.rollouts()[-1]
        assert last["status"] == "rolled_back" and "inference error ratio" in last["reason"], last["reason"]
        for thing in DEVICES:
            assert backend.device_status(thing, "").components.get(COMPONENT) == "1.1.0", thing
        t3 = time.time()
        backend.client.wait_for(lambda: reported_versions(backend, t3) == dict.fromkeys(DEVICES, "1.1.0"), 30,
                                "every device's latest health summary reporting 1.1.0 again")

        # The CLI's view of it: history with the reason, status per stage and device; pause blocks a promote.
        runner = CliRunner()
        cfg = ["--config", str(tmp / "rollout.yaml")]
        hist = runner.invoke(app, ["history", MODEL, *cfg], env={"COLUMNS": "220"})
        assert hist.exit_code == 0 and "rolled_back" in hist.output and "p95 latency" in hist.output
        status = runner.invoke(app, ["status", MODEL, *cfg], env={"COLUMNS": "220"})
        assert status.exit_code == 0 and status.output.count("1.1.0") >= 6 and "2.0.0" not in status.output
        assert "2.1.0" not in status.output
        plan = runner.invoke(app, ["plan", MODEL, "1.2.0", "--to", "staging", *cfg], env={"COLUMNS": "220"})
        assert plan.exit_code == 0 and "ggvision-dev-canary" in plan.output and "ggvision-production" not in plan.output
        assert runner.invoke(app, ["pause", "--stage", "staging", *cfg]).exit_code == 0
        blocked = runner.invoke(app, ["promote", MODEL, "1.1.0", "--to", "staging", *cfg])
        assert blocked.exit_code == 1 and "stage staging is paused" in blocked.output
        assert runner.invoke(app, ["resume", "--stage", "staging", *cfg]).exit_code == 0
        out = os.environ.get("ROLLOUT_TRANSCRIPT")
        if out:
            with open(out, "a") as fh:
                fh.write(f"### rollout history / status\n\n```\n{hist.output}\n{status.output}```\n")
    finally:
        backend.close()
