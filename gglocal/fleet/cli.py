"""`ggvision fleet up|status`: a local fleet of runtimes in thing groups."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .layout import FleetError, FleetInfo, parse_groups

app = typer.Typer(help="Local fleet: several runtimes as devices in thing groups, with a deployment service",
                  no_args_is_help=True)
console = Console()
DirOpt = Annotated[Path, typer.Option("--dir", help="fleet folder")]
DEFAULT_DIR = Path(".ggvision/fleet")


@app.command()
def up(
    fleet_dir: DirOpt = DEFAULT_DIR,
    devices: Annotated[int | None, typer.Option(help="total devices (checked against --groups)")] = None,
    groups: Annotated[str, typer.Option(help="devices per stage: dev=1,staging=2,production=5")] = "dev=1,staging=2,"
                                                                                                   "production=5",
    canary: Annotated[str, typer.Option(help="canary devices per stage: staging=1,production=1")] = "",
    base: Annotated[Path | None, typer.Option(help="build output (recipes/ + artifacts/) every deployment may "
                                                   "use, e.g. greengrass-build")] = None,
    settle: Annotated[float, typer.Option(help="seconds a changed component must stay healthy")] = 1.0,
) -> None:
    """Start the broker and the devices; runs until Ctrl-C (then stops them all)."""
    from .runner import Fleet, plan_devices

    try:
        counts = parse_groups(groups)
        canaries = parse_groups(canary) if canary else {}
        if devices is not None and devices != sum(counts.values()):
            raise FleetError(f"--devices {devices} but --groups adds up to {sum(counts.values())}")
        for stage, k in canaries.items():
            if k > counts.get(stage, 0):
                raise FleetError(f"--canary {stage}={k}: the stage has only {counts.get(stage, 0)} devices")
        fleet = Fleet(fleet_dir, plan_devices(counts, canaries), base, settle)
        info = fleet.start()
    except FleetError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    _table(info)
    console.print(f"fleet up: broker 127.0.0.1:{info.port} with the Device Shadow service, {len(info.devices)} "
                  "device(s); Ctrl-C stops it")
    fleet.run_until_signal()


def _table(info: FleetInfo) -> None:
    table = Table(title=f"fleet {info.dir}")
    table.add_column("thing group")
    table.add_column("devices")
    for g, things in sorted(info.groups.items()):
        table.add_row(g, ", ".join(things))
    console.print(table)


@app.command()
def status(fleet_dir: DirOpt = DEFAULT_DIR) -> None:
    """Groups, their current deployment, and each device's last reported deployment."""
    from .client import FleetClient

    try:
        info = FleetInfo.load(fleet_dir)
        client = FleetClient(info)
    except FleetError as e:
        console.print(f"[red]error:[/red] {e}")
        raise typer.Exit(2) from None
    try:
        client.wait_for(lambda: len(client.statuses) >= len(info.devices) or None, 3.0, "device statuses")
    except FleetError:
        pass  # devices that never had a deployment have no status yet
    _table(info)
    table = Table(title="devices")
    for col in ("device", "groups", "deployment", "status", "components"):
        table.add_column(col)
    for thing, groups in sorted(info.devices.items()):
        st = client.statuses.get(thing, {})
        comps = ", ".join(f"{n}={v}" for n, v in sorted(st.get("components", {}).items()))
        table.add_row(thing, ",".join(groups), st.get("deploymentId", "-")[:12], st.get("status", "-"), comps)
    client.close()
    console.print(table)
