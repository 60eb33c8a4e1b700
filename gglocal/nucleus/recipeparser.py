"""Making a `Recipe` from a recipe file or document (format 2020-01-25), validated as the nucleus does.

Gives `parse_recipe` (a mapping, or JSON/YAML text), `load_recipe` (one file) and `load_recipe_dir`
(every *.json/*.yaml/*.yml in a folder). Mirrors what the nucleus accepts: property names and enum
values case-insensitive, platform manifests (first match wins), a global lifecycle with selection
keys (lifecyclesteps.py), DefaultConfiguration and dependencies. Every error is a `RecipeError`
naming the file and the key path; a recipe defining both Startup and Run is refused here, not at
deployment time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import semantic_version

from .lifecyclesteps import LifecycleParser, LifecycleSection, apply_selections
from .recipe import Artifact, Dependency, Manifest, Recipe
from .recipereader import RecipeError, RecipeReader, join_path, parse_document, show

RECIPE_FORMAT_VERSION = "2020-01-25"
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9-_.]+$")
NAME_MAX = 128
VERSION_MAX = 64
RECIPE_SUFFIXES = (".json", ".yaml", ".yml")

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


class _Parser(RecipeReader):
    """Walks one recipe document, keeping the source label for every error."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.lifecycles = LifecycleParser(source)

    def recipe(self, data: Any) -> Recipe:
        if not isinstance(data, Mapping):
            raise self.error("", f"a recipe must be an object, got {show(data)}")
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
            raise self.error(fmt_key, f"expected {RECIPE_FORMAT_VERSION!r}, got {show(fmt)}")

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
            raise self.error(manifests_key, f"expected a list of manifests, got {show(manifests_raw)}")
        manifests = [self.manifest(m, join_path(manifests_key, i)) for i, m in enumerate(manifests_raw)]

        global_raw: dict[str, Any] = {}
        sections: dict[str | None, LifecycleSection] = {}
        if "lifecycle" in top:
            lc_key, lc = top["lifecycle"]
            if lc is not None:
                if not isinstance(lc, Mapping):
                    raise self.error(lc_key, f"expected an object, got {show(lc)}")
                global_raw = dict(lc)
                sections = self.lifecycles.global_lifecycle(lc, lc_key)

        recipe = Recipe(name=name, version=version, description=description, publisher=publisher,
                        default_configuration=config, dependencies=deps, manifests=manifests,
                        global_lifecycle=global_raw, source=self.source, component_type=component_type,
                        _global=sections)
        # Catch Startup+Run in any manifest now rather than at deployment time.
        for i, manifest in enumerate(manifests):
            steps = (manifest.lifecycle if manifest.lifecycle is not None
                     else apply_selections(sections, manifest.selections)[0])
            if "startup" in steps and "run" in steps:
                raise self.error(join_path(manifests_key, i), "lifecycle defines both Startup and Run; "
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
            raise self.error(join_path(path, dc_key), f"expected an object, got {show(dc)}")
        return _deep_copy(dc)  # user data: keys keep their exact case

    def dependencies(self, item: tuple[str, Any] | None) -> dict[str, Dependency]:
        if item is None or item[1] is None:
            return {}
        path, value = item
        if not isinstance(value, Mapping):
            raise self.error(path, f"expected an object of component names, got {show(value)}")
        out: dict[str, Dependency] = {}
        for dep_name, spec in value.items():
            dep_path = join_path(path, str(dep_name))
            if not isinstance(dep_name, str) or not NAME_PATTERN.match(dep_name):
                raise self.error(dep_path, "not a valid component name")
            fields = self.ci(spec if spec is not None else {}, dep_path)
            requirement = ">=0.0.0"
            if "versionrequirement" in fields:
                vr_key, vr = fields["versionrequirement"]
                requirement = self.string(vr, join_path(dep_path, vr_key)).strip() or ">=0.0.0"
                try:
                    semantic_version.NpmSpec(requirement)
                except ValueError:
                    raise self.error(join_path(dep_path, vr_key),
                                     f"not an npm-style version range: {requirement!r}") from None
            dep_type = "HARD"
            if "dependencytype" in fields:
                dt_key, dt = fields["dependencytype"]
                dep_type = self.enum(dt, join_path(dep_path, dt_key), DEPENDENCY_TYPES)
            out[dep_name] = Dependency(requirement, dep_type)
        return out

    def manifest(self, value: Any, path: str) -> Manifest:
        fields = self.ci(value, path)
        name = None
        if "name" in fields:
            name = self.string(fields["name"][1], join_path(path, fields["name"][0]))

        platform: dict[str, str] = {}
        if "platform" in fields and fields["platform"][1] is not None:
            p_key, p_raw = fields["platform"]
            p_path = join_path(path, p_key)
            seen = self.ci(p_raw, p_path)  # rejects keys that differ only by case
            for low, (orig, val) in seen.items():
                text = self.string(val, join_path(p_path, orig), allow_scalar=True)
                if len(text) >= 2 and text.startswith("/") and text.endswith("/"):
                    try:
                        re.compile(text[1:-1])
                    except re.error as exc:
                        raise self.error(join_path(p_path, orig), f"invalid regular expression: {exc}") from None
                # os/architecture are nucleus keys; custom keys keep their spelling.
                platform[low if low in ("os", "architecture", "architecture.detail") else orig] = text

        lifecycle = None
        if "lifecycle" in fields and fields["lifecycle"][1] is not None:
            lc_key, lc = fields["lifecycle"]
            lifecycle = self.lifecycles.manifest_lifecycle(lc, join_path(path, lc_key))

        selections = list(DEFAULT_SELECTIONS)
        if "selections" in fields and fields["selections"][1] is not None:
            s_key, s_raw = fields["selections"]
            s_path = join_path(path, s_key)
            items = [s_raw] if isinstance(s_raw, str) else s_raw
            if not isinstance(items, list):
                raise self.error(s_path, f"expected a list of selection keys, got {show(s_raw)}")
            selections = [self.string(s, join_path(s_path, i)) for i, s in enumerate(items)]

        artifacts: list[Artifact] = []
        if "artifacts" in fields and fields["artifacts"][1] is not None:
            a_key, a_raw = fields["artifacts"]
            a_path = join_path(path, a_key)
            if not isinstance(a_raw, list):
                raise self.error(a_path, f"expected a list of artifacts, got {show(a_raw)}")
            artifacts = [self.artifact(a, join_path(a_path, i)) for i, a in enumerate(a_raw)]
            names: dict[str, int] = {}
            for i, art in enumerate(artifacts):
                if art.scheme == "docker":
                    continue
                if art.filename in names:
                    raise self.error(join_path(a_path, i),
                                     f"file name {art.filename!r} is already used by "
                                     f"{a_key}[{names[art.filename]}]; names must be unique")
                names[art.filename] = i
        return Manifest(name, platform, lifecycle, selections, artifacts)

    def artifact(self, value: Any, path: str) -> Artifact:
        fields = self.ci(value, path)
        if "uri" not in fields:
            raise self.error(join_path(path, "URI"), "required key is missing")
        uri = self.string(fields["uri"][1], join_path(path, fields["uri"][0])).strip()
        art = Artifact(uri)
        if art.scheme != "docker" and art.filename in ("", ".", ".."):
            raise self.error(join_path(path, fields["uri"][0]), f"URI {uri!r} does not end in a file name")
        unarchive = "NONE"
        if "unarchive" in fields:
            unarchive = self.enum(fields["unarchive"][1], join_path(path, fields["unarchive"][0]), UNARCHIVE)
        read, execute = "OWNER", "NONE"
        if "permission" in fields and fields["permission"][1] is not None:
            perm_key, perm = fields["permission"]
            perm_path = join_path(path, perm_key)
            pf = self.ci(perm, perm_path)
            if "read" in pf:
                read = self.enum(pf["read"][1], join_path(perm_path, pf["read"][0]), PERMISSIONS)
            if "execute" in pf:
                execute = self.enum(pf["execute"][1], join_path(perm_path, pf["execute"][0]), PERMISSIONS)
        digest = algorithm = None
        if "digest" in fields and fields["digest"][1] is not None:
            digest = self.string(fields["digest"][1], join_path(path, fields["digest"][0]))
        if "algorithm" in fields and fields["algorithm"][1] is not None:
            algorithm = self.string(fields["algorithm"][1], join_path(path, fields["algorithm"][0]))
        return Artifact(uri, unarchive, read, execute, digest, algorithm)


def _deep_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value

