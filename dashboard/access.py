"""Who may use the dashboard, and as what: `gate(settings)` at the top of the Streamlit app gives an Identity or None.

Two modes (`AccessSettings`, from `GGVISION_DASHBOARD_*` environment variables by `AccessSettings.from_env()`):

- cloud: the app runs behind an Application Load Balancer whose listener authenticates users with Cognito (or any
  OIDC IdP) and forwards the user's claims in `x-amzn-oidc-data`, a JWT the load balancer signs with ES256 (AWS
  ELB guide, "Authenticate users using an Application Load Balancer", section "User claims encoding and signature
  verification"). `verify_alb` checks that header: `alg` ES256, the header's `signer` equal to the configured load
  balancer ARN (checked before any key is fetched), the signature with the public key fetched by `kid` from
  `https://public-keys.auth.elb.{region}.amazonaws.com/{kid}` (PEM; base URL configurable; keys cached), `exp` in
  the future (and `iss` when configured). Groups come from the groups claim (`cognito:groups` by default) of those
  claims, or — Cognito's userInfo, which the load balancer copies into the claims, has no groups — from the Cognito
  access token the load balancer forwards in `x-amzn-oidc-accesstoken`, verified (RS256) against the user pool's
  JWKS when `cognito_issuer` is set; its `sub` must be the claims' `sub`. A user in an operator group is an
  operator, else one in a viewer group a viewer; anyone else, and any request without a valid header, is refused.
  The load balancer signs each request's header to expire within minutes, and a Streamlit session lives on one
  websocket request: `session_identity` verifies the header when the session starts and keeps the identity for
  the session, at most `session_max_s` (an hour by default; then a page reload signs in again).
- edge: the app listens on loopback (`address`, 127.0.0.1 by default), where whoever reaches it is the technician
  at the box (`edge_role`). Listening anywhere else requires a password (or a long random token: the same thing)
  whose PBKDF2 hash is configured (`password_hash`, made by `python -m dashboard.access hash-password`) and is
  compared in constant time; an address that typed 5 wrong ones in a minute waits, all together 50 (`THROTTLE`).
  `serve_command` (the launcher, `python -m dashboard.access run APP`) refuses to bind a non-loopback address
  without one, and `gate` refuses too when the server really listens beyond loopback.

Tokens, passwords and hashes are never logged or shown; refusals say why in words (the reason names a claim or the
signer, never a token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

log = logging.getLogger("dashboard.access")

Role = Literal["viewer", "operator"]
ENV_PREFIX = "GGVISION_DASHBOARD_"
OIDC_DATA = "x-amzn-oidc-data"
OIDC_ACCESS_TOKEN = "x-amzn-oidc-accesstoken"
ALB_KEYS_URL = "https://public-keys.auth.elb.{region}.amazonaws.com"
HASH_SCHEME = "pbkdf2_sha256"
HASH_ITERATIONS = 600_000  # OWASP's 2023 figure for PBKDF2-HMAC-SHA256
SESSION_KEY = "_ggvision_identity"
_ALB_ARN_RE = re.compile(r"^arn:aws[a-z-]*:elasticloadbalancing:[a-z0-9-]+:\d{12}:loadbalancer/app/")
_LIST_FIELDS = ("user_claims", "operator_groups", "viewer_groups")
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,128}$")  # a kid goes into a URL path: nothing that could leave it


@dataclass(frozen=True)
class Identity:
    user: str
    role: Role

    @property
    def operator(self) -> bool:
        return self.role == "operator"


class AccessDenied(Exception):
    """The request does not carry an identity this dashboard accepts; the message says why (no secret in it)."""


class AccessSettings(BaseModel):
    """How the dashboard decides who is who. Environment: GGVISION_DASHBOARD_<FIELD> (lists comma-separated)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["edge", "cloud"] = "edge"
    # edge
    address: str = "127.0.0.1"
    port: int = Field(8501, ge=1, le=65535)
    password_hash: str | None = Field(None, repr=False)
    edge_role: Role = "operator"
    # cloud
    alb_arn: str | None = None
    region: str | None = None
    alb_keys_url: str = ALB_KEYS_URL
    issuer: str | None = None  # the IdP's issuer the claims' `iss` must equal (optional)
    groups_claim: str = "cognito:groups"
    user_claims: tuple[str, ...] = ("email", "username", "sub")
    operator_groups: tuple[str, ...] = ("operator",)
    viewer_groups: tuple[str, ...] = ("viewer",)
    cognito_issuer: str | None = None  # https://cognito-idp.{region}.amazonaws.com/{userPoolId}: groups from the token
    leeway_s: float = Field(30.0, ge=0, le=300)
    session_max_s: float = Field(3600.0, ge=60, le=43200)  # a cloud session's identity, verified at its start

    @field_validator("password_hash")
    @classmethod
    def _hash_format(cls, v: str | None) -> str | None:
        if v is not None:
            _parse_hash(v)
        return v

    @field_validator("alb_arn")
    @classmethod
    def _arn(cls, v: str | None) -> str | None:
        if v is not None and not _ALB_ARN_RE.match(v):
            raise ValueError(f"{v!r} is not an Application Load Balancer ARN (arn:aws:elasticloadbalancing:...)")
        return v

    @model_validator(mode="after")
    def _cloud_needs(self) -> AccessSettings:
        if self.mode == "cloud":
            missing = [f for f in ("alb_arn", "region") if getattr(self, f) is None]
            if missing:
                names = ", ".join(ENV_PREFIX + f.upper() for f in missing)
                raise ValueError(f"cloud mode needs {names}: the load balancer whose signed header identifies users")
        return self

    @property
    def loopback(self) -> bool:
        return is_loopback(self.address)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AccessSettings:
        """The settings from GGVISION_DASHBOARD_* variables; a bad value raises ValueError naming the variable."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None or raw == "":
                continue
            values[name] = tuple(s.strip() for s in raw.split(",") if s.strip()) if name in _LIST_FIELDS else raw
        try:
            return cls(**values)
        except ValidationError as e:
            errs = []
            for err in e.errors():
                where = ENV_PREFIX + str(err["loc"][0]).upper() if err["loc"] else "GGVISION_DASHBOARD_* settings"
                errs.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
            raise ValueError("dashboard access settings: " + "; ".join(errs)) from None


# ---------------------------------------------------------------------------------------------- edge: password


def is_loopback(address: str | None) -> bool:
    """True only for an address that cannot be reached from another machine ("" and 0.0.0.0 mean every interface)."""
    if not address:
        return False
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def hash_password(password: str, iterations: int = HASH_ITERATIONS, salt: bytes | None = None) -> str:
    """`pbkdf2_sha256$ITERATIONS$SALT$HASH` (base64) of a password, for GGVISION_DASHBOARD_PASSWORD_HASH."""
    if len(password) < 8:
        raise ValueError("the dashboard password must have at least 8 characters")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{HASH_SCHEME}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def _parse_hash(encoded: str) -> tuple[int, bytes, bytes]:
    parts = encoded.split("$")
    try:
        if len(parts) != 4 or parts[0] != HASH_SCHEME:
            raise ValueError
        iterations = int(parts[1])
        salt, digest = base64.b64decode(parts[2], validate=True), base64.b64decode(parts[3], validate=True)
        if iterations < 1 or not salt or len(digest) != 32:
            raise ValueError
    except (ValueError, binascii.Error):
        raise ValueError(
            f"not a {HASH_SCHEME}$ITERATIONS$SALT$HASH password hash (make one with "
            "`python -m dashboard.access hash-password`)"
        ) from None
    return iterations, salt, digest


def check_password(password: str, encoded: str) -> bool:
    """Whether `password` matches the configured hash (the digests are compared in constant time)."""
    iterations, salt, digest = _parse_hash(encoded)
    candidate = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return hmac.compare_digest(candidate, digest)


def serve_command(settings: AccessSettings, app: str) -> list[str]:
    """`streamlit run APP` on the configured address; refuses a non-loopback address without a password."""
    if settings.mode == "edge" and not settings.loopback and settings.password_hash is None:
        raise ValueError(
            f"refusing to listen on {settings.address or 'every interface'}: on the LAN the dashboard needs a "
            f"password; set {ENV_PREFIX}PASSWORD_HASH (`python -m dashboard.access hash-password`) or keep "
            f"{ENV_PREFIX}ADDRESS=127.0.0.1"
        )
    return [
        sys.executable, "-m", "streamlit", "run", app,
        f"--server.address={settings.address}", f"--server.port={settings.port}",
        "--server.headless=true", "--browser.gatherUsageStats=false",
        "--client.toolbarMode=viewer",  # no developer menu (rerun, settings, deploy) for users
    ]  # fmt: skip


# ---------------------------------------------------------------------------------------------- cloud: ALB header


def _b64url(segment: str) -> bytes:
    """Base64url with or without padding (the load balancer pads its segments, RFC 7515 does not)."""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(segment))
    except (ValueError, binascii.Error):
        raise AccessDenied(f"the {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise AccessDenied(f"the {what} is not a JSON object")
    return value


class _KeyCache:
    """Public keys by URL, fetched once (they never change for a kid); bounded, thread-safe."""

    def __init__(self, limit: int = 64, timeout_s: float = 5.0) -> None:
        self._keys: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.limit, self.timeout_s = limit, timeout_s
        self.fetches = 0

    def get(self, url: str, load: Any) -> Any:
        with self._lock:
            if url in self._keys:
                return self._keys[url]
        try:
            with urllib.request.urlopen(url, timeout=self.timeout_s) as r:
                body = r.read(65536)
        except (urllib.error.URLError, OSError) as e:
            raise AccessDenied(f"cannot fetch the signing key from {url}: {e}") from None
        key = load(body)
        with self._lock:
            self.fetches += 1
            if len(self._keys) >= self.limit:
                self._keys.pop(next(iter(self._keys)))
            self._keys[url] = key
        return key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()


KEYS = _KeyCache()


def _load_alb_key(body: bytes) -> ec.EllipticCurvePublicKey:
    try:
        key = serialization.load_pem_public_key(body)
    except ValueError:
        raise AccessDenied("the load balancer's key endpoint did not return a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise AccessDenied("the load balancer's key is not an EC P-256 key (ES256)")
    return key


def _check_time(claims: Mapping[str, Any], leeway_s: float, what: str) -> None:
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise AccessDenied(f"the {what} has no numeric exp")
    if exp + leeway_s < time.time():
        raise AccessDenied(f"the {what} expired {int(time.time() - exp)} s ago: reload the page to sign in again")


def verify_alb(headers: Mapping[str, str], settings: AccessSettings, keys: _KeyCache = KEYS) -> Identity:
    """The identity in the load balancer's signed headers; AccessDenied says why there is none."""
    token = _header(headers, OIDC_DATA)
    if not token:
        raise AccessDenied(f"no {OIDC_DATA} header: the dashboard is only reachable through its load balancer")
    parts = token.split(".")
    if len(parts) != 3:
        raise AccessDenied(f"{OIDC_DATA} is not a JWT (header.payload.signature)")
    header = _json_segment(parts[0], f"{OIDC_DATA} header")
    if header.get("alg") != "ES256":
        raise AccessDenied(f"{OIDC_DATA} is signed with {header.get('alg')!r}, not ES256")
    if header.get("signer") != settings.alb_arn:
        raise AccessDenied(f"{OIDC_DATA} was signed by {header.get('signer')!r}, not this dashboard's load balancer")
    kid = header.get("kid")
    if not isinstance(kid, str) or not _KID_RE.match(kid):
        raise AccessDenied(f"{OIDC_DATA} has no usable kid")
    base = settings.alb_keys_url.format(region=settings.region).rstrip("/")
    key = keys.get(f"{base}/{kid}", _load_alb_key)
    try:
        raw = _b64url(parts[2])
    except (ValueError, binascii.Error):
        raise AccessDenied(f"{OIDC_DATA}'s signature is not base64url") from None
    if len(raw) != 64:
        raise AccessDenied(f"{OIDC_DATA}'s signature is not an ES256 signature (r||s, 64 bytes)")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise AccessDenied(f"{OIDC_DATA}'s signature does not verify with the load balancer's key") from None
    claims = _json_segment(parts[1], f"{OIDC_DATA} claims")
    _check_time(claims, settings.leeway_s, f"{OIDC_DATA} token")
    if settings.issuer is not None and claims.get("iss") != settings.issuer:
        raise AccessDenied(f"the claims were issued by {claims.get('iss')!r}, not {settings.issuer!r}")
    user = next((str(claims[c]) for c in settings.user_claims if claims.get(c)), None)
    if user is None:
        raise AccessDenied(f"the claims name no user ({', '.join(settings.user_claims)})")
    groups = _groups(claims.get(settings.groups_claim))
    if groups is None and settings.cognito_issuer is not None:
        groups = _cognito_groups(headers, settings, str(claims.get("sub", "")), keys)
    return Identity(user, _role(groups or [], settings, user))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # st.context.headers is case-insensitive; a plain dict may not be
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value


def _groups(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):  # some IdPs send a space- or comma-separated string
        return [g for g in re.split(r"[\s,]+", value) if g]
    if isinstance(value, list):
        return [str(g) for g in value]
    return []


def _role(groups: list[str], settings: AccessSettings, user: str) -> Role:
    if any(g in settings.operator_groups for g in groups):
        return "operator"
    if any(g in settings.viewer_groups for g in groups):
        return "viewer"
    known = ", ".join(settings.viewer_groups + settings.operator_groups)
    raise AccessDenied(f"{user} is in no dashboard group ({known})")


def _cognito_groups(headers: Mapping[str, str], settings: AccessSettings, sub: str, keys: _KeyCache) -> list[str]:
    """Groups from the Cognito access token the load balancer forwards, verified with the user pool's JWKS."""
    token = _header(headers, OIDC_ACCESS_TOKEN)
    if not token:
        raise AccessDenied(f"the claims carry no {settings.groups_claim} and there is no {OIDC_ACCESS_TOKEN}")
    parts = token.split(".")
    if len(parts) != 3:
        raise AccessDenied(f"{OIDC_ACCESS_TOKEN} is not a JWT")
    header = _json_segment(parts[0], f"{OIDC_ACCESS_TOKEN} header")
    kid = header.get("kid")
    if header.get("alg") != "RS256" or not isinstance(kid, str):
        raise AccessDenied(f"{OIDC_ACCESS_TOKEN} is not an RS256 token with a kid")
    issuer = str(settings.cognito_issuer).rstrip("/")
    jwks = keys.get(f"{issuer}/.well-known/jwks.json", _load_jwks)
    key = jwks.get(kid)
    if key is None:
        raise AccessDenied(f"{OIDC_ACCESS_TOKEN}'s kid is not in the user pool's keys")
    try:
        key.verify(_b64url(parts[2]), f"{parts[0]}.{parts[1]}".encode(), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError, binascii.Error):
        raise AccessDenied(f"{OIDC_ACCESS_TOKEN}'s signature does not verify with the user pool's key") from None
    claims = _json_segment(parts[1], f"{OIDC_ACCESS_TOKEN} claims")
    _check_time(claims, settings.leeway_s, OIDC_ACCESS_TOKEN)
    if claims.get("iss") != issuer or claims.get("token_use") != "access":
        raise AccessDenied(f"{OIDC_ACCESS_TOKEN} is not an access token of {issuer}")
    if not sub or claims.get("sub") != sub:
        raise AccessDenied(f"{OIDC_ACCESS_TOKEN} belongs to another user than the signed claims")
    return _groups(claims.get(settings.groups_claim)) or []


def _load_jwks(body: bytes) -> dict[str, rsa.RSAPublicKey]:
    try:
        doc = json.loads(body)
        return {
            k["kid"]: rsa.RSAPublicNumbers(
                int.from_bytes(_b64url(k["e"]), "big"), int.from_bytes(_b64url(k["n"]), "big")
            ).public_key()
            for k in doc["keys"]
            if k.get("kty") == "RSA"
        }
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise AccessDenied("the user pool's JWKS is not a JSON Web Key Set of RSA keys") from None


# ---------------------------------------------------------------------------------------------- the gate


def session_identity(
    headers: Mapping[str, str], settings: AccessSettings, state: Any, keys: _KeyCache = KEYS, clock: Any = time.time
) -> Identity:
    """The identity of a Streamlit session in cloud mode. A session is one websocket, opened by one request the load
    balancer authenticated, and `st.context.headers` are that request's for the session's whole life, while the
    load balancer signs each request's header to expire within minutes. So the header is verified when the session
    starts (and whenever it changes) and the identity then holds for `session_max_s`; after that a rerun is refused
    and a page reload (a new request through the load balancer) signs in again."""
    token = _header(headers, OIDC_DATA) or ""
    digest = hashlib.sha256(token.encode()).hexdigest()  # the session keeps a digest, never the token
    known = state.get(SESSION_KEY)
    now = clock()
    if isinstance(known, tuple) and len(known) == 3 and known[0] == digest:
        if now - known[1] <= settings.session_max_s:
            return known[2]
        state.pop(SESSION_KEY, None)
        raise AccessDenied("this session is older than the dashboard allows: reload the page to sign in again")
    identity = verify_alb(headers, settings, keys)
    state[SESSION_KEY] = (digest, now, identity)
    return identity


def gate(settings: AccessSettings | None = None) -> Identity | None:
    """Call once at the top of the app: the user's Identity, or None after showing why not (then `st.stop()`)."""
    import streamlit as st

    if settings is None:
        try:
            settings = AccessSettings.from_env()
        except ValueError as e:
            st.error(str(e))
            return None
    if settings.mode == "cloud":
        try:
            return session_identity(st.context.headers, settings, st.session_state)
        except AccessDenied as e:
            log.warning("dashboard access refused: %s", e)
            st.error(f"Access refused: {e}")
            return None
    return _edge_gate(st, settings)


class SignInThrottle:
    """Wrong passwords per client address: after `limit` in `window_s`, that address may not try again until the
    oldest of them is `window_s` old (one client cannot lock the technician out from another address). Streamlit's
    client address can be spoofed, so all addresses together get `limit * 10` before everyone waits."""

    ALL = "*"

    def __init__(self, limit: int = 5, window_s: float = 60.0, clock: Any = time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _wait(self, key: str, limit: int, now: float) -> float:
        recent = [t for t in self._failures.get(key, []) if now - t < self.window_s]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return 0.0 if len(recent) < limit else self.window_s - (now - recent[-limit])

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again (0: now)."""
        with self._lock:
            now = self.clock()
            return max(self._wait(client, self.limit, now), self._wait(self.ALL, self.limit * 10, now))

    def failed(self, client: str) -> None:
        with self._lock:
            now = self.clock()
            for key in (client, self.ALL):
                self._failures.setdefault(key, []).append(now)
            if len(self._failures) > 10_000:  # addresses seen once long ago: forget them
                self._failures = {k: v for k, v in self._failures.items() if now - v[-1] < self.window_s}


THROTTLE = SignInThrottle()


def _edge_gate(st: Any, settings: AccessSettings) -> Identity | None:
    # The address the server really listens on decides, not the one configured: an unset server.address
    # means every interface.
    listening = st.get_option("server.address")
    if is_loopback(listening):
        return Identity("local", settings.edge_role)
    if settings.password_hash is None:
        st.error(
            f"This dashboard listens on {listening or 'every interface'} without a password. Set "
            f"{ENV_PREFIX}PASSWORD_HASH or listen on 127.0.0.1 only."
        )
        return None
    known = st.session_state.get(SESSION_KEY)
    if isinstance(known, Identity):
        return known
    with st.form("ggvision-login"):
        st.subheader("ggvision dashboard")
        password = st.text_input("Password", type="password", key="ggvision-password")
        submitted = st.form_submit_button("Sign in")
    if submitted:
        ip = st.context.ip_address
        client = ip if isinstance(ip, str) else "local"  # None: through localhost
        wait = THROTTLE.wait_s(client)
        if wait > 0:
            st.error(f"Too many wrong passwords: try again in {int(wait) + 1} s.")
            return None
        if password and check_password(password, settings.password_hash):
            ident = Identity("edge", settings.edge_role)
            st.session_state[SESSION_KEY] = ident
            st.session_state.pop("ggvision-password", None)
            st.rerun()
        THROTTLE.failed(client)
        log.warning("dashboard sign-in refused: wrong password from %s", client)
        st.error("Wrong password.")
    return None


def main(argv: list[str] | None = None) -> int:
    """`python -m dashboard.access hash-password` | `run APP`: make a password hash, or start the app safely."""
    import argparse
    import getpass

    p = argparse.ArgumentParser(prog="python -m dashboard.access")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("hash-password", help="read a password (twice) and print its hash for PASSWORD_HASH")
    run = sub.add_parser("run", help="start the dashboard on the configured address (refuses LAN without password)")
    run.add_argument("app")
    args = p.parse_args(argv)
    if args.cmd == "hash-password":
        if sys.stdin.isatty():
            pw = getpass.getpass("Password: ")
            if getpass.getpass("Again: ") != pw:
                print("the passwords differ", file=sys.stderr)
                return 2
        else:
            pw = sys.stdin.readline().rstrip("\n")
        try:
            print(hash_password(pw))
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
        return 0
    try:
        cmd = serve_command(AccessSettings.from_env(), args.app)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    os.execv(cmd[0], cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
