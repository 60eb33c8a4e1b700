"""`ggvision camera probe|add`: see what an RTSP camera sends, then add it to a site — its credentials into AWS
Secrets Manager under the contract's name, its entry (URL without credentials, `credentialsSecret`, detect fps and
width caps from the probe) into the site file, which is validated before it is written.

Either takes an RTSP URL or an ONVIF device address (`onvif://host[:port]`): the device is asked for the RTSP URI
of a media profile (GetProfiles, GetStreamUri; sites/onvif_probe.py) with the same credentials, and that URI is
then probed and added like a typed one.

Passwords come from stdin (`--password-stdin`, as `docker login` takes them) or a prompt, never from an option,
so they stay out of shell history and process listings; nothing prints or logs them.
"""

from __future__ import annotations

import contextlib
import difflib
import getpass
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ggvision.config.base import ConfigError
from ggvision.config.capture import redact_url
from ggvision.config.site import load_site

from .camera_add import (
    DEFAULT_DETECT_FPS,
    DEFAULT_MAX_WIDTH,
    AddError,
    add_to_text,
    camera_entry,
    secret_name,
    store_credentials,
)
from .camera_probe import ProbeError, ProbeResult, probe, split_credentials
from .onvif_probe import OnvifError, OnvifStream, discover, is_onvif

app = typer.Typer(help="Cameras: probe an RTSP or ONVIF camera, add it to a site (credentials into Secrets Manager)",
                  no_args_is_help=True)
console = Console()

UserOpt = Annotated[str | None, typer.Option(help="the camera's user (its password: --password-stdin or a prompt)")]
PasswordStdinOpt = Annotated[bool, typer.Option("--password-stdin", help="read the password from stdin")]
TimeoutOpt = Annotated[float, typer.Option(help="seconds to connect and read the first frames", min=0.5)]
FramesOpt = Annotated[int, typer.Option(help="frames to decode (the fps is measured over them)", min=1, max=500)]
TransportOpt = Annotated[str, typer.Option(help="RTSP transport: tcp or udp")]
SnapshotOpt = Annotated[Path | None, typer.Option(help="save the first frame as a JPEG here")]
ProfileOpt = Annotated[str | None, typer.Option(
    help="ONVIF addresses: the media profile's token (default: the device's first profile, its main stream)")]


def _fail(what: str, message: str, code: int = 1) -> typer.Exit:
    print(f"camera {what}: {message}", file=sys.stderr)
    return typer.Exit(code)


def _credentials(what: str, url: str, user: str | None, password_stdin: bool) -> tuple[str, str | None, str | None]:
    """(URL without credentials, user, password) from the URL's own user info or --user and stdin/prompt."""
    bare, in_user, in_password = split_credentials(url)
    if in_user and user:
        raise _fail(what, f"{redact_url(url)}: credentials both in the URL and in --user; give them once", 2)
    if in_user:
        return bare, in_user, in_password or ""
    if password_stdin and not user:
        raise _fail(what, "--password-stdin needs --user", 2)
    if not user:
        return bare, None, None
    if password_stdin:
        return bare, user, sys.stdin.read().rstrip("\r\n")
    if sys.stdin.isatty():
        return bare, user, getpass.getpass(f"password for {user} at {redact_url(bare)}: ")
    raise _fail(what, "--user without a password: give it on stdin with --password-stdin", 2)


def _resolve(what: str, address: str, user: str | None, password: str | None, profile: str | None,
             timeout: float) -> tuple[str, OnvifStream | None]:
    """(the RTSP URL to probe, what the ONVIF device said): an ONVIF address is asked for its stream URI."""
    if not is_onvif(address):
        if profile is not None:
            raise _fail(what, "--profile is for ONVIF addresses (onvif://host[:port])", 2)
        return address, None
    try:
        stream = discover(address, user, password, profile=profile, timeout=timeout)
    except OnvifError as e:
        raise _fail(what, str(e)) from None
    table = Table(title=f"{stream.address}: ONVIF device", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("device", f"{stream.manufacturer} {stream.model} (firmware {stream.firmware}, "
                            f"serial {stream.serial})")
    for p in stream.profiles:
        mark = "*" if p == stream.profile else " "
        table.add_row(f"{mark} profile {p.token}", f"{p.name}: {p.encoding or '?'} {p.width}x{p.height} "
                                                   f"@ {p.fps:g} fps" if p.fps else f"{p.name}: {p.encoding or '?'}")
    table.add_row("stream URI", redact_url(stream.uri))
    console.print(table)
    return split_credentials(stream.uri)[0], stream


def _show(result: ProbeResult, snapshot: Path | None) -> None:
    table = Table(title=f"{result.url}: answers", show_header=False)
    table.add_column("")
    table.add_column("")
    table.add_row("codec", result.codec + (f" ({result.profile})" if result.profile else ""))
    table.add_row("resolution", f"{result.width}x{result.height}")
    table.add_row("fps announced", f"{result.announced_fps:g}" if result.announced_fps else "-")
    table.add_row("fps measured", f"{result.measured_fps:g} over {result.frames} frames" if result.measured_fps
                  else f"- ({result.frames} frame(s))")
    table.add_row("probe took", f"{result.seconds:g} s")
    if snapshot is not None:
        snapshot.write_bytes(result.snapshot)
        table.add_row("snapshot", str(snapshot))
    console.print(table)


@app.command("probe")
def probe_cmd(
    url: Annotated[str, typer.Argument(help="rtsp://host[:port]/path, or an ONVIF device: onvif://host[:port]")],
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    snapshot: SnapshotOpt = None,
    timeout: TimeoutOpt = 10.0,
    frames: FramesOpt = 25,
    transport: TransportOpt = "tcp",
    profile: ProfileOpt = None,
) -> None:
    """Open the stream (RTSP DESCRIBE and the first frames): codec, resolution, fps announced and measured.
    An ONVIF device is first asked for its stream URI (GetProfiles, GetStreamUri)."""
    bare, user, password = _credentials("probe", url, user, password_stdin)
    bare, _ = _resolve("probe", bare, user, password, profile, timeout)
    try:
        result = probe(bare, user, password, timeout=timeout, frames=frames, transport=transport)
    except ProbeError as e:
        raise _fail("probe", str(e)) from None
    _show(result, snapshot)


@contextlib.contextmanager
def _quiet_botocore() -> Iterator[None]:
    """botocore logs request bodies at DEBUG, and this request's body is the password: keep it out of the logs."""
    loggers = [logging.getLogger(n) for n in ("botocore", "urllib3")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(logging.INFO, lg.getEffectiveLevel()))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _validated(file: Path, text: str) -> None:
    """load_site on the edited text, its errors naming the real file (it is checked in a temporary copy)."""
    with tempfile.NamedTemporaryFile("w", dir=file.parent, prefix=f".{file.name}.", suffix=".check",
                                     delete=False) as tmp:
        tmp.write(text)
    try:
        load_site(tmp.name)
    except ConfigError as e:
        raise _fail("add", "the camera would make the site file invalid:\n" + str(e).replace(tmp.name, str(file)),
                    2) from None
    finally:
        os.unlink(tmp.name)


@app.command("add")
def add_cmd(
    file: Annotated[Path, typer.Argument(help="the site file (YAML)")],
    site: Annotated[str, typer.Option(help="the site (it must exist in the file)")],
    device: Annotated[str, typer.Option(help="the core device's thing name (added to the site if new)")],
    name: Annotated[str, typer.Option(help="the camera's id on that device")],
    url: Annotated[str, typer.Option(help="rtsp://host[:port]/path or onvif://host[:port] (credentials are kept "
                                          "apart from it)")],
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    secrets_endpoint_url: Annotated[str | None, typer.Option(
        help="the Secrets Manager endpoint (default: the region's)")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (default: boto3's)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change; change nothing")] = False,
    no_probe: Annotated[bool, typer.Option("--no-probe", help="add it without probing (a camera not up yet)")] = False,
    detect_fps: Annotated[float, typer.Option(help="frames per second to analyse (capped to the camera's)")] = (
        DEFAULT_DETECT_FPS),
    max_width: Annotated[int, typer.Option(help="decode at most this wide (capped to the camera's width)")] = (
        DEFAULT_MAX_WIDTH),
    snapshot: SnapshotOpt = None,
    timeout: TimeoutOpt = 10.0,
    transport: TransportOpt = "tcp",
    profile: ProfileOpt = None,
) -> None:
    """Probe the camera, store its credentials as a secret and add it to the site file (an ONVIF device: the RTSP
    URI it gives for the profile)."""
    try:
        load_site(file)  # a file that is already broken is fixed first: its errors are not the camera's
    except ConfigError as e:
        raise _fail("add", f"the site file is not valid as it is:\n{e}", 2) from None
    before = file.read_text()
    try:  # where it goes, before the camera is probed: a name already taken or no such site fails at once
        add_to_text(before, site, device, name, {}, where=str(file))
    except AddError as e:
        raise _fail("add", str(e), 2) from None
    bare, user, password = _credentials("add", url, user, password_stdin)
    if is_onvif(bare) and no_probe:
        raise _fail("add", "an ONVIF address needs the device to answer (it gives the RTSP URI); with --no-probe "
                           "give the RTSP URL", 2)
    bare, _ = _resolve("add", bare, user, password, profile, timeout)
    result = None
    if not no_probe:
        try:
            result = probe(bare, user, password, timeout=timeout, transport=transport)
        except ProbeError as e:
            raise _fail("add", f"{e}\n(not added; --no-probe adds a camera that is not reachable yet)") from None
        _show(result, snapshot)
    entry = camera_entry(bare, device, name, with_secret=user is not None, fps=result.fps if result else None,
                         width=result.width if result else None, detect_fps=detect_fps, max_width=max_width,
                         transport=transport)
    try:
        edit = add_to_text(before, site, device, name, entry, where=str(file))
    except AddError as e:
        raise _fail("add", str(e), 2) from None
    _validated(file, edit.text)
    diff = "".join(difflib.unified_diff(before.splitlines(keepends=True), edit.text.splitlines(keepends=True),
                                        str(file), str(file) + " (with " + name + ")"))
    print(diff, end="" if diff.endswith("\n") else "\n")
    if not edit.comments_kept:
        print(f"note: {file} is rewritten from its data: there was no block mapping to insert the camera into, "
              "so its comments are not kept")
    secret = secret_name(device, name) if user is not None else None
    if dry_run:
        print(f"dry run: would store the credentials of {user} in secret {secret}" if secret
              else "dry run: no credentials to store")
        print(f"dry run: {file} unchanged")
        return
    if secret is not None:
        import boto3

        client = boto3.client("secretsmanager", endpoint_url=secrets_endpoint_url, region_name=region)
        try:
            with _quiet_botocore():
                how = store_credentials(client, secret, user or "", password or "", thing=device, camera=name)
        except Exception as e:  # noqa: BLE001 - botocore's errors name the operation, never the secret's value
            raise _fail("add", f"cannot store the credentials in secret {secret}: {e}\n"
                               f"({file} unchanged)") from None
        print(f"secret {secret}: {how}")
    tmp = file.with_name(f".{file.name}.new")
    tmp.write_text(edit.text)
    os.chmod(tmp, file.stat().st_mode)
    os.replace(tmp, file)  # whole or not at all
    print(f"added camera {name} to {device} in {file}; next: ggvision site apply {file} --stage "
          f"{load_site(file).sites[site].stage} --deploy (--runtime ROOT or --fleet DIR for a local device)")
