"""Asking an ONVIF camera for its RTSP stream before it joins a site: the device's identity
(GetDeviceInformation), its media profiles (GetProfiles: encoding, resolution, frame-rate limit) and the RTSP URI
of one profile (GetStreamUri with StreamSetup RTP-Unicast over RTSP), over SOAP with onvif-zeep-async, which
bundles the ONVIF WSDLs (nothing is fetched from onvif.org). Requests carry a WS-Security UsernameToken with a
password digest, as ONVIF devices require.

`discover(address, user, password)` gives an OnvifStream or an OnvifError whose message names the address and
says what went wrong: unreachable, refused, no answer in time, credentials refused (ter:NotAuthorized), not an
ONVIF device, no media profiles, no such profile, another SOAP fault (its code and reason). The password is never
in a message or a log record. Addresses are `onvif://host[:port]` (port 80 when not given).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

SCHEME = "onvif"
DEFAULT_PORT = 80
STREAM_SETUP = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}


class OnvifError(Exception):
    """The device could not be asked for its stream; the message names the address and the reason."""


@dataclass(frozen=True)
class OnvifProfile:
    token: str
    name: str
    encoding: str | None
    width: int | None
    height: int | None
    fps: float | None  # the encoder's frame-rate limit


@dataclass(frozen=True)
class OnvifStream:
    address: str  # onvif://host:port, without credentials
    manufacturer: str
    model: str
    firmware: str
    serial: str
    profiles: tuple[OnvifProfile, ...]
    profile: OnvifProfile  # the one whose stream URI was asked for
    uri: str  # the RTSP URI GetStreamUri returned


def is_onvif(address: str) -> bool:
    return address.lower().startswith(f"{SCHEME}://")


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of `onvif://host[:port]` (user info, if any, is the caller's to split off first)."""
    parts = urlsplit(address)
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise OnvifError(f"{address}: the port is not a number in 1-65535") from None
    if parts.scheme.lower() != SCHEME or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise OnvifError(f"{address}: not an ONVIF address (onvif://host[:port], the device service's host "
                         "and HTTP port)")
    return parts.hostname, port


def _profile(p: Any) -> OnvifProfile:
    enc = getattr(p, "VideoEncoderConfiguration", None)
    res = getattr(enc, "Resolution", None)
    rate = getattr(enc, "RateControl", None)
    limit = getattr(rate, "FrameRateLimit", None)
    return OnvifProfile(token=str(p.token), name=str(getattr(p, "Name", "") or p.token),
                        encoding=getattr(enc, "Encoding", None), width=getattr(res, "Width", None),
                        height=getattr(res, "Height", None), fps=float(limit) if limit else None)


def _reason(e: BaseException, step: str, timeout: float, user: str | None) -> str:
    """Why `step` failed, in words; the SOAP fault's reason is the device's text, never the request."""
    import aiohttp
    import zeep.exceptions

    if isinstance(e, zeep.exceptions.Fault):
        subcodes = [getattr(s, "localname", str(s)) for s in (e.subcodes or [])]
        if "NotAuthorized" in subcodes:
            return ("the camera refused the credentials (ONVIF ter:NotAuthorized)" if user else
                    "the camera wants credentials (give --user and --password-stdin)")
        code = "/".join([str(e.code or "fault"), *subcodes])
        return f"SOAP fault in {step}: {code}: {e.message or 'no reason given'}"
    if isinstance(e, zeep.exceptions.TransportError):
        if e.status_code in (401, 403):
            return f"HTTP {e.status_code} in {step}: the camera refused the credentials"
        return f"HTTP {e.status_code} in {step}: not an ONVIF device service at this address"
    if isinstance(e, (zeep.exceptions.XMLSyntaxError, zeep.exceptions.XMLParseError)):
        return f"not an ONVIF device (its answer to {step} is not SOAP)"
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return f"no answer within {timeout:g} s (unreachable, or not an ONVIF device)"
    if isinstance(e, aiohttp.ClientConnectorError):
        cause = e.os_error
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused: nothing listens at this host and port"
        if getattr(cause, "errno", None) in (errno.EHOSTUNREACH, errno.ENETUNREACH):
            return f"unreachable: {cause.strerror or 'no route to host'}"
        return f"cannot connect: {getattr(cause, 'strerror', None) or type(cause).__name__}"
    if isinstance(e, aiohttp.ClientError):
        return f"HTTP error in {step}: {type(e).__name__}"
    return f"{step} failed: {type(e).__name__}"


async def _ask(host: str, port: int, user: str | None, password: str | None, token: str | None,
               state: dict[str, Any]) -> OnvifStream:
    from onvif import ONVIFCamera

    # no_cache: no SQLite cache of WSDLs in the user's home; the bundled WSDLs are read from the package.
    # Without a user the token is sent empty (the library cannot build one from None): the device refuses it.
    camera = ONVIFCamera(host, port, user or "", password or "", no_cache=True)
    try:
        state["step"] = "GetServices"
        await camera.update_xaddrs()
        device = await camera.create_devicemgmt_service()
        state["step"] = "GetDeviceInformation"
        info = await device.GetDeviceInformation()
        state["step"] = "GetProfiles"
        media = await camera.create_media_service()
        profiles = tuple(_profile(p) for p in (await media.GetProfiles() or []))
        if not profiles:
            raise OnvifError("the device has no media profiles (GetProfiles answered none): it offers no stream")
        chosen = profiles[0] if token is None else next((p for p in profiles if p.token == token), None)
        if chosen is None:
            raise OnvifError(f"no profile {token!r} (the device has: {', '.join(p.token for p in profiles)})")
        state["step"] = "GetStreamUri"
        answer = await media.GetStreamUri({"StreamSetup": STREAM_SETUP, "ProfileToken": chosen.token})
        uri = str(getattr(answer, "Uri", "") or "")
        if not uri.lower().startswith(("rtsp://", "rtsps://")):
            raise OnvifError(f"GetStreamUri for profile {chosen.token!r} gave no RTSP URI ({uri or 'empty'!s})")
        return OnvifStream(address=f"{SCHEME}://{host}:{port}", manufacturer=str(info.Manufacturer or ""),
                           model=str(info.Model or ""), firmware=str(info.FirmwareVersion or ""),
                           serial=str(info.SerialNumber or ""), profiles=profiles, profile=chosen, uri=uri)
    finally:
        await camera.close()


@contextlib.contextmanager
def _quiet_soap() -> Iterator[None]:
    """The ONVIF library and zeep log whole envelopes at DEBUG: the UsernameToken's digest, nonce and time would
    let anyone reading the log try passwords offline. Keep them at INFO or above while asking."""
    loggers = [logging.getLogger(n) for n in ("onvif", "zeep")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(logging.INFO, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def discover(address: str, user: str | None = None, password: str | None = None, *, profile: str | None = None,
             timeout: float = 10.0) -> OnvifStream:
    """Ask the device at `address` (onvif://host[:port], no credentials in it) for the RTSP URI of `profile`
    (its token; default: the first profile, the device's main stream), within `timeout` seconds."""
    host, port = parse_address(address)
    shown = f"{SCHEME}://{host}:{port}"
    state: dict[str, Any] = {"step": "connect"}
    log.info("asking ONVIF device %s for its stream", shown)

    async def bounded() -> OnvifStream:
        return await asyncio.wait_for(_ask(host, port, user, password, profile, state), timeout)

    try:
        with _quiet_soap():
            return asyncio.run(bounded())
    except OnvifError as e:
        raise OnvifError(f"{shown}: {e}") from None
    except Exception as e:  # noqa: BLE001 - every failure becomes a reason in words
        reason = _reason(e, state["step"], timeout, user)
        if password:
            reason = reason.replace(password, "***")
        raise OnvifError(f"{shown}: {reason}") from None
