"""`ggvision run`: what `make run` starts — the local cloud (`python -m cloud.local`: moto's server with the
processing stacks, the second-stage endpoint, the ingest runner) and then the local runtime on the build output
with the Uplink writing to that cloud's data bucket and the IoT rules' archive stood in by the runtime, so the
demo camera's events become verdict items in DynamoDB within seconds. `--no-cloud` runs the edge alone, with the
Uplink's local directory bucket as before. Both print the dashboard's URL and run it alongside (`--no-dashboard`:
not).

The runtime's SecretManager stand-in downloads camera secrets from the local cloud's Secrets Manager (or
`--secrets-endpoint-url`), where `ggvision camera add --secrets-endpoint-url` stores them; and a site file describing
this device (ggvision_cli/sitefile.py) is written beside the root, so adding a camera is the two commands printed at
start (docs/sites.md, "Adding a camera to `make run`")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from gglocal.cli import DEFAULT_ROOT, nucleus

from .sitefile import ensure_site, two_commands

console = Console(stderr=True)
UPLINK = "com.ggvision.Uplink"
THING = "ggvision-local"  # the runtime's thing name (`ggvision nucleus --thing-name`'s default)
CLOUD_KEYS = "AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "  # the local cloud's (moto's) credentials
CLOUD_START_S = 180.0


def start_cloud(root: Path, model: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    """Start `python -m cloud.local` under <root>/cloud and wait for its cloud.json."""
    d = root / "cloud"
    d.mkdir(parents=True, exist_ok=True)
    info_file = d / "cloud.json"
    info_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "cloud.local", "--dir", str(d), "--model", str(model)],
                            stdout=open(d / "local.log", "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
    deadline = time.monotonic() + CLOUD_START_S
    while not info_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the local cloud did not start (see {d / 'local.log'})")
        time.sleep(0.2)  # the file appears once every part answers; nothing else to await
    return proc, json.loads(info_file.read_text())


def uplink_merge(info: dict[str, str]) -> dict[str, object]:
    """The Uplink's sink in the local cloud's data bucket (an S3 sink on moto's endpoint)."""
    return {"sink": {"type": "s3", "bucket": info["data_bucket"], "region": info["region"],
                     "endpointUrl": info["endpoint_url"]}}


def run(
    root: Annotated[Path, typer.Option("--root", help="runtime root folder (GGVISION_ROOT)")] = DEFAULT_ROOT,
    build: Annotated[Path, typer.Option(help="a `make build`/gdk build output: <dir>/recipes + <dir>/artifacts")]
    = Path("greengrass-build"),
    cloud: Annotated[bool, typer.Option(help="start the local cloud (moto, the endpoint, the ingest runner)")] = True,
    model: Annotated[Path, typer.Option(help="the cloud's second-stage model folder")]
    = Path("components/com.ggvision.Model.SyntheticDetector"),
    dashboard: Annotated[bool, typer.Option(help="start the dashboard alongside, on loopback")] = True,
    secrets_endpoint_url: Annotated[str | None, typer.Option(
        help="Secrets Manager endpoint the runtime downloads camera secrets from (default: the local cloud's; "
             "none with --no-cloud: the runtime's secrets file)")] = None,
    site: Annotated[Path | None, typer.Option(
        help="the site file describing this device, written if missing (default: beside --root, site.yaml)")] = None,
) -> None:
    """The whole system on this machine: the local cloud, then the edge under the local runtime (Ctrl-C stops
    both)."""
    site = site or root.parent / "site.yaml"
    try:
        if ensure_site(site, build, THING):
            console.print(f"wrote {site}: this device ({THING}) and the cameras it runs")
    except (OSError, ValueError) as e:
        console.print(f"[red]ggvision run: {e}[/red]")
        raise typer.Exit(2) from None
    if not cloud:  # the recipe's sink again (a previous run may have left the cloud's in the root's config)
        _say_how_to_add_a_camera(site, root, secrets_endpoint_url, None)
        board = start_dashboard(root, "edge") if dashboard else None
        try:
            nucleus(root=root, build=build, thing_name=THING, reset=[f"{UPLINK}=/sink"],
                    secrets_endpoint_url=secrets_endpoint_url)
        finally:
            stop(board)
        return
    try:
        proc, info = start_cloud(root, model)
    except RuntimeError as e:
        console.print(f"[red]ggvision run: {e}[/red]")
        raise typer.Exit(2) from None
    console.print(f"local cloud: moto {info['endpoint_url']} (keys testing/testing), data bucket "
                  f"{info['data_bucket']}, verdicts table {info['table']}, endpoint {info['sagemaker_url']}")
    os.environ.update(AWS_ACCESS_KEY_ID=info["aws_access_key_id"], AWS_SECRET_ACCESS_KEY=info["aws_secret_access_key"],
                      AWS_DEFAULT_REGION=info["region"])  # the components' boto3 (a device gets TES credentials)
    secrets_endpoint_url = secrets_endpoint_url or info["endpoint_url"]
    _say_how_to_add_a_camera(site, root, secrets_endpoint_url, info["region"])
    board = start_dashboard(root, "cloud") if dashboard else None
    try:
        nucleus(root=root, build=build, thing_name=THING, region=info["region"], reset=[f"{UPLINK}=/sink"],
                merge=[f"{UPLINK}={json.dumps(uplink_merge(info))}"], rules_bucket=info["data_bucket"],
                rules_endpoint_url=info["endpoint_url"], secrets_endpoint_url=secrets_endpoint_url)
    finally:
        stop(board)
        stop(proc)


def start_dashboard(root: Path, backend: Literal["edge", "cloud"]) -> subprocess.Popen[bytes] | None:
    """The dashboard on this run's data, on loopback (a free port when 8501 is taken); its URL printed. A dashboard
    that cannot start is said and skipped: the run goes on without it."""
    from .dashboard import DEFAULT_PORT, free_or_next, start

    root.mkdir(parents=True, exist_ok=True)
    try:
        board, url = start(root, backend, port=free_or_next(DEFAULT_PORT), log=root / "dashboard.log")
    except (ValueError, OSError) as e:
        console.print(f"[yellow]dashboard not started: {e}[/yellow]")
        return None
    console.print(f"dashboard: {url}  ({backend} backend; log {root / 'dashboard.log'})")
    return board


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _say_how_to_add_a_camera(site: Path, root: Path, secrets_endpoint_url: str | None, region: str | None) -> None:
    first, second = two_commands(site, root, THING, secrets_endpoint_url, region, CLOUD_KEYS if region else "")
    console.print(f"add an RTSP camera to this device (docs/sites.md), in another shell:\n  {first}\n  {second}",
                  highlight=False, soft_wrap=True)
