"""``python -m model_registry`` (console script ``ggvision-models``): register, list, show, diff, build, publish."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .names import RegistryError
from .registry import UNSET, Registry
from .storage import open_store

app = typer.Typer(help="ggvision model registry: register ONNX models, list/show/diff them, build and publish "
                       "their com.ggvision.Model.<Name> components", no_args_is_help=True)
console = Console()
err = Console(stderr=True)

StoreOpt = Annotated[str | None, typer.Option("--store", help="folder or s3://bucket/prefix (optional prefix) "
                                              "(GGVISION_MODEL_STORE; default .ggvision/models)")]
EndpointOpt = Annotated[str | None, typer.Option("--endpoint-url", help="S3 endpoint (e.g. a local S3 server)")]


def _registry(store: str | None, endpoint_url: str | None) -> Registry:
    try:
        return Registry(open_store(store, endpoint_url=endpoint_url))
    except RegistryError as e:
        _fail(e)
        raise


def _fail(e: Exception) -> None:
    err.print(f"[red]error:[/red] {e}", highlight=False)
    raise typer.Exit(1)


def _json_arg(value: str | None, what: str) -> Any:
    """A JSON literal or @file."""
    if value is None:
        return None
    try:
        text = Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value
        return json.loads(text)
    except (OSError, ValueError) as e:
        _fail(RegistryError(f"{what}: expected JSON or @file.json: {e}"))


def _pairs(values: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for v in values:
        k, sep, raw = v.partition("=")
        if not sep or not k:
            _fail(RegistryError(f"{what}: expected KEY=VALUE, got {v!r}"))
        try:
            out[k] = json.loads(raw)
        except ValueError:
            out[k] = raw
    return out


@app.command()
def register(
    source: Annotated[Path, typer.Argument(help="model directory (model.onnx + manifest.json) or an .onnx file")],
    name: Annotated[str | None, typer.Option(help="model name (a-z 0-9 . _ -)")] = None,
    version: Annotated[str | None, typer.Option(help="semantic version, e.g. 1.2.0")] = None,
    family: Annotated[str | None, typer.Option(help="yolox | yolov8 | ssd | classification | tabular")] = None,
    labels: Annotated[str | None, typer.Option(help="comma-separated labels, or @file with one per line")] = None,
    input_spec: Annotated[str | None, typer.Option("--input", help="input spec overrides, JSON or @file")] = None,
    thresholds: Annotated[str | None, typer.Option(help="thresholds, JSON or @file")] = None,
    decoder: Annotated[str | None, typer.Option(help="decoder options, JSON or @file")] = None,
    metric: Annotated[list[str], typer.Option("--metric", help="evaluation metric KEY=VALUE")] = [],  # noqa: B006
    metrics: Annotated[str | None, typer.Option(help="evaluation metrics, JSON or @file")] = None,
    parent: Annotated[str | None, typer.Option(help="parent version (default: newest older; 'none')")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    created_by: Annotated[str | None, typer.Option()] = None,
    store: StoreOpt = None, endpoint_url: EndpointOpt = None,
) -> None:
    """Verify (digest, IO spec, loads and runs on a sample input) and store a model version."""
    label_list = None
    if labels is not None:
        if labels.startswith("@"):
            label_list = [x.strip() for x in Path(labels[1:]).read_text().splitlines() if x.strip()]
        else:
            label_list = [x.strip() for x in labels.split(",") if x.strip()]
    all_metrics = {**(_json_arg(metrics, "--metrics") or {}), **_pairs(metric, "--metric")}
    reg = _registry(store, endpoint_url)
    try:
        with console.status(f"checking {source}"):
            m, stored = reg.register(
                source, name=name, version=version, family=family, labels=label_list,
                input_overrides=_json_arg(input_spec, "--input"), thresholds=_json_arg(thresholds, "--thresholds"),
                decoder=_json_arg(decoder, "--decoder"), metrics=all_metrics or None,
                parent=UNSET if parent is None else (None if parent.lower() == "none" else parent),
                description=description, created_by=created_by)
    except RegistryError as e:
        _fail(e)
        return
    console.print(f"registered [bold]{m.name} {m.version}[/bold] sha256 {m.sha256[:16]}… "
                  f"parent {m.parent or '-'} -> {stored.location}", highlight=False)


@app.command("list")
def list_(name: Annotated[str | None, typer.Argument(help="one model's versions")] = None,
          store: StoreOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Registered models (or one model's versions) as a table."""
    reg = _registry(store, endpoint_url)
    try:
        names = [name] if name else reg.names()
        table = Table(title=f"models in {reg.store.url}")
        for col in ("name", "version", "family", "task", "labels", "parent", "created", "metrics"):
            table.add_column(col)
        for n in names:
            for v in reg.versions(n):
                m = reg.manifest(n, v)
                mets = ", ".join(f"{k}={val}" for k, val in list(m.metrics.items())[:3])
                table.add_row(n, v, m.family, m.task, str(len(m.labels)), m.parent or "-", m.created_at, mets)
    except RegistryError as e:
        _fail(e)
        return
    console.print(table)


@app.command()
def show(name: str, version: Annotated[str | None, typer.Argument(help="default: newest")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="print the manifest as JSON")] = False,
         store: StoreOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """One version's manifest."""
    reg = _registry(store, endpoint_url)
    try:
        version = version or reg.latest(name)
        if version is None:
            raise RegistryError(f"{name}: no versions registered in {reg.store.url}")
        m = reg.manifest(name, version)
        where = reg.describe(name, version)
    except RegistryError as e:
        _fail(e)
        return
    if as_json:
        console.print_json(json.dumps(m.to_dict()))
        return
    table = Table(title=f"{name} {version}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    d = m.to_dict()
    for key in ("name", "version", "family", "task", "sha256", "parent", "created_by", "created_at", "description"):
        table.add_row(key, str(d.get(key) or "-"))
    table.add_row("input", json.dumps(d["input"]))
    table.add_row("labels", f"{len(m.labels)}: " + ", ".join(m.labels[:10]) + (" …" if len(m.labels) > 10 else ""))
    table.add_row("thresholds", json.dumps(d["thresholds"]))
    table.add_row("metrics", json.dumps(d["metrics"]))
    table.add_row("stored at", where.location + (f" {where.object_versions}" if where.object_versions else ""))
    console.print(table)


@app.command()
def diff(name: str, a: str, b: str, store: StoreOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """What changed from version A to version B (digest, labels, input, thresholds, metrics with deltas)."""
    reg = _registry(store, endpoint_url)
    try:
        d = reg.diff(name, a, b)
    except RegistryError as e:
        _fail(e)
        return
    table = Table(title=f"{name}: {a} -> {b}")
    for col in ("field", a, b, "delta"):
        table.add_column(col)
    for key, val in d.items():
        if key == "metrics":
            for k, x in val.items():
                delta = "" if x["delta"] is None else f"{x['delta']:+.4g}"
                table.add_row(f"metrics.{k}", str(x["a"]), str(x["b"]), delta)
        elif key == "labels":
            table.add_row("labels", f"removed {val['removed']}", f"added {val['added']}",
                          "order changed" if val["order_changed"] else "")
        elif "a" in val and "b" in val and len(val) == 2:
            table.add_row(key, str(val["a"]), str(val["b"]), "")
        else:
            for k, x in val.items():
                table.add_row(f"{key}.{k}", str(x["a"]), str(x["b"]), "")
    if not d:
        console.print(f"{name} {a} and {b}: no differences")
        return
    console.print(table)


@app.command()
def build(name: str, version: str,
          out: Annotated[Path, typer.Option(help="greengrass-build folder")] = Path("greengrass-build"),
          store: StoreOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Build the com.ggvision.Model.<Name> component version (recipe with artifact digests)."""
    from .publish import build as build_component

    reg = _registry(store, endpoint_url)
    try:
        recipe = build_component(reg, name, version, out)
    except RegistryError as e:
        _fail(e)
        return
    console.print(f"built {recipe['ComponentName']} {recipe['ComponentVersion']} -> {out}")


@app.command()
def publish(name: str, version: str,
            bucket: Annotated[str, typer.Option(help="artifacts bucket (e.g. the storage stack's components bucket)")],
            region: Annotated[str, typer.Option(help="AWS Region")],
            store: StoreOpt = None, endpoint_url: EndpointOpt = None) -> None:
    """Upload the model component's artifacts to S3 and create its Greengrass component version."""
    from .publish import publish as publish_component

    reg = _registry(store, endpoint_url)
    try:
        with console.status(f"publishing {name} {version}"):
            p = publish_component(reg, name, version, bucket=bucket, region=region)
    except RegistryError as e:
        _fail(e)
        return
    console.print(f"published {p.component} {p.version}: {p.arn}")


def main() -> None:
    app()
