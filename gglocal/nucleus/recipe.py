"""The model of a Greengrass v2 component recipe, and how it resolves for a device's platform.

`Recipe` holds a validated recipe (recipeparser.py makes one from JSON/YAML): name, version,
DefaultConfiguration, dependencies, platform manifests and the global lifecycle. `Recipe.resolve`
picks the first manifest matching a platform and works out its lifecycle steps, Setenv and
artifacts as a `ResolvedRecipe`. User data (DefaultConfiguration, Setenv names, platform values)
keeps its case exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import semantic_version

from .lifecyclesteps import LifecycleSection, LifecycleStep, apply_selections
from .platforms import platform_matches
from .recipereader import RecipeError


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
        """Folder name the nucleus unarchives a ZIP into: the file name without its last extension, whatever
        it is (ComponentManager.getFileName: ``X.zip`` -> ``X``, ``a.b.jar`` -> ``a.b``; a name whose only dot
        is its first character is kept whole)."""
        name = self.filename
        return name[:name.rindex(".")] if name.find(".") > 0 else name


def artifact_filename(uri: str) -> str:
    """Last path segment of an artifact URI (``s3://b/k/x.zip`` and ``greengrass:x.zip`` -> ``x.zip``)."""
    tail = uri.rstrip().rsplit("/", 1)[-1]
    if "/" not in uri and ":" in tail:  # opaque form such as greengrass:Name.zip
        tail = tail.split(":", 1)[1]
    return tail


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
    _global: dict[str | None, LifecycleSection] = field(default_factory=dict, repr=False, compare=False)

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
            steps, setenv = apply_selections(self._global, manifest.selections)
        if "startup" in steps and "run" in steps:
            raise RecipeError(f"{self.source}: {self.name}: lifecycle defines both Startup and Run; "
                              "a component may use only one of them")
        return ResolvedRecipe(self, manifest, steps, setenv, list(manifest.artifacts))
