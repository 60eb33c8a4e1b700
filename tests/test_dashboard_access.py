"""The dashboard's access control (dashboard/access.py): the ALB's signed identity header in the cloud, the
password on the edge's LAN.

The header's format is AWS's documented one (Elastic Load Balancing, Application Load Balancers guide,
"Authenticate users using an Application Load Balancer" -> "User claims encoding and signature verification",
https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html):
`x-amzn-oidc-data` is a JWT whose header/payload/signature are base64url *with padding*, signed ECDSA P-256 +
SHA-256 (ES256); its header carries `alg`, `kid`, `signer` (the load balancer's ARN), `iss`, `client`, `exp`; the
public key (PEM) is at https://public-keys.auth.elb.{region}.amazonaws.com/{kid}. The claims are the IdP's userInfo
answer, which for Cognito holds no groups: those are in the Cognito access token the ALB forwards in
`x-amzn-oidc-accesstoken` (RS256, the user pool's JWKS at {issuer}/.well-known/jwks.json; seen in the wild in
kubernetes-sigs/aws-load-balancer-controller#1715). Here a loopback HTTP server plays both key endpoints with test
keys, and the tokens are minted the way the load balancer and Cognito mint them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from browser_dev import Browser, StreamlitServer, browser_available
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from dashboard.access import (
    AccessDenied,
    AccessSettings,
    Identity,
    _KeyCache,
    check_password,
    hash_password,
    serve_command,
    verify_alb,
)

REPO = Path(__file__).resolve().parents[1]
REGION = "eu-west-1"
ALB_ARN = f"arn:aws:elasticloadbalancing:{REGION}:123456789012:loadbalancer/app/ggvision-dashboard/50dc6c495c0c9188"
OTHER_ARN = f"arn:aws:elasticloadbalancing:{REGION}:210987654321:loadbalancer/app/someone-else/0123456789abcdef"
KID = "9a7ccb9e-4d3f-4e0a-a1c2-6f3b1f2d8e01"
POOL = "eu-west-1_AbCdEf123"
SUB = "5f1c7e2a-0b9d-4a8e-9c3d-2e4f6a8b0c1d"


def b64url(data: bytes, pad: bool = True) -> str:
    s = base64.urlsafe_b64encode(data).decode()
    return s if pad else s.rstrip("=")


def seg(obj: dict[str, Any]) -> str:
    return b64url(json.dumps(obj, separators=(",", ":")).encode())


class Keys:
    """The test's signing keys: the load balancer's (EC P-256, PEM by kid) and the user pool's (RSA, JWKS)."""

    def __init__(self) -> None:
        self.alb = ec.generate_private_key(ec.SECP256R1())
        self.rogue = ec.generate_private_key(ec.SECP256R1())  # same kid, not the load balancer's
        self.pool = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def alb_token(self, claims: dict[str, Any] | None = None, key: Any = None, **header: Any) -> str:
        """x-amzn-oidc-data as the load balancer makes it (padded base64url segments, r||s signature)."""
        exp = int(time.time()) + 120
        h = {"typ": "JWT", "kid": KID, "alg": "ES256", "iss": self.issuer, "client": "dashboard-client",
             "signer": ALB_ARN, "exp": exp, **header}  # fmt: skip
        c = {"sub": SUB, "email": "alice@example.com", "username": SUB, "exp": exp, "iss": self.issuer,
             **(claims or {})}  # fmt: skip
        signing_input = f"{seg(h)}.{seg(c)}"
        der = (key or self.alb).sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def access_token(self, groups: list[str], sub: str = SUB, key: Any = None, **claims: Any) -> str:
        """A Cognito access token (RS256, unpadded base64url as Cognito sends)."""
        h = {"kid": "pool-key-1", "alg": "RS256"}
        c = {"sub": sub, "cognito:groups": groups, "token_use": "access", "iss": self.issuer,
             "exp": int(time.time()) + 3600, "client_id": "dashboard-client", **claims}  # fmt: skip
        signing_input = f"{b64url(json.dumps(h).encode(), False)}.{b64url(json.dumps(c).encode(), False)}"
        sig = (key or self.pool).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(sig, False)}"

    issuer = ""  # set once the key server knows its port


class KeyServer(ThreadingHTTPServer):
    def __init__(self, keys: Keys) -> None:
        super().__init__(("127.0.0.1", 0), _KeyHandler)
        self.keys = keys
        self.requests: list[str] = []
        self.base = f"http://127.0.0.1:{self.server_address[1]}"


class _KeyHandler(BaseHTTPRequestHandler):
    server: KeyServer

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.server.requests.append(self.path)
        keys = self.server.keys
        if self.path == f"/elb/{KID}":
            body = keys.alb.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        elif self.path == f"/{POOL}/.well-known/jwks.json":
            n = keys.pool.public_key().public_numbers()
            e, m = b64url(n.e.to_bytes(3, "big"), False), b64url(n.n.to_bytes(256, "big"), False)
            jwk = {"kid": "pool-key-1", "kty": "RSA", "alg": "RS256", "use": "sig", "e": e, "n": m}
            body = json.dumps({"keys": [jwk]}).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def key_server(keys: Keys) -> Iterator[KeyServer]:
    server = KeyServer(keys)
    keys.issuer = f"{server.base}/{POOL}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def cloud_settings(server: KeyServer, **kw: Any) -> AccessSettings:
    return AccessSettings(mode="cloud", alb_arn=ALB_ARN, region=REGION, alb_keys_url=f"{server.base}/elb", **kw)


def test_signed_header_maps_groups_to_roles(keys: Keys, key_server: KeyServer) -> None:
    settings, cache = cloud_settings(key_server), _KeyCache()
    op = keys.alb_token({"cognito:groups": ["viewer", "operator"]})
    assert "=" in op, "the load balancer pads its segments: the verifier must take that"
    assert verify_alb({"X-Amzn-Oidc-Data": op}, settings, cache) == Identity("alice@example.com", "operator")
    viewer = keys.alb_token({"cognito:groups": ["viewer"], "email": "bob@example.com"})
    assert verify_alb({"x-amzn-oidc-data": viewer}, settings, cache) == Identity("bob@example.com", "viewer")
    # the key is fetched once per kid, from {base}/{kid}
    assert cache.fetches == 1 and key_server.requests.count(f"/elb/{KID}") >= 1
    # a configurable groups claim (another IdP's), given as a string
    other = cloud_settings(key_server, groups_claim="groups", operator_groups=("ops",))
    assert verify_alb({OIDC: keys.alb_token({"groups": "staff ops"})}, other, cache).role == "operator"


OIDC = "x-amzn-oidc-data"


def test_groups_from_the_cognito_access_token(keys: Keys, key_server: KeyServer) -> None:
    """Cognito's userInfo (the signed claims) has no groups: they come from the verified access token."""
    settings = cloud_settings(key_server, cognito_issuer=keys.issuer, issuer=keys.issuer)
    cache = _KeyCache()
    data = keys.alb_token()
    ok = {OIDC: data, "x-amzn-oidc-accesstoken": keys.access_token(["operator"])}
    assert verify_alb(ok, settings, cache) == Identity("alice@example.com", "operator")
    refused = {
        "another user's token": keys.access_token(["operator"], sub="someone-else"),
        "a token the pool did not sign": keys.access_token(["operator"], key=rsa.generate_private_key(65537, 2048)),
        "an id token": keys.access_token(["operator"], token_use="id"),
        "an expired token": keys.access_token(["operator"], exp=int(time.time()) - 3600),
    }
    for what, token in refused.items():
        with pytest.raises(AccessDenied):
            verify_alb({OIDC: data, "x-amzn-oidc-accesstoken": token}, settings, cache)
            pytest.fail(f"accepted {what}")
    with pytest.raises(AccessDenied, match="no cognito:groups and there is no x-amzn-oidc-accesstoken"):
        verify_alb({OIDC: data}, settings, cache)


def test_refuses_what_the_load_balancer_did_not_sign(keys: Keys, key_server: KeyServer) -> None:
    settings, cache = cloud_settings(key_server), _KeyCache()
    groups = {"cognito:groups": ["operator"]}
    good = keys.alb_token(groups)
    h, p, s = good.split(".")
    tampered = json.loads(base64.urlsafe_b64decode(p))
    tampered["email"] = "mallory@example.com"
    cases = {
        "no x-amzn-oidc-data header": {},
        "not a JWT": {OIDC: "garbage"},
        "signed by 'arn:aws:elasticloadbalancing:eu-west-1:210987654321": {OIDC: keys.alb_token(groups,
                                                                                               signer=OTHER_ARN)},
        "expired": {OIDC: keys.alb_token({**groups, "exp": int(time.time()) - 120})},
        "signature does not verify": {OIDC: keys.alb_token(groups, key=keys.rogue)},
        "signature does not verify ": {OIDC: f"{h}.{seg(tampered)}.{s}"},
        "not ES256": {OIDC: keys.alb_token(groups, alg="HS256")},
        "not ES256 ": {OIDC: keys.alb_token(groups, alg="none")},
        "no usable kid": {OIDC: keys.alb_token(groups, kid="../../etc/passwd")},
        "in no dashboard group": {OIDC: keys.alb_token({"cognito:groups": ["finance"]})},
        "not an ES256 signature": {OIDC: f"{h}.{p}.{b64url(b'short')}"},
    }  # fmt: skip
    before = len(key_server.requests)
    for reason, headers in cases.items():
        with pytest.raises(AccessDenied, match=reason.strip().replace("(", r"\(")):
            verify_alb(headers, settings, cache)
    assert verify_alb({OIDC: good}, settings, cache).role == "operator"
    # a foreign signer is refused before any key is fetched for it; one fetch in all for the real kid
    assert len(key_server.requests) - before == 1


def test_an_unreachable_key_endpoint_refuses(keys: Keys, key_server: KeyServer) -> None:
    settings = AccessSettings(mode="cloud", alb_arn=ALB_ARN, region=REGION, alb_keys_url="http://127.0.0.1:9/elb")
    with pytest.raises(AccessDenied, match="cannot fetch the signing key from http://127.0.0.1:9/elb/"):
        verify_alb({OIDC: keys.alb_token({"cognito:groups": ["viewer"]})}, settings, _KeyCache(timeout_s=2))


def test_settings_from_the_environment_say_which_variable_is_wrong() -> None:
    env = {"GGVISION_DASHBOARD_MODE": "cloud", "GGVISION_DASHBOARD_REGION": REGION,
           "GGVISION_DASHBOARD_ALB_ARN": ALB_ARN, "GGVISION_DASHBOARD_OPERATOR_GROUPS": "ops, admins"}  # fmt: skip
    s = AccessSettings.from_env(env)
    assert (s.mode, s.operator_groups, s.alb_keys_url.format(region=s.region)) == (
        "cloud", ("ops", "admins"), f"https://public-keys.auth.elb.{REGION}.amazonaws.com")  # fmt: skip
    with pytest.raises(ValueError, match="GGVISION_DASHBOARD_ALB_ARN: .*not an Application Load Balancer ARN"):
        AccessSettings.from_env({**env, "GGVISION_DASHBOARD_ALB_ARN": "arn:aws:s3:::bucket"})
    with pytest.raises(ValueError, match="cloud mode needs GGVISION_DASHBOARD_ALB_ARN"):
        AccessSettings.from_env({"GGVISION_DASHBOARD_MODE": "cloud", "GGVISION_DASHBOARD_REGION": REGION})
    with pytest.raises(ValueError, match="GGVISION_DASHBOARD_PASSWORD_HASH: .*hash-password"):
        AccessSettings.from_env({"GGVISION_DASHBOARD_PASSWORD_HASH": "hunter22"})
    with pytest.raises(ValueError, match="GGVISION_DASHBOARD_PORT"):
        AccessSettings.from_env({"GGVISION_DASHBOARD_PORT": "99999"})


def test_password_hash_and_the_launcher_refusing_the_lan_without_one() -> None:
    h = hash_password("correct horse", iterations=1000)
    assert check_password("correct horse", h) and not check_password("correct hors", h)
    assert "correct" not in h and h.startswith("pbkdf2_sha256$1000$")
    with pytest.raises(ValueError, match="at least 8"):
        hash_password("short")
    edge = AccessSettings(address="0.0.0.0", password_hash=h)
    assert "correct" not in repr(edge) and h not in repr(edge), "the hash stays out of logs"
    assert "--server.address=0.0.0.0" in serve_command(edge, "app.py")
    assert "--server.address=127.0.0.1" in serve_command(AccessSettings(), "app.py")
    with pytest.raises(ValueError, match="refusing to listen on 192.168.1.20: on the LAN the dashboard needs"):
        serve_command(AccessSettings(address="192.168.1.20"), "app.py")
    # the real launcher: exits 2 with the reason, starts nothing
    env = {**os.environ, "GGVISION_DASHBOARD_ADDRESS": "0.0.0.0"}
    env.pop("GGVISION_DASHBOARD_PASSWORD_HASH", None)
    r = subprocess.run([sys.executable, "-m", "dashboard.access", "run", "app.py"], env=env, capture_output=True,
                       text=True, timeout=30, cwd=REPO)  # fmt: skip
    assert r.returncode == 2 and "refusing to listen on 0.0.0.0" in r.stderr
    r = subprocess.run([sys.executable, "-m", "dashboard.access", "hash-password"], input="long enough pw\n",
                       capture_output=True, text=True, timeout=30, cwd=REPO)  # fmt: skip
    assert r.returncode == 0 and check_password("long enough pw", r.stdout.strip())
    assert "long enough" not in r.stdout + r.stderr


APP = """\
import streamlit as st

from dashboard.access import gate

identity = gate()
if identity is None:
    st.stop()
st.success(f"Signed in as {identity.user} ({identity.role})")
"""


@pytest.fixture
def server_address() -> Iterator[Any]:
    """AppTest runs the script in this process: the gate reads the server.address option set here."""
    before = st_config.get_option("server.address")

    def set_(value: str | None) -> None:
        st_config.set_option("server.address", value)

    yield set_
    st_config.set_option("server.address", before)


def env_for(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for k in list(os.environ):
        if k.startswith("GGVISION_DASHBOARD_"):
            monkeypatch.delenv(k)
    for k, v in values.items():
        monkeypatch.setenv(f"GGVISION_DASHBOARD_{k.upper()}", v)


def test_gate_in_the_app(monkeypatch: pytest.MonkeyPatch, server_address: Any) -> None:
    # cloud: an AppTest session has no request headers, like a request that bypassed the load balancer
    env_for(monkeypatch, mode="cloud", alb_arn=ALB_ARN, region=REGION)
    at = AppTest.from_string(APP).run(timeout=30)
    assert "no x-amzn-oidc-data header" in at.error[0].value and not at.success
    # edge on loopback: the technician at the box
    env_for(monkeypatch)
    server_address("127.0.0.1")
    at = AppTest.from_string(APP).run(timeout=30)
    assert at.success[0].value == "Signed in as local (operator)"
    # edge on every interface without a password: refused, whatever the launcher was told
    server_address("0.0.0.0")
    at = AppTest.from_string(APP).run(timeout=30)
    assert "listens on 0.0.0.0 without a password" in at.error[0].value and not at.success
    # with a password: a sign-in form; a wrong password is refused, the right one signs in for the session
    env_for(monkeypatch, password_hash=hash_password("site-7 password", iterations=1000), edge_role="viewer")
    at = AppTest.from_string(APP).run(timeout=30)
    assert not at.success and at.text_input[0].label == "Password"
    at.text_input[0].input("guess")
    at.button[0].click().run(timeout=30)
    assert at.error[0].value == "Wrong password." and not at.success
    at.text_input[0].input("site-7 password")
    at.button[0].click().run(timeout=30)
    assert at.success[0].value == "Signed in as edge (viewer)"
    at.run()  # a rerun keeps the session signed in
    assert at.success[0].value == "Signed in as edge (viewer)"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    reason = browser_available()
    if reason:
        pytest.skip(reason)
    with Browser(tmp_path / "shots") as b:
        yield b


def test_lan_password_gate_in_chromium(browser: Browser, tmp_path: Path) -> None:
    """The dashboard on every interface (as on a site LAN) asks for the password before it shows anything."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys as K

    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GGVISION_DASHBOARD_PASSWORD_HASH": hash_password("site-7 password", iterations=1000)}  # fmt: skip
    with StreamlitServer(script, env=env, address="0.0.0.0", log_path=tmp_path / "streamlit.log") as app:
        browser.open(app.url)
        field = browser.wait_for('input[type="password"]', visible=True)
        assert "Signed in" not in browser.text()
        browser.screenshot("edge-sign-in")
        field.send_keys("wrong password")
        browser.driver.find_element(By.CSS_SELECTOR, '[data-testid="stFormSubmitButton"] button').click()
        browser.wait_text("Wrong password.")
        field = browser.wait_for('input[type="password"]', visible=True)
        field.send_keys(K.CONTROL, "a")  # select what the form kept, then type over it (React ignores clear())
        field.send_keys("site-7 password")
        browser.driver.find_element(By.CSS_SELECTOR, '[data-testid="stFormSubmitButton"] button').click()
        browser.wait_text("Signed in as edge (operator)")
        assert not browser.driver.find_elements(By.CSS_SELECTOR, 'input[type="password"]')
        assert "site-7" not in app.log(), "the password never reaches the log"


class AlbStandIn:
    """What the load balancer does for the app after it authenticated a user: every request it forwards has the
    client's own x-amzn-oidc-* headers removed and the load balancer's added. A TCP proxy on loopback that rewrites
    each request head (one request per connection upstream: `Connection: close`, except the websocket upgrade)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.headers: dict[str, str] = {}
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            request, *fields = head.decode("latin-1").split("\r\n")
            upgrade = any(f.lower().startswith("upgrade:") for f in fields)
            kept = [f for f in fields if not f.lower().startswith("x-amzn-oidc-")
                    and (upgrade or not f.lower().startswith(("connection:", "keep-alive:")))]  # fmt: skip
            added = [f"{k}: {v}" for k, v in self.headers.items()] + ([] if upgrade else ["Connection: close"])
            upstream = stack.enter_context(socket.create_connection(("127.0.0.1", self.upstream_port)))
            upstream.sendall("\r\n".join([request, *kept, *added]).encode("latin-1") + b"\r\n\r\n" + rest)
            back = threading.Thread(target=self._pipe, args=(upstream, client), daemon=True)
            back.start()
            self._pipe(client, upstream)
            back.join(timeout=30)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.sock.close()


def test_cloud_gate_in_chromium_behind_the_load_balancer(browser: Browser, keys: Keys, key_server: KeyServer,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """The app reads the signed header from the real request (st.context.headers), through a real server."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "GGVISION_DASHBOARD_MODE": "cloud", "GGVISION_DASHBOARD_ALB_ARN": ALB_ARN,
           "GGVISION_DASHBOARD_REGION": REGION,
           "GGVISION_DASHBOARD_ALB_KEYS_URL": f"{key_server.base}/elb"}  # fmt: skip
    with StreamlitServer(script, env=env, log_path=tmp_path / "streamlit.log") as app:
        alb = AlbStandIn(app.port)
        sent = [keys.alb_token({"cognito:groups": ["operator"]}),
                keys.alb_token({"cognito:groups": ["viewer"], "email": "bob@example.com"}),
                keys.alb_token({"cognito:groups": ["operator"]}, signer=OTHER_ARN)]  # fmt: skip
        try:
            alb.headers = {OIDC: sent[0]}
            browser.open(alb.url)
            browser.wait_text("Signed in as alice@example.com (operator)")
            browser.screenshot("cloud-signed-in")
            alb.headers = {OIDC: sent[1]}
            browser.open(alb.url)
            browser.wait_text("Signed in as bob@example.com (viewer)")
            alb.headers = {OIDC: sent[2]}
            browser.open(alb.url)
            browser.wait_text("not this dashboard's load balancer")
            assert "Signed in" not in browser.text()
        finally:
            alb.close()
        browser.open(app.url)  # around the load balancer: no header at all
        browser.wait_text("Access refused: no x-amzn-oidc-data header")
        assert "Signed in" not in browser.text()
        log = app.log()
        assert "not this dashboard's load balancer" in log, "refusals are logged with their reason"
        assert not any(part in log for token in sent for part in token.split(".")), "tokens never reach the log"


def test_docs_name_every_setting_and_show_pictures_a_test_took() -> None:
    """docs/dashboard-access.md's table of variables is AccessSettings' fields, and what it shows exists."""
    doc = (REPO / "docs" / "dashboard-access.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| `")]
    named = {n.lower() for line in table for n in re.findall(r"`([A-Z_]+)`", line.split("|")[1])}
    assert named == set(AccessSettings.model_fields)
    for line in table:  # each default the table states is the model's
        names, default = line.split("|")[1], line.split("|")[2]
        for n, d in zip(re.findall(r"`([A-Z_]+)`", names), re.findall(r"`([^`]+)`", default), strict=False):
            value = AccessSettings.model_fields[n.lower()].default
            shown = ",".join(value) if isinstance(value, tuple) else str(value).rstrip("0").rstrip(".")
            assert shown == d, f"{n}: the doc says {d}, the code {shown}"
    for picture in re.findall(r"\(img/dashboard/([\w.-]+\.png)\)", doc):
        assert (REPO / "docs" / "img" / "dashboard" / picture).is_file(), f"run bench/screenshots.py: {picture}"


def _lan_address() -> str | None:
    """This machine's address on its network, if it has one besides loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") else addr


def test_launcher_serves_on_loopback_only(tmp_path: Path) -> None:
    from browser_dev import free_port
    from harness import wait_until

    script = tmp_path / "app.py"
    script.write_text(APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GGVISION_DASHBOARD_")}
    env |= {"GGVISION_DASHBOARD_PORT": str(port),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    with (tmp_path / "launcher.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "dashboard.access", "run", str(script)], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip
    try:

        def answers(host: str) -> bool:
            try:
                with socket.create_connection((host, port), timeout=1):
                    return True
            except OSError:
                return False

        wait_until(lambda: answers("127.0.0.1") or proc.poll() is not None, 45, 0.1, "the launched dashboard")
        assert proc.poll() is None, (tmp_path / "launcher.log").read_text()
        lan = _lan_address()
        if lan is not None:
            assert not answers(lan), f"the dashboard answers on {lan}: it must listen on loopback only"
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_wrong_passwords_make_that_address_wait(monkeypatch: pytest.MonkeyPatch, server_address: Any) -> None:
    import dashboard.access as access

    now = [1000.0]
    throttle = access.SignInThrottle(limit=3, window_s=60, clock=lambda: now[0])
    monkeypatch.setattr(access, "THROTTLE", throttle)
    # unit: per address, and the wait ends when the oldest failure leaves the window
    for _ in range(3):
        throttle.failed("192.168.1.50")
    assert throttle.wait_s("192.168.1.50") == 60 and throttle.wait_s("192.168.1.51") == 0
    now[0] += 59.5
    assert throttle.wait_s("192.168.1.50") == pytest.approx(0.5)
    now[0] += 1
    assert throttle.wait_s("192.168.1.50") == 0
    # spoofed addresses: all of them together get ten times as many tries
    for i in range(30):
        throttle.failed(f"10.0.0.{i}")
    assert throttle.wait_s("192.168.1.99") == 60
    now[0] += 60
    assert throttle.wait_s("192.168.1.99") == 0
    # in the app: after three wrong passwords even the right one is not checked until the wait is over
    env_for(monkeypatch, password_hash=hash_password("site-7 password", iterations=1000))
    server_address("0.0.0.0")
    at = AppTest.from_string(APP).run(timeout=30)
    for _ in range(3):
        at.text_input[0].input("guess")
        at.button[0].click().run(timeout=30)
        assert at.error[0].value == "Wrong password."
    at.text_input[0].input("site-7 password")
    at.button[0].click().run(timeout=30)
    assert at.error[0].value == "Too many wrong passwords: try again in 61 s." and not at.success
    now[0] += 61
    at.text_input[0].input("site-7 password")
    at.button[0].click().run(timeout=30)
    assert at.success[0].value == "Signed in as edge (operator)"


def test_a_session_keeps_the_identity_verified_when_it_started(keys: Keys, key_server: KeyServer) -> None:
    """The load balancer's header expires minutes after the request (kubernetes-sigs/aws-load-balancer-controller
    #1715 shows an `exp` 119 s after the logged request), while a Streamlit session lives on its one websocket
    request: the session verifies once, keeps the identity up to session_max_s, and never keeps the token."""
    from dashboard.access import session_identity

    settings = cloud_settings(key_server, session_max_s=3600)
    now = [1_000_000.0]
    state: dict[str, Any] = {}
    operator = {OIDC: keys.alb_token({"cognito:groups": ["operator"]})}
    before = len(key_server.requests)
    assert session_identity(operator, settings, state, _KeyCache(), lambda: now[0]).role == "operator"
    assert len(key_server.requests) == before + 1
    now[0] += 300  # the token has expired by now; the session has not
    assert session_identity(operator, settings, state, _KeyCache(), lambda: now[0]).role == "operator"
    assert len(key_server.requests) == before + 1, "not verified again (a fresh key cache would have fetched)"
    assert not any(part in repr(state) for part in operator[OIDC].split(".")), "the session keeps a digest only"
    viewer = {OIDC: keys.alb_token({"cognito:groups": ["viewer"], "email": "bob@example.com"})}
    assert session_identity(viewer, settings, state, _KeyCache(), lambda: now[0]).user == "bob@example.com"
    now[0] += 3601
    with pytest.raises(AccessDenied, match="older than the dashboard allows: reload the page"):
        session_identity(viewer, settings, state, _KeyCache(), lambda: now[0])
    expired = {OIDC: keys.alb_token({"cognito:groups": ["viewer"], "exp": int(time.time()) - 120})}
    with pytest.raises(AccessDenied, match="expired"):  # a new session verifies, exp included
        session_identity(expired, settings, {}, _KeyCache(), lambda: now[0])
