"""`ggvision site validate|plan` on a real site file and the repository's stage deployment documents."""

from __future__ import annotations

from pathlib import Path

from harness import REPO
from typer.testing import CliRunner

from ggvision_cli import app

SITE = """\
stages:
  dev: {thingGroup: ggvision-dev, configuration: {com.ggvision.Uplink: {bandwidthKbps: 4000}}}
  staging: {thingGroup: ggvision-staging}
  production: {thingGroup: ggvision-production}
sites:
  site-7:
    stage: production
    devices:
      site-7-box:
        cameras:
          door:
            capture:
              source: {type: rtsp, url: "rtsp://10.0.0.5/s1", credentialsSecret: ggvision/site-7-box/cameras/door}
            filter: {policy: events}
"""


def _run(tmp_path: Path, text: str, *args: str) -> tuple[int, str]:
    f = tmp_path / "site.yaml"
    f.write_text(text)
    r = CliRunner().invoke(app, ["site", args[0], str(f), *args[1:]])
    return r.exit_code, r.output


def test_validate_lists_sites_devices_and_cameras(tmp_path: Path) -> None:
    code, out = _run(tmp_path, SITE, "validate")
    assert code == 0 and "site-7-box" in out and "door" in out and "production" in out


def test_validate_names_the_line_and_key_of_a_mistake(tmp_path: Path) -> None:
    code, out = _run(tmp_path, SITE.replace("policy: events", "policy: always"), "validate")
    assert code == 2 and "site.yaml:14: sites.site-7.devices.site-7-box.cameras.door.filter.policy" in out


def test_plan_shows_the_stage_merge_against_the_deployment_documents(tmp_path: Path) -> None:
    code, out = _run(tmp_path, SITE, "plan", "--deployments", str(REPO / "deploy" / "deployments"))
    assert code == 0, out
    assert "stage dev" in out and "com.ggvision.Uplink.bandwidthKbps" in out and "4000" in out
    assert "site-7-box" in out


def test_plan_refuses_a_stage_whose_deployment_targets_another_group(tmp_path: Path) -> None:
    code, out = _run(tmp_path, SITE.replace("thingGroup: ggvision-staging", "thingGroup: staging-new"), "plan",
                     "--deployments", str(REPO / "deploy" / "deployments"))
    assert code == 2 and "targets thing group 'ggvision-staging', the site file says 'staging-new'" in out
