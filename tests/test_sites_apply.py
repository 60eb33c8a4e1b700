"""`ggvision site apply|status`: the stage's deployment document rendered from the site file, each device's
per-site part written as the desired state of its components' shadows — through the IoT data plane (boto3
`iot-data` against moto's server) and, against a local runtime, over its IoT Core stand-in's MQTT shadow topics —
and a camera added to the site file reaching a running Capture without a restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from capture_dev import NAME, capture_dev_recipe
from harness import REPO, Runtime, wait_until
from typer.testing import CliRunner
from uplink_dev import MotoProcess

from gglocal.iotcore.broker import BrokerError, find_mosquitto
from gglocal.nucleus.shadowcloud import ShadowTopicsClient
from ggvision.config.site import load_site
from ggvision.contract import shadows
from sites.apply import IotDataPlane, applied_path, applied_record, pointer, render_stage, shadow_status
from sites.cli import app


def _have_mosquitto() -> bool:
    try:
        return bool(find_mosquitto())
    except BrokerError:
        return False


SYNTH = "{type: synthetic, width: 160, height: 120, fps: 5, seed: %d}"


def _site(tmp_path: Path, thing: str, cameras: list[str], extra: str = "") -> Path:
    cams = "".join(f"          {c}:\n            capture: {{source: {SYNTH % i}, detectFps: 5}}\n"
                   f"            filter: {{zones: {{road: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}}}}\n"
                   for i, c in enumerate(cameras, 1))
    text = (f"stages:\n  dev:\n    thingGroup: ggvision-dev\n    configuration:\n"
            f"      com.ggvision.Uplink: {{bandwidthKbps: 4000}}\n{extra}"
            f"sites:\n  lab:\n    stage: dev\n    devices:\n      {thing}:\n        cameras:\n{cams}")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def _deployments(tmp_path: Path) -> Path:
    out = tmp_path / "deployments"
    shutil.copytree(REPO / "deploy" / "deployments", out)
    return out


def test_render_merges_the_stage_configuration_and_syncs_the_components_shadows(tmp_path: Path) -> None:
    deployments = _deployments(tmp_path)
    before = json.loads((deployments / "dev.json").read_text())
    path, doc = render_stage(load_site(_site(tmp_path, "lab-box", ["door"])), "dev", deployments)
    uplink = json.loads(doc["components"]["com.ggvision.Uplink"]["configurationUpdate"]["merge"])
    old = json.loads(before["components"]["com.ggvision.Uplink"]["configurationUpdate"]["merge"])
    assert uplink["bandwidthKbps"] == 4000 and uplink["sink"] == old["sink"]  # the document's own keys stay
    manager = doc["components"][shadows.SHADOW_MANAGER]
    sync = json.loads(manager["configurationUpdate"]["merge"])["synchronize"]
    assert sync["coreThing"]["namedShadows"] == [shadows.CAPTURE, shadows.FILTER]
    assert manager["componentVersion"] == shadows.SHADOW_MANAGER_VERSION and path == deployments / "dev.json"


def test_a_key_gone_from_the_site_file_is_reset_and_leaves_the_merge(tmp_path: Path) -> None:
    deployments = _deployments(tmp_path)
    doc = json.loads((deployments / "dev.json").read_text())
    own = doc["components"]["com.ggvision.Uplink"]["configurationUpdate"]
    own["merge"] = json.dumps({**json.loads(own["merge"]), "iot": {"enabled": True}})  # the document's own key
    (deployments / "dev.json").write_text(json.dumps(doc))
    runner = CliRunner()

    def apply(uplink: str) -> tuple[dict[str, Any], str]:
        site = tmp_path / "site.yaml"
        site.write_text("stages:\n  dev:\n    thingGroup: ggvision-dev\n    configuration:\n"
                        f"      com.ggvision.Uplink: {uplink}\nsites: {{}}\n")
        out = runner.invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(deployments),
                                  "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"])
        assert out.exit_code == 0, out.output
        spec = json.loads((deployments / "dev.json").read_text())["components"]["com.ggvision.Uplink"]
        return spec["configurationUpdate"], out.output

    first, _ = apply("{bandwidthKbps: 4000, iot: {maxBatchBytes: 65536}, cameraBandwidthKbps: {door: 500, yard: 300}}")
    merge = json.loads(first["merge"])
    assert merge["iot"] == {"enabled": True, "maxBatchBytes": 65536}  # beside the document's own keys
    assert "reset" not in first
    assert json.loads(applied_path(deployments / "dev.json").read_text())["configuration"] == {
        "com.ggvision.Uplink": {"bandwidthKbps": 4000, "iot": {"maxBatchBytes": 65536},
                                "cameraBandwidthKbps": {"door": 500, "yard": 300}}}
    # The site file drops iot.maxBatchBytes (the document's iot.enabled stays) and one camera's cap.
    second, output = apply("{bandwidthKbps: 4000, cameraBandwidthKbps: {yard: 300}}")
    merge = json.loads(second["merge"])
    assert merge["iot"] == {"enabled": True}, merge
    assert merge["cameraBandwidthKbps"] == {"yard": 300} and merge["bandwidthKbps"] == 4000
    assert set(second["reset"]) == {"/iot/maxBatchBytes", "/cameraBandwidthKbps/door"}, second
    assert "reset /iot/maxBatchBytes" in output and "reset /cameraBandwidthKbps/door" in output
    # All caps gone: the whole object is reset (the merge held only the site file's keys there).
    third, _ = apply("{bandwidthKbps: 4000}")
    assert set(third["reset"]) == {"/iot/maxBatchBytes", "/cameraBandwidthKbps/door", "/cameraBandwidthKbps"}, third
    assert "cameraBandwidthKbps" not in json.loads(third["merge"])
    # The pointers stay while the keys are unset (a device that missed a revision still loses them), and go
    # when the site file sets the key again.
    fourth, _ = apply("{bandwidthKbps: 4000, iot: {maxBatchBytes: 32768}}")
    assert set(fourth["reset"]) == {"/cameraBandwidthKbps/door", "/cameraBandwidthKbps"}, fourth
    assert json.loads(fourth["merge"])["iot"]["maxBatchBytes"] == 32768
    assert pointer(("a/b", "c~d")) == "/a~1b/c~0d"  # RFC 6901
    site = load_site(_site(tmp_path, "lab-box", ["door"]))
    assert applied_record(site, "dev")["configuration"] == {"com.ggvision.Uplink": {"bandwidthKbps": 4000}}


def test_apply_and_status_through_the_iot_data_plane(tmp_path: Path) -> None:
    moto = MotoProcess(tmp_path / "moto.log")
    try:
        moto.client("iot").create_thing(thingName="lab-box")  # the data plane serves shadows of existing things
        site = _site(tmp_path, "lab-box", ["door", "yard"])
        deployments = _deployments(tmp_path)
        args = ["--endpoint-url", moto.url, "--region", "us-east-1"]
        runner = CliRunner(env={"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
        dry = runner.invoke(app, ["apply", str(site), "--stage", "dev", "--dry-run",
                                  "--deployments", str(deployments), *args])
        assert dry.exit_code == 0, dry.output
        assert "desired.cameras" in dry.output and "dry run" in dry.output
        plane = IotDataPlane(moto.client("iot-data"))
        assert plane.get("lab-box", shadows.CAPTURE) is None  # a dry run changes nothing
        done = runner.invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(deployments), *args])
        assert done.exit_code == 0, done.output
        desired = plane.get("lab-box", shadows.CAPTURE)["state"]["desired"]
        assert set(desired["cameras"]) == {"door", "yard"} and desired["sensors"] == {}
        assert set(plane.get("lab-box", shadows.FILTER)["state"]["desired"]["cameras"]) == {"door", "yard"}
        assert "bandwidthKbps" in (deployments / "dev.json").read_text()
        status = {r.shadow: r for r in shadow_status(load_site(site), plane)}
        assert status[shadows.CAPTURE].state == "device pending"
        # the device reports what it runs, then refuses a later change
        plane.update("lab-box", shadows.CAPTURE, {"reported": desired})
        assert {r.shadow: r.state for r in shadow_status(load_site(site), plane)}[shadows.CAPTURE] == "in sync"
        plane.update("lab-box", shadows.CAPTURE, {"reported": {"error": {"message": "cameras.x: bad", "version": 3}}})
        out = runner.invoke(app, ["status", str(site), *args])
        assert out.exit_code == 1, out.output
        assert f"lab-box {shadows.CAPTURE}: refused: cameras.x: bad" in out.output
        # a camera gone from the site file is removed from desired (null in the update)
        apply2 = runner.invoke(app, ["apply", str(_site(tmp_path, "lab-box", ["door"])), "--stage", "dev",
                                     "--deployments", str(deployments), *args])
        assert apply2.exit_code == 0, apply2.output
        assert set(plane.get("lab-box", shadows.CAPTURE)["state"]["desired"]["cameras"]) == {"door"}
    finally:
        moto.stop()


def _reported(rt: Runtime, thing: str) -> dict[str, Any]:
    try:
        return rt.agent().call("get_shadow", thing=thing, name=shadows.CAPTURE)["state"].get("reported") or {}
    except Exception:
        return {}


@pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto is not installed (make test installs it)")
def test_a_camera_added_to_the_site_file_reaches_a_running_capture(tmp_path: Path) -> None:
    thing = "test-thing"
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], iot=True)
    capture_dev_recipe(rt.recipes, cameras={}, sensors={}, metricsPeriodS=1)
    deployments = _deployments(tmp_path)
    site = _site(tmp_path, thing, ["cam-a"])
    _, doc = render_stage(load_site(site), "dev", deployments)
    sync = json.loads(doc["components"][shadows.SHADOW_MANAGER]["configurationUpdate"]["merge"])
    runner = CliRunner()
    try:
        rt.start(wait_for={"com.ggvision.test.Agent": ("RUNNING",), NAME: ("RUNNING",)})
        d = rt.deploy(root_component_versions_to_add={shadows.SHADOW_MANAGER: shadows.SHADOW_MANAGER_VERSION},
                      component_to_configuration={shadows.SHADOW_MANAGER: {"MERGE": sync}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        a = rt.agent()
        a.call("subscribe", id="b", topic="ggvision/v1/frame-rings")
        first = runner.invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(deployments),
                                    "--runtime", str(rt.root)])
        assert first.exit_code == 0, first.output
        # --deploy to a runtime that does not run a component the stage configures: refused, the cause printed
        refused = runner.invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(deployments),
                                      "--runtime", str(rt.root), "--deploy"])
        assert refused.exit_code == 1, refused.output
        assert "FAILED" in refused.output and "com.ggvision.Uplink" in refused.output, refused.output
        wait_until(lambda: set(_reported(rt, thing).get("cameras", {})) == {"cam-a"}, 60, what="cam-a running")
        starts = rt.log(NAME).count("run: starting")
        # the new user's two steps: add the camera to the site file, apply
        site = _site(tmp_path, thing, ["cam-a", "cam-b"])
        second = runner.invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(deployments),
                                     "--runtime", str(rt.root)])
        assert second.exit_code == 0, second.output
        wait_until(lambda: any("cam-b" in e["json"]["rings"] for e in a.call("events", id="b", count=0, timeout=0)),
                   60, interval=0.5, what="frames (its ring announced) from the camera the site file added")
        wait_until(lambda: set(_reported(rt, thing).get("cameras", {})) == {"cam-a", "cam-b"}, 60,
                   what="cam-b reported")
        wait_until(lambda: "device pending" not in (status := runner.invoke(
            app, ["status", str(site), "--runtime", str(rt.root)])).output and status.exit_code == 0, 60,
            what="status in sync")
        assert rt.log(NAME).count("run: starting") == starts  # no restart
        # a desired state the device refuses (written past the site file's checks): the cameras stay, status says why
        client = ShadowTopicsClient.for_runtime(rt.root, tmp_path)
        try:
            client.update(thing, shadows.CAPTURE, json.dumps(
                {"state": {"desired": {"cameras": {"cam-x": {"source": {"type": "rtsp"}}}}}}).encode())
        finally:
            client.close()
        wait_until(lambda: "error" in _reported(rt, thing), 60, what="reported.error")
        assert set(_reported(rt, thing)["cameras"]) == {"cam-a", "cam-b"}
        out = runner.invoke(app, ["status", str(site), "--runtime", str(rt.root)])
        assert out.exit_code == 1 and f"{thing} {shadows.CAPTURE}: refused: " in out.output, out.output
    finally:
        rt.cleanup()


def test_the_docs_example_is_a_valid_site_file_and_names_what_the_code_uses(tmp_path: Path) -> None:
    doc = (REPO / "docs" / "sites.md").read_text()
    example = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    site = load_site(_write(tmp_path, example))
    assert "door" in site.devices()["lab-box"][1].cameras
    for name in (shadows.CAPTURE, shadows.FILTER, shadows.SHADOW_MANAGER, "--runtime", "--dry-run",
                 "not applied", "apply pending", "device pending", "in sync", "refused"):
        assert name in doc, name
    runtime = (REPO / "docs" / "runtime.md").read_text()
    assert "desired takes the cloud's value and reported the device's" in runtime


def test_the_docs_on_resets_the_fleet_and_inference_say_what_the_code_does(tmp_path: Path) -> None:
    from gglocal.fleet.cli import app as fleet_app
    from ggvision.config.filter import CameraConfig as FilterCamera
    from ggvision.config.site import SiteCamera

    doc = (REPO / "docs" / "sites.md").read_text()
    for claim in ("configurationUpdate.reset", "/cameraBandwidthKbps/door", "S.site.json", "## A fleet of sites",
                  "--fleet", "tests/test_sites_fleet.py", "Inference follows no shadow"):
        assert claim in doc, claim
    assert applied_path(Path("S.json")) == Path("S.site.json")
    # Inference has no per-site part: no shadow, and a camera's parts are Capture's and the Filter's
    assert "com.ggvision.Inference" not in shadows.FOLLOWERS and set(SiteCamera.model_fields) == {"capture", "filter"}
    assert {"min_score", "classes", "zones"} <= set(FilterCamera.model_fields)
    # the commands the fleet section shows exist with those options
    fleet_cmds = [ln for ln in doc.split("## A fleet of sites", 1)[1].split("```")[1].splitlines() if ln]
    for line in fleet_cmds:
        args = line.split("#")[0].split()[1:]  # without `ggvision`
        cli = fleet_app if args[0] == "fleet" else app
        out = CliRunner().invoke(cli, [*args[1:], "--help"])
        assert out.exit_code == 0, (line, out.output)
        for opt in (a for a in args if a.startswith("--")):
            assert opt in out.output, (line, opt)
    assert "`gglocal/fleet/shadows.py`" in (REPO / "docs" / "runtime.md").read_text()


def test_status_takes_empty_objects_for_absent_as_shadow_sync_does() -> None:
    from sites.apply import ShadowStatus

    planned = {"cameras": {"door": {"detectFps": 5}}, "sensors": {}}
    synced = {"cameras": {"door": {"detectFps": 5}}}  # ShadowManager's sync dropped the empty object
    assert ShadowStatus("t", "s", planned, synced, None, None).state == "device pending"
    assert ShadowStatus("t", "s", planned, synced, {**planned, "error": None}, None).state == "in sync"
    assert ShadowStatus("t", "s", planned, synced, {"cameras": {}}, None).state == "device pending"
    assert ShadowStatus("t", "s", planned, {"cameras": {}}, None, None).state == "apply pending"


def test_site_commands_name_a_fleet_that_is_not_there(tmp_path: Path) -> None:
    site = _site(tmp_path, "lab-box", ["door"])
    out = CliRunner().invoke(app, ["status", str(site), "--fleet", str(tmp_path / "nofleet")])
    assert out.exit_code == 2 and "no local fleet at" in out.output and "ggvision fleet up" in out.output, out.output
    both = CliRunner().invoke(app, ["status", str(site), "--fleet", str(tmp_path), "--runtime", str(tmp_path)])
    assert both.exit_code == 2 and "not both" in both.output, both.output


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "example.yaml"
    path.write_text(text)
    return path


SECRET_SITE = """\
stages:
  dev: {thingGroup: ggvision-dev, configuration: {com.ggvision.Uplink: {bandwidthKbps: 4000}}}
sites:
  lab:
    stage: dev
    devices:
      lab-box:
        cameras:
          door: {capture: {source: {type: rtsp, url: "rtsp://10.0.0.5/stream1",
                                    credentialsSecret: ggvision/lab-box/cameras/door}}}
"""


def test_apply_deploy_sends_the_filled_document_to_the_stage_thing_group(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`apply --deploy` against AWS: the document it wrote, placeholders filled, as one greengrassv2
    CreateDeployment to the stage's thing group (rollout's AwsBackend). moto has no greengrassv2, so botocore's
    Stubber stands for the service: the client still validates the request against the service model
    (botocore/data/greengrassv2/2020-11-30/service-2.json, CreateDeploymentRequest) before the stub answers."""
    import boto3
    from botocore.stub import Stubber

    import sites.deploy
    from deploy.render import render_document

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(k, v)
    moto = MotoProcess(tmp_path / "moto.log")
    try:
        moto.client("iot").create_thing(thingName="lab-box")
        site = tmp_path / "site.yaml"
        site.write_text(SECRET_SITE)
        deployments = _deployments(tmp_path)
        args = ["apply", str(site), "--stage", "dev", "--deployments", str(deployments), "--endpoint-url", moto.url,
                "--region", "us-east-1", "--account", "123456789012"]
        gg = boto3.client("greengrassv2", region_name="us-east-1")
        monkeypatch.setattr(sites.deploy, "greengrass_client", lambda session: gg)
        runner = CliRunner()
        with Stubber(gg) as stub:  # no --deploy, or a dry run: nothing reaches the service (the stub has no answer)
            out = runner.invoke(app, args)
            assert out.exit_code == 0, out.output
            assert "--deploy" in out.output
            dry = runner.invoke(app, [*args, "--deploy", "--dry-run"])
            assert dry.exit_code == 0 and "dry run: nothing deployed" in dry.output, dry.output
            stub.assert_no_pending_responses()
        filled = render_document(json.loads((deployments / "dev.json").read_text()), "us-east-1", "123456789012")
        request = {k: filled[k] for k in ("targetArn", "deploymentName", "components", "deploymentPolicies",
                                          "iotJobConfiguration")}
        assert request["targetArn"] == "arn:aws:iot:us-east-1:123456789012:thinggroup/ggvision-dev"
        secret = json.loads(request["components"]["aws.greengrass.SecretManager"]["configurationUpdate"]["merge"])
        assert secret["cloudSecrets"] == [
            {"arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ggvision/lab-box/cameras/door"}]
        with Stubber(gg) as stub:
            stub.add_response("create_deployment", {"deploymentId": "d-1", "iotJobId": "j-1",
                                                    "iotJobArn": "arn:aws:iot:us-east-1:123456789012:job/j-1"},
                              request)
            out = runner.invoke(app, [*args, "--deploy"])
            assert out.exit_code == 0, out.output
            stub.assert_no_pending_responses()
        assert "deployed stage dev to thing group ggvision-dev: deployment d-1" in " ".join(out.output.split())
        # a document aimed at another group is neither written nor deployed: the error says which two disagree
        doc = json.loads((deployments / "dev.json").read_text())
        doc["targetArn"] = doc["targetArn"].replace("ggvision-dev", "ggvision-other")
        (deployments / "dev.json").write_text(json.dumps(doc))
        with Stubber(gg):
            out = runner.invoke(app, [*args, "--deploy"])
        assert out.exit_code == 2 and "targets thing group 'ggvision-other'" in out.output, out.output
    finally:
        moto.stop()


def test_apply_deploy_to_a_fleet_keeps_the_group_components_and_brings_the_shadows(tmp_path: Path) -> None:
    """`apply --deploy --fleet`: the fleet's group gets a deployment (rollout's LocalBackend) that keeps the
    components its last one had and adds what the site file drives — the stage configuration and ShadowManager's
    sync — so the device takes its shadow (its camera runs) and the stage's key, the AWS account's parts of the
    document staying out."""
    if not _have_mosquitto():
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")
    import os
    import sys

    from gglocal.fleet.runner import Fleet
    from gglocal.fleet.shadows import fleet_shadow_client
    from rollout.backends.local import LocalBackend

    thing, product = "ggv-dev-1", "com.ggvision.Capture"
    base = tmp_path / "base" / "recipes"
    dev = capture_dev_recipe(base, cameras={}, sensors={}, metricsPeriodS=1)
    doc = json.loads(dev.read_text())
    doc["ComponentName"] = product  # the product's recipe under its own name (Run: this checkout's python)
    dev.unlink()
    (base / f"{product}-{doc['ComponentVersion']}.json").write_text(json.dumps(doc))
    deployments = _deployments(tmp_path)
    stage_doc = json.loads((deployments / "dev.json").read_text())
    stage_doc["components"][product] = {"componentVersion": doc["ComponentVersion"]}
    (deployments / "dev.json").write_text(json.dumps(stage_doc))
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "stages": {"dev": {"thingGroup": "ggvision-dev", "configuration": {product: {"metricsPeriodS": 2}}}},
        "sites": {"lab": {"stage": "dev", "devices": {thing: {"cameras": {"cam-a": {"capture": {
            "source": {"type": "synthetic", "width": 160, "height": 120, "fps": 5, "seed": 1}}}}}}}}}))
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"  # components' python3
    fleet = Fleet(tmp_path / "fleet", {thing: ["ggvision-dev"]}, base=tmp_path / "base", settle_s=0.5)
    backend = client = None
    try:
        backend = LocalBackend(fleet.start())
        first = backend.deploy("ggvision-dev", {product: {"componentVersion": doc["ComponentVersion"]}}, name="suite")
        backend.client.wait_for(lambda: backend.device_status(thing, first.deployment_id).status == "SUCCEEDED",
                                60, "the suite on the device")
        out = CliRunner().invoke(app, ["apply", str(site), "--stage", "dev", "--deployments", str(deployments),
                                       "--fleet", str(fleet.dir), "--deploy"])
        assert out.exit_code == 0, out.output
        assert "deployed stage dev to the fleet's thing group ggvision-dev" in " ".join(out.output.split())
        backend.client.wait_for(lambda: backend.current("ggvision-dev").deployment_id != first.deployment_id, 10,
                                "the new group deployment")
        current = backend.current("ggvision-dev")
        assert set(current.components) == {product, shadows.SHADOW_MANAGER}  # kept + the site's; no Uplink, Suite
        assert current.components[product]["configurationUpdate"] == {"merge": {"metricsPeriodS": 2}}
        (tmp_path / "client").mkdir()
        client = fleet_shadow_client(fleet.dir, tmp_path / "client")
        wait_until(lambda: set(((client.get(thing, shadows.CAPTURE) or {}).get("state", {}).get("reported") or {})
                               .get("cameras", {})) == {"cam-a"}, 60, interval=0.2, what="cam-a reported")
        config = json.loads((fleet.dir / "devices" / thing / "root" / "config" / "config.json").read_text())
        assert config[product]["metricsPeriodS"] == 2
    finally:
        if client is not None:
            client.close()
        if backend is not None:
            backend.close()
        fleet.stop()


def test_the_cpu_box_stage_of_the_inference_docs_validates_and_a_bad_list_names_its_place(tmp_path: Path) -> None:
    """docs/inference.md "CPUs": the stage configuration it shows is a valid site file stage (each component's
    model takes its `cpus`, Inference's its `modelCpus`); a list that is not one fails `ggvision site validate`
    naming the file, the stage, the component and the key."""
    from ggvision.config.components import model_of

    doc = (REPO / "docs" / "inference.md").read_text().split("## CPUs", 1)[1]
    stage = doc.split("```yaml\n", 1)[1].split("```", 1)[0]
    device = """sites:
  shop:
    stage: cpu-boxes
    devices:
      shop-box:
        cameras:
          door: {capture: {source: {type: rtsp, url: "rtsp://10.0.0.5/stream1"}}}
"""
    site = load_site(_write(tmp_path, stage + device))
    conf = site.stages["cpu-boxes"].configuration
    assert set(conf) == {"com.ggvision.Inference", "com.ggvision.Capture", "com.ggvision.Filter",
                         "com.ggvision.Uplink", "com.ggvision.Health"}
    inference = model_of("com.ggvision.Inference").model_validate(conf["com.ggvision.Inference"])
    assert inference.model_cpus == (1,) and inference.cpus == (0,)
    assert all(model_of(c).model_validate(v).cpus == (0,) for c, v in conf.items())
    out = CliRunner().invoke(app, ["validate", str(_write(tmp_path, stage.replace('modelCpus: "1"',
                                                                                  'modelCpus: "1-0"') + device))])
    assert out.exit_code != 0, out.output
    for where in ("example.yaml", "cpu-boxes", "com.ggvision.Inference", "modelCpus", "runs backwards"):
        assert where in out.output, (where, out.output)
