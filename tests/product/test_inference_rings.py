"""Inference reading frames straight from the rings Capture announces (frame-rings/1.0), under the local runtime
with the real Capture (synthetic cameras) and the real Inference: detections per frame with the right frame
references and no frame/1.0 descriptor published, a camera that keeps its descriptors analysed once per frame, a
malformed announcement refused while the followed rings stay, a camera's ring replaced, Inference restarted
learning the rings from the periodic announcement, no ring followed while only motion topics are read, and
descriptors from a feeder still served."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from harness import Agent, Runtime, wait_until
from inference_dev import FEEDER_ACL, NAME, inference_dev_recipe, tiny_detector

from ggvision.framebus.announce import parse_rings

AGENT = "com.ggvision.test.Agent"
SLOTS = 8
SYNTH = {"source": {"type": "synthetic", "width": 320, "height": 240, "fps": 10, "seed": 1}, "detectFps": 5}


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    tmp = tmp_path_factory.mktemp("rings")
    model = tiny_detector(tmp / "models" / "v1", "1.0.0", score=0.9)
    rt = Runtime(tmp, [])

    def feeder_acl(doc: dict[str, Any]) -> None:
        doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.pubsub"].update(
            FEEDER_ACL["aws.greengrass.ipc.pubsub"])

    rt.write_component(AGENT, edit=feeder_acl)
    inference_dev_recipe(rt.recipes, models={"detector": {"path": str(model), "cameras": ["*"]}},
                         metricsPeriodS=1, batch={"maxSize": 4, "deadlineMs": 10})
    capture_dev_recipe(rt.recipes, ringSlots=SLOTS, metricsPeriodS=1, cameras={
        "ring-cam": SYNTH, "desc-cam": {**SYNTH, "frameDescriptors": True}})
    try:
        rt.launch()
        for name in (AGENT, NAME, CAPTURE):
            rt.wait_state(name, "RUNNING", 60)
        yield rt
    finally:
        rt.cleanup()


def _detections(a: Agent, sub: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
    return [e["json"] for e in a.call("events", id=sub, count=count, timeout=timeout)]


def _announced(a: Agent, sub: str, camera: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for e in reversed(a.call("events", id=sub, count=0, timeout=0)):
            if camera in e["json"].get("rings", {}):
                return e["json"]
        return None

    return wait_until(find, 20, interval=0.2, what=f"a frame-rings announcement naming {camera}")


def test_detections_per_frame_from_the_ring_without_descriptors(rt: Runtime) -> None:
    a = rt.agent()
    a.call("subscribe", id="rings-1", topic="ggvision/v1/frame-rings")
    a.call("subscribe", id="frames-1", topic="ggvision/v1/frames/+")
    a.call("subscribe", id="det-1", topic="ggvision/v1/detections/ring-cam")
    msg = _announced(a, "rings-1", "ring-cam")
    component, rings = parse_rings(msg)
    assert msg["schema"] == "frame-rings/1.0" and component == "com.ggvision.Capture"
    ring = rings["ring-cam"]
    assert ring.ring.startswith("ggv-ring-cam-") and ring.fps == 5.0 and ring.created > 1.7e9

    got = _detections(a, "det-1", 15)[-12:]
    seqs = [d["sequence"] for d in got]
    assert seqs == sorted(set(seqs)), seqs  # each frame once, in order
    missed = seqs[-1] - seqs[0] + 1 - len(seqs)
    assert missed <= 1, f"frames skipped between {seqs[0]} and {seqs[-1]}: {seqs}"  # per frame, on a busy box too
    for d in got:
        f = d["frame"]
        assert f["ring"] == ring.ring and f["shape"] == [240, 320, 3]
        # the slot and the seqlock generation of that write: the k-th write into a slot leaves generation 2k
        assert f["slot"] == d["sequence"] % SLOTS and f["generation"] == 2 * (d["sequence"] // SLOTS + 1)
        assert d["detections"][0]["box"] == [80.0, 60.0, 240.0, 180.0]  # the model's box, in this frame's pixels
        assert d["timestamp"] > 1.7e9
    a.call("subscribe", id="metrics-1", topic="ggvision/v1/metrics/inference")
    m = a.call("events", id="metrics-1", count=1, timeout=10)[0]["json"]
    assert m["rings"]["cameras"] == 2 and m["rings"]["frames"] >= 12  # ring-cam and desc-cam from their rings
    assert m["rings"]["frames"] <= m["rings"]["looks"] <= 4 * m["rings"]["frames"] + 20
    frames = [e["json"] for e in a.call("events", id="frames-1", count=0, timeout=0)]
    cams = {m["camera"] for m in frames}
    assert "desc-cam" in cams and "ring-cam" not in cams  # none for ring-cam: it has no descriptors


def test_a_camera_that_keeps_its_descriptors_is_analysed_once_per_frame(rt: Runtime) -> None:
    a = rt.agent()
    a.call("subscribe", id="det-2", topic="ggvision/v1/detections/desc-cam")
    got = _detections(a, "det-2", 10)
    seen = Counter(d["sequence"] for d in got)
    assert max(seen.values()) == 1, seen  # read from its ring; its descriptors (the same frames) are ignored


def test_a_malformed_announcement_is_refused_and_the_rings_followed_stay(rt: Runtime) -> None:
    a = rt.agent()
    bad = {"schema": "frame-rings/1.0", "component": "com.ggvision.Capture",
           "rings": {"ring-cam": {"ring": "../../etc/passwd", "created": 1.0, "fps": 5}}}
    a.call("publish_json", topic="ggvision/v1/frame-rings", message=bad)
    a.call("publish_json", topic="ggvision/v1/frame-rings", message={"schema": "frame-rings/9.0"})
    wait_until(lambda: "rings.ring-cam.ring" in rt.log(NAME), 10, what="the refusal in Inference's log")
    log = rt.log(NAME)
    assert "dropped a malformed frame-rings announcement (the rings followed so far stay)" in log
    assert "'../../etc/passwd' is not a frame ring name" in log
    a.call("subscribe", id="det-3", topic="ggvision/v1/detections/ring-cam")
    assert len(_detections(a, "det-3", 5, timeout=10)) >= 5  # still analysed from the ring it followed


def test_a_replaced_ring_is_followed(rt: Runtime) -> None:
    a = rt.agent()
    a.call("subscribe", id="rings-4", topic="ggvision/v1/frame-rings")
    old = parse_rings(_announced(a, "rings-4", "ring-cam"))[1]["ring-cam"]
    a.call("subscribe", id="det-4", topic="ggvision/v1/detections/ring-cam")
    bigger = {**SYNTH, "source": {**SYNTH["source"], "width": 480, "height": 360}}
    rt.deploy(component_to_configuration={CAPTURE: {"MERGE": {"cameras": {"ring-cam": bigger}}}})

    def new_frames() -> list[dict[str, Any]] | None:
        dets = [e["json"] for e in a.call("events", id="det-4", count=0, timeout=0)]
        new = [d for d in dets if d["frame"]["shape"] == [360, 480, 3]]
        return new if len(new) >= 5 else None

    new = wait_until(new_frames, 30, interval=0.3, what="detections of the camera's new, bigger frames")
    rings = parse_rings(_announced(a, "rings-4", "ring-cam"))[1]
    assert rings["ring-cam"].created > old.created  # the camera restarted: a new ring under the same name
    assert new[0]["frame"]["ring"] == rings["ring-cam"].ring
    seqs = [d["sequence"] for d in new]
    assert seqs == sorted(set(seqs))


def test_inference_restarted_learns_the_rings_from_the_periodic_announcement(rt: Runtime) -> None:
    a = rt.agent()
    rt.client.restart_component(component_name=NAME)
    time.sleep(0.5)
    rt.wait_state(NAME, "RUNNING", 60)
    a.call("subscribe", id="det-5", topic="ggvision/v1/detections/ring-cam")
    got = _detections(a, "det-5", 5, timeout=30)  # no ring is created meanwhile: only the periodic one tells
    assert len(got) >= 5 and all(d["frame"]["ring"].startswith("ggv-ring-cam-") for d in got)


def test_reading_only_motion_topics_follows_no_ring(rt: Runtime) -> None:
    """The Filter's motion gate decides which frames Inference sees: a configuration reading only motion topics
    leaves the rings alone (and follows them again when it reads frames topics)."""
    a = rt.agent()
    d = rt.deploy(component_to_configuration={NAME: {"MERGE": {"frameTopics": ["ggvision/v1/motion/+"]}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    time.sleep(1.0)  # a batch in flight may still answer
    a.call("subscribe", id="det-6", topic="ggvision/v1/detections/ring-cam")
    time.sleep(2.0)
    assert a.call("events", id="det-6", count=0, timeout=0) == []
    d = rt.deploy(component_to_configuration={NAME: {"MERGE": {"frameTopics": ["ggvision/v1/frames/+"]}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    assert len(_detections(a, "det-6", 3, timeout=20)) >= 3  # the next announcement brings the ring back


def test_descriptors_from_another_writer_are_still_served(rt: Runtime) -> None:
    a = rt.agent()
    a.call("feed_start", id="fed", cameras=["fed-cam"], answer_topic="ggvision/v1/detections/+", count=6, window=1,
           shape=[48, 64, 3])
    st = a.call("feed_status", id="fed", wait=True, timeout=60)
    assert st["done"], st
    st = a.call("feed_stop", id="fed", answers=True)
    seen = Counter((x["camera"], x["sequence"]) for x in st["answers"] if x["camera"] == "fed-cam")
    assert not st["lost"] and set(seen) == {("fed-cam", s) for s in st["sequences"]["fed-cam"]}
    assert max(seen.values()) == 1
