"""com.ggvision.Filter under the local runtime with the real IPC client: frames from a shared-memory ring and
detections/1.0 + segment/1.0 in (published by the test agent), motion descriptors, events, uplink-put items
(snapshot files, clips, results), acks, metrics out; malformed input counted; refused snapshots deleted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from filter_dev import NAME, filter_dev_recipe
from harness import Runtime, wait_until

from ggvision.framebus import FrameRing
from ggvision.sim.scenes import SyntheticScene

AGENT = "com.ggvision.test.Agent"
CAM = "filt-e2e"
QUIET = "filt-quiet"  # a camera with the default motion.publish (off)
PUB, SUB = "aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"
# The agent's own grants plus publishing what Capture, Inference and the Uplink would publish.
AGENT_ACL = {"aws.greengrass.ipc.pubsub": {
    f"{AGENT}:pubsub:1": {"operations": [SUB], "resources": ["ggvision/v1/*"]},  # `#` would be literal
    f"{AGENT}:pubsub:2": {"operations": [PUB], "resources": [
        f"ggvision/v1/frames/{CAM}", f"ggvision/v1/detections/{CAM}", f"ggvision/v1/segments/{CAM}",
        f"ggvision/v1/frames/{QUIET}", "ggvision/v1/uplink/acks"]}}}


@pytest.fixture(scope="module")
def filt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, Path]]:
    tmp = tmp_path_factory.mktemp("filter")
    work = tmp / "work"
    rt = Runtime(tmp, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    cams = {CAM: {"policy": "events", "clipsFor": "all", "classes": ["person", "car", "bicycle"],
                  "zones": {"left": [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]},
                  "tracker": {"maxAgeS": 1.0}, "motion": {"keepaliveS": 1, "publish": True},
                  "snapshot": {"format": "jpeg", "crop": False}},
            QUIET: {"policy": "metadata"}}
    filter_dev_recipe(rt.recipes, cameras=cams, workDir=str(work), metricsPeriodS=1)
    try:
        rt.start(wait_for={AGENT: ("RUNNING",), NAME: ("RUNNING",)})
        yield rt, work
    finally:
        rt.cleanup()


def test_detections_become_events_snapshots_clips_and_metrics(filt: tuple[Runtime, Path], tmp_path: Path) -> None:
    rt, work = filt
    a = rt.agent()
    for sub, topic in (("events", f"ggvision/v1/events/{CAM}"), ("puts", "ggvision/v1/uplink/put"),
                       ("motion", f"ggvision/v1/motion/{CAM}"), ("metrics", "ggvision/v1/metrics/filter")):
        a.call("subscribe", id=sub, topic=topic)
    # RUNNING comes when the process starts; its first metrics message says its subscriptions are in place
    a.call("events", id="metrics", count=1, timeout=30)
    scene = SyntheticScene(320, 240, 5, seed=4, objects=1)
    ring = FrameRing.create(CAM, slots=4, max_frame_bytes=320 * 240 * 3)
    t0 = time.time()
    try:
        a.call("publish_json", topic=f"ggvision/v1/detections/{CAM}", message={"schema": "detections/1.0"})  # bad
        for i in range(15):
            img, boxes = scene.render(i)
            desc = ring.write(img, t0 + i / 5)
            a.call("publish_json", topic=f"ggvision/v1/frames/{CAM}", message=desc.to_message())
            a.call("publish_json", topic=f"ggvision/v1/detections/{CAM}", message={
                "schema": "detections/1.0", "camera": CAM, "sequence": desc.sequence, "timestamp": desc.timestamp,
                "frame": {"ring": desc.ring, "slot": desc.slot, "generation": desc.generation, "shape": [240, 320, 3]},
                "model": {"name": "truth", "version": "1"},
                "detections": [{"label": b.label, "class_id": b.class_id, "score": 0.9, "box": list(b.box)}
                               for b in boxes]})
        seg = tmp_path / "seg-0001.ts"
        seg.write_bytes(b"\x47" * 188 * 10)
        a.call("publish_json", topic=f"ggvision/v1/segments/{CAM}", message={
            "schema": "segment/1.0", "camera": CAM, "path": str(seg), "start": t0 - 1, "end": t0 + 2,
            "size": seg.stat().st_size})
        # the object stops being detected: its event ends once the tracker's max age has passed
        evs = wait_until(lambda: [e["json"] for e in a.call("events", id="events", timeout=0.1)
                                  if e["json"]["kind"] == "end"], 20, what="end event")
        end = evs[0]
        assert end["label"] == scene.classes[scene.tracks[0].class_id]
        assert end["start"] == pytest.approx(t0, abs=1e-3) and end["end"] == pytest.approx(t0 + 14 / 5, abs=1e-3)
        assert end["best"]["snapshot"] and end["model"] == {"name": "truth", "version": "1"}
        def puts_once_the_end_is_put() -> list[dict] | None:  # its cloud copy follows the local event
            ps = [e["json"] for e in a.call("events", id="puts", timeout=0.1)]
            return ps if any(p["priority"] == "results" and p.get("payload", {}).get("kind") == "end" for p in ps) \
                else None

        puts = wait_until(puts_once_the_end_is_put, 10, what="the end event's results put")
        snap = next(p for p in puts if p["id"] == end["best"]["snapshot"])
        assert snap["schema"] == "uplink-put/1.0" and snap["destination"] == "s3" and snap["move"]
        img = cv2.imdecode(np.frombuffer(Path(snap["file"]).read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (240, 320, 3) and img.std() > 5  # the frame read from the ring, encoded
        clip = next(p for p in puts if p.get("content_type") == "video/mp2t")
        assert clip["file"] == str(seg) and clip["priority"] == "clips" and end["event_id"] in clip["metadata"][
            "event_ids"]
        assert any(p["priority"] == "results" and p["topic"] == "ggvision/{thing}/results" for p in puts)
        motion = a.call("events", id="motion", count=1, timeout=10)[0]["json"]
        assert motion["camera"] == CAM and 0 <= motion["motion"]["ratio"] <= 1
        # the Uplink refuses the snapshot: the Filter deletes its file; persisted items are counted
        a.call("publish_json", topic="ggvision/v1/uplink/acks", message={
            "schema": "uplink-ack/1.0", "id": snap["id"], "status": "refused", "reason": "over quota"})
        a.call("publish_json", topic="ggvision/v1/uplink/acks", message={
            "schema": "uplink-ack/1.0", "id": clip["id"], "status": "persisted"})
        wait_until(lambda: not Path(snap["file"]).exists(), 10, what="refused snapshot deleted")

        def metrics() -> dict | None:
            for e in reversed(a.call("events", id="metrics", timeout=0.1)):
                m = e["json"]["cameras"][CAM]
                if m["persisted_items"] >= 1 and m["refused_items"] >= 1:
                    return e["json"]
            return None

        m = wait_until(metrics, 10, interval=0.3, what="metrics with acks")
        cam = m["schema"] == "filter-metrics/1.0" and m["cameras"][CAM]
        assert m["malformed"].get("detections", 0) >= 1
        assert cam["frames_in"] >= 1 and cam["detection_msgs"] == 15 and cam["events"]["end"] == 1
        assert cam["bytes_selected"]["clip"] == seg.stat().st_size and cam["bytes_in"] == seg.stat().st_size
        assert work.is_dir() and rt.state(NAME) == "RUNNING"
    finally:
        ring.close()


def test_invalid_configuration_is_refused_with_the_reason(filt: tuple[Runtime, Path]) -> None:
    rt, _ = filt
    bad = {"cameras": {CAM: {"policy": "everything"}}}
    d = rt.deploy(component_to_configuration={NAME: {"MERGE": bad}})
    assert d.status == "FAILED"
    assert f"cameras.{CAM}.policy" in d.deployment_status_details.deployment_failure_cause
    assert rt.state(NAME) == "RUNNING"


def _metrics_after(a: Any, sub: str, n: int = 2) -> dict[str, Any]:
    """The n-th filter-metrics message from now (made after everything the Filter received before this call)."""
    seen = len(a.call("events", id=sub, timeout=0))  # the agent keeps every event of a subscription
    return a.call("events", id=sub, count=seen + n, timeout=10)[-1]["json"]


def test_the_motion_gate_runs_only_for_cameras_that_publish_it(filt: tuple[Runtime, Path]) -> None:
    """motion.publish off (the default): the camera's descriptors are not gated, and with no camera publishing the
    Filter does not subscribe to frame descriptors at all; turned on live, the gate publishes again."""
    rt, _ = filt
    a = rt.agent()
    for sub, topic in (("m-metrics", "ggvision/v1/metrics/filter"), ("m-motion", "ggvision/v1/motion/+")):
        a.call("subscribe", id=sub, topic=topic)
    a.call("events", id="m-metrics", count=1, timeout=30)  # the Filter has subscribed (see the test above)
    rings = {cam: FrameRing.create(cam, slots=4, max_frame_bytes=320 * 240 * 3) for cam in (CAM, QUIET)}
    scene = SyntheticScene(320, 240, 5, seed=5, objects=1)

    t0 = time.time()

    def frames(cam: str, n: int) -> None:
        for i in range(n):  # 2 s apart in frame time: each passes the gate (keepaliveS 1) whatever it shows
            desc = rings[cam].write(scene.render(i)[0], t0 + 2 * rings[cam].next_sequence)
            a.call("publish_json", topic=f"ggvision/v1/frames/{cam}", message=desc.to_message())

    try:
        # CAM publishes motion, so the Filter reads frames/+; QUIET's descriptors arrive and are ignored. CAM's
        # last frame comes after QUIET's on the same subscription: its motion descriptor says QUIET's were seen.
        frames(QUIET, 5)
        frames(CAM, 3)
        wait_until(lambda: [e for e in a.call("events", id="m-motion", timeout=0)
                            if e["json"]["camera"] == CAM and e["json"]["sequence"] == rings[CAM].next_sequence - 1],
                   10, what="the motion descriptor of CAM's last frame")
        assert {e["json"]["camera"] for e in a.call("events", id="m-motion", timeout=0)} == {CAM}
        quiet = _metrics_after(a, "m-metrics")["cameras"][QUIET]
        assert quiet["frames_in"] == 0 and quiet["motion_out"] == 0 and quiet["motion_ratio"] is None
        # no camera publishes: the subscription ends (logged once it has), nothing is gated
        d = rt.deploy(component_to_configuration={NAME: {"MERGE": {"cameras": {CAM: {"motion": {"publish": False}}}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: "frame descriptors no longer read" in rt.log(NAME), 10, what="the subscription ended")
        motion_seen = len(a.call("events", id="m-motion", timeout=0))
        frames(CAM, 3)
        cams = _metrics_after(a, "m-metrics")["cameras"]
        assert cams[CAM]["frames_in"] == 0 and cams[QUIET]["frames_in"] == 0  # CAM's pipeline restarted at 0
        assert len(a.call("events", id="m-motion", timeout=0)) == motion_seen
        # turned on live for QUIET: its frames are gated and published on its motion topic
        d = rt.deploy(component_to_configuration={NAME: {"MERGE": {"cameras": {QUIET: {"motion": {
            "publish": True}}}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: f"motion gate on for {QUIET}" in rt.log(NAME), 10, what="subscribed again")
        frames(QUIET, 2)
        motion = a.call("events", id="m-motion", count=motion_seen + 1, timeout=10)[motion_seen]["json"]
        assert motion["camera"] == QUIET and motion["schema"] == "frame/1.0" and 0 <= motion["motion"]["ratio"] <= 1
        assert _metrics_after(a, "m-metrics")["cameras"][QUIET]["frames_in"] == 2
    finally:
        for ring in rings.values():
            ring.close()
        rt.deploy(component_to_configuration={NAME: {"MERGE": {"cameras": {CAM: {"motion": {"publish": True}},
                                                                          QUIET: {"motion": {"publish": False}}}}}})
