"""gdk projects: one folder with ``gdk-config.json`` and ``recipe.json`` or ``recipe.yaml``.

The checks follow GDK 1.6.2's ``config_schema.json`` (exactly one component per file, required
keys, version semver or ``NEXT_PATCH``, ``custom`` needs ``custom_build_command``) and its recipe
lookup (exactly one of the two recipe file names), with errors naming the file and the key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import semantic_version

CONFIG_FILE = "gdk-config.json"
RECIPE_FILES = ("recipe.json", "recipe.yaml")  # exact names GDK globs for; recipe.yml is not accepted
BUILD_DIR = "greengrass-build"
NEXT_PATCH = "NEXT_PATCH"
GDK_VERSION = "1.6.2"  # the GDK release whose behaviour this package reproduces
BUILD_SYSTEMS = ("zip", "maven", "gradle", "gradlew", "custom")
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9-_.]+$")
# The schema's semver pattern, anchored at the end too (GDK's is not, so it would accept "1.0.0x").
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


class PackagingError(Exception):
    """Building or publishing cannot go on; the message says what and where."""


class ProjectError(PackagingError):
    """A gdk project (its gdk-config.json or recipe file) is invalid."""


@dataclass(frozen=True)
class GdkProject:
    dir: Path
    config_file: Path
    name: str
    author: str
    version: str  # semver or "NEXT_PATCH", exactly as written in gdk-config.json
    build_system: str
    build_options: dict[str, Any]
    custom_command: list[str] | str | None
    publish_bucket: str  # a prefix: the bucket is <prefix>-<region>-<account> unless one is given
    publish_region: str | None
    publish_options: dict[str, Any]
    recipe_file: Path
    gdk_version: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def build_dir(self) -> Path:
        return self.dir / BUILD_DIR

    @property
    def recipes_build_dir(self) -> Path:
        return self.build_dir / "recipes"

    @property
    def artifacts_build_dir(self) -> Path:
        """``greengrass-build/artifacts/<name>/<version>``; literally ``NEXT_PATCH`` when so configured."""
        return self.build_dir / "artifacts" / self.name / self.version

    @property
    def built_recipe_name(self) -> str:
        # GDK resolves the recipe path before taking its name, so a recipe.yaml symlink to
        # recipes/X.yaml is built to (and published from) greengrass-build/recipes/X.yaml.
        return self.recipe_file.resolve().name

    @property
    def recipe_suffix(self) -> str:
        return self.built_recipe_name.rsplit(".", 1)[-1]

    @property
    def file_upload_args(self) -> dict[str, Any]:
        return dict(self.publish_options.get("file_upload_args") or {})


def _fail(config: Path, key: str, message: str) -> ProjectError:
    return ProjectError(f"{config}: {key}: {message}" if key else f"{config}: {message}")


_JSON_TYPES = {dict: "an object", str: "a string", list: "an array"}


def _need(obj: Mapping[str, Any], key: str, kind: type, config: Path, path: str) -> Any:
    """``obj[key]``, which must exist and be of JSON type ``kind``."""
    where = f"{path}.{key}" if path else key
    if key not in obj:
        raise _fail(config, where, "required key is missing")
    value = obj[key]
    if not isinstance(value, kind):
        raise _fail(config, where, f"expected {_JSON_TYPES[kind]}, got {value!r}")
    return value


def find_recipe(directory: Path) -> Path:
    """The project's recipe: exactly one of recipe.json / recipe.yaml (GDK's rule)."""
    found = [directory / name for name in RECIPE_FILES if (directory / name).exists()]
    if not found:
        raise ProjectError(f"{directory}: no recipe.json or recipe.yaml in the project folder")
    if len(found) > 1:
        raise ProjectError(f"{directory}: both recipe.json and recipe.yaml exist; a gdk project has exactly one")
    if not found[0].is_file():
        raise ProjectError(f"{found[0]}: not a file (a dangling link?)")
    return found[0]


def load_project(directory: Path) -> GdkProject:
    """Read and check ``<directory>/gdk-config.json`` and locate the project's recipe."""
    directory = Path(directory).absolute()
    config = directory / CONFIG_FILE
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProjectError(f"{config}: cannot read: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ProjectError(f"{config}: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(config, "", "expected a JSON object")

    gdk_version = _need(data, "gdk_version", str, config, "").strip()
    if not SEMVER.match(gdk_version):
        raise _fail(config, "gdk_version", f"expected a semantic version like {GDK_VERSION}, got {gdk_version!r}")
    if semantic_version.Version(gdk_version) > semantic_version.Version(GDK_VERSION):
        # GDK refuses configs that ask for a newer CLI; we reproduce GDK_VERSION, so do the same.
        raise _fail(config, "gdk_version", f"{gdk_version} is newer than the GDK {GDK_VERSION} this builder reproduces")

    components = _need(data, "component", dict, config, "")
    if len(components) != 1:
        raise _fail(config, "component", f"expected exactly one component (GDK supports one per project), "
                                         f"got {len(components)}: {', '.join(components) or 'none'}")
    name, comp = next(iter(components.items()))
    path = f"component.{name}"
    if not NAME_PATTERN.match(name) or len(name) > 128:
        raise _fail(config, path, f"invalid component name {name!r} (allowed: letters, digits, - _ .; at most 128)")
    if not isinstance(comp, dict):
        raise _fail(config, path, f"expected an object, got {comp!r}")

    author = _need(comp, "author", str, config, path)
    version = _need(comp, "version", str, config, path)
    if version != NEXT_PATCH and not SEMVER.match(version):
        raise _fail(config, f"{path}.version",
                    f"expected a semantic version (like 1.0.0) or NEXT_PATCH, got {version!r}")

    build = _need(comp, "build", dict, config, path)
    build_system = _need(build, "build_system", str, config, f"{path}.build")
    if build_system not in BUILD_SYSTEMS:
        raise _fail(config, f"{path}.build.build_system",
                    f"expected one of {', '.join(BUILD_SYSTEMS)}, got {build_system!r}")
    command = _custom_command(build, build_system, config, f"{path}.build")
    options = _build_options(build, build_system, config, f"{path}.build")

    publish = _need(comp, "publish", dict, config, path)
    bucket = _need(publish, "bucket", str, config, f"{path}.publish")
    region = publish.get("region")
    if region is not None and not isinstance(region, str):
        raise _fail(config, f"{path}.publish.region", f"expected a string, got {region!r}")
    publish_options = publish.get("options", {})
    if not isinstance(publish_options, dict):
        raise _fail(config, f"{path}.publish.options", f"expected an object, got {publish_options!r}")
    upload_args = publish_options.get("file_upload_args", {})
    if not isinstance(upload_args, dict):
        raise _fail(config, f"{path}.publish.options.file_upload_args", f"expected an object, got {upload_args!r}")

    return GdkProject(
        dir=directory, config_file=config, name=name, author=author, version=version,
        build_system=build_system, build_options=options, custom_command=command,
        publish_bucket=bucket, publish_region=region or None, publish_options=dict(publish_options),
        recipe_file=find_recipe(directory), gdk_version=gdk_version, raw=data,
    )


def _custom_command(build: Mapping[str, Any], system: str, config: Path, path: str) -> list[str] | str | None:
    if "custom_build_command" not in build:
        if system == "custom":
            raise _fail(config, f"{path}.custom_build_command", "required when build_system is 'custom'")
        return None
    command = build["custom_build_command"]
    key = f"{path}.custom_build_command"
    if isinstance(command, str):
        if not command:
            raise _fail(config, key, "must not be empty")
        return command
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise _fail(config, key, f"expected a non-empty array of strings, got {command!r}")
    return list(command)


def _build_options(build: Mapping[str, Any], system: str, config: Path, path: str) -> dict[str, Any]:
    options = build.get("options", {})
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise _fail(config, f"{path}.options", f"expected an object, got {options!r}")
    if system == "zip":
        excludes = options.get("excludes")
        if excludes is not None and (not isinstance(excludes, list) or not excludes
                                     or not all(isinstance(e, str) for e in excludes)):
            raise _fail(config, f"{path}.options.excludes", f"expected a non-empty array of glob patterns, "
                                                            f"got {excludes!r}")
        zip_name = options.get("zip_name")
        if zip_name is not None and not isinstance(zip_name, str):
            raise _fail(config, f"{path}.options.zip_name", f"expected a string, got {zip_name!r}")
    return dict(options)


def discover_projects(repo: Path) -> list[GdkProject]:
    """The repository root project (if it has a gdk-config.json) and every ``components/*/`` project."""
    repo = Path(repo).absolute()
    folders = [repo] if (repo / CONFIG_FILE).is_file() else []
    components = repo / "components"
    if components.is_dir():
        folders += sorted(p for p in components.iterdir() if p.is_dir() and (p / CONFIG_FILE).is_file())
    projects = [load_project(folder) for folder in folders]
    seen: dict[str, Path] = {}
    for project in projects:
        if project.name in seen:
            raise ProjectError(f"component {project.name} is defined twice: {seen[project.name]} and "
                               f"{project.config_file}")
        seen[project.name] = project.config_file
    return projects
