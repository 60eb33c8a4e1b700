"""`ggvision site validate|plan|apply|status FILE`: check a site file, show what its stages' deployments and its
devices would get, write them (the stage's deployment document; each device's shadows as desired state), and
show per device what the shadows ask for against what the device reports."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ggvision.config.base import ConfigError
from ggvision.config.site import SiteFile, load_site

from .apply import (
    IotDataPlane,
    ShadowPlane,
    TopicsPlane,
    applied_path,
    applied_record,
    render_stage,
    shadow_changes,
    shadow_status,
    write_shadows,
)
from .deploy import DeployError, deploy_aws, deploy_fleet, deploy_runtime, site_part, thing_group
from .plan import PlanError, device_state, stage_changes

app = typer.Typer(help="Sites and cameras as desired state: validate, plan, apply a site file; show its status",
                  no_args_is_help=True)
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


RuntimeOpt = Annotated[Path | None, typer.Option(
    "--runtime", help="a local runtime's root: write and read shadows over its IoT Core stand-in's MQTT shadow "
                      "topics instead of the AWS IoT data plane")]
FleetOpt = Annotated[Path | None, typer.Option(
    "--fleet", help="a local fleet's folder (`ggvision fleet up --dir`): write and read shadows at its Device Shadow "
                    "service over the fleet broker's MQTT shadow topics")]
EndpointOpt = Annotated[str | None, typer.Option(
    "--endpoint-url", help="the IoT data plane endpoint (default: the account's iot:Data-ATS endpoint)")]
RegionOpt = Annotated[str | None, typer.Option(help="AWS region (default: boto3's)")]


@contextlib.contextmanager
def _plane(runtime: Path | None, endpoint_url: str | None, region: str | None,
           fleet: Path | None = None) -> Iterator[ShadowPlane]:
    if runtime is not None and fleet is not None:
        print("site: give --runtime or --fleet, not both")
        raise typer.Exit(2)
    if runtime is not None or fleet is not None:
        from gglocal.fleet.layout import FleetError
        from gglocal.fleet.shadows import fleet_shadow_client
        from gglocal.nucleus.shadowcloud import ShadowTopicsClient

        with tempfile.TemporaryDirectory(prefix="ggv-site-") as work:
            try:
                if fleet is not None:
                    client = fleet_shadow_client(fleet, Path(work))
                else:
                    assert runtime is not None
                    client = ShadowTopicsClient.for_runtime(runtime, Path(work))
            except (ConnectionError, FleetError) as e:
                print(f"site: {e}")
                raise typer.Exit(2) from None
            try:
                yield TopicsPlane(client)
            finally:
                client.close()
        return
    import boto3

    if endpoint_url is None:  # the account's data endpoint, as the AWS CLI's iot-data commands need it too
        endpoint_url = "https://" + boto3.client("iot", region_name=region).describe_endpoint(
            endpointType="iot:Data-ATS")["endpointAddress"]
    yield IotDataPlane(boto3.client("iot-data", endpoint_url=endpoint_url, region_name=region))


def _new_resets(path: Path, doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(component, JSON pointer) of each reset the rendered document adds to the one on disk."""
    old = json.loads(path.read_text()).get("components", {})
    return [(name, ptr) for name, spec in sorted(doc.get("components", {}).items())
            for ptr in spec.get("configurationUpdate", {}).get("reset", [])
            if ptr not in old.get(name, {}).get("configurationUpdate", {}).get("reset", [])]


def _short(state: Any) -> str:
    if not isinstance(state, dict):
        return "-"
    return "; ".join(f"{k}: {', '.join(sorted(v)) or '-'}" if isinstance(v, dict) else f"{k}: {v!r}"
                     for k, v in sorted(state.items()) if k != "error") or "-"


@app.command()
def apply(
    file: FileArg,
    stage: Annotated[str, typer.Option(help="the stage to apply: its deployment document and its devices")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change; change nothing")] = False,
    deployments: Annotated[Path, typer.Option(help="folder of the stage deployment documents")] = Path(
        "deploy/deployments"),
    runtime: RuntimeOpt = None,
    fleet: FleetOpt = None,
    endpoint_url: EndpointOpt = None,
    region: RegionOpt = None,
    deploy: Annotated[bool, typer.Option(
        "--deploy", help="then deploy the document to the stage's target: its thing group (greengrassv2 "
                         "CreateDeployment), the --fleet's group, or the --runtime (a local deployment)")] = False,
    account: Annotated[str | None, typer.Option(
        help="the AWS account the document's ${AWS_ACCOUNT_ID} is filled with (default: STS's for AWS, "
             "123456789012 for a local runtime or fleet)")] = None,
) -> None:
    """Render the stage's deployment document from the site file and write each of its devices' cameras,
    sensors, zones and rules as the desired state of their components' named shadows; with --deploy, deploy
    the document too."""
    site = _load(file)
    try:
        changes = stage_changes(site, deployments) if stage in site.stages else []
        path, doc = render_stage(site, stage, deployments)
    except PlanError as e:
        print(f"apply: {e}")
        raise typer.Exit(2) from None
    changes = [c for c in changes if c.where == f"stage {stage}"]
    with _plane(runtime, endpoint_url, region, fleet) as plane:
        shadow = shadow_changes(site, stage, plane)
        table = Table(title=f"stage {stage}: {path}" + (" (dry run)" if dry_run else ""))
        for col in ("where", "key", "now", "after"):
            table.add_column(col)
        for c in changes:
            table.add_row(c.where, c.what, "-" if c.before is None else repr(c.before), repr(c.after))
        resets = _new_resets(path, doc)
        for sc in shadow:
            for key, value in sorted(sc.patch.items()):
                now = sorted(sc.before.get(key) or {}) if isinstance(sc.before.get(key), dict) else sc.before.get(key)
                after = "removed" if value is None else _short({key: value})
                table.add_row(f"{sc.thing} {sc.shadow}", f"desired.{key}", repr(now), after)
        console.print(table if changes or shadow else f"stage {stage}: no change" if not resets else "")
        for component, ptr in resets:  # plain lines, whole: a table may cut a long pointer
            print(f"stage {stage}: {component}: reset {ptr} (no longer in the site file: back to its default)")
        if dry_run:
            if deploy:
                print(f"stage {stage}: dry run: nothing deployed")
            return
        path.write_text(json.dumps(doc, indent=2) + "\n")
        applied_path(path).write_text(json.dumps(applied_record(site, stage), indent=1, sort_keys=True) + "\n")
        write_shadows(shadow, plane)
    if not deploy:
        console.print(f"wrote {path} and {len(shadow)} shadow update(s); `--deploy` sends the document to "
                      "the stage's devices (the fleet-wide part, and the ShadowManager sync that brings the shadows)")
        return
    console.print(f"wrote {path} and {len(shadow)} shadow update(s)")
    _deploy(site, stage, doc, runtime, fleet, region, account)


def _deploy(site: SiteFile, stage: str, doc: dict[str, Any], runtime: Path | None, fleet: Path | None,
            region: str | None, account: str | None) -> None:
    from .deploy import LOCAL_ACCOUNT, LOCAL_REGION, fill

    try:
        group = thing_group(site, stage, doc)
        if runtime is None and fleet is None:
            dep_id = deploy_aws(doc, group, region, account)
            where = f"thing group {group}"
        else:
            part = site_part(site, stage, fill(doc, region or LOCAL_REGION, account or LOCAL_ACCOUNT))
            if fleet is not None:
                dep_id = deploy_fleet(fleet, group, part, str(doc.get("deploymentName") or f"ggvision-{stage}"))
                where = f"the fleet's thing group {group}"
            else:
                assert runtime is not None
                dep_id = deploy_runtime(runtime, part)
                where = f"the runtime at {runtime}"
    except DeployError as e:
        print(f"apply: deploy: {e}")
        raise typer.Exit(1) from None
    console.print(f"deployed stage {stage} to {where}: deployment {dep_id}")


@app.command()
def status(
    file: FileArg,
    runtime: RuntimeOpt = None,
    fleet: FleetOpt = None,
    endpoint_url: EndpointOpt = None,
    region: RegionOpt = None,
) -> None:
    """Per device and shadow: what the site file says, what the shadow asks for, what the device reports, and
    why the device refused it, if it did."""
    site = _load(file)
    with _plane(runtime, endpoint_url, region, fleet) as plane:
        rows = shadow_status(site, plane)
    table = Table(title=f"{file}: devices")
    for col in ("device", "shadow", "state", "desired", "reported", "error"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.thing, r.shadow, r.state, _short(r.desired), _short(r.reported), r.error or "")
    console.print(table)
    refused = [r for r in rows if r.error]
    for r in refused:  # in full, one line each: the table may cut it
        print(f"{r.thing} {r.shadow}: refused: {r.error}")
    if refused:
        raise typer.Exit(1)
