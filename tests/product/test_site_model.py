"""The site model (ggvision/config/site.py) built from the components' own models: a valid two-site file,
errors that name the file, the line and the key path, and the cross-checks a fleet needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from ggvision.config.base import ConfigError
from ggvision.config.site import load_site

GOOD = """\
stages:
  dev:
    thingGroup: ggvision-dev
    configuration:
      com.ggvision.Uplink: {bandwidthKbps: 4000}
  production:
    thingGroup: ggvision-production
sites:
  site-7:
    stage: production
    devices:
      site-7-box:
        cameras:
          door:
            capture:
              source: {type: rtsp, url: "rtsp://10.0.0.5/stream1", credentialsSecret: ggvision/site-7-box/cameras/door}
              detectFps: 5
            filter:
              zones: {road: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
              policy: events
  lab:
    stage: dev
    devices:
      lab-box:
        cameras:
          demo:
            capture: {source: {type: synthetic}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(text)
    return p


def test_a_two_site_file_is_valid_and_uses_the_components_models(tmp_path: Path) -> None:
    site = load_site(_write(tmp_path, GOOD))
    devices = site.devices()
    assert set(devices) == {"site-7-box", "lab-box"} and devices["site-7-box"][0] == "site-7"
    door = devices["site-7-box"][1].cameras["door"]
    assert door.capture.source.kind == "rtsp" and door.capture.detect_fps == 5
    assert "road" in door.filter.zones and door.filter.policy == "events"
    assert site.stages["dev"].thing_group == "ggvision-dev"


@pytest.mark.parametrize(("edit", "line", "message"), [
    (("detectFps: 5", "detectFps: 0"), 17, "sites.site-7.devices.site-7-box.cameras.door.capture.detectFps"),
    (("policy: events", "policy: sometimes"), 20, "cameras.door.filter.policy"),
    (("stage: production", "stage: prod"), 10, "sites.site-7.stage: 'prod' is not one of the stages"),
    (("{bandwidthKbps: 4000}", "{bandwidthKbps: -1}"), 5, "configuration.com.ggvision.Uplink: bandwidthKbps"),
    (("credentialsSecret: ggvision/site-7-box/cameras/door", "credentialsSecret: ggvision/lab-box/cameras/door"),
     16, "a device may read only secrets under ggvision/site-7-box/"),
    (("          door:\n", "          door:\n            colour: red\n"), 15, "cameras.door: unknown keys colour"),
])
def test_errors_name_the_line_and_the_key(tmp_path: Path, edit: tuple[str, str], line: int, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_site(_write(tmp_path, GOOD.replace(*edit, 1)))
    assert f"site.yaml:{line}: " in str(e.value) and message in str(e.value), str(e.value)


def test_inference_reading_motion_topics_needs_the_filter_to_publish_them(tmp_path: Path) -> None:
    """frameTopics on ggvision/v1/motion/+ without the Filter's motion.publish (default off) would leave cameras
    unanalysed: refused at the camera, accepted once the camera or the stage's Filter defaults turn it on."""
    reads = GOOD.replace("      com.ggvision.Uplink: {bandwidthKbps: 4000}\n",
                         "      com.ggvision.Uplink: {bandwidthKbps: 4000}\n"
                         "      com.ggvision.Inference: {frameTopics: [ggvision/v1/motion/+]}\n")
    with pytest.raises(ConfigError) as e:
        load_site(_write(tmp_path, reads))
    assert "sites.lab.devices.lab-box.cameras.demo.filter.motion.publish: the stage's com.ggvision.Inference " \
           "frameTopics read ggvision/v1/motion/+" in str(e.value) and "site.yaml:27: " in str(e.value), str(e.value)
    gated = reads.replace("capture: {source: {type: synthetic}}",
                          "capture: {source: {type: synthetic}, frameDescriptors: true}")
    ok = gated.replace("frameDescriptors: true}",
                       "frameDescriptors: true}\n            filter: {motion: {publish: true}}")
    assert load_site(_write(tmp_path, ok)).devices()["lab-box"][1].cameras["demo"].filter.motion.publish
    stage = gated.replace("com.ggvision.Inference: {frameTopics: [ggvision/v1/motion/+]}",
                          "com.ggvision.Inference: {frameTopics: [ggvision/v1/motion/+]}\n"
                          "      com.ggvision.Filter: {defaults: {motion: {publish: true}}}")
    load_site(_write(tmp_path, stage))
    off = ok.replace("filter: {motion: {publish: true}}", "filter: {motion: {publish: false}}")
    with pytest.raises(ConfigError, match="demo.filter.motion.publish"):
        load_site(_write(tmp_path, off.replace("com.ggvision.Inference: {frameTopics: [ggvision/v1/motion/+]}",
                                               "com.ggvision.Inference: {frameTopics: [ggvision/v1/motion/+]}\n"
                                               "      com.ggvision.Filter: {defaults: {motion: {publish: true}}}")))


def test_the_motion_gate_needs_the_cameras_frame_descriptors(tmp_path: Path) -> None:
    """Capture publishes a camera's frame descriptors only with frameDescriptors on (Inference reads the rings);
    the Filter's motion gate needs them: motion.publish on without them is refused at the camera."""
    gate = GOOD.replace("capture: {source: {type: synthetic}}",
                        "capture: {source: {type: synthetic}}\n            filter: {motion: {publish: true}}")
    with pytest.raises(ConfigError) as e:
        load_site(_write(tmp_path, gate))
    assert "sites.lab.devices.lab-box.cameras.demo.capture.frameDescriptors: the Filter's motion gate (motion.publish" \
           " on for this camera) reads the camera's frame descriptors" in str(e.value), str(e.value)
    load_site(_write(tmp_path, gate.replace("{type: synthetic}}", "{type: synthetic}, frameDescriptors: true}")))
    stage = GOOD.replace("      com.ggvision.Uplink: {bandwidthKbps: 4000}\n",
                         "      com.ggvision.Uplink: {bandwidthKbps: 4000}\n"
                         "      com.ggvision.Filter: {defaults: {motion: {publish: true}}}\n")
    with pytest.raises(ConfigError, match="demo.capture.frameDescriptors"):
        load_site(_write(tmp_path, stage))


def test_a_thing_belongs_to_one_site_and_bad_yaml_is_refused_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="already a device of site site-7"):
        load_site(_write(tmp_path, GOOD.replace("lab-box:", "site-7-box:")))
    with pytest.raises(ConfigError, match=r"site.yaml:3: not valid YAML"):
        load_site(_write(tmp_path, "stages:\n  dev: {thingGroup: x\n  oops: ]\n"))


def test_credentials_never_appear_in_the_model_text(tmp_path: Path) -> None:
    text = GOOD.replace('"rtsp://10.0.0.5/stream1", credentialsSecret: ggvision/site-7-box/cameras/door',
                        '"rtsp://admin:hunter2@10.0.0.5/stream1"')  # discouraged, but if a URL carries one
    site = load_site(_write(tmp_path, text))
    assert "hunter2" not in repr(site) and "hunter2" not in str(site)


def test_committed_site_schema_is_the_models() -> None:
    import json

    from harness import REPO

    from ggvision.config.site import site_schema

    path = REPO / "docs" / "config" / "site.schema.json"
    assert json.loads(path.read_text()) == site_schema(), f"{path} is stale: run `python -m ggvision.config`"
