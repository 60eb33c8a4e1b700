"""com.ggvision.Inference under the local runtime, fed through the real IPC + frame-ring path by the test agent
(and by the real Capture component for the thermal sensor): detections per frame in the detections/1.0 shape,
metrics Health accepts, hot swap under load without losing or repeating a frame, model components updated by
deployments, a tampered model refused while the old one keeps serving, a shadow model's agreement, the fire-risk
pipeline, invalid configuration refused, the model threads on CPUs apart from the others (`cpus`, `modelCpus`)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from harness import Agent, Runtime, wait_until
from inference_dev import FEEDER_ACL, NAME, inference_dev_recipe, model_component, tiny_detector, tiny_fire_risk

from gglocal.ipc.authorization import is_authorized
from gglocal.nucleus.recipeparser import load_recipe
from ggvision.health.state import parse_inference

AGENT = "com.ggvision.test.Agent"
MODEL = "com.ggvision.Model.TestDetector"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("inference")
    models = {"v1": tiny_detector(tmp / "models" / "v1", "1.0.0", score=0.9),
              "v2": tiny_detector(tmp / "models" / "v2", "2.0.0", score=0.8),
              "fire": tiny_fire_risk(tmp / "models" / "fire")}
    rt = Runtime(tmp, [])

    def feeder_acl(doc: dict[str, Any]) -> None:
        doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.pubsub"].update(
            FEEDER_ACL["aws.greengrass.ipc.pubsub"])

    rt.write_component(AGENT, edit=feeder_acl)
    inference_dev_recipe(rt.recipes, models={"detector": {"path": str(models["v1"]), "cameras": ["*"]}},
                         metricsPeriodS=0.5, batch={"maxSize": 4, "deadlineMs": 10})
    capture_dev_recipe(rt.recipes, cameras={}, metricsPeriodS=5,
                       sensors={"thermal-1": {"type": "thermal-sim", "scenario": "fire", "seed": 3, "fps": 4}})
    try:
        rt.launch()
        for name in (AGENT, NAME, CAPTURE):
            rt.wait_state(name, "RUNNING", 60)
        # RUNNING comes when the process starts; its first metrics message, once it has subscribed.
        a = rt.agent()
        a.call("subscribe", id="ready", topic="ggvision/v1/metrics/inference")
        a.call("events", id="ready", count=1, timeout=60)
        yield {"rt": rt, "models": models, "tmp": tmp}
    finally:
        rt.cleanup()


def _deploy_config(rt: Runtime, merge: dict[str, Any]) -> Any:
    return rt.deploy(component_to_configuration={NAME: {"MERGE": merge}})


def _feed(a: Agent, fid: str, cameras: list[str], **kw: Any) -> dict[str, Any]:
    a.call("feed_start", id=fid, cameras=cameras, answer_topic="ggvision/v1/detections/+", **kw)
    st = a.call("feed_status", id=fid, wait=True, timeout=60)
    assert st["done"], st
    return a.call("feed_stop", id=fid, answers=True)


def _exactly_once(st: dict[str, Any]) -> Counter:
    seen = Counter((x["camera"], x["sequence"]) for x in st["answers"])
    published = {(c, s) for c, seqs in st["sequences"].items() for s in seqs}
    assert not st["lost"], st["lost"]
    missing, extra = sorted(published - set(seen)), sorted(set(seen) - published)
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    assert max(seen.values()) == 1, [k for k, n in seen.items() if n > 1][:5]
    return seen


def _metrics(a: Agent, sub: str, pred: Any, timeout: float = 20) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for e in reversed(a.call("events", id=sub, count=0, timeout=0)):
            if pred(e["json"]):
                return e["json"]
        return None

    return wait_until(find, timeout, interval=0.2, what="a matching inference-metrics message")


def test_detections_per_frame_in_the_contract_shape(env: dict[str, Any]) -> None:
    rt = env["rt"]
    a = rt.agent()
    a.call("subscribe", id="det-shape", topic="ggvision/v1/detections/shape-a")
    a.call("subscribe", id="metrics-1", topic="ggvision/v1/metrics/inference")
    st = _feed(a, "shape", ["shape-a", "shape-b"], count=12, window=1, shape=[48, 64, 3])
    assert sum(st["published"].values()) == 24
    _exactly_once(st)
    msg = a.call("events", id="det-shape", count=12, timeout=10)[0]["json"]
    assert msg["schema"] == "detections/1.0" and msg["camera"] == "shape-a" and msg["task"] == "detection"
    assert isinstance(msg["sequence"], int) and msg["timestamp"] > 1.7e9
    assert msg["frame"]["shape"] == [48, 64, 3] and msg["frame"]["ring"].startswith("ggv-shape-a-")
    assert {"slot", "generation"} <= set(msg["frame"])
    assert msg["model"] == {"name": "tiny-detector", "version": "1.0.0", "family": "ssd"}
    (det,) = msg["detections"]
    assert det["label"] == "person" and det["class_id"] == 0 and 0.9 <= det["score"] < 0.91
    assert det["box"] == [16.0, 12.0, 48.0, 36.0]  # (0.25, 0.25, 0.75, 0.75) of a 64x48 frame, in its pixels
    assert set(msg["timings_ms"]) == {"queue", "preprocess", "inference", "postprocess"}
    assert all(v >= 0 for v in msg["timings_ms"].values()) and 1 <= msg["batch_size"] <= 2

    m = _metrics(a, "metrics-1", lambda m: m.get("id") == "detector" and m.get("frames", 0) >= 24
                 and m.get("cameras", {}).get("shape-b", {}).get("detection_msgs") == 12)
    assert m["schema"] == "inference-metrics/1.1" and m["role"] == "primary" and m["provider"] == "CPUExecutionProvider"
    assert m["model"] == "tiny-detector" and m["version"] == "1.0.0" and m["load_ms"] > 0
    assert m["runs"] >= 1 and m["errors"] == 0 and m["latency_ms"]["p95"] >= m["latency_ms"]["p50"] > 0
    assert len(m["score_hist"]) == 10 and sum(m["score_hist"]) > 0 and m["score_hist"][9] > 0
    assert 1 <= m["batch_size_mean"] <= 4 and m["queue_depth"] >= 0 and m["dropped_frames"] >= 0
    # per camera: the detections messages published (12 frames each, exactly once) and how long since the last
    assert m["cameras"]["shape-a"]["detection_msgs"] == 12 and 0 <= m["cameras"]["shape-a"]["last_age_s"] < 30
    # and the last one's frame timestamp: a camera's messages go out in order, so it is the last one received
    last = a.call("events", id="det-shape", count=12, timeout=10)[-1]["json"]
    assert m["cameras"]["shape-a"]["last_frame_ts"] == pytest.approx(last["timestamp"], abs=1e-6)
    parsed = parse_inference(m)  # what Health reads of it
    assert parsed.model == "tiny-detector" and parsed.runs == m["runs"] and parsed.p95_ms == m["latency_ms"]["p95"]
    assert parsed.cameras is not None and parsed.cameras["shape-b"].messages == 12


def test_hot_swap_under_load_loses_and_repeats_no_frame(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    a = rt.agent()
    cams = ["swap-a", "swap-b", "swap-c", "swap-d"]
    a.call("feed_start", id="swap", cameras=cams, count=400, window=1, fps=40, shape=[48, 64, 3],
           answer_topic="ggvision/v1/detections/+")
    wait_until(lambda: a.call("feed_status", id="swap")["answered"] >= 40, 30, what="frames flowing")
    t0 = time.monotonic()
    d = _deploy_config(rt, {"models": {"detector": {"path": str(models["v2"])}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    assert time.monotonic() - t0 < 30  # the component acknowledged the pre-update notice at once
    a.call("feed_status", id="swap", wait=True, timeout=60)
    st = a.call("feed_stop", id="swap", answers=True)
    _exactly_once(st)
    by_arrival = [x["version"] for x in sorted(st["answers"], key=lambda x: x["t"])]
    switches = sum(1 for x, y in zip(by_arrival, by_arrival[1:], strict=False) if x != y)
    assert by_arrival[0] == "1.0.0" and by_arrival[-1] == "2.0.0" and switches == 1, Counter(by_arrival)
    for cam in cams:  # per camera too, in sequence order
        versions = [x["version"] for x in sorted(st["answers"], key=lambda x: x["sequence"]) if x["camera"] == cam]
        assert versions == sorted(versions), cam
    assert "now serving tiny-detector 2.0.0 (was tiny-detector 1.0.0)" in rt.log(NAME)


def test_model_component_updates_swap_and_a_tampered_one_is_refused(env: dict[str, Any]) -> None:
    rt, tmp = env["rt"], env["tmp"]
    a = rt.agent()
    a.call("subscribe", id="alerts", topic="ggvision/v1/alerts/inference")
    a.call("subscribe", id="metrics-2", topic="ggvision/v1/metrics/inference")
    recipes = tmp / "model-recipes"
    for version, score in (("3.0.0", 0.7), ("4.0.0", 0.6), ("5.0.0", 0.5)):
        model_component(recipes, rt.artifacts, MODEL, version, tiny_detector(tmp / "mc" / version, version, score))
    tampered = rt.artifacts / MODEL / "5.0.0" / "model.onnx"
    tampered.write_bytes(tampered.read_bytes().replace(b"ggvision-tests", b"ggvision-TESTS"))

    def serving(cam: str) -> str:
        st = _feed(a, cam, [cam], count=3, window=1, shape=[48, 64, 3])
        _exactly_once(st)
        return st["answers"][-1]["version"]

    # Switch the detector to the model component (installed version: 3.0.0) in the deployment that adds it.
    d = rt.deploy(recipe_directory_path=str(recipes), artifacts_directory_path=str(rt.artifacts),
                  root_component_versions_to_add={MODEL: "3.0.0"},
                  component_to_configuration={NAME: {"MERGE": {"models": {"detector": {
                      "path": None, "component": MODEL}}}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    wait_until(lambda: serving("mc-a") == "3.0.0", 30, what="3.0.0 serving")
    # A new component version: the postUpdateEvent makes Inference load it, without a restart.
    starts = rt.log(NAME).count("run: starting")
    d = rt.deploy(recipe_directory_path=str(recipes), artifacts_directory_path=str(rt.artifacts),
                  root_component_versions_to_add={MODEL: "4.0.0"})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    wait_until(lambda: serving("mc-b") == "4.0.0", 30, what="4.0.0 serving")
    # 5.0.0's model.onnx does not match its manifest's sha256: refused, 4.0.0 keeps serving.
    d = rt.deploy(recipe_directory_path=str(recipes), artifacts_directory_path=str(rt.artifacts),
                  root_component_versions_to_add={MODEL: "5.0.0"})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    alert = a.call("events", id="alerts", count=1, timeout=30)[0]["json"]
    assert alert["schema"] == "alert/1.0" and alert["alert"] == "model-refused" and alert["model"] == "detector"
    assert "sha256 mismatch" in alert["message"] and "still serving tiny-detector 4.0.0" in alert["message"]
    assert serving("mc-c") == "4.0.0"
    m = _metrics(a, "metrics-2", lambda m: m.get("id") == "detector" and m.get("load_errors", 0) >= 1)
    assert m["version"] == "4.0.0" and "sha256 mismatch" in m["last_error"]
    assert "refused" in rt.log(NAME) and rt.log(NAME).count("run: starting") == starts


def test_shadow_model_agreement_is_measured_and_never_published(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    a = rt.agent()
    a.call("subscribe", id="metrics-3", topic="ggvision/v1/metrics/inference")
    loads = rt.log(NAME).count("loaded tiny-detector 1.0.0")
    d = _deploy_config(rt, {"shadow": {"model": "detector", "path": str(models["v1"]), "sampleRate": 1.0}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    wait_until(lambda: rt.log(NAME).count("loaded tiny-detector 1.0.0") > loads, 20, what="shadow loaded")
    st = _feed(a, "shadow-a", ["shadow-a", "shadow-b"], count=10, window=1, shape=[48, 64, 3])
    _exactly_once(st)
    assert {x["version"] for x in st["answers"]} == {"4.0.0"}  # only the primary's results are published
    primary = _metrics(a, "metrics-3", lambda m: m.get("role") == "primary" and m.get("id") == "detector"
                       and (m.get("shadow") or {}).get("frames", 0) >= 10)
    sh = primary["shadow"]
    assert sh["model"] == "tiny-detector" and sh["version"] == "1.0.0"
    assert sh["matched_ratio"] == 1.0 and sh["iou_mean"] == 1.0  # the same box
    assert sh["score_delta_mean"] == pytest.approx(0.9 - 0.6, abs=0.01) and sh["latency_ratio"] > 0
    shadow = _metrics(a, "metrics-3", lambda m: m.get("role") == "shadow")
    assert shadow["version"] == "1.0.0" and shadow["frames"] >= 10 and shadow["shadow"]["frames"] >= 10
    d = _deploy_config(rt, {"shadow": None})
    assert d.status == "SUCCEEDED", d.deployment_status_details


def test_fire_risk_from_thermal_frames_and_gas_readings(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    a = rt.agent()
    a.call("subscribe", id="fire", topic="ggvision/v1/detections/thermal-1")
    d = _deploy_config(rt, {"models": {"fire-risk": {"path": str(models["fire"]), "sensors": ["*"], "periodS": 0.5}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    got = [e["json"] for e in a.call("events", id="fire", count=3, timeout=30)]
    assert len(got) >= 3
    m = got[0]
    assert m["schema"] == "detections/1.0" and m["task"] == "tabular" and m["camera"] == "thermal-1"
    assert m["model"]["name"] == "tiny-fire-risk" and m["frame"]["shape"] == [120, 160, 1]
    assert m["outputs"]["label"] == "fire" and m["outputs"]["fire_probability"] > 0.5  # "fire": t_max > 60 °C
    ts = [x["timestamp"] for x in got]
    # Runs are at most one per periodS (0.5 s) on the runtime's clock, each on the newest unused thermal frame (4 fps);
    # a run's frame may have arrived late under load, so its timestamp can sit one frame interval off the grid.
    assert all(b > a_ for a_, b in zip(ts, ts[1:], strict=False)), ts  # never the same frame twice
    assert ts[-1] - ts[0] >= (len(ts) - 1) * 0.5 - 0.25 - 0.01, ts
    assert "detections" not in m


def test_invalid_configuration_is_refused_with_the_reason(env: dict[str, Any]) -> None:
    rt = env["rt"]
    for merge, words in (({"batch": {"maxSize": 0}}, "batch.maxSize"),
                         ({"batch": {"burstMs": -5}}, "batch.burstMs"),
                         ({"models": {"other": {"path": "/x", "cameras": ["*"]}}}, "models.other.cameras"),
                         ({"provider": "tpu"}, "provider"),
                         ({"shadow": {"model": "nope", "path": "/x"}}, "shadow.model")):
        d = _deploy_config(rt, merge)
        assert d.status == "FAILED", merge
        cause = d.deployment_status_details.deployment_failure_cause
        assert words in cause, cause
    assert rt.state(NAME) == "RUNNING"
    st = _feed(rt.agent(), "after-bad", ["after-bad"], count=3, window=1, shape=[48, 64, 3])
    _exactly_once(st)


def _thread_cpus(tmp: Path) -> dict[int, frozenset[int]]:
    """thread id -> the CPUs it may run on, for this test's Inference process (the one working under `tmp`)."""
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
            if cmd and cmd[0] != "/bin/sh" and "ggvision.inference" in " ".join(cmd) and str(tmp) in p.cwd():
                return {t.id: frozenset(os.sched_getaffinity(t.id)) for t in p.threads()}
        except (psutil.Error, OSError):
            continue
    raise AssertionError("no Inference process under " + str(tmp))


def test_cpus_put_the_model_threads_apart_from_every_other_thread(env: dict[str, Any]) -> None:
    """`cpus` (every component) and `modelCpus`: the vision model's worker thread on its own CPU, every other thread
    of the process on the rest, moved live by a deployment; a CPU the box does not have is logged and changes
    nothing (the component keeps serving); invalid lists are refused by validation."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to put the model apart")
    rt, tmp = env["rt"], env["tmp"]
    model_cpu, *rest = sorted(os.sched_getaffinity(0), reverse=True)
    try:
        d = _deploy_config(rt, {"cpus": sorted(rest), "modelCpus": str(model_cpu)})
        assert d.status == "SUCCEEDED", d.deployment_status_details

        seen: list[dict[int, frozenset[int]]] = []

        def placed() -> dict[int, frozenset[int]] | None:
            th = _thread_cpus(tmp)
            seen[:] = [th]
            on_model = [t for t, c in th.items() if c == {model_cpu}]
            return th if on_model and len(on_model) < len(th) and all(
                c == {model_cpu} or c == frozenset(rest) for c in th.values()) else None

        try:
            wait_until(placed, 10, interval=0.2, what="the model thread on its CPU, the others on the rest")
        except AssertionError as e:
            raise AssertionError(f"{e}; threads: {seen}; log: {rt.log(NAME)[-1500:]}") from None
        _exactly_once(_feed(rt.agent(), "pinned", ["pinned"], count=4, window=1, shape=[48, 64, 3]))

        d = _deploy_config(rt, {"modelCpus": [4000]})  # valid syntax, but no such CPU here
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: "CPU 4000 is not available" in rt.log(NAME), 10, what="the refusal in the log")
        assert placed() is not None and rt.state(NAME) == "RUNNING"  # nothing moved
        _exactly_once(_feed(rt.agent(), "pinned-2", ["pinned-2"], count=3, window=1, shape=[48, 64, 3]))

        for bad, words in (("1-0", "runs backwards"), ("a", "cpu list"), ([-1], "CPU numbers run from 0")):
            d = _deploy_config(rt, {"cpus": bad})
            assert d.status == "FAILED" and words in d.deployment_status_details.deployment_failure_cause, bad
    finally:
        d = _deploy_config(rt, {"cpus": "", "modelCpus": ""})
        assert d.status == "SUCCEEDED", d.deployment_status_details
    everywhere = frozenset(os.sched_getaffinity(0))
    wait_until(lambda: all(c == everywhere for c in _thread_cpus(tmp).values()), 10, interval=0.2,
               what="every thread back on every CPU")


def test_reading_motion_topics_warns_when_no_motion_descriptor_comes(env: dict[str, Any]) -> None:
    """frameTopics on the Filter's motion topics needs the Filter's motion.publish on (off by default): Inference says
    so when it starts reading them, and warns when none has come for MOTION_QUIET_S."""
    from ggvision.inference.component import MOTION_QUIET_S

    rt = env["rt"]
    t0 = time.monotonic()
    d = _deploy_config(rt, {"frameTopics": ["ggvision/v1/motion/+"]})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    try:
        wait_until(lambda: "reading motion descriptors (ggvision/v1/motion/+)" in rt.log(NAME), 10, what="the note")
        wait_until(lambda: "no motion descriptor in" in rt.log(NAME), MOTION_QUIET_S + 15, interval=0.5,
                   what="the warning")
        assert time.monotonic() - t0 >= MOTION_QUIET_S and "motion.publish" in rt.log(NAME).split("no motion")[-1]
    finally:
        d = _deploy_config(rt, {"frameTopics": ["ggvision/v1/frames/+"]})
        assert d.status == "SUCCEEDED", d.deployment_status_details


def test_recipe_grants_only_what_inference_uses() -> None:
    from harness import REPO

    recipe = load_recipe(REPO / "components" / "com.ggvision.Inference" / "recipe.yaml")
    acl = recipe.default_configuration["accessControl"]
    for topic in ("ggvision/v1/frames/+", "ggvision/v1/frames/door", "ggvision/v1/motion/+", "ggvision/v1/sensors/+"):
        assert is_authorized(acl, "SubscribeToTopic", topic), topic
    for topic in ("ggvision/v1/detections/door", "ggvision/v1/metrics/inference", "ggvision/v1/alerts/inference"):
        assert is_authorized(acl, "PublishToTopic", topic), topic
    for topic in ("ggvision/v1/frames/door", "ggvision/v1/metrics/capture", "ggvision/v1/alerts/health"):
        assert not is_authorized(acl, "PublishToTopic", topic), topic
    assert not is_authorized(acl, "SubscribeToTopic", "ggvision/v1/#")
    assert is_authorized(acl, "GetComponentDetails", "com.ggvision.Model.SyntheticDetector")
    assert not is_authorized(acl, "GetComponentDetails", "com.ggvision.Capture")
    assert not is_authorized(acl, "RestartComponent", "com.ggvision.Model.SyntheticDetector")
    run = recipe.manifests[0].lifecycle["run"].script
    assert "{kernel:rootPath}/packages" in run and "-m ggvision.inference" in run
    # Model components are configuration, not dependencies (a HARD one would restart Inference on each update).
    assert set(recipe.dependencies) == {"com.ggvision.Runtime"}
