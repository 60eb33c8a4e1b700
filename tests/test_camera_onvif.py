"""`ggvision camera probe|add` given an ONVIF address: the ONVIF device simulator (tests/onvif_sim.py, loopback
HTTP, WS-Security digest auth) hands out the URI of the real RTSP server (tests/rtsp_server.py, basic auth, the
same user), which is then probed and added; the credentials go to moto's Secrets Manager over HTTP. Errors name the
address and the reason (refused, unreachable, silent, credentials refused, no profiles, a SOAP fault) and never the
password."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_camera_onboarding as onboarding
from onvif_sim import DIGEST, ENV, TDS, WSSE, WSU, OnvifSimulator
from test_camera_onboarding import ENV as AWS_ENV
from test_camera_onboarding import PASSWORD, SITE, USER, Server, _no_password
from typer.testing import CliRunner
from uplink_dev import MotoProcess

from ggvision.config.site import load_site
from sites.camera_cli import app
from sites.onvif_probe import OnvifError, discover, parse_address

# the RTSP servers, moto and the log capture of the RTSP onboarding tests, shared
video, servers, moto, logs = onboarding.video, onboarding.servers, onboarding.moto, onboarding.logs


@pytest.fixture
def sim(servers: tuple[Server, Server]) -> Iterator[OnvifSimulator]:
    _, auth = servers
    s = OnvifSimulator(auth.url, USER, PASSWORD).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def bare_sim() -> Iterator[OnvifSimulator]:
    """A device whose stream is never opened (the error tests): no RTSP server needed."""
    s = OnvifSimulator("rtsp://127.0.0.1:9/cam", USER, PASSWORD).start()
    try:
        yield s
    finally:
        s.stop()


def test_probe_an_onvif_address_finds_the_stream_and_probes_it(sim: OnvifSimulator, servers: tuple[Server, Server],
                                                               logs: pytest.LogCaptureFixture) -> None:
    _, auth = servers
    r = CliRunner().invoke(app, ["probe", sim.address, "--user", USER, "--password-stdin", "--frames", "5"],
                           input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "ggvision SimCam 1" in r.output and "profile main" in r.output and "H264 1280x720 @ 25 fps" in r.output
    assert auth.url in r.output and "h264" in r.output  # the URI it gave, then the RTSP probe of it
    assert sim.calls[-3:] == ["GetDeviceInformation", "GetProfiles", "GetStreamUri"] and not sim.refused
    _no_password(r.output, logs=logs)


def test_add_from_an_onvif_address_stores_the_secret_and_the_rtsp_uri(
        sim: OnvifSimulator, servers: tuple[Server, Server], moto: MotoProcess, tmp_path: Path,
        logs: pytest.LogCaptureFixture) -> None:
    _, auth = servers
    site = tmp_path / "site.yaml"
    site.write_text(SITE)
    r = CliRunner(env=AWS_ENV).invoke(app, [
        "add", str(site), "--site", "lab", "--device", "lab-box", "--name", "lobby", "--url", sim.address,
        "--user", USER, "--password-stdin", "--secrets-endpoint-url", moto.url, "--region", "us-east-1",
        "--timeout", "5"], input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    _no_password(r.output, site.read_text(), logs=logs)
    cam = load_site(site).sites["lab"].devices["lab-box"].cameras["lobby"].capture
    assert cam.source.url == auth.url and cam.source.credentials_secret == "ggvision/lab-box/cameras/lobby"
    value = moto.client("secretsmanager").get_secret_value(SecretId="ggvision/lab-box/cameras/lobby")
    assert json.loads(value["SecretString"]) == {"username": USER, "password": PASSWORD}


def test_profile_choice_and_errors(bare_sim: OnvifSimulator, logs: pytest.LogCaptureFixture) -> None:
    sub = discover(bare_sim.address, USER, PASSWORD, profile="sub", timeout=5)
    assert sub.profile.token == "sub" and (sub.profile.width, sub.profile.fps) == (640, 10.0)
    assert sub.uri.endswith("?profile=sub") and [p.token for p in sub.profiles] == ["main", "sub"]
    with pytest.raises(OnvifError, match=r"onvif://127\.0\.0\.1:\d+: no profile 'side' \(the device has: main, sub"):
        discover(bare_sim.address, USER, PASSWORD, profile="side", timeout=5)

    runner = CliRunner()
    r = runner.invoke(app, ["probe", bare_sim.address, "--user", USER, "--password-stdin"], input="wrong\n")
    assert r.exit_code == 1
    assert f"camera probe: {bare_sim.address}: the camera refused the credentials (ONVIF ter:NotAuthorized)" in (
        r.output)
    assert bare_sim.refused == ["GetDeviceInformation"]
    r = runner.invoke(app, ["probe", bare_sim.address])
    assert r.exit_code == 1 and "the camera wants credentials" in r.output
    # credentials in the address are split off like an RTSP URL's
    r = runner.invoke(app, ["probe", bare_sim.address.replace("//", f"//{USER}:not-{PASSWORD}@")])
    assert r.exit_code == 1 and f"{bare_sim.address}: the camera refused the credentials" in r.output

    bare_sim.fault_on["GetStreamUri"] = (["ter:InvalidArgVal", "ter:InvalidStreamSetup"], "RTSP is switched off")
    with pytest.raises(OnvifError, match="SOAP fault in GetStreamUri: env:Sender/InvalidArgVal/InvalidStreamSetup: "
                                         "RTSP is switched off"):
        discover(bare_sim.address, USER, PASSWORD, timeout=5)
    bare_sim.fault_on.clear()
    bare_sim.profiles = []
    with pytest.raises(OnvifError, match="the device has no media profiles"):
        discover(bare_sim.address, USER, PASSWORD, timeout=5)
    _no_password(r.output, logs=logs)


def test_unreachable_silent_and_malformed_addresses() -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = s.getsockname()[1]
    s.close()
    with pytest.raises(OnvifError, match=f"onvif://127.0.0.1:{closed}: connection refused"):
        discover(f"onvif://127.0.0.1:{closed}", USER, PASSWORD, timeout=5)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # the kernel accepts; nobody answers
    try:
        port = silent.getsockname()[1]
        with pytest.raises(OnvifError, match=f"onvif://127.0.0.1:{port}: no answer within 1 s"):
            discover(f"onvif://127.0.0.1:{port}", USER, PASSWORD, timeout=1)
    finally:
        silent.close()
    assert parse_address("onvif://cam.local") == ("cam.local", 80)
    for bad in ("onvif://cam/onvif/device_service", "http://cam:80", "onvif://cam:99999"):
        with pytest.raises(OnvifError, match="not an ONVIF address|not a number"):
            parse_address(bad)
    r = CliRunner().invoke(app, ["probe", "rtsp://127.0.0.1/cam", "--profile", "main"])
    assert r.exit_code == 2 and "--profile is for ONVIF addresses" in r.output
    r = CliRunner().invoke(app, ["add", "/dev/null", "--site", "s", "--device", "d", "--name", "c", "--url",
                                 "onvif://10.0.0.9", "--no-probe"])
    assert r.exit_code == 2


def _token_envelope(user: str, password: str, nonce: bytes, created: str) -> bytes:
    digest = base64.b64encode(hashlib.sha1(nonce + created.encode() + password.encode()).digest()).decode()
    return (f'<env:Envelope xmlns:env="{ENV}"><env:Header><wsse:Security xmlns:wsse="{WSSE}" xmlns:wsu="{WSU}">'
            f"<wsse:UsernameToken><wsse:Username>{user}</wsse:Username>"
            f'<wsse:Password Type="{DIGEST}">{digest}</wsse:Password>'
            f"<wsse:Nonce>{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}</wsu:Created>"
            f'</wsse:UsernameToken></wsse:Security></env:Header><env:Body><GetDeviceInformation xmlns="{TDS}"/>'
            "</env:Body></env:Envelope>").encode()


def test_the_simulator_checks_the_digest_its_freshness_and_replays(bare_sim: OnvifSimulator) -> None:
    """The simulator's auth is real: a right digest passes once; a replayed nonce, a stale Created and a digest
    of the wrong password are each refused with ter:NotAuthorized."""
    url = f"http://127.0.0.1:{bare_sim.port}/onvif/device_service"

    def post(body: bytes) -> int:
        req = urllib.request.Request(url, body, {"Content-Type": "application/soap+xml"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            assert b"NotAuthorized" in e.read()
            return e.code

    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    stale = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert post(_token_envelope(USER, PASSWORD, b"nonce-1", now)) == 200
    assert post(_token_envelope(USER, PASSWORD, b"nonce-1", now)) == 400  # replay
    assert post(_token_envelope(USER, PASSWORD, b"nonce-2", stale)) == 400
    assert post(_token_envelope(USER, "guess", b"nonce-3", now)) == 400
    assert bare_sim.refused == ["GetDeviceInformation"] * 3


def test_discovery_uses_the_bundled_wsdls_only(bare_sim: OnvifSimulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """No name is resolved but the device's: the WSDLs and the schemas they import come from the package, never
    from onvif.org or w3.org."""
    resolve = socket.getaddrinfo
    asked: list[str] = []

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        asked.append(str(host))
        if host not in ("127.0.0.1", b"127.0.0.1"):
            raise OSError(f"test: no name resolution for {host!r}")
        return resolve(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    assert discover(bare_sim.address, USER, PASSWORD, timeout=5).uri == "rtsp://127.0.0.1:9/cam"
    assert set(asked) <= {"127.0.0.1"}


def test_the_docs_name_the_messages_the_probe_gives() -> None:
    """docs/sites.md's ONVIF paragraph: every error it quotes is one sites/onvif_probe.py writes."""
    from harness import REPO

    text = (REPO / "docs" / "sites.md").read_text().split("An ONVIF camera can be given", 1)[1].split("\n\n")[2]
    code = (REPO / "sites" / "onvif_probe.py").read_text()
    quoted = [" ".join(q.split()) for q in re.findall(r"`([^`]+)`", text.split("says why:", 1)[1])]
    assert len(quoted) >= 6
    for q in quoted:
        words = re.split(r"N s|'X'|OPERATION|CODE/SUBCODES|REASON", q)
        assert all(w.strip(" :") in code for w in words if w.strip(" :")), q
