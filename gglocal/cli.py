"""`gglocal` command line: run the local Greengrass runtime (`nucleus`), talk to a running one (`deployment`,
`component`), build and publish gdk projects (`build`, `publish`) and run a local fleet (`fleet`).

It knows nothing of ggvision's components; the `ggvision` command (ggvision_cli) adds the product's own tools.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from .fleet.cli import app as fleet_app
from .packaging.cli import app as packaging_app

app = typer.Typer(help="gglocal: a local AWS IoT Greengrass v2 runtime, without AWS", no_args_is_help=True)
deployment_app = typer.Typer(help="Local deployments against a running runtime", no_args_is_help=True)
component_app = typer.Typer(help="Components of a running runtime", no_args_is_help=True)
app.add_typer(deployment_app, name="deployment")
app.add_typer(component_app, name="component")
app.add_typer(packaging_app)  # `ggvision build` and `ggvision publish`
app.add_typer(fleet_app, name="fleet")  # `ggvision fleet up|status`
console = Console()

DEFAULT_ROOT = Path(os.environ.get("GGVISION_ROOT", ".ggvision/root"))
RootOpt = Annotated[Path, typer.Option("--root", help="runtime root folder (GGVISION_ROOT)")]


def _opt(help_text: str) -> typer.models.OptionInfo:
    return typer.Option(help=help_text)


@app.command()
def nucleus(
    root: RootOpt = DEFAULT_ROOT,
    recipes: Annotated[Path | None, _opt("folder of recipes to deploy at start")] = None,
    build: Annotated[Path | None, _opt("run a `make build`/gdk build output: <dir>/recipes + <dir>/artifacts")] = None,
    artifacts: Annotated[Path | None, _opt("artifact folder: <dir>/<name>/<version>/<file>")] = None,
    thing_name: Annotated[str, _opt("AWS_IOT_THING_NAME for components")] = "ggvision-local",
    region: Annotated[str, _opt("AWS_REGION for components")] = "us-east-1",
    secrets: Annotated[Path | None, _opt("JSON file of secrets for GetSecretValue")] = None,
    secrets_endpoint_url: Annotated[str | None, _opt(
        "download aws.greengrass.SecretManager's cloudSecrets from this Secrets Manager endpoint (moto's server; "
        "'aws' for AWS itself) instead of --secrets")] = None,
    iot: Annotated[bool, _opt("start the local IoT Core stand-in (mosquitto + bridge)")] = True,
    iot_endpoint: Annotated[str | None, _opt("use this MQTT broker (host:port) instead of mosquitto")] = None,
    iot_pki: Annotated[Path | None, _opt("folder with the CA and client certificates for the broker")] = None,
    spool_max_bytes: Annotated[int, _opt("bound of the offline QoS1 spool, bytes (the nucleus' "
                                         "mqtt.spooler.maxSizeInBytes)")] = 2621440,
    log_file_size_kb: Annotated[int, _opt("rotate a component's log past this size, KB (logging.fileSizeKB)")] = 1024,
    log_total_size_kb: Annotated[int, _opt("a component's logs together at most, KB "
                                           "(logging.totalLogsSizeKB)")] = 10240,
    error_reset_time: Annotated[float, _opt("seconds after which a component's error count resets")] = 3600.0,
    settle: Annotated[float, _opt("seconds a changed component must stay healthy in a deployment")] = 3.0,
    thing_groups: Annotated[str, _opt("comma-separated thing groups whose fleet deployments to follow")] = "",
    ipc_connect_timeout: Annotated[float, _opt("seconds an IPC client has to send CONNECT")] = 5.0,
    dashboard: Annotated[bool | None, _opt("live status view (default: when stdout is a terminal)")] = None,
    merge: Annotated[list[str], typer.Option("--merge", help="NAME=JSON configuration merged into the startup "
                                             "deployment (e.g. a local cloud's sink)")] = [],  # noqa: B006
    reset: Annotated[list[str], typer.Option("--reset", help="NAME=/json/pointer reset by the startup deployment "
                                             "before the merge")] = [],  # noqa: B006
    rules_bucket: Annotated[str, _opt("archive ggvision/+/{results,events,metrics} into this S3 bucket as the "
                                      "cloud's IoT rules do (a local cloud)")] = "",
    rules_endpoint_url: Annotated[str, _opt("S3 endpoint of --rules-bucket (e.g. moto's server)")] = "",
) -> None:
    """Run the local Greengrass runtime until Ctrl-C."""
    import sys

    from .ipc.server import ServerLimits
    from .nucleus.kernel import KernelOptions
    from .nucleus.recipereader import RecipeError
    from .nucleus.runtime import serve
    from .nucleus.secrets import SecretError

    if build is not None:
        if recipes is not None or artifacts is not None:
            console.print("[red]--build replaces --recipes/--artifacts; give one or the other[/red]")
            raise typer.Exit(2)
        from .nucleus.buildoutput import prepare_build_output

        try:
            recipes, artifacts = prepare_build_output(build, root)
        except ValueError as e:
            console.print(f"[red]ggvision nucleus --build: {e}[/red]")
            raise typer.Exit(2) from None
    if spool_max_bytes <= 0 or log_file_size_kb <= 0 or log_total_size_kb < log_file_size_kb:
        console.print("[red]ggvision nucleus: --spool-max-bytes and --log-file-size-kb must be positive and "
                      "--log-total-size-kb at least --log-file-size-kb[/red]")
        raise typer.Exit(2)
    startup_merge = {}
    for name, text in _pairs(merge, "--merge"):
        try:
            doc = json.loads(text)
        except ValueError as e:
            console.print(f"[red]ggvision nucleus --merge {name}: not JSON: {e}[/red]")
            raise typer.Exit(2) from None
        if not isinstance(doc, dict):
            console.print(f"[red]ggvision nucleus --merge {name}: expected a JSON object[/red]")
            raise typer.Exit(2)
        startup_merge[name] = doc
    startup_reset: dict[str, list[str]] = {}
    for name, pointer in _pairs(reset, "--reset"):
        startup_reset.setdefault(name, []).append(pointer)
    from .iotcore.rules import ArchiveTarget

    rules = ArchiveTarget(rules_bucket, rules_endpoint_url, region) if rules_bucket else None
    show = sys.stdout.isatty() if dashboard is None else dashboard
    opts = KernelOptions(
        root=root, console=not show, thing_name=thing_name, region=region, secrets_file=secrets, iot=iot,
        secrets_endpoint_url=secrets_endpoint_url,
        iot_spool_max_bytes=spool_max_bytes, iot_endpoint=iot_endpoint, iot_pki=iot_pki,
        log_file_size_kb=log_file_size_kb, log_total_size_kb=log_total_size_kb,
        error_reset_time=error_reset_time, settle_s=settle,
        thing_groups=tuple(g for g in thing_groups.split(",") if g),
        limits=ServerLimits(connect_timeout_s=ipc_connect_timeout), rules_archive=rules, startup_merge=startup_merge,
        startup_reset=startup_reset,
    )
    try:
        code = asyncio.run(serve(opts, recipes, artifacts, dashboard=show))
    except (RecipeError, SecretError, OSError) as e:
        # Bad input at start-up: say what and where, without a traceback.
        console.print(f"[red]ggvision nucleus: {e}[/red]")
        raise typer.Exit(2) from None
    raise typer.Exit(code)


def _client(root: Path):  # noqa: ANN202 - awsiot types are optional imports
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    info_path = root / "cli_ipc_info" / "cli.json"
    if not info_path.exists():
        console.print(f"[red]No runtime at {root}: {info_path} not found (is `ggvision nucleus` running?)[/red]")
        raise typer.Exit(2)
    info = json.loads(info_path.read_text())
    from awsiot.greengrasscoreipc import connect

    return GreengrassCoreIPCClientV2(client=connect(ipc_socket=info["socket"], authtoken=info["token"]))


def _pairs(values: list[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, rest = v.partition("=")
        if not sep or not name:
            console.print(f"[red]{what}: expected NAME=VALUE, got {v!r}[/red]")
            raise typer.Exit(2)
        out.append((name, rest))
    return out


@deployment_app.command("create")
def deployment_create(
    root: RootOpt = DEFAULT_ROOT,
    recipe_dir: Annotated[Path | None, typer.Option()] = None,
    artifact_dir: Annotated[Path | None, typer.Option()] = None,
    add: Annotated[list[str], typer.Option("--add", help="NAME=VERSION root component to add/update")] = [],  # noqa: B006
    remove: Annotated[list[str], typer.Option("--remove", help="root component to remove")] = [],  # noqa: B006
    merge: Annotated[list[str], typer.Option("--merge", help="NAME=JSON configuration to merge")] = [],  # noqa: B006
    reset: Annotated[list[str], typer.Option("--reset", help="NAME=/json/pointer to reset")] = [],  # noqa: B006
    failure_policy: Annotated[str, typer.Option(help="ROLLBACK or DO_NOTHING")] = "ROLLBACK",
    wait: Annotated[bool, typer.Option(help="wait for the deployment to finish")] = True,
    timeout: Annotated[float, typer.Option()] = 600.0,
) -> None:
    """Create a local deployment (like `greengrass-cli deployment create`)."""
    from awsiot.greengrasscoreipc.model import CreateLocalDeploymentRequest

    cfg: dict[str, dict] = {}
    for name, text in _pairs(merge, "--merge"):
        try:
            cfg.setdefault(name, {})["MERGE"] = json.loads(text)
        except ValueError as e:
            console.print(f"[red]--merge {name}: not valid JSON: {e}[/red]")
            raise typer.Exit(2) from None
    for name, pointer in _pairs(reset, "--reset"):
        cfg.setdefault(name, {}).setdefault("RESET", []).append(pointer)
    client = _client(root)
    try:
        req = CreateLocalDeploymentRequest(
            recipe_directory_path=str(recipe_dir.resolve()) if recipe_dir else None,
            artifacts_directory_path=str(artifact_dir.resolve()) if artifact_dir else None,
            root_component_versions_to_add=dict(_pairs(add, "--add")) or None,
            root_components_to_remove=remove or None,
            component_to_configuration=cfg or None,
            failure_handling_policy=failure_policy,
        )
        resp = client.client.new_create_local_deployment()
        resp.activate(req).result(30)
        dep_id = resp.get_response().result(30).deployment_id
        console.print(f"deployment [bold]{dep_id}[/bold] submitted")
        if not wait:
            return
        import time

        deadline = time.monotonic() + timeout
        with console.status("deploying…"):
            while time.monotonic() < deadline:
                d = client.get_local_deployment_status(deployment_id=dep_id).deployment
                if d.status in ("SUCCEEDED", "FAILED", "CANCELED"):
                    break
                time.sleep(0.25)  # a CLI poll, as greengrass-cli does; no event to await over IPC
        details = d.deployment_status_details
        detail = f" ({details.detailed_deployment_status}: {details.deployment_failure_cause})" if details and \
            details.deployment_failure_cause else ""
        colour = "green" if d.status == "SUCCEEDED" else "red"
        console.print(f"[{colour}]{d.status}[/{colour}]{detail}")
        if d.status != "SUCCEEDED":
            raise typer.Exit(1)
    finally:
        client.close()


@deployment_app.command("list")
def deployment_list(root: RootOpt = DEFAULT_ROOT) -> None:
    client = _client(root)
    try:
        table = Table("deployment", "status", "detail")
        for d in client.list_local_deployments().local_deployments or []:
            det = d.deployment_status_details
            table.add_row(d.deployment_id, d.status, (det.detailed_deployment_status or "") if det else "")
        console.print(table)
    finally:
        client.close()


@component_app.command("list")
def component_list(root: RootOpt = DEFAULT_ROOT) -> None:
    """Components, versions and states (ListComponents)."""
    client = _client(root)
    try:
        table = Table("component", "version", "state")
        for c in client.list_components().components or []:
            table.add_row(c.component_name, c.version, c.state)
        console.print(table)
    finally:
        client.close()


@component_app.command("restart")
def component_restart(name: str, root: RootOpt = DEFAULT_ROOT) -> None:
    client = _client(root)
    try:
        r = client.restart_component(component_name=name)
        console.print(f"{r.restart_status}: {r.message}")
    finally:
        client.close()


@component_app.command("stop")
def component_stop(name: str, root: RootOpt = DEFAULT_ROOT) -> None:
    client = _client(root)
    try:
        r = client.stop_component(component_name=name)
        console.print(f"{r.stop_status}: {r.message}")
    finally:
        client.close()


if __name__ == "__main__":
    app()
