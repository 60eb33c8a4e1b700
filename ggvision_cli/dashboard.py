"""`ggvision dashboard`: the Streamlit dashboard (dashboard/app.py) on a runtime root's data, loopback by default.

`--backend auto` (the default) reads the local cloud of a running `ggvision run` (its <root>/cloud/cloud.json: moto's
DynamoDB and S3) when there is one, else the edge store under the root. Access settings (address, port, password
for the LAN) are dashboard/access.py's GGVISION_DASHBOARD_* variables; `--address`/`--port` set them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from dashboard.access import AccessSettings, serve_command
from gglocal.cli import DEFAULT_ROOT

console = Console(stderr=True)
APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
DEFAULT_PORT = 8501


def dashboard_env(root: Path, backend: Literal["auto", "edge", "cloud"] = "auto") -> dict[str, str]:
    """The GGVISION_DASHBOARD_* (and AWS_*) variables that point the app at `root`'s data."""
    cloud_json = root / "cloud" / "cloud.json"
    if backend == "auto":
        backend = "cloud" if cloud_json.exists() else "edge"
    env = {"GGVISION_DASHBOARD_BACKEND": backend, "GGVISION_DASHBOARD_ROOT": str(root.resolve())}
    if backend == "cloud":
        try:
            info = json.loads(cloud_json.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"no local cloud at {cloud_json} ({e}): start `ggvision run` first, or use "
                             "--backend edge") from None
        env.update(GGVISION_DASHBOARD_CLOUD_JSON=str(cloud_json), AWS_ACCESS_KEY_ID=info["aws_access_key_id"],
                   AWS_SECRET_ACCESS_KEY=info["aws_secret_access_key"], AWS_DEFAULT_REGION=info["region"])
        try:  # the suite's site, so the Events page offers it before its first snapshot
            conf = json.loads((root / "config" / "config.json").read_text())
            env["GGVISION_DASHBOARD_SITES"] = str(conf["com.ggvision.Suite"]["site"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return env


def free_or_next(port: int, address: str = "127.0.0.1") -> int:
    """`port` when nothing listens on it, else one the kernel picks (a second `ggvision run` on the machine)."""
    with socket.socket() as s:
        try:
            s.bind((address, port))
            return port
        except OSError:
            s.bind((address, 0))
            return int(s.getsockname()[1])


def start(root: Path, backend: Literal["auto", "edge", "cloud"] = "auto", address: str = "127.0.0.1",
          port: int = DEFAULT_PORT, log: Path | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """The dashboard as a subprocess; (process, URL)."""
    env = {**os.environ, **dashboard_env(root, backend), "GGVISION_DASHBOARD_ADDRESS": address,
           "GGVISION_DASHBOARD_PORT": str(port)}
    cmd = serve_command(AccessSettings.from_env(env), str(APP))
    out = open(log, "ab") if log else None  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT if out else None)
    host = "127.0.0.1" if address in ("0.0.0.0", "") else address
    return proc, f"http://{host}:{port}"


def dashboard(
    root: Annotated[Path, typer.Option("--root", help="runtime root folder (GGVISION_ROOT)")] = DEFAULT_ROOT,
    backend: Annotated[str, typer.Option(help="auto | edge | cloud")] = "auto",
    address: Annotated[str, typer.Option(help="listen address; beyond loopback needs a password hash")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="listen port")] = DEFAULT_PORT,
) -> None:
    """The dashboard in the browser on this root's data (Ctrl-C stops it)."""
    if backend not in ("auto", "edge", "cloud"):
        console.print(f"[red]ggvision dashboard: --backend {backend!r} is not auto, edge or cloud[/red]")
        raise typer.Exit(2)
    try:
        proc, url = start(root, backend, address, port)  # type: ignore[arg-type]
    except ValueError as e:
        console.print(f"[red]ggvision dashboard: {e}[/red]")
        raise typer.Exit(2) from None
    console.print(f"dashboard: {url}")
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait(10)
