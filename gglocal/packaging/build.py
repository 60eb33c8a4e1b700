"""``gdk component build`` (GDK 1.6.2) for ``zip`` and ``custom`` projects, and a repository-wide build.

One project builds into ``<project>/greengrass-build/`` exactly as GDK lays it out:
``recipes/<recipe file name>`` and ``artifacts/<name>/<version as in gdk-config.json>/``.
:func:`build_all` builds every project and merges the results into one top-level folder.
"""

from __future__ import annotations

import base64
import glob
import hashlib
import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import yaml
from rich.console import Console

from gglocal.nucleus.recipe import Recipe
from gglocal.nucleus.recipeparser import parse_recipe
from gglocal.nucleus.recipereader import RecipeError, parse_document

from .project import BUILD_DIR, CONFIG_FILE, NEXT_PATCH, GdkProject, PackagingError, discover_projects

MAX_RECIPE_BYTES = 16000  # GDK's MAX_RECIPE_FILE_SIZE_BYTES, checked on source and published recipes
ZIP_BUILD_DIR = "zip-build"
DEFAULT_EXCLUDES = ("**/test*", "**/.*", "**/node_modules")  # used only when build.options is empty
BUILD_URI_PREFIX = "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION"  # literal words; publish replaces them
SCHEMA_FILES = ("gdk-cli-v1.6.2_recipe_schema.json", "greengrass-component-common_recipe_schema.json")
# Set while build_all runs so that a custom_build_command calling `ggvision build` again fails fast.
RECURSION_ENV = "GGVISION_BUILD_ALL"

_stderr = Console(stderr=True)


class BuildError(PackagingError):
    """A project cannot be built, or what it built is not a valid component."""


@dataclass(frozen=True)
class ArtifactFile:
    path: Path
    size: int
    sha256: str  # base64 of the raw SHA-256, the form of a recipe's Artifacts[].Digest

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class BuiltComponent:
    project: GdkProject
    recipe_path: Path  # the built recipe in <project>/greengrass-build/recipes/
    artifacts: tuple[ArtifactFile, ...]  # files of <project>/greengrass-build/artifacts/<name>/<version>/
    out_dir: Path | None = None  # the merged greengrass-build/ this component was copied into, if any

    @property
    def name(self) -> str:
        return self.project.name

    @property
    def version(self) -> str:
        """The version as written in gdk-config.json (possibly NEXT_PATCH)."""
        return self.project.version

    @property
    def artifacts_dir(self) -> Path:
        return self.project.artifacts_build_dir

    def document(self) -> dict[str, Any]:
        return read_recipe(self.recipe_path)


# --------------------------------------------------------------------------- recipe documents


def ci_key(obj: Mapping[str, Any], key: str) -> str | None:
    """The spelling ``key`` has in ``obj`` (recipe keys are case-insensitive), or None."""
    low = key.lower()
    return next((k for k in obj if isinstance(k, str) and k.lower() == low), None)


def ci_get(obj: Mapping[str, Any], key: str, default: Any = None) -> Any:
    found = ci_key(obj, key)
    return default if found is None else obj[found]


def ci_set(obj: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key``; an existing key keeps its spelling and position (GDK's ``update_value``)."""
    obj[ci_key(obj, key) or key] = value


def read_recipe(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BuildError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None
    try:
        doc = parse_document(raw, str(path))
    except RecipeError as exc:
        raise BuildError(str(exc)) from None
    if not isinstance(doc, dict):
        raise BuildError(f"{path}: a recipe must be an object, got {type(doc).__name__}")
    return doc


def dump_recipe(doc: Mapping[str, Any], suffix: str) -> str:
    """Serialise as GDK writes recipes: JSON with 4-space indent, or YAML in key order."""
    if suffix == "json":
        return json.dumps(doc, indent=4)
    return yaml.safe_dump(dict(doc), sort_keys=False)


def s3_artifacts(doc: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str, str]]:
    """(artifact, its URI key, where) for every ``Manifests[].Artifacts[]`` whose URI starts with s3://."""
    manifests = ci_get(doc, "Manifests")
    if not isinstance(manifests, list):
        return
    for i, manifest in enumerate(manifests):
        artifacts = ci_get(manifest, "Artifacts") if isinstance(manifest, dict) else None
        if not isinstance(artifacts, list):
            continue
        for j, artifact in enumerate(artifacts):
            key = ci_key(artifact, "URI") if isinstance(artifact, dict) else None
            if key is not None and isinstance(artifact[key], str) and artifact[key].startswith("s3://"):
                yield artifact, key, f"Manifests[{i}].Artifacts[{j}].{key}"


def uri_file_name(uri: str) -> str:
    # Matching is by file name only, whatever precedes it in the URI (GDK uses Path(uri).name).
    return PurePosixPath(uri).name


def check_size(path: Path, what: str = "recipe") -> None:
    size = path.stat().st_size
    if size > MAX_RECIPE_BYTES:
        raise BuildError(f"{path}: {what} is {size} bytes; Greengrass recipes may be at most "
                         f"{MAX_RECIPE_BYTES} bytes")


def nucleus_recipe(doc: Mapping[str, Any], source: str) -> Recipe:
    """Parse with the runtime's recipe parser; NEXT_PATCH stands in as 0.0.0 until publish resolves it."""
    data = dict(doc)
    key = ci_key(data, "ComponentVersion")
    if key is not None and data[key] == NEXT_PATCH:
        data[key] = "0.0.0"
    return parse_recipe(data, source)


def lower_keys(value: Any) -> Any:
    """GDK's recursive key lower-casing before schema validation (DefaultConfiguration included)."""
    if isinstance(value, dict):
        return {str(k).lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


class RecipeSchemas:
    """The recipe JSON schemas (draft-07, lower-case property names), applied as GDK does."""

    def __init__(self, validators: Mapping[str, jsonschema.Draft7Validator]) -> None:
        self.validators = dict(validators)

    @classmethod
    def load(cls, folder: Path, names: Sequence[str] = SCHEMA_FILES) -> RecipeSchemas:
        folder = Path(folder)
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise BuildError(f"{folder}: recipe schema(s) missing: {', '.join(missing)}")
        validators = {}
        for name in names:
            schema = json.loads((folder / name).read_text(encoding="utf-8"))
            jsonschema.Draft7Validator.check_schema(schema)
            validators[name] = jsonschema.Draft7Validator(schema)
        return cls(validators)

    @classmethod
    def default(cls, repo: Path) -> RecipeSchemas | None:
        """``<repo>/../shared/schemas`` when it exists; otherwise None, with a warning (it is optional)."""
        folder = Path(repo).absolute().parent / "shared" / "schemas"
        if not all((folder / n).is_file() for n in SCHEMA_FILES):
            _stderr.print(f"[yellow]warning: recipe JSON schemas not found in {folder}; skipping schema "
                          "validation (recipes are still checked by the runtime's recipe parser)[/yellow]")
            return None
        return cls.load(folder)

    def validate(self, doc: Mapping[str, Any], source: str) -> None:
        # GDK lower-cases every key before validating (the schemas spell properties in lower case).
        lowered = lower_keys(doc)
        for name, validator in self.validators.items():
            error = jsonschema.exceptions.best_match(validator.iter_errors(lowered))
            if error is not None:
                where = ".".join(str(p) for p in error.absolute_path) or "top level"
                raise BuildError(f"{source}: recipe does not match {name} at {where} (keys lower-cased): "
                                 f"{error.message}")


# --------------------------------------------------------------------------- one project


def artifact_file(path: Path) -> ArtifactFile:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return ArtifactFile(path, path.stat().st_size, base64.b64encode(digest.digest()).decode("ascii"))


def load_built(project: GdkProject, out_dir: Path | None = None) -> BuiltComponent | None:
    """What ``greengrass-build/`` holds for ``project``; None when it is not built (no artifacts folder)."""
    if not project.artifacts_build_dir.is_dir():
        return None
    names = dict.fromkeys([project.built_recipe_name, project.recipe_file.name])
    recipe = next((project.recipes_build_dir / n for n in names if (project.recipes_build_dir / n).is_file()), None)
    if recipe is None:
        raise BuildError(f"{project.recipes_build_dir}: no built recipe {project.built_recipe_name} for "
                         f"{project.name} (build the project first)")
    files = sorted(p for p in project.artifacts_build_dir.iterdir() if p.is_file())
    return BuiltComponent(project, recipe, tuple(artifact_file(p) for p in files), out_dir)


def build_project(project: GdkProject, schemas: RecipeSchemas | None = None, *,
                  in_process: bool = False) -> BuiltComponent:
    """``gdk component build`` in ``project.dir``.

    ``in_process``: for a ``custom`` project, build its recipe here (as for ``zip``, with no build
    folder) instead of running its command. build_all uses it for the repository root, whose
    command (``make build``) is what runs build_all in the first place.
    """
    if project.build_system not in ("zip", "custom"):
        raise BuildError(f"{project.config_file}: build_system {project.build_system!r} is not supported by "
                         "ggvision's builder (only zip and custom); use custom with the build tool's command")
    # GDK always starts from an empty greengrass-build/ with the recipes and artifacts folders.
    shutil.rmtree(project.build_dir, ignore_errors=True)
    project.recipes_build_dir.mkdir(parents=True)
    project.artifacts_build_dir.mkdir(parents=True)

    if project.build_system == "zip":
        transform_recipe(project, [zip_project(project)], schemas)
    elif in_process:
        transform_recipe(project, [], schemas)
    else:
        run_custom_command(project)
    built = load_built(project)
    if built is None:
        raise BuildError(f"{project.artifacts_build_dir}: missing after the build of {project.name}")
    check_built(built, schemas)  # GDK checks nothing after a custom build; we check every build
    return built


def run_custom_command(project: GdkProject) -> None:
    command = project.custom_command
    assert command is not None  # load_project guarantees it for custom projects
    try:
        # As GDK: no shell, so a string is one program name; the array form passes arguments.
        subprocess.run(command, cwd=project.dir, check=True)
    except FileNotFoundError:
        hint = (" (a string is run as a single program name without a shell; use an array such as "
                '["bash", "build.sh"])') if isinstance(command, str) and " " in command.strip() else ""
        raise BuildError(f"{project.config_file}: custom_build_command {command!r}: program not found"
                         f"{hint}") from None
    except subprocess.CalledProcessError as exc:
        raise BuildError(f"{project.config_file}: custom_build_command {command!r} failed with exit status "
                         f"{exc.returncode} (run in {project.dir})") from None


def zip_name(project: GdkProject) -> str:
    """Archive name without .zip: the folder name, else ``zip_name``, or the component name if it is ""."""
    setting = project.build_options.get("zip_name")
    if setting is None:
        return project.dir.name
    return setting or project.name


def excluded_paths(project: GdkProject) -> set[str]:
    """Project-relative POSIX paths the zip build leaves out (GDK's globs, rooted at the project folder)."""
    patterns = [CONFIG_FILE, BUILD_DIR, project.built_recipe_name]
    # Note GDK's rule: any build.options at all (even only zip_name) replaces the default excludes.
    patterns += DEFAULT_EXCLUDES if not project.build_options else project.build_options.get("excludes", [])
    found: set[str] = set()
    for pattern in patterns:
        for match in glob.glob(pattern, root_dir=project.dir, recursive=True):
            found.add(Path(match).as_posix())  # drops a trailing /
    return found


def zip_project(project: GdkProject) -> Path:
    """Copy the project into ``zip-build/<folder>/`` minus the excludes and zip that folder's contents.

    Returns ``zip-build/``, the folder where the recipe's artifact files are looked up.
    """
    zip_build = project.dir / ZIP_BUILD_DIR
    shutil.rmtree(zip_build, ignore_errors=True)  # removed first, so copytree's listing cannot include it
    staging = zip_build / project.dir.name
    excluded = excluded_paths(project)

    def ignore(folder: str, names: list[str]) -> set[str]:
        rel = Path(folder).relative_to(project.dir)
        return {n for n in names if (rel / n).as_posix() in excluded}

    shutil.copytree(project.dir, staging, ignore=ignore)
    deterministic_zip(staging, zip_build / f"{zip_name(project)}.zip")
    return zip_build


def build_epoch() -> int:
    """The timestamp stored in built archives: SOURCE_DATE_EPOCH (reproducible-builds.org) or 1980-01-01, the
    earliest a zip can hold — so two builds of the same tree are byte-identical and digests change only with
    content."""
    return max(int(os.environ.get("SOURCE_DATE_EPOCH", "315532800")), 315532800)


def deterministic_zip(root_dir: Path, out: Path) -> Path:
    """A zip of `root_dir`'s contents, as shutil.make_archive lays it out (gdk's zip build), but reproducible:
    members sorted, one fixed timestamp, permissions normalised to 0644 / 0755 (executables)."""
    date_time = time.gmtime(build_epoch())[:6]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(root_dir.rglob("*"), key=lambda p: p.relative_to(root_dir).as_posix()):
            rel = path.relative_to(root_dir).as_posix()
            info = zipfile.ZipInfo(rel + "/" if path.is_dir() else rel, date_time=date_time)  # type: ignore[arg-type]
            mode = 0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644
            info.external_attr = ((0o040000 if path.is_dir() else 0o100000) | mode) << 16
            if path.is_dir():
                z.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, path.read_bytes())
    return out


def transform_recipe(project: GdkProject, build_folders: Sequence[Path], schemas: RecipeSchemas | None) -> Path:
    """GDK's build-time recipe rewrite; writes ``greengrass-build/recipes/<recipe file name>``."""
    check_size(project.recipe_file)
    doc = read_recipe(project.recipe_file)
    ci_set(doc, "ComponentName", project.name)
    ci_set(doc, "ComponentVersion", project.version)
    ci_set(doc, "ComponentPublisher", project.author)
    for artifact, key, where in s3_artifacts(doc):
        name = uri_file_name(artifact[key])
        local = next((f / name for f in build_folders if (f / name).is_file()), None)
        if local is None:
            # GDK would look the URI up on S3 (head_object); this build is offline and refuses.
            looked = ", ".join(str(f) for f in build_folders) or "no build folder (custom project)"
            raise BuildError(f"{project.recipe_file}: {where}: artifact {artifact[key]!r}: no file {name!r} in "
                             f"{looked}; this offline build does not look artifacts up on S3")
        shutil.copy(local, project.artifacts_build_dir)
        artifact[key] = f"{BUILD_URI_PREFIX}/{name}"
    if schemas is not None:
        schemas.validate(doc, str(project.recipe_file))
    out = project.recipes_build_dir / project.built_recipe_name
    out.write_text(dump_recipe(doc, project.recipe_suffix), encoding="utf-8")
    return out


def check_built(built: BuiltComponent, schemas: RecipeSchemas | None) -> Recipe:
    """Size limit, component name, JSON schemas and the runtime's parser, on a built recipe."""
    check_size(built.recipe_path, "built recipe")
    doc = built.document()
    name = ci_get(doc, "ComponentName")
    if name != built.name:
        raise BuildError(f"{built.recipe_path}: ComponentName is {name!r}, but {built.project.config_file} "
                         f"builds {built.name!r}")
    if schemas is not None:
        schemas.validate(doc, str(built.recipe_path))
    try:
        return nucleus_recipe(doc, str(built.recipe_path))
    except RecipeError as exc:
        raise BuildError(str(exc)) from None


# --------------------------------------------------------------------------- the whole repository


def build_all(repo: Path, out: Path | None = None, schemas_dir: Path | None = None, *,
              projects: Sequence[GdkProject] | None = None) -> list[BuiltComponent]:
    """Build every gdk project of ``repo`` and merge the results into ``out`` (``repo/greengrass-build``).

    ``out/recipes/<ComponentName>.<ext>`` holds each built recipe (one name per component, since
    every project's is called recipe.yaml); the root project's is also written under its GDK name
    (``recipe.<ext>`` / its resolved recipe file name) so ``gdk component publish`` at the root finds
    it. ``out/artifacts/<name>/<version>/`` holds the artifacts.
    """
    repo = Path(repo).absolute()
    out = Path(out).absolute() if out is not None else repo / BUILD_DIR
    if os.environ.get(RECURSION_ENV):
        raise BuildError(f"a build of {os.environ[RECURSION_ENV]} is already running; a custom_build_command "
                         "must not run `ggvision build` (make build) again")
    schemas = RecipeSchemas.load(schemas_dir) if schemas_dir is not None else RecipeSchemas.default(repo)
    projects = discover_projects(repo) if projects is None else list(projects)
    names = [p.name for p in projects]
    if len(set(names)) != len(names):
        raise BuildError(f"component names are not unique: {', '.join(sorted(names))}")
    root = next((p for p in projects if p.dir.resolve() == repo.resolve()), None)
    ordered = ([root] if root else []) + [p for p in projects if p is not root]

    shutil.rmtree(out, ignore_errors=True)
    merged = _Merged(out)
    results: list[BuiltComponent] = []
    os.environ[RECURSION_ENV] = str(repo)
    try:
        for project in ordered:
            is_root = project is root
            built = build_project(project, schemas, in_process=is_root and project.build_system == "custom")
            merged.add(built, is_root)
            results.append(BuiltComponent(built.project, built.recipe_path, built.artifacts, out))
    finally:
        os.environ.pop(RECURSION_ENV, None)
    # What the Greengrass service would record as each artifact's Digest; `ggvision nucleus --build`
    # puts it into the recipes it runs, so a file changed after the build is refused.
    digests = {f"{b.name}/{b.version}/{a.path.name}": a.sha256 for b in results for a in b.artifacts}
    (out / "digests.json").write_text(json.dumps(digests, indent=1, sort_keys=True) + "\n")
    return results


class _Merged:
    """The merged greengrass-build/ folder; refuses two components writing the same recipe name."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.recipe_owner: dict[str, str] = {}

    def add(self, built: BuiltComponent, is_root: bool) -> None:
        recipes = self.out / "recipes"
        recipes.mkdir(parents=True, exist_ok=True)
        suffix = built.project.recipe_suffix
        names = [f"{built.name}.{suffix}"]
        if is_root:
            names += [f"recipe.{suffix}", built.project.built_recipe_name]
        for name in dict.fromkeys(names):
            owner = self.recipe_owner.setdefault(name, built.name)
            if owner != built.name:
                raise BuildError(f"{recipes / name}: written by both {owner} and {built.name}")
            dest = recipes / name
            if not (dest.exists() and dest.samefile(built.recipe_path)):
                shutil.copyfile(built.recipe_path, dest)
        dest_artifacts = self.out / "artifacts" / built.name / built.version
        dest_artifacts.mkdir(parents=True, exist_ok=True)
        if not dest_artifacts.samefile(built.artifacts_dir):
            shutil.copytree(built.artifacts_dir, dest_artifacts, dirs_exist_ok=True)
