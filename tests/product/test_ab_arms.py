"""A/B arms of com.ggvision.Inference under the local runtime, with real tiny ONNX models fed through real frame
rings: shadow mode (B compared with A on the same frames, only A published, agreement figures as the models
dictate), split mode (the cameras below the share by their stable hash served by B, the same after a restart),
a B that raises or goes NaN leaves A's output whole, and B skipped while A has work waiting."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from harness import Agent, Runtime, wait_until
from inference_dev import FEEDER_ACL, NAME, inference_dev_recipe, tiny_detector

from ggvision.config.inference import split_point
from ggvision.contract.metrics import METRICS
from ggvision.health.exporter import Collected, encode_summary, samples, summary
from ggvision.health.state import AppState, parse_inference

AGENT = "com.ggvision.test.Agent"
A_VERSION = "1.0.0"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("ab")
    models = {"a": tiny_detector(tmp / "models" / "a", A_VERSION, score=0.9),  # person
              "car": tiny_detector(tmp / "models" / "car", "5.0.0", score=0.6, class_id=1),  # same box, car
              "b2": tiny_detector(tmp / "models" / "b2", "2.0.0", score=0.8),  # same box, person
              "raise": tiny_detector(tmp / "models" / "raise", "6.0.0", trap="raise"),
              "nan": tiny_detector(tmp / "models" / "nan", "7.0.0", trap="nan"),
              "slow": tiny_detector(tmp / "models" / "slow", "8.0.0", trap="slow")}
    bright = tmp / "bright.npy"  # frames the trap models fail on (their warm-up frame is not bright)
    np.save(bright, np.full((4, 48, 64, 3), 250, np.uint8))
    rt = Runtime(tmp, [])

    def feeder_acl(doc: dict[str, Any]) -> None:
        doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.pubsub"].update(
            FEEDER_ACL["aws.greengrass.ipc.pubsub"])

    rt.write_component(AGENT, edit=feeder_acl)
    inference_dev_recipe(rt.recipes, models={"detector": {"path": str(models["a"]), "cameras": ["*"]}},
                         metricsPeriodS=0.3, batch={"maxSize": 4, "deadlineMs": 10})
    try:
        rt.launch()
        for name in (AGENT, NAME):
            rt.wait_state(name, "RUNNING", 60)
        a = rt.agent()
        a.call("subscribe", id="ready", topic="ggvision/v1/metrics/inference")
        a.call("events", id="ready", count=1, timeout=60)
        yield {"rt": rt, "models": models, "bright": str(bright)}
    finally:
        rt.cleanup()


def _arm(rt: Runtime, b: dict[str, Any] | None, **more: Any) -> None:
    d = rt.deploy(component_to_configuration={NAME: {"MERGE": {"models": {"detector": {"b": b}}, **more}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details


def _feed(a: Agent, fid: str, cameras: list[str], exact: bool = True, **kw: Any) -> dict[str, Any]:
    a.call("feed_start", id=fid, cameras=cameras, answer_topic="ggvision/v1/detections/+", **kw)
    st = a.call("feed_status", id=fid, wait=True, timeout=60)
    assert st["done"], st
    st = a.call("feed_stop", id=fid, answers=True)
    seen = Counter((x["camera"], x["sequence"]) for x in st["answers"])
    published = {(c, s) for c, seqs in st["sequences"].items() for s in seqs}
    assert max(seen.values()) == 1 and set(seen) <= published  # no frame answered twice
    if exact:  # window 1: A never has to drop a frame, so every one is answered
        assert not st["lost"] and set(seen) == published
    return st


def _metrics(a: Agent, sub: str, pred: Any, timeout: float = 20) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for e in reversed(a.call("events", id=sub, count=0, timeout=0)):
            if pred(e["json"]):
                return e["json"]
        return None

    try:
        return wait_until(find, timeout, interval=0.2, what="a matching inference-metrics message")
    except AssertionError as e:  # say what did arrive
        latest = [x["json"] for x in a.call("events", id=sub, count=0, timeout=0)][-2:]
        raise AssertionError(f"{e}; latest: {latest}") from None


def _loaded(rt: Runtime, version: str, before: int) -> None:
    wait_until(lambda: rt.log(NAME).count(f"loaded tiny-detector {version}") > before, 30, what=f"B {version} loaded")


def test_shadow_compares_b_on_the_same_frames_and_publishes_only_a(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    a = rt.agent()
    a.call("subscribe", id="m-shadow", topic="ggvision/v1/metrics/inference")
    a.call("subscribe", id="d-shadow", topic="ggvision/v1/detections/sh-a")
    before = rt.log(NAME).count("loaded tiny-detector 5.0.0")
    _arm(rt, {"mode": "shadow", "path": str(models["car"]), "sampleRate": 1.0, "skipWhenQueued": 64})
    _loaded(rt, "5.0.0", before)
    st = _feed(a, "shadow", ["sh-a", "sh-b"], count=10, window=1)
    assert {x["version"] for x in st["answers"]} == {A_VERSION}  # B's results never go downstream
    det = a.call("events", id="d-shadow", count=10, timeout=10)
    assert {e["json"]["arm"] for e in det} == {"a"} and {e["json"]["detections"][0]["label"] for e in det} == {"person"}

    m = _metrics(a, "m-shadow", lambda m: m.get("arm") == "a" and m["ab"].get("agreement", {}).get("frames", 0) >= 20)
    ab = m["ab"]
    assert (ab["mode"], ab["b_model"], ab["b_version"], ab["sample_rate"]) == ("shadow", "tiny-detector", "5.0.0", 1.0)
    ag = ab["agreement"]
    # B finds A's box with the other label on every frame: each frame is one label flip, nothing else
    assert ag["label_flips"] == ag["frames"] and ag["matched"] == ag["a_only"] == ag["b_only"] == 0
    assert ag["by_label"]["label_flips"] == {"person": ag["frames"]} and ag["matched_ratio"] == 0.0
    assert ab["b_failed"] == 0
    assert m["detections_per_frame"] == {"person": 1.0}
    b = _metrics(a, "m-shadow", lambda m: m.get("arm") == "b" and m.get("frames", 0) >= 20)
    assert b["role"] == "shadow" and b["id"] == "detector" and b["version"] == "5.0.0"
    assert b["detections_per_frame"] == {"car": 1.0} and b["score_hist"][6] == b["frames"]  # all ~0.6
    assert b["latency_ms"]["p95"] >= b["latency_ms"]["p50"] > 0 and m["score_hist"][9] >= 20
    assert parse_inference(b).key == "tiny-detector#shadow"  # Health keeps B apart from A
    _health_exports_the_arms(m, b)
    _arm(rt, None)


def _health_exports_the_arms(a_msg: dict[str, Any], b_msg: dict[str, Any]) -> None:
    """What com.ggvision.Health makes of the two arms' real messages: Prometheus families and the IoT summary."""
    state = AppState()
    for msg in (a_msg, b_msg):
        state.on_message("ggvision/v1/metrics/inference", msg)
    assert not state.malformed
    c = Collected(timestamp=0.0, uptime_s=1.0, app=state.view(60))
    got = {name: dict(rows) for name, rows in samples(c).items() if name.startswith("ggvision_ab_")}
    assert set(got) <= set(METRICS) and len(got) == 6
    assert got["ggvision_ab_detections_per_frame"] == {("detector", "a", "person"): 1.0,
                                                       ("detector", "b", "car"): 1.0}
    flips = a_msg["ab"]["agreement"]["label_flips"]
    assert got["ggvision_ab_agreement"] == {("detector", "label_flips", "person"): flips}
    assert got["ggvision_ab_confidence_ratio"][("detector", "b", "0.7")] == 1.0  # B's scores are all 0.6x
    assert got["ggvision_ab_confidence_ratio"][("detector", "a", "1.0")] == 1.0
    assert got["ggvision_ab_b_skipped_frames"] == {("detector",): 0} and got["ggvision_ab_b_failures"] == {
        ("detector",): 0}
    assert got["ggvision_ab_latency_seconds"][("detector", "b", "0.95")] > 0
    doc = json.loads(encode_summary(summary(c, "thing-1", 60)))  # what reaches IoT Core
    ab = {k: v["ab"] for k, v in doc["inference"].items()}
    assert ab["tiny-detector"]["agreement"] == {"matched": {}, "label_flips": {"person": flips}, "a_only": {},
                                                "b_only": {}}
    assert ab["tiny-detector#shadow"]["detections_per_frame"] == {"car": 1.0}


def test_split_serves_the_hashed_share_of_cameras_with_b_across_a_restart(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    cams = [f"split-{i}" for i in range(8)]
    share = 0.5
    in_b = {c for c in cams if split_point(c) < share}
    assert 0 < len(in_b) < len(cams)  # the test needs both arms
    a = rt.agent()
    a.call("subscribe", id="m-split", topic="ggvision/v1/metrics/inference")
    a.call("subscribe", id="d-split", topic="ggvision/v1/detections/+")
    before = rt.log(NAME).count("loaded tiny-detector 2.0.0")
    _arm(rt, {"mode": "split", "path": str(models["b2"]), "share": f"{share:.0%}"})
    _loaded(rt, "2.0.0", before)
    _metrics(a, "m-split", lambda m: m.get("arm") == "b" and m.get("role") == "split")  # B serves

    def arms_of(st: dict[str, Any]) -> dict[str, set[str]]:
        got: dict[str, set[str]] = {}
        for x in st["answers"]:
            got.setdefault(x["camera"], set()).add(x["version"])
        return got

    st = _feed(a, "split", cams, count=4, window=1)
    assert arms_of(st) == {c: {"2.0.0" if c in in_b else A_VERSION} for c in cams}
    tags = {(e["json"]["camera"], e["json"]["arm"]) for e in a.call("events", id="d-split", count=0, timeout=0)
            if e["json"]["camera"] in cams}
    assert tags == {(c, "b" if c in in_b else "a") for c in cams}
    m = _metrics(a, "m-split", lambda m: m.get("arm") == "a" and set(m["ab"].get("b_cameras", [])) == in_b)
    assert m["ab"]["mode"] == "split" and m["ab"]["share"] == share and "agreement" not in m["ab"]

    before = rt.log(NAME).count("loaded tiny-detector 2.0.0")
    rt.client.restart_component(component_name=NAME)
    _loaded(rt, "2.0.0", before)
    rt.wait_state(NAME, "RUNNING", 60)
    a.call("subscribe", id="m-split2", topic="ggvision/v1/metrics/inference")
    _metrics(a, "m-split2", lambda m: m.get("arm") == "b" and m.get("role") == "split", timeout=30)
    st = _feed(a, "split2", cams, count=4, window=1)
    assert arms_of(st) == {c: {"2.0.0" if c in in_b else A_VERSION} for c in cams}  # each camera kept its arm
    _arm(rt, None)


@pytest.mark.parametrize("trap", ["raise", "nan"])
@pytest.mark.parametrize("mode", ["shadow", "split"])
def test_a_failing_b_leaves_a_output_whole(env: dict[str, Any], mode: str, trap: str) -> None:
    rt, models = env["rt"], env["models"]
    version = {"raise": "6.0.0", "nan": "7.0.0"}[trap]
    a = rt.agent()
    sub = f"m-fail-{mode}-{trap}"
    a.call("subscribe", id=sub, topic="ggvision/v1/metrics/inference")
    before = rt.log(NAME).count(f"loaded tiny-detector {version}")
    arm = {"mode": mode, "path": str(models[trap]), **({"share": 1.0} if mode == "split" else
                                                        {"sampleRate": 1.0, "skipWhenQueued": 64})}
    _arm(rt, arm)
    _loaded(rt, version, before)
    if mode == "split":
        _metrics(a, sub, lambda m: m.get("arm") == "b" and m.get("version") == version)
    cams = [f"fail-{mode}-{trap}-{i}" for i in range(2)]
    st = _feed(a, f"fail-{mode}-{trap}", cams, count=6, window=1, npy=env["bright"])
    # every frame answered once, by A: in split mode B's failed batches are handed back to A
    assert {x["version"] for x in st["answers"]} == {A_VERSION} and all(x["n"] == 1 for x in st["answers"])
    m = _metrics(a, sub, lambda m: m.get("arm") == "a" and m["ab"]["b_version"] == version and m["ab"]["b_failed"] > 0)
    assert m["errors"] == 0  # A never failed
    _arm(rt, None)


def test_a_slow_b_in_shadow_neither_delays_a_nor_queues(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    a = rt.agent()
    a.call("subscribe", id="m-slow", topic="ggvision/v1/metrics/inference")
    before = rt.log(NAME).count("loaded tiny-detector 8.0.0")
    _arm(rt, {"mode": "shadow", "path": str(models["slow"]), "sampleRate": 1.0, "skipWhenQueued": 64})
    _loaded(rt, "8.0.0", before)
    # B needs about half a second per bright batch; A answers every frame as they come (window 1)
    st = _feed(a, "slow", ["slow-a", "slow-b"], count=10, window=1, npy=env["bright"])
    assert {x["version"] for x in st["answers"]} == {A_VERSION}
    m = _metrics(a, "m-slow", lambda m: m.get("arm") == "a" and m["ab"]["b_version"] == "8.0.0"
                 and m["ab"]["b_skipped"] > 0)
    ab = m["ab"]
    # B saw what it had time for; the rest was skipped instead of queued (at most two batches wait for B)
    assert ab["agreement"]["frames"] + ab["b_skipped"] <= 20 and ab["agreement"]["frames"] < 20
    assert ab["b_failed"] == 0 and m["errors"] == 0
    _arm(rt, None)


def test_b_is_skipped_while_a_has_frames_waiting(env: dict[str, Any]) -> None:
    rt, models = env["rt"], env["models"]
    a = rt.agent()
    a.call("subscribe", id="m-skip", topic="ggvision/v1/metrics/inference")
    before = rt.log(NAME).count("loaded tiny-detector 2.0.0")
    _arm(rt, {"mode": "shadow", "path": str(models["b2"]), "sampleRate": 1.0, "skipWhenQueued": 1},
         batch={"maxSize": 1, "deadlineMs": 0})
    _loaded(rt, "2.0.0", before)
    cams = [f"load-{i}" for i in range(8)]
    # one camera per batch, eight cameras, each with up to 4 frames in flight: A always has cameras waiting
    st = _feed(a, "load", cams, exact=False, count=12, window=4)  # under load A drops frames (latest wins)
    assert {x["version"] for x in st["answers"]} == {A_VERSION}
    m = _metrics(a, "m-skip", lambda m: m.get("arm") == "a" and m["ab"]["b_skipped"] > 0)
    ab = m["ab"]
    assert ab["b_skipped"] + ab["agreement"]["frames"] <= m["frames"]
    assert ab["agreement"]["frames"] == 0 or ab["agreement"]["matched_ratio"] == 1.0
    _arm(rt, None, batch={"maxSize": 4, "deadlineMs": 10})
