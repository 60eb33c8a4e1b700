"""Camera passwords end to end: `site apply` puts the stage's camera secrets in aws.greengrass.SecretManager's
cloudSecrets; the local runtime's SecretManager stand-in downloads them from Secrets Manager (moto's server over
HTTP; with IAM enforcement and the deployed device role, a device gets its own and is refused the others'), serves
GetSecretValue only for those, refreshes as the component does (not by itself; every periodicRefreshIntervalMin;
`refresh` on request); and Capture, refused by a camera whose password was rotated, fetches the latest value and
reconnects without a restart, the password never in a log."""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from capture_dev import NAME, capture_dev_recipe, synthetic_video
from harness import REPO, AgentError, Runtime, wait_until
from stack_dev import TEMPLATES, AuthMoto, moto_template
from uplink_dev import MotoProcess

from deploy.render import render_document
from gglocal.components import SECRET_MANAGER as STANDIN_NAME
from gglocal.components import SECRET_MANAGER_VERSION as STANDIN_VERSION
from gglocal.nucleus.secrets import ARN_RE, FileCloud, SecretManagerStandIn, SecretsManagerCloud, SecretStore
from ggvision.config.site import load_site
from ggvision.contract import secrets
from sites.apply import render_stage

THING, OTHER = "test-thing", "other-thing"  # the harness runs the nucleus as test-thing
USER = "admin"
OLD, NEW = "first-Pa55:word/1", "second-Pa55:word/2"
ACCOUNT, REGION = "123456789012", "us-east-1"  # moto's default account
SERVER = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION}

SITE = """\
stages:
  dev: {thingGroup: ggvision-dev}
  production: {thingGroup: ggvision-production}
sites:
  lab:
    stage: dev
    devices:
      test-thing:
        cameras:
          door: {capture: {source: {type: rtsp, url: "rtsp://127.0.0.1:PORT/cam",
                                    credentialsSecret: ggvision/test-thing/cameras/door}, detectFps: 5}}
          yard: {capture: {source: {type: synthetic}}}
  depot:
    stage: dev
    devices:
      other-thing:
        cameras:
          gate: {capture: {source: {type: rtsp, url: "rtsp://10.0.0.9/s",
                                    credentialsSecret: ggvision/other-thing/cameras/gate}}}
  shop:
    stage: production
    devices:
      shop-box:
        cameras:
          till: {capture: {source: {type: synthetic}}}
"""


def _deployments(tmp: Path) -> Path:
    out = tmp / "deployments"
    shutil.copytree(REPO / "deploy" / "deployments", out)
    return out


def _site(tmp: Path, port: int = 554) -> Path:
    path = tmp / "site.yaml"
    path.write_text(SITE.replace("PORT", str(port)))
    return path


def _secret_manager(doc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(doc["components"][secrets.SECRET_MANAGER]["configurationUpdate"]["merge"])


def test_the_stage_deployment_carries_its_devices_camera_secrets(tmp_path: Path) -> None:
    site, deployments = load_site(_site(tmp_path)), _deployments(tmp_path)
    _, dev = render_stage(site, "dev", deployments)
    arns = [s["arn"] for s in _secret_manager(dev)["cloudSecrets"]]
    assert arns == [secrets.secret_arn(f"ggvision/{t}/cameras/{c}") for t, c in ((OTHER, "gate"), (THING, "door"))]
    assert dev["components"][secrets.SECRET_MANAGER]["componentVersion"] == secrets.SECRET_MANAGER_VERSION
    # filled in for an account as deploy/render.py does: ARNs SecretManager accepts (its own pattern)
    rendered = render_document(dev, REGION, ACCOUNT)
    filled = _secret_manager(rendered)["cloudSecrets"]
    # still a CreateDeployment request botocore's greengrassv2 model accepts (raises ParamValidationError if not)
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("greengrassv2")
    validate_parameters(rendered, model.operation_model("CreateDeployment").input_shape)
    assert all(ARN_RE.fullmatch(s["arn"]) for s in filled), filled
    assert filled[1]["arn"] == f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ggvision/{THING}/cameras/door"
    _, production = render_stage(site, "production", deployments)  # no camera with a password: no component
    assert secrets.SECRET_MANAGER not in production["components"]
    # the runtime's stand-in is the component the deployment names
    assert (STANDIN_NAME, STANDIN_VERSION) == (secrets.SECRET_MANAGER, secrets.SECRET_MANAGER_VERSION)


@pytest.fixture(scope="module")
def authz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthMoto]:
    """moto with IAM enforcement and the project's storage and device-access stacks deployed."""
    moto = AuthMoto(tmp_path_factory.mktemp("authz") / "moto.log")
    try:
        for name, template in (("ggvision-storage", "storage.yaml"), ("ggvision-device-access",
                                                                       "device-access.yaml")):
            moto.deploy(name, moto_template(TEMPLATES / template))
        yield moto
    finally:
        moto.stop()


def test_a_device_downloads_only_its_own_of_the_stage_secrets_and_refreshes_as_the_component(
        authz: AuthMoto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    admin = authz.client("secretsmanager")
    own, other, spare = (f"ggvision/{THING}/cameras/door", f"ggvision/{OTHER}/cameras/gate",
                         f"ggvision/{THING}/cameras/spare")
    for name in (own, other, spare):
        admin.create_secret(Name=name, SecretString=json.dumps({"username": USER, "password": OLD}))

    def put(password: str) -> None:  # the test's own writes: botocore would log their bodies at DEBUG
        with caplog.at_level(logging.INFO, logger="botocore"):
            admin.put_secret_value(SecretId=own, SecretString=json.dumps({"username": USER, "password": password}))

    caplog.set_level(logging.DEBUG)  # from here, every record: the stand-in's downloads, botocore's included
    device = authz.credentials_for(f"device-{THING}", authz.device_policy(THING))
    for k, v in {**device.env(), "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(k, v)
    standin = SecretManagerStandIn(SecretStore(), SecretsManagerCloud(authz.url, REGION))
    try:
        # the stage-wide list site apply renders (partial ARNs): both devices' cameras
        standin.configure({"cloudSecrets": [{"arn": secrets.secret_arn(n, REGION, ACCOUNT)} for n in (own, other)]})
        assert standin.synced.wait(20), "no first sync"
        held = standin.find(own)
        assert held is not None and json.loads(held.string or "")["password"] == OLD
        assert held.arn.startswith(f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{own}-")  # the full ARN
        assert standin.find(held.arn) is held
        assert standin.find(other) is None  # the role refused it: the device does not hold it
        assert standin.find(spare) is None  # readable, but not in cloudSecrets
        assert f"cannot download arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{other}" in caplog.text

        put(NEW)
        assert json.loads(standin.find(own).string or "")["password"] == OLD  # no refresh configured: kept
        assert json.loads(standin.find(own, refresh=True).string or "")["password"] == NEW  # GetSecretValue refresh
        put("third")
        standin.configure({"cloudSecrets": [{"arn": secrets.secret_arn(own, REGION, ACCOUNT)}],
                           "periodicRefreshIntervalMin": 0.01})  # every 0.6 s
        wait_until(lambda: json.loads(standin.find(own).string or "")["password"] == "third", 20,
                   what="the periodic refresh")
    finally:
        standin.close()
    for secret in (OLD, NEW, "third"):
        assert secret not in caplog.text


def test_without_an_endpoint_the_secrets_file_stands_for_secrets_manager(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"

    def write(password: str) -> None:
        path.write_text(json.dumps({"secrets": [{"name": f"ggvision/{THING}/cameras/door", "secretString": password},
                                                {"name": "camera-1", "secretString": "c1"}]}))

    write(OLD)
    standin = SecretManagerStandIn(SecretStore.from_file(path), FileCloud(path, REGION))
    assert standin.find("camera-1").string == "c1"  # no deployment names SecretManager: the whole file
    standin.configure({"cloudSecrets": [{"arn": secrets.secret_arn(f"ggvision/{THING}/cameras/door", REGION,
                                                                   "000000000000")}]})
    try:
        assert standin.synced.wait(10), "no first sync"
        assert standin.find(f"ggvision/{THING}/cameras/door").string == OLD
        assert standin.find("camera-1") is None  # in the file, not in cloudSecrets
        write(NEW)  # the operator edits the file: a rotation
        assert standin.find(f"ggvision/{THING}/cameras/door").string == OLD
        assert standin.find(f"ggvision/{THING}/cameras/door", refresh=True).string == NEW
        standin.configure({"cloudSecrets": [{"arn": "not-an-arn"}]})  # skipped, as the component does
        assert standin.configured == [] and standin.find(f"ggvision/{THING}/cameras/door") is None
    finally:
        standin.close()


# -- Capture and a rotated password -----------------------------------------------------------------------------

class RtspServer:
    def __init__(self, video: Path, port: int, password: str) -> None:
        self.proc = subprocess.Popen([SYSTEM_PYTHON, str(SERVER), "--file", str(video), "--port", str(port),
                                      "--user", USER, "--password", password], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(x) for x in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        wait_until(lambda: any(x.startswith("READY") for x in self.lines) or self.proc.poll() is not None, 30,
                   what="the RTSP test server")
        assert any(x.startswith("READY") for x in self.lines), "".join(self.lines)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def _product_secret_policy(recipe: Path) -> None:
    """The dev recipe swaps the product's GetSecretValue policy for the harness' camera-1; give it back."""
    doc = json.loads(recipe.read_text())
    product = yaml.safe_load((REPO / "components" / "com.ggvision.Capture" / "recipe.yaml").read_text())
    acl = doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
    acl[secrets.SECRET_MANAGER] = product["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
        secrets.SECRET_MANAGER]
    recipe.write_text(json.dumps(doc))


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_a_rotated_camera_password_reconnects_the_camera_without_a_restart(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True,
                                                          timeout=30).returncode:
        pytest.skip("GstRtspServer is unavailable (Debian packages python3-gi gir1.2-gst-rtsp-server-1.0)")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (Debian package ffmpeg)")
    for k, v in AWS_ENV.items():
        monkeypatch.setenv(k, v)
    video = synthetic_video(tmp_path / "cam.ts", [(320, 240, 90.0)], fps=10)
    moto = MotoProcess(tmp_path / "moto.log")
    port = _free_port()
    server = RtspServer(video, port, OLD)
    rt = Runtime(tmp_path, ["com.ggvision.test.Agent"], args=["--secrets-endpoint-url", moto.url])
    try:
        name = f"ggvision/{THING}/cameras/door"
        moto.client("secretsmanager").create_secret(Name=name, SecretString=json.dumps(
            {"username": USER, "password": OLD}))
        path = _site(tmp_path, port)
        _, doc = render_stage(load_site(path), "dev", _deployments(tmp_path))
        doc = render_document(doc, REGION, ACCOUNT)
        door = yaml.safe_load(path.read_text())["sites"]["lab"]["devices"][THING]["cameras"]["door"]["capture"]
        recipe = capture_dev_recipe(rt.recipes, cameras={}, metricsPeriodS=1)
        _product_secret_policy(recipe)
        rt.start(wait_for={"com.ggvision.test.Agent": ("RUNNING",), NAME: ("RUNNING",)})
        a = rt.agent()
        a.call("subscribe", id="before", topic="ggvision/v1/frames/door")
        door = {**door, "frameDescriptors": True}  # the agent watches its frames
        d = rt.deploy(root_component_versions_to_add={secrets.SECRET_MANAGER: secrets.SECRET_MANAGER_VERSION},
                      component_to_configuration={secrets.SECRET_MANAGER: {"MERGE": _secret_manager(doc)},
                                                  NAME: {"MERGE": {"cameras": {"door": door}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        assert a.call("events", id="before", count=2, timeout=30), "no frames with the first password"
        with pytest.raises(AgentError) as e:  # in the runtime's secrets file, but not in cloudSecrets: not held
            a.call("get_secret", secret_id="camera-1")
        assert e.value.kind == "ResourceNotFoundError"
        starts = rt.log(NAME).count("run: starting")

        # rotation: the secret gets the new password, then the camera (it restarts: its sessions end)
        moto.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps(
            {"username": USER, "password": NEW}))
        server.stop()
        server = RtspServer(video, port, NEW)
        a.call("subscribe", id="after", topic="ggvision/v1/frames/door")
        assert a.call("events", id="after", count=2, timeout=60), "no frames after the rotation"
        log = rt.log(NAME)
        assert "credentials refused: the next try fetches the secret's latest value" in log
        assert rt.log(NAME).count("run: starting") == starts  # the same process all along
        texts = [log, rt.output(), *(p.read_text(errors="replace") for p in (rt.root / "logs").glob("*.log"))]
        for text in texts:
            for password in (OLD, NEW, OLD.replace(":", "%3A").replace("/", "%2F")):
                assert password not in text
    finally:
        rt.cleanup()
        server.stop()
        moto.stop()


def test_the_docs_name_the_options_and_names_the_code_uses() -> None:
    """docs/sites.md "Camera passwords": the runtime options it names exist, and the names it states are the
    contract's, the device role's and the Capture recipe's."""
    import re

    import typer.main

    from gglocal.cli import app as runtime_app

    text = (REPO / "docs" / "sites.md").read_text().split("## Camera passwords", 1)[1].split("\n## ", 1)[0]
    nucleus = typer.main.get_command(runtime_app).commands["nucleus"]  # type: ignore[attr-defined]
    options = {o for p in nucleus.params for o in p.opts}
    named = set(re.findall(r"(--[a-z][a-z-]+)", text)) - {"--stage"}
    assert named and named <= options, named - options
    assert secrets.camera_secret_name("ggvision", "THING", "CAM") in text
    assert secrets.secret_arn("NAME") in text
    role = (REPO / "deploy" / "cloudformation" / "device-access.yaml").read_text()
    assert "ReadOwnCameraSecrets" in text and "secret:${NamePrefix}/${!credentials-iot:ThingName}/*" in role
    recipe = (REPO / "components" / "com.ggvision.Capture" / "recipe.yaml").read_text()
    assert "secret:ggvision/*/cameras/*" in text and "secret:ggvision/*/cameras/*" in recipe
