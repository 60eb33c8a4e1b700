"""`ggvision camera probe|add` against a real RTSP server on loopback (tests/rtsp_server.py, with and without
basic authentication) and moto's Secrets Manager over HTTP: what a camera sends, clear errors for a bad URL and a
bad password, the credentials stored as the contract's secret and only there (never in the output, the site file
or a log record), and the camera added to the site file with its comments and order kept."""

from __future__ import annotations

import json
import logging
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import av
import cv2
import numpy as np
import pytest
from harness import REPO, wait_until
from typer.testing import CliRunner
from uplink_dev import MotoProcess

from ggvision.config.site import load_site
from sites.camera_add import add_to_text, camera_entry
from sites.camera_cli import app

VTEST = REPO.parent / "shared" / "data" / "video" / "vtest.avi"
SERVER = REPO / "tests" / "rtsp_server.py"
SYSTEM_PYTHON = "/usr/bin/python3"
USER, PASSWORD = "admin", "Pa55:w/rd%21-onboarding"  # ':' '/' '%' exercise the URL encoding
ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

SITE = """\
# the lab's cameras; keep this comment
stages:
  dev:
    thingGroup: ggvision-dev   # dev fleet
sites:
  lab:
    stage: dev
    devices:
      lab-box:
        cameras:
          door:                # the front door
            capture: {source: {type: synthetic, width: 160, height: 120, fps: 5}, detectFps: 5}
            filter:
              zones: {road: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}
        # sensors come later
"""


class Server:
    """tests/rtsp_server.py serving the test video; `READY <port>` on stdout once it listens."""

    def __init__(self, video: Path, user: str | None = None, password: str | None = None) -> None:
        cmd = [SYSTEM_PYTHON, str(SERVER), "--file", str(video)]
        if user:
            cmd += ["--user", user, "--password", password or ""]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: [self.lines.append(x) for x in self.proc.stdout], daemon=True).start()  # type: ignore[union-attr]
        wait_until(lambda: any(x.startswith("READY") for x in self.lines) or self.proc.poll() is not None, 30,
                   what="the RTSP test server")
        ready = [x for x in self.lines if x.startswith("READY")]
        assert ready, f"RTSP test server failed: {''.join(self.lines)}"
        self.url = f"rtsp://127.0.0.1:{int(ready[0].split()[1])}/cam"

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vtest.avi remuxed into Matroska with timestamps (AVI over RTSP has none, and FFmpeg waits 5 s for them)."""
    if not VTEST.is_file():
        pytest.skip(f"test video {VTEST} is absent (it lives in ../shared, outside the project)")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (Debian package ffmpeg)")
    out = tmp_path_factory.mktemp("video") / "vtest.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-fflags", "+genpts", "-i", str(VTEST), "-map", "0:v", "-c", "copy",
                    str(out)], check=True, timeout=60)
    return out


@pytest.fixture(scope="module")
def servers(video: Path) -> Iterator[tuple[Server, Server]]:
    """(open server, server that wants USER/PASSWORD)."""
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path(SYSTEM_PYTHON).exists() or subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True,
                                                          timeout=30).returncode:
        pytest.skip("GstRtspServer is unavailable (Debian packages python3-gi gir1.2-gst-rtsp-server-1.0)")
    open_, auth = Server(video), Server(video, USER, PASSWORD)
    try:
        yield open_, auth
    finally:
        open_.stop()
        auth.stop()


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    m = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # everything, botocore's request bodies included
    return caplog


def _video_size() -> tuple[int, int]:
    with av.open(str(VTEST)) as c:
        s = c.streams.video[0]
        return s.codec_context.width, s.codec_context.height


def _no_password(*texts: str, logs: pytest.LogCaptureFixture | None = None) -> None:
    needles = (PASSWORD, "Pa55%3Aw%2Frd", "Pa55")
    records = [r.getMessage() for r in logs.records] if logs is not None else []
    for text in (*texts, *records):
        for needle in needles:
            assert needle not in text, f"the password leaked: {text[:300]!r}"


def _add(moto: MotoProcess, site: Path, url: str, *args: str, password: str | None = PASSWORD,
         name: str = "gate") -> tuple[int, str]:
    cmd = ["add", str(site), "--site", "lab", "--device", "lab-box", "--name", name, "--url", url,
           "--secrets-endpoint-url", moto.url, "--region", "us-east-1", "--timeout", "5", *args]
    if password is not None:
        cmd += ["--user", USER, "--password-stdin"]
    r = CliRunner(env=ENV).invoke(app, cmd, input=None if password is None else password + "\n")
    return r.exit_code, r.output


def test_probe_shows_codec_resolution_fps_and_a_snapshot(servers: tuple[Server, Server], tmp_path: Path,
                                                         logs: pytest.LogCaptureFixture) -> None:
    _, auth = servers
    jpeg = tmp_path / "door.jpg"
    r = CliRunner().invoke(app, ["probe", auth.url, "--user", USER, "--password-stdin", "--snapshot", str(jpeg)],
                           input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    width, height = _video_size()
    assert "h264" in r.output and f"{width}x{height}" in r.output
    announced = re.search(r"fps announced\s*│\s*([\d.]+)", r.output)
    measured = re.search(r"fps measured\s*│\s*([\d.]+) over 25 frames", r.output)
    assert announced and measured, r.output
    assert float(announced[1]) == 25 and abs(float(measured[1]) - 25) < 0.5  # vtest.avi is 25 fps
    image = cv2.imdecode(np.frombuffer(jpeg.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape == (height, width, 3) and image.std() > 10  # a picture, not a blank
    _no_password(r.output, logs=logs)


def _silent_port() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()  # the kernel accepts; nobody ever answers
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


def test_probe_errors_say_what_and_where_without_the_password(servers: tuple[Server, Server],
                                                              logs: pytest.LogCaptureFixture) -> None:
    _, auth = servers
    runner = CliRunner()
    r = runner.invoke(app, ["probe", auth.url, "--user", USER, "--password-stdin"], input="wrong-password\n")
    assert r.exit_code == 1
    assert f"camera probe: {auth.url}: 401 Unauthorized: the camera refused the credentials" in r.output
    r = runner.invoke(app, ["probe", auth.url])
    assert r.exit_code == 1 and "401 Unauthorized: the camera wants credentials" in r.output
    for password in (quote(PASSWORD, safe=""), PASSWORD):  # percent-encoded as it should be, and typed raw
        inline = auth.url.replace("rtsp://", f"rtsp://{USER}:wrong-{password}@")
        r = runner.invoke(app, ["probe", inline])
        assert r.exit_code == 1 and f"camera probe: {auth.url}: 401 Unauthorized" in r.output, r.output
        _no_password(r.output, logs=logs)
    r = runner.invoke(app, ["probe", auth.url.replace("/cam", "/nothing"), "--user", USER, "--password-stdin"],
                      input=PASSWORD)
    assert r.exit_code == 1 and "/nothing: 404 Not Found" in r.output
    _no_password(r.output, logs=logs)
    gen = _silent_port()
    port = next(gen)
    refused = socket.socket()
    refused.bind(("127.0.0.1", 0))
    closed = refused.getsockname()[1]
    refused.close()  # a port nothing listens on
    r = runner.invoke(app, ["probe", f"rtsp://127.0.0.1:{closed}/cam"])
    assert r.exit_code == 1 and f"rtsp://127.0.0.1:{closed}/cam: connection refused" in r.output
    r = runner.invoke(app, ["probe", f"rtsp://127.0.0.1:{port}/cam", "--timeout", "1"])
    assert r.exit_code == 1 and f"rtsp://127.0.0.1:{port}/cam: no answer within 1 s" in r.output
    gen.close()
    r = runner.invoke(app, ["probe", "http://127.0.0.1/cam"])
    assert r.exit_code == 1 and "http://127.0.0.1/cam: not an RTSP URL" in r.output
    r = runner.invoke(app, ["probe", "rtsp://no-such-camera.invalid/cam"])
    assert r.exit_code == 1 and "unknown host 'no-such-camera.invalid'" in r.output


def test_add_stores_the_secret_and_adds_the_camera_keeping_the_file(
        servers: tuple[Server, Server], moto: MotoProcess, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    _, auth = servers
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    code, out = _add(moto, site, auth.url)
    assert code == 0, out
    _no_password(out, site.read_text(), logs=logs)  # before this test reads the secret (botocore logs that)
    secret = "ggvision/lab-box/cameras/gate"
    value = json.loads(moto.client("secretsmanager").get_secret_value(SecretId=secret)["SecretString"])
    assert value == {"username": USER, "password": PASSWORD} and f"secret {secret}: created" in out
    text = site.read_text()
    # every original line stays, in order; only the camera's lines are new
    added = [line for line in text.splitlines() if line not in SITE.splitlines()]
    assert [line for line in text.splitlines() if line in SITE.splitlines()] == SITE.splitlines()
    assert added[0] == "          gate:" and text.index("gate:") < text.index("# sensors come later")
    cam = load_site(site).sites["lab"].devices["lab-box"].cameras["gate"].capture
    width, _ = _video_size()
    assert cam.source.url == auth.url and cam.source.credentials_secret == secret
    assert cam.detect_fps == 5 and cam.max_width == width

    code, out = _add(moto, site, auth.url)  # the same name again
    assert code == 2 and f"{site}:15: device lab-box already has a camera 'gate'" in out
    assert "answers" not in out  # refused before probing
    assert site.read_text() == text


def test_a_new_password_updates_the_secret(servers: tuple[Server, Server], moto: MotoProcess,
                                           tmp_path: Path) -> None:
    """A camera re-added after removal from the file: its secret exists and takes the new value."""
    _, auth = servers
    client = moto.client("secretsmanager")
    client.create_secret(Name="ggvision/lab-box/cameras/yard", SecretString='{"username": "old", "password": "x"}')
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    code, out = _add(moto, site, auth.url, name="yard")
    assert code == 0 and "secret ggvision/lab-box/cameras/yard: updated" in out, out
    assert json.loads(client.get_secret_value(SecretId="ggvision/lab-box/cameras/yard")["SecretString"])[
        "password"] == PASSWORD


def test_add_refuses_a_camera_that_does_not_answer_and_changes_nothing(
        servers: tuple[Server, Server], moto: MotoProcess, tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    _, auth = servers
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    code, out = _add(moto, site, auth.url, password="not-" + PASSWORD, name="bad")
    assert code == 1 and f"{auth.url}: 401 Unauthorized: the camera refused the credentials" in out
    assert "not added; --no-probe" in out and site.read_text() == SITE
    names = [s["Name"] for s in moto.client("secretsmanager").list_secrets()["SecretList"]]
    assert "ggvision/lab-box/cameras/bad" not in names
    _no_password(out, logs=logs)


def test_dry_run_shows_the_change_and_makes_none(servers: tuple[Server, Server], moto: MotoProcess,
                                                 tmp_path: Path, logs: pytest.LogCaptureFixture) -> None:
    open_, _ = servers
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    code, out = _add(moto, site, open_.url, "--dry-run", password=None, name="porch")
    assert code == 0, out
    assert "+          porch:" in out and f"url: {open_.url}" in out and "no credentials to store" in out
    assert site.read_text() == SITE


def test_no_probe_adds_an_unreachable_camera_to_a_new_device(moto: MotoProcess, tmp_path: Path,
                                                             logs: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    r = CliRunner(env=ENV).invoke(app, [
        "add", str(site), "--site", "lab", "--device", "lab-box-2", "--name", "gate", "--no-probe",
        "--url", f"rtsp://{USER}:{quote(PASSWORD, safe='')}@10.0.0.9:554/stream1",
        "--secrets-endpoint-url", moto.url, "--region", "us-east-1"])
    assert r.exit_code == 0, r.output
    _no_password(r.output, site.read_text(), logs=logs)
    device = load_site(site).sites["lab"].devices["lab-box-2"]
    assert device.cameras["gate"].capture.source.url == "rtsp://10.0.0.9:554/stream1"
    assert device.cameras["gate"].capture.detect_fps == 5 and device.cameras["gate"].capture.max_width is None
    secret = moto.client("secretsmanager").get_secret_value(SecretId="ggvision/lab-box-2/cameras/gate")
    assert json.loads(secret["SecretString"])["password"] == PASSWORD
    assert "# sensors come later" in site.read_text()


def test_bad_input_is_named() -> None:
    entry = camera_entry("rtsp://h/s", "lab-box", "x", with_secret=False, fps=2.5, width=3840)
    assert entry["capture"]["detectFps"] == 2.5 and entry["capture"]["maxWidth"] == 1920  # capped by the camera
    r = CliRunner().invoke(app, ["add", "/nonexistent/site.yaml", "--site", "lab", "--device", "d", "--name", "c",
                                 "--url", "rtsp://h/s"])
    assert r.exit_code == 2 and "/nonexistent/site.yaml: cannot read" in r.output
    with pytest.raises(Exception, match="no site 'yard' \\(sites: lab\\)"):
        add_to_text(SITE, "yard", "lab-box", "x", entry)


def test_flow_style_cameras_are_rewritten_from_the_data(tmp_path: Path) -> None:
    text = "stages: {dev: {thingGroup: g}}\nsites:\n  lab: {stage: dev, devices: {box: {cameras: {}}}}\n"
    edit = add_to_text(text, "lab", "box", "gate", camera_entry("rtsp://h/s", "box", "gate", with_secret=True,
                                                                fps=None, width=None))
    assert not edit.comments_kept
    site = tmp_path / "s.yaml"
    site.write_text(edit.text)
    source = load_site(site).sites["lab"].devices["box"].cameras["gate"].capture.source
    assert source.credentials_secret == "ggvision/box/cameras/gate"


def test_a_camera_id_the_model_refuses_is_reported_against_the_site_file(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    r = CliRunner().invoke(app, ["add", str(site), "--site", "lab", "--device", "lab-box", "--name", "bad id!",
                                 "--url", "rtsp://10.0.0.9/s", "--no-probe", "--dry-run"])
    assert r.exit_code == 2 and f"{site}:" in r.output and "camera id must match" in r.output, r.output
    assert site.read_text() == SITE


def test_the_docs_name_only_options_the_commands_have() -> None:
    """docs/sites.md "Adding a camera": every `--option` it names is one of `camera probe`, `camera add` or
    `site apply`, and
    the secret name and defaults it states are the ones the code uses."""
    import typer.main

    from sites.camera_add import DEFAULT_DETECT_FPS, DEFAULT_MAX_WIDTH, secret_name
    from sites.cli import app as site_app

    text = (REPO / "docs" / "sites.md").read_text().split("## Adding a camera", 1)[1].split("\n## ", 1)[0]
    group = typer.main.get_command(app)
    commands = [group.commands["probe"], group.commands["add"], typer.main.get_command(site_app).commands["apply"]]  # type: ignore[attr-defined]
    options = {o for c in commands for p in c.params for o in p.opts}
    named = set(re.findall(r"(--[a-z][a-z-]+)", text))
    assert named and named <= options, named - options
    assert secret_name("THING", "CAM") in text
    assert f"`detectFps` {DEFAULT_DETECT_FPS:g} (`--detect-fps`)" in text
    assert f"`maxWidth` {DEFAULT_MAX_WIDTH} (`--max-width`)" in text
