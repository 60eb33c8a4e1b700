"""Loading and validating Greengrass v2 component recipes (format 2020-01-25).

Mirrors what the nucleus accepts: JSON or YAML, property names and enum values case-insensitive,
platform manifests (first match wins), a global lifecycle with selection keys, and lifecycle steps
given either as a plain script or as an object. User data (DefaultConfiguration, Setenv names,
platform values) keeps its case exactly.
"""

from __future__ import annotations

import json
import os
import platform as _platform
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import semantic_version
import yaml

RECIPE_FORMAT_VERSION = "2020-01-25"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9-_.]+$")
NAME_MAX = 128
VERSION_MAX = 64
RECIPE_SUFFIXES = (".json", ".yaml", ".yml")

# Lower-case step names the kernel knows; "uninstall" exists since nucleus v2.17.0.
STEP_NAMES = ("bootstrap", "install", "startup", "run", "shutdown", "recover", "uninstall")
STEP_OBJECT_KEYS = ("script", "timeout", "skipif", "setenv", "requiresprivilege")
# Canonical spelling, only used to make error messages read like the documentation.
_CANONICAL = {
    "recipeformatversion": "RecipeFormatVersion",
    "componentname": "ComponentName",
    "componentversion": "ComponentVersion",
    "componentdescription": "ComponentDescription",
    "componentpublisher": "ComponentPublisher",
    "componentconfiguration": "ComponentConfiguration",
    "componentdependencies": "ComponentDependencies",
    "componenttype": "ComponentType",
    "componentsource": "ComponentSource",
    "manifests": "Manifests",
    "lifecycle": "Lifecycle",
}
TOP_LEVEL_KEYS = frozenset(_CANONICAL)
REQUIRED_TOP_LEVEL = ("recipeformatversion", "componentname", "componentversion", "manifests")
COMPONENT_TYPES = ("aws.greengrass.generic", "aws.greengrass.lambda", "aws.greengrass.plugin",
                   "aws.greengrass.nucleus")
PERMISSIONS = ("NONE", "OWNER", "ALL")
UNARCHIVE = ("NONE", "ZIP")
DEPENDENCY_TYPES = ("HARD", "SOFT")
DEFAULT_SELECTIONS = ("all",)


class RecipeError(ValueError):
    """A recipe is malformed or cannot be used; the message names the file and the key path."""


# --------------------------------------------------------------------------- data model


@dataclass(frozen=True)
class LifecycleStep:
    script: str
    timeout: float | None = None  # None: the kernel applies the nucleus default for the step
    skipif: str | None = None
    setenv: dict[str, str] = field(default_factory=dict)
    requires_privilege: bool = False


@dataclass(frozen=True)
class Artifact:
    uri: str
    unarchive: str = "NONE"  # NONE | ZIP
    read: str = "OWNER"  # NONE | OWNER | ALL
    execute: str = "NONE"  # NONE | OWNER | ALL
    digest: str | None = None
    algorithm: str | None = None

    @property
    def scheme(self) -> str:
        head, sep, _ = self.uri.partition(":")
        return head.lower() if sep else ""

    @property
    def filename(self) -> str:
        return artifact_filename(self.uri)

    @property
    def stem(self) -> str:
        """Folder name the nucleus unarchives a ZIP into (``X.zip`` -> ``X``)."""
        name = self.filename
        return name[:-4] if name.lower().endswith(".zip") else name


@dataclass(frozen=True)
class Dependency:
    version_requirement: str = ">=0.0.0"
    dependency_type: str = "HARD"  # HARD | SOFT


@dataclass(frozen=True)
class Manifest:
    name: str | None
    platform: dict[str, str]
    # Parsed manifest lifecycle (None when the manifest defers to the global one): lower-case step
    # names map to LifecycleStep, and the key "setenv" (if present) to the lifecycle-level env.
    lifecycle: dict[str, Any] | None
    selections: list[str]
    artifacts: list[Artifact]

    def matches(self, device: Mapping[str, str]) -> bool:
        return platform_matches(self.platform, device)


@dataclass(frozen=True)
class ResolvedRecipe:
    recipe: Recipe
    manifest: Manifest
    steps: dict[str, LifecycleStep]  # lower-case step names
    setenv: dict[str, str]  # lifecycle-level Setenv, applies to every step
    artifacts: list[Artifact]

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def version(self) -> str:
        return self.recipe.version


@dataclass(frozen=True)
class Recipe:
    name: str
    version: str
    description: str | None
    publisher: str | None
    default_configuration: dict[str, Any]
    dependencies: dict[str, Dependency]
    manifests: list[Manifest]
    global_lifecycle: dict[str, Any]  # as written in the recipe; see resolve()
    source: str = "<recipe>"
    component_type: str | None = None
    # Global lifecycle parsed once: selection key (lower-case, or None for unconditional) -> section.
    _global: dict[str | None, _Section] = field(default_factory=dict, repr=False, compare=False)

    @property
    def semver(self) -> semantic_version.Version:
        return semantic_version.Version(self.version)

    def resolve(self, platform: Mapping[str, str]) -> ResolvedRecipe:
        """Pick the first manifest matching ``platform`` and work out its lifecycle steps."""
        for manifest in self.manifests:
            if manifest.matches(platform):
                break
        else:
            shown = ", ".join(f"{k}: {v}" for k, v in platform.items())
            raise RecipeError(f"{self.source}: {self.name}: no manifest matches platform {{{shown}}}")

        if manifest.lifecycle is not None:
            steps = {k: v for k, v in manifest.lifecycle.items() if k != "setenv"}
            setenv = dict(manifest.lifecycle.get("setenv", {}))
        else:
            steps, setenv = _apply_selections(self._global, manifest.selections)
        if "startup" in steps and "run" in steps:
            raise RecipeError(f"{self.source}: {self.name}: lifecycle defines both Startup and Run; "
                              "a component may use only one of them")
        return ResolvedRecipe(self, manifest, steps, setenv, list(manifest.artifacts))


@dataclass
class _Section:
    steps: dict[str, LifecycleStep] = field(default_factory=dict)
    setenv: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- public helpers


def artifact_filename(uri: str) -> str:
    """Last path segment of an artifact URI (``s3://b/k/x.zip`` and ``greengrass:x.zip`` -> ``x.zip``)."""
    tail = uri.rstrip().rsplit("/", 1)[-1]
    if "/" not in uri and ":" in tail:  # opaque form such as greengrass:Name.zip
        tail = tail.split(":", 1)[1]
    return tail


def platform_matches(required: Mapping[str, str], device: Mapping[str, str]) -> bool:
    """True when every key a manifest requires is satisfied by the device platform.

    Keys compare case-insensitively. A value matches if equal (case-insensitive), ``*``, or a
    ``/regex/`` that fully matches the device value; ``*`` also matches a key the device lacks.
    """
    device_ci = {k.lower(): str(v) for k, v in device.items()}
    for key, want in required.items():
        have = device_ci.get(key.lower())
        if want == "*":
            continue
        if have is None:
            return False
        if len(want) >= 2 and want.startswith("/") and want.endswith("/"):
            try:
                if not re.fullmatch(want[1:-1], have, re.IGNORECASE):
                    return False
            except re.error:
                return False
        elif want.lower() != have.lower():
            return False
    return True


_ARCH_ALIASES = {
    "x86_64": "amd64", "amd64": "amd64", "x64": "amd64",
    "aarch64": "aarch64", "arm64": "aarch64",
    "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "x86": "x86",
}


def current_platform() -> dict[str, str]:
    """This machine's platform in nucleus terms, e.g. ``{"os": "linux", "architecture": "amd64"}``."""
    machine = _platform.machine().lower()
    arch = _ARCH_ALIASES.get(machine)
    if arch is None:
        arch = "arm" if machine.startswith("arm") else machine
    return {"os": _platform.system().lower() or "unknown", "architecture": arch}


def should_skip(skipif: str | None, env: Mapping[str, str]) -> bool:
    """Evaluate a step's Skipif: ``onpath X`` (X found on env's PATH) or ``exists F``."""
    if skipif is None or not skipif.strip():
        return False
    keyword, _, arg = skipif.strip().partition(" ")
    arg = arg.strip()
    if not arg or keyword.lower() not in ("onpath", "exists"):
        raise RecipeError(f"Skipif: expected 'onpath <executable>' or 'exists <file>', got {skipif!r}")
    if keyword.lower() == "onpath":
        return shutil.which(arg, path=env.get("PATH", os.defpath)) is not None
    return Path(arg).exists()


# --------------------------------------------------------------------------- loading


class _NoDatesLoader(yaml.SafeLoader):
    """SafeLoader without timestamp typing: an unquoted ``2020-01-25`` stays a string, as in Java."""


_NoDatesLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_document(data: str | bytes, source: str = "<recipe>") -> Any:
    """Parse JSON or YAML text the way recipes are read (no implicit YAML dates)."""
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    try:
        return json.loads(text)
    except ValueError as exc:
        if source.lower().endswith(".json"):
            raise RecipeError(f"{source}: invalid JSON: {exc}") from None
    try:
        return yaml.load(text, Loader=_NoDatesLoader)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: invalid YAML/JSON: {exc}") from None


def parse_recipe(data: Mapping[str, Any] | str | bytes, source: str = "<recipe>") -> Recipe:
    """Validate a recipe given as a mapping or as JSON/YAML text and return its model."""
    if isinstance(data, (str, bytes)):
        data = parse_document(data, source)
    return _Parser(source).recipe(data)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from None
    return parse_recipe(raw, str(path))


def load_recipe_dir(path: str | os.PathLike[str]) -> list[Recipe]:
    """Load every *.json/*.yaml/*.yml file directly in ``path`` (sorted by file name)."""
    folder = Path(path)
    if not folder.is_dir():
        raise RecipeError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in RECIPE_SUFFIXES)
    return [load_recipe(p) for p in files]


# --------------------------------------------------------------------------- parsing


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Parser:
    """Walks one recipe document, keeping the source label for every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def error(self, path: str, message: str) -> RecipeError:
        return RecipeError(f"{self.source}: {path}: {message}" if path else f"{self.source}: {message}")

    # -- generic helpers

    def ci(self, value: Any, path: str) -> dict[str, tuple[str, Any]]:
        """Lower-case a mapping's keys; values keep the key as written (for error paths)."""
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object, got {_show(value)}")
        out: dict[str, tuple[str, Any]] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise self.error(path, f"keys must be strings, got {_show(key)}")
            low = key.lower()
            if low in out:
                raise self.error(path, f"duplicate key {key!r} (keys are case-insensitive; "
                                       f"also given as {out[low][0]!r})")
            out[low] = (key, item)
        return out

    def string(self, value: Any, path: str, *, allow_scalar: bool = False) -> str:
        if isinstance(value, str):
            return value
        if allow_scalar and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if allow_scalar and isinstance(value, bool):
            return "true" if value else "false"
        hint = " (quote it in YAML)" if isinstance(value, (int, float, bool)) else ""
        raise self.error(path, f"expected a string, got {_show(value)}{hint}")

    def enum(self, value: Any, path: str, allowed: tuple[str, ...]) -> str:
        text = self.string(value, path).upper()
        if text not in allowed:
            raise self.error(path, f"expected one of {', '.join(allowed)}, got {_show(value)}")
        return text

    def string_map(self, value: Any, path: str) -> dict[str, str]:
        """Setenv-style map: names keep their case, scalar values become strings."""
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object of NAME: value, got {_show(value)}")
        out: dict[str, str] = {}
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise self.error(path, f"names must be non-empty strings, got {_show(key)}")
            out[key] = self.string(item, _join(path, key), allow_scalar=True)
        return out

    # -- recipe

    def recipe(self, data: Any) -> Recipe:
        if not isinstance(data, Mapping):
            raise self.error("", f"a recipe must be an object, got {_show(data)}")
        top = self.ci(data, "")
        unknown = sorted(orig for low, (orig, _) in top.items() if low not in TOP_LEVEL_KEYS)
        if unknown:
            raise self.error(unknown[0], f"unknown top-level key (allowed: {', '.join(_CANONICAL.values())})")
        for low in REQUIRED_TOP_LEVEL:
            if low not in top:
                raise self.error(_CANONICAL[low], "required key is missing")

        def key(low: str) -> str:
            return top[low][0]

        fmt_key, fmt = top["recipeformatversion"]
        if str(fmt) != RECIPE_FORMAT_VERSION:
            raise self.error(fmt_key, f"expected {RECIPE_FORMAT_VERSION!r}, got {_show(fmt)}")

        name = self.string(top["componentname"][1], key("componentname"))
        if not NAME_PATTERN.match(name) or len(name) > NAME_MAX:
            raise self.error(key("componentname"), f"{name!r} must match {NAME_PATTERN.pattern} "
                                                   f"and be at most {NAME_MAX} characters")
        version = self.string(top["componentversion"][1], key("componentversion"))
        if len(version) > VERSION_MAX or not semantic_version.validate(version):
            raise self.error(key("componentversion"),
                             f"expected a semantic version like 1.0.0, got {version!r}")

        description = publisher = component_type = None
        if "componentdescription" in top:
            description = self.string(top["componentdescription"][1], key("componentdescription"))
        if "componentpublisher" in top:
            publisher = self.string(top["componentpublisher"][1], key("componentpublisher"))
        if "componenttype" in top:
            component_type = self.string(top["componenttype"][1], key("componenttype"))
            if component_type.lower() not in COMPONENT_TYPES:
                raise self.error(key("componenttype"),
                                 f"expected one of {', '.join(COMPONENT_TYPES)}, got {component_type!r}")
            component_type = component_type.lower()
        if "componentsource" in top:
            self.string(top["componentsource"][1], key("componentsource"))

        config = self.configuration(top.get("componentconfiguration"))
        deps = self.dependencies(top.get("componentdependencies"))

        manifests_key, manifests_raw = top["manifests"]
        if not isinstance(manifests_raw, list):
            raise self.error(manifests_key, f"expected a list of manifests, got {_show(manifests_raw)}")
        manifests = [self.manifest(m, _join(manifests_key, i)) for i, m in enumerate(manifests_raw)]

        global_raw: dict[str, Any] = {}
        sections: dict[str | None, _Section] = {}
        if "lifecycle" in top:
            lc_key, lc = top["lifecycle"]
            if lc is not None:
                if not isinstance(lc, Mapping):
                    raise self.error(lc_key, f"expected an object, got {_show(lc)}")
                global_raw = dict(lc)
                sections = self.global_lifecycle(lc, lc_key)

        recipe = Recipe(name=name, version=version, description=description, publisher=publisher,
                        default_configuration=config, dependencies=deps, manifests=manifests,
                        global_lifecycle=global_raw, source=self.source, component_type=component_type,
                        _global=sections)
        # Catch Startup+Run in any manifest now rather than at deployment time.
        for i, manifest in enumerate(manifests):
            steps = (manifest.lifecycle if manifest.lifecycle is not None
                     else _apply_selections(sections, manifest.selections)[0])
            if "startup" in steps and "run" in steps:
                raise self.error(_join(manifests_key, i), "lifecycle defines both Startup and Run; "
                                                          "a component may use only one of them")
        return recipe

    def configuration(self, item: tuple[str, Any] | None) -> dict[str, Any]:
        if item is None or item[1] is None:
            return {}
        path, value = item
        cfg = self.ci(value, path)
        if "defaultconfiguration" not in cfg:
            return {}
        dc_key, dc = cfg["defaultconfiguration"]
        if dc is None:
            return {}
        if not isinstance(dc, Mapping):
            raise self.error(_join(path, dc_key), f"expected an object, got {_show(dc)}")
        return _deep_copy(dc)  # user data: keys keep their exact case

    def dependencies(self, item: tuple[str, Any] | None) -> dict[str, Dependency]:
        if item is None or item[1] is None:
            return {}
        path, value = item
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object of component names, got {_show(value)}")
        out: dict[str, Dependency] = {}
        for dep_name, spec in value.items():
            dep_path = _join(path, str(dep_name))
            if not isinstance(dep_name, str) or not NAME_PATTERN.match(dep_name):
                raise self.error(dep_path, "not a valid component name")
            fields = self.ci(spec if spec is not None else {}, dep_path)
            requirement = ">=0.0.0"
            if "versionrequirement" in fields:
                vr_key, vr = fields["versionrequirement"]
                requirement = self.string(vr, _join(dep_path, vr_key)).strip() or ">=0.0.0"
                try:
                    semantic_version.NpmSpec(requirement)
                except ValueError:
                    raise self.error(_join(dep_path, vr_key),
                                     f"not an npm-style version range: {requirement!r}") from None
            dep_type = "HARD"
            if "dependencytype" in fields:
                dt_key, dt = fields["dependencytype"]
                dep_type = self.enum(dt, _join(dep_path, dt_key), DEPENDENCY_TYPES)
            out[dep_name] = Dependency(requirement, dep_type)
        return out

    def manifest(self, value: Any, path: str) -> Manifest:
        fields = self.ci(value, path)
        name = None
        if "name" in fields:
            name = self.string(fields["name"][1], _join(path, fields["name"][0]))

        platform: dict[str, str] = {}
        if "platform" in fields and fields["platform"][1] is not None:
            p_key, p_raw = fields["platform"]
            p_path = _join(path, p_key)
            seen = self.ci(p_raw, p_path)  # rejects keys that differ only by case
            for low, (orig, val) in seen.items():
                text = self.string(val, _join(p_path, orig), allow_scalar=True)
                if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
                    try:
                        re.compile(text[1:-1])
                    except re.error as exc:
                        raise self.error(_join(p_path, orig), f"invalid regular expression: {exc}") from None
                # os/architecture are nucleus keys; custom keys keep their spelling.
                platform[low if low in ("os", "architecture", "architecture.detail") else orig] = text

        lifecycle = None
        if "lifecycle" in fields and fields["lifecycle"][1] is not None:
            lc_key, lc = fields["lifecycle"]
            lifecycle = self.manifest_lifecycle(lc, _join(path, lc_key))

        selections = list(DEFAULT_SELECTIONS)
        if "selections" in fields and fields["selections"][1] is not None:
            s_key, s_raw = fields["selections"]
            s_path = _join(path, s_key)
            items = [s_raw] if isinstance(s_raw, str) else s_raw
            if not isinstance(items, list):
                raise self.error(s_path, f"expected a list of selection keys, got {_show(s_raw)}")
            selections = [self.string(s, _join(s_path, i)) for i, s in enumerate(items)]

        artifacts: list[Artifact] = []
        if "artifacts" in fields and fields["artifacts"][1] is not None:
            a_key, a_raw = fields["artifacts"]
            a_path = _join(path, a_key)
            if not isinstance(a_raw, list):
                raise self.error(a_path, f"expected a list of artifacts, got {_show(a_raw)}")
            artifacts = [self.artifact(a, _join(a_path, i)) for i, a in enumerate(a_raw)]
            names: dict[str, int] = {}
            for i, art in enumerate(artifacts):
                if art.scheme == "docker":
                    continue
                if art.filename in names:
                    raise self.error(_join(a_path, i),
                                     f"file name {art.filename!r} is already used by "
                                     f"{a_key}[{names[art.filename]}]; names must be unique")
                names[art.filename] = i
        return Manifest(name, platform, lifecycle, selections, artifacts)

    def artifact(self, value: Any, path: str) -> Artifact:
        fields = self.ci(value, path)
        if "uri" not in fields:
            raise self.error(_join(path, "URI"), "required key is missing")
        uri = self.string(fields["uri"][1], _join(path, fields["uri"][0])).strip()
        art = Artifact(uri)
        if art.scheme != "docker" and art.filename in ("", ".", ".."):
            raise self.error(_join(path, fields["uri"][0]), f"URI {uri!r} does not end in a file name")
        unarchive = "NONE"
        if "unarchive" in fields:
            unarchive = self.enum(fields["unarchive"][1], _join(path, fields["unarchive"][0]), UNARCHIVE)
        read, execute = "OWNER", "NONE"
        if "permission" in fields and fields["permission"][1] is not None:
            perm_key, perm = fields["permission"]
            perm_path = _join(path, perm_key)
            pf = self.ci(perm, perm_path)
            if "read" in pf:
                read = self.enum(pf["read"][1], _join(perm_path, pf["read"][0]), PERMISSIONS)
            if "execute" in pf:
                execute = self.enum(pf["execute"][1], _join(perm_path, pf["execute"][0]), PERMISSIONS)
        digest = algorithm = None
        if "digest" in fields and fields["digest"][1] is not None:
            digest = self.string(fields["digest"][1], _join(path, fields["digest"][0]))
        if "algorithm" in fields and fields["algorithm"][1] is not None:
            algorithm = self.string(fields["algorithm"][1], _join(path, fields["algorithm"][0]))
        return Artifact(uri, unarchive, read, execute, digest, algorithm)

    # -- lifecycles

    def manifest_lifecycle(self, value: Any, path: str) -> dict[str, Any]:
        section = self.section(value, path, allow_selections=False)[None]
        out: dict[str, Any] = dict(section.steps)
        if section.setenv:
            out["setenv"] = section.setenv
        return out

    def global_lifecycle(self, value: Mapping[str, Any], path: str) -> dict[str | None, _Section]:
        fields = self.ci(value, path)
        if any(low in STEP_NAMES for low in fields):
            # Steps written directly; a step may still pick per-selection scripts inside.
            return self.section(value, path, allow_selections=True)
        # Every key but Setenv is a selection key holding a lifecycle of its own.
        sections: dict[str | None, _Section] = {}
        for low, (orig, sub) in fields.items():
            sub_path = _join(path, orig)
            if low == "setenv":
                sections.setdefault(None, _Section()).setenv = self.string_map(sub, sub_path)
                continue
            if sub is None:
                continue
            parsed = self.section(sub, sub_path, allow_selections=False)[None]
            sections[low] = parsed
        return sections

    def section(self, value: Any, path: str, *, allow_selections: bool) -> dict[str | None, _Section]:
        """Parse ``{Setenv, Install, Run, ...}``; returns sections keyed by selection (None = always)."""
        fields = self.ci(value, path)
        sections: dict[str | None, _Section] = {None: _Section()}
        for low, (orig, raw) in fields.items():
            step_path = _join(path, orig)
            if low == "setenv":
                sections[None].setenv = self.string_map(raw, step_path) if raw is not None else {}
            elif low in STEP_NAMES:
                if raw is None:
                    continue
                for selection, step in self.step_variants(raw, step_path, allow_selections):
                    sections.setdefault(selection, _Section()).steps[low] = step
            else:
                hint = f"{', '.join(s.capitalize() for s in STEP_NAMES)} or Setenv"
                raise self.error(step_path, f"unknown lifecycle key (expected {hint})")
        return sections

    def step_variants(self, raw: Any, path: str,
                      allow_selections: bool) -> Iterator[tuple[str | None, LifecycleStep]]:
        """Yield (selection or None, step) for a step value, expanding selection maps when allowed."""
        if isinstance(raw, str):
            yield None, LifecycleStep(raw)
            return
        fields = self.ci(raw, path)
        if allow_selections and not any(low in STEP_OBJECT_KEYS for low in fields):
            # {linux: "...", all: {...}} - the step differs per selection key
            for low, (orig, sub) in fields.items():
                if sub is not None:
                    yield low, self.step(sub, _join(path, orig))
            return
        script = fields.get("script", (None, None))[1]
        if allow_selections and isinstance(script, Mapping):
            # Script: {linux: "...", all: "..."} with the other properties shared
            s_key = fields["script"][0]
            for low, (orig, text) in self.ci(script, _join(path, s_key)).items():
                body = {k: v for k, v in raw.items() if k != s_key}
                body[s_key] = self.string(text, _join(_join(path, s_key), orig))
                yield low, self.step(body, path)
            return
        yield None, self.step(raw, path)

    def step(self, raw: Any, path: str) -> LifecycleStep:
        if isinstance(raw, str):
            return LifecycleStep(raw)
        fields = self.ci(raw, path)
        unknown = [orig for low, (orig, _) in fields.items() if low not in STEP_OBJECT_KEYS]
        if unknown:
            raise self.error(_join(path, unknown[0]), "unknown step property "
                             "(expected Script, Timeout, Skipif, Setenv, RequiresPrivilege)")
        if "script" not in fields:
            raise self.error(_join(path, "Script"), "required key is missing")
        script = self.string(fields["script"][1], _join(path, fields["script"][0]))

        timeout = None
        if "timeout" in fields and fields["timeout"][1] is not None:
            t_key, t_raw = fields["timeout"]
            timeout = self.number(t_raw, _join(path, t_key))

        skipif = None
        if "skipif" in fields and fields["skipif"][1] is not None:
            sk_key, sk = fields["skipif"]
            skipif = self.string(sk, _join(path, sk_key)).strip()
            keyword, _, arg = skipif.partition(" ")
            if keyword.lower() not in ("onpath", "exists") or not arg.strip():
                raise self.error(_join(path, sk_key),
                                 f"expected 'onpath <executable>' or 'exists <file>', got {skipif!r}")

        setenv: dict[str, str] = {}
        if "setenv" in fields and fields["setenv"][1] is not None:
            setenv = self.string_map(fields["setenv"][1], _join(path, fields["setenv"][0]))

        privileged = False
        if "requiresprivilege" in fields:
            rp_key, rp = fields["requiresprivilege"]
            privileged = self.boolean(rp, _join(path, rp_key))
        return LifecycleStep(script, timeout, skipif, setenv, privileged)

    def number(self, value: Any, path: str) -> float:
        if isinstance(value, bool):
            raise self.error(path, f"expected a number, got {_show(value)}")
        if isinstance(value, (int, float)):
            number = float(value)
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                raise self.error(path, f"expected a number, got {_show(value)}") from None
        if not number > 0 or number != number or number == float("inf"):
            raise self.error(path, f"expected a positive number of seconds, got {_show(value)}")
        return number

    def boolean(self, value: Any, path: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        raise self.error(path, f"expected true or false, got {_show(value)}")


def _apply_selections(sections: Mapping[str | None, _Section],
                      selections: list[str]) -> tuple[dict[str, LifecycleStep], dict[str, str]]:
    """Combine global-lifecycle sections: the first listed selection defining a step wins."""
    order = [s.lower() for s in selections] + [None]
    steps: dict[str, LifecycleStep] = {}
    setenv: dict[str, str] = {}
    for selection in reversed(order):  # later entries are overridden by earlier ones
        section = sections.get(selection)
        if section is not None:
            setenv.update(section.setenv)
    for name in STEP_NAMES:
        for selection in order:
            section = sections.get(selection)
            if section is not None and name in section.steps:
                steps[name] = section.steps[name]
                break
    return steps, setenv


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value

