"""Capture follows its named shadow live (ggvision/component/shadow.py) under the local runtime, over the real
awsiot IPC client: the desired cameras start without a restart, a refused desired state keeps the last good
cameras and says why in `reported.error`, a removal stops the camera."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from capture_dev import NAME, capture_dev_recipe
from harness import AgentError, Runtime, wait_until

from ggvision.contract import shadows

THING = "test-thing"
SYNTH = {"source": {"type": "synthetic", "width": 160, "height": 120, "fps": 5, "seed": 1}, "detectFps": 5}
SYNTH2 = {"source": {"type": "synthetic", "width": 160, "height": 120, "fps": 5, "seed": 2}, "detectFps": 5,
          "frameDescriptors": True}


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Runtime]:
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"])
    capture_dev_recipe(rt.recipes, cameras={"synthetic-1": SYNTH}, sensors={}, metricsPeriodS=1)
    try:
        rt.start(wait_for={"com.ggvision.test.Agent": ("RUNNING",), NAME: ("RUNNING",)})
        yield rt
    finally:
        rt.cleanup()


def _shadow(rt: Runtime) -> dict[str, Any]:
    try:
        return rt.agent().call("get_shadow", thing=THING, name=shadows.CAPTURE)["state"]
    except AgentError:
        return {}


def _rings(camera: str) -> bool:
    return any(n.startswith(f"ggv-{camera}-") for n in os.listdir("/dev/shm"))


def test_capture_follows_its_shadow_without_a_restart(capture: Runtime) -> None:
    a = capture.agent()
    a.call("subscribe", id="cam2", topic="ggvision/v1/frames/synthetic-2")
    starts = capture.log(NAME).count("run: starting")
    desired = {"cameras": {"synthetic-1": SYNTH, "synthetic-2": SYNTH2}}
    a.call("update_shadow", thing=THING, name=shadows.CAPTURE, doc={"state": {"desired": desired}})
    assert a.call("events", id="cam2", count=1, timeout=30), "no frames from the camera the shadow added"
    wait_until(lambda: _shadow(capture).get("reported") == desired, 30, what="reported = desired")
    assert "delta" not in _shadow(capture)

    # a refused desired state: the cameras in force stay, reported says why
    bad = {"cameras": {"cam-x": {"source": {"type": "rtsp"}}}}
    a.call("update_shadow", thing=THING, name=shadows.CAPTURE, doc={"state": {"desired": bad}})
    error = wait_until(lambda: (_shadow(capture).get("reported") or {}).get("error"), 30, what="reported.error")
    assert "cam-x" in error["message"] and "url" in error["message"], error
    assert _shadow(capture)["reported"]["cameras"] == desired["cameras"]
    before = len(a.call("events", id="cam2"))
    assert len(a.call("events", id="cam2", count=before + 2, timeout=30)) >= before + 2  # still running

    # a removal (null): synthetic-2 and the refused camera go; the error is cleared
    a.call("update_shadow", thing=THING, name=shadows.CAPTURE,
           doc={"state": {"desired": {"cameras": {"synthetic-2": None, "cam-x": None}}}})
    wait_until(lambda: _shadow(capture).get("reported") == {"cameras": {"synthetic-1": SYNTH}}, 30,
               what="reported after the removal")
    wait_until(lambda: not _rings("synthetic-2"), 20, what="synthetic-2's ring removed")
    assert _rings("synthetic-1")
    assert capture.state(NAME) == "RUNNING"
    assert capture.log(NAME).count("run: starting") == starts  # never restarted
    assert f"following shadow {shadows.CAPTURE} of {THING}" in capture.log(NAME)
