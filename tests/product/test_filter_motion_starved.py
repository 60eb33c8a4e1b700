"""The Filter's motion gate against the real Capture: since Inference reads the rings, Capture publishes a frame/1.0
descriptor per frame only for cameras with `frameDescriptors` on. A camera whose Filter configuration has
`motion.publish` on but whose Capture configuration does not publish descriptors is said once in the log and
listed in filter-metrics `motion_starved` (MOTION_STARVED_S); turning frameDescriptors on live feeds the gate."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from capture_dev import NAME as CAPTURE
from capture_dev import capture_dev_recipe
from filter_dev import NAME as FILTER
from filter_dev import filter_dev_recipe
from harness import Runtime, wait_until

from ggvision.filter.component import MOTION_STARVED_S

AGENT = "com.ggvision.test.Agent"
CAM = "gate-cam"
SYNTH = {"source": {"type": "synthetic", "width": 320, "height": 240, "fps": 10, "seed": 3}, "detectFps": 5}


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    tmp = tmp_path_factory.mktemp("starved")
    rt = Runtime(tmp, [AGENT])
    capture_dev_recipe(rt.recipes, metricsPeriodS=1, cameras={CAM: SYNTH})  # frameDescriptors: the default (off)
    filter_dev_recipe(rt.recipes, cameras={CAM: {"policy": "metadata", "motion": {"publish": True, "keepaliveS": 1}}},
                      workDir=str(tmp / "filter"), metricsPeriodS=1)
    try:
        rt.start(wait_for={AGENT: ("RUNNING",), CAPTURE: ("RUNNING",), FILTER: ("RUNNING",)})
        yield rt
    finally:
        rt.cleanup()


def test_a_gated_camera_without_descriptors_is_said_then_fed_once_capture_publishes_them(rt: Runtime) -> None:
    a = rt.agent()
    a.call("subscribe", id="fm", topic="ggvision/v1/metrics/filter")
    a.call("subscribe", id="motion", topic=f"ggvision/v1/motion/{CAM}")

    def starved() -> list[str] | None:
        got = [e["json"] for e in a.call("events", id="fm", count=0, timeout=0)]
        return got[-1]["motion_starved"] if got and got[-1]["motion_starved"] else None

    assert wait_until(starved, MOTION_STARVED_S + 15, interval=0.5, what="the camera listed as starved") == [CAM]
    assert f"camera {CAM}: motion.publish is on but no frame descriptor came" in rt.log(FILTER)
    assert f"cameras.{CAM}.frameDescriptors" in rt.log(FILTER)
    assert a.call("events", id="motion", count=0, timeout=0) == []  # the gate saw nothing

    d = rt.deploy(component_to_configuration={CAPTURE: {"MERGE": {"cameras": {CAM: {"frameDescriptors": True}}}}})
    assert d.status == "SUCCEEDED", d.deployment_status_details
    motion = a.call("events", id="motion", count=1, timeout=20)[0]["json"]
    assert motion["camera"] == CAM and 0 <= motion["motion"]["ratio"] <= 1
    a.call("events", id="fm", timeout=0.01)  # drain: the next metrics come after the descriptors

    def fed() -> bool:
        got = [e["json"] for e in a.call("events", id="fm", count=0, timeout=0)]
        return bool(got) and got[-1]["motion_starved"] == []

    wait_until(fed, 15, interval=0.5, what="the camera no longer starved")
    assert rt.log(FILTER).count(f"camera {CAM}: motion.publish is on but") == 1  # said once
