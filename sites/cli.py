"""`ggvision site validate FILE` and `ggvision site plan FILE`: check a site file, and show what its stages'
deployments and its devices would get before anything changes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ggvision.config.base import ConfigError
from ggvision.config.site import SiteFile, load_site

from .plan import PlanError, device_state, stage_changes

app = typer.Typer(help="Sites and cameras as desired state: validate and plan a site file", no_args_is_help=True)
console = Console()
FileArg = Annotated[Path, typer.Argument(help="the site file (YAML; schema: docs/config/site.schema.json)")]


def _load(path: Path) -> SiteFile:
    try:
        return load_site(path)
    except ConfigError as e:
        print(e)  # plain: every line is `file:line: key.path: what is wrong`
        raise typer.Exit(2) from None


@app.command()
def validate(file: FileArg) -> None:
    """Check the site file against the components' own models; list its sites, devices and cameras."""
    site = _load(file)
    table = Table(title=f"{file}: valid")
    for col in ("site", "stage", "device", "cameras", "sensors"):
        table.add_column(col)
    for thing, (site_id, device) in sorted(site.devices().items()):
        table.add_row(site_id, site.sites[site_id].stage, thing, ", ".join(sorted(device.cameras)) or "-",
                      ", ".join(sorted(device.sensors)) or "-")
    console.print(table)


@app.command()
def plan(
    file: FileArg,
    deployments: Annotated[Path, typer.Option(help="folder of the stage deployment documents")] = Path(
        "deploy/deployments"),
) -> None:
    """What would change: configuration per stage (against its deployment document) and each device's cameras."""
    site = _load(file)
    try:
        changes = stage_changes(site, deployments)
    except PlanError as e:
        print(f"plan: {e}")
        raise typer.Exit(2) from None
    table = Table(title="stage deployments")
    for col in ("where", "key", "now", "planned"):
        table.add_column(col)
    for c in changes:
        table.add_row(c.where, c.what, "-" if c.before is None else repr(c.before), repr(c.after))
    console.print(table if changes else "stage deployments: no change")
    devices = Table(title="device desired state")
    for col in ("device", "site", "cameras", "sensors"):
        devices.add_column(col)
    for thing, state in sorted(device_state(site).items()):
        devices.add_row(thing, state["site"], ", ".join(sorted(state["capture"]["cameras"])) or "-",
                        ", ".join(sorted(state["capture"]["sensors"])) or "-")
    console.print(devices)
