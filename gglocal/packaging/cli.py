"""``ggvision build`` / ``ggvision publish``: gdk component build/publish for the whole repository."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from .build import BuiltComponent, RecipeSchemas, build_all, load_built
from .project import BUILD_DIR, PackagingError, discover_projects

app = typer.Typer(help="Build and publish the Greengrass components like GDK 1.6.2 (no gdk needed)",
                  no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

RepoOpt = Annotated[Path, typer.Option("--repo", help="repository root (gdk-config.json, components/*/)")]
SchemasOpt = Annotated[Path | None, typer.Option("--schemas", help="folder with the recipe JSON schemas "
                                                 "(default: ../shared/schemas if present)")]


def _table(title: str, built: Sequence[BuiltComponent], published: dict[str, Any] | None = None) -> Table:
    table = Table(title=title)
    for column in ("component", "version", "artifacts", "digest (sha256, base64)"):
        table.add_column(column, overflow="fold")
    if published is not None:
        table.add_column("arn", overflow="fold")
    for b in built:
        pub = (published or {}).get(b.name)
        version = pub.version if pub else b.version
        prefix = f"s3://{pub.bucket}/{b.name}/{pub.version}/" if pub else ""
        rows = [(prefix + a.name, a.sha256) for a in b.artifacts] or [("—", "")]
        for i, (artifact, digest) in enumerate(rows):
            cells = [b.name if i == 0 else "", version if i == 0 else "", artifact, digest]
            if published is not None:
                cells.append(pub.arn if pub and i == 0 else "")
            table.add_row(*cells)
    return table


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]{exc}[/red]")
    return typer.Exit(1)


@app.command()
def build(repo: RepoOpt = Path("."), schemas: SchemasOpt = None) -> None:
    """Build every component (gdk component build) into greengrass-build/ and each project's folder."""
    try:
        built = build_all(repo, schemas_dir=schemas)
    except PackagingError as exc:
        raise _fail(exc) from None
    console.print(_table(f"built into {Path(repo) / BUILD_DIR}", built))


def _options(text: str | None) -> dict[str, Any] | None:
    """GDK's -o: a JSON object, or the path of a .json file holding one."""
    if text is None:
        return None
    try:
        data = json.loads(Path(text).read_text(encoding="utf-8") if text.endswith(".json") else text)
    except (OSError, ValueError) as exc:
        raise PackagingError(f"--options {text!r}: {exc}") from None
    if not isinstance(data, dict):
        raise PackagingError(f"--options {text!r}: expected a JSON object")
    return data


@app.command()
def publish(
    repo: RepoOpt = Path("."),
    bucket: Annotated[str | None, typer.Option(help="bucket to use verbatim (default: "
                                               "<publish.bucket>-<region>-<account>)")] = None,
    region: Annotated[str | None, typer.Option(help="AWS region (default: publish.region)")] = None,
    options: Annotated[str | None, typer.Option(help="publish options as JSON or a .json file "
                                                "(replaces publish.options, e.g. file_upload_args)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="read-only AWS calls: resolve versions and "
                                          "buckets, write the recipes, upload and create nothing")] = False,
    schemas: SchemasOpt = None,
) -> None:
    """Publish every component (gdk component publish), dependencies first; builds first if needed."""
    from .publish import publish_all

    try:
        repo = Path(repo).absolute()
        out = repo / BUILD_DIR
        built = [load_built(p, out) for p in discover_projects(repo)]
        if any(b is None for b in built):  # GDK builds a project whose artifacts folder is missing
            built = build_all(repo, out, schemas)
        recipe_schemas = RecipeSchemas.load(schemas) if schemas is not None else RecipeSchemas.default(repo)
        ready = [b for b in built if b is not None]
        results = publish_all(ready, bucket=bucket, region=region, options=_options(options),
                              schemas=recipe_schemas, dry_run=dry_run, console=err_console)
    except PackagingError as exc:
        raise _fail(exc) from None
    by_name = {r.name: r for r in results}
    order = [next(b for b in ready if b.name == r.name) for r in results]
    title = "dry run: would publish" if dry_run else "published"
    console.print(_table(title, order, by_name))
