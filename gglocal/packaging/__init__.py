"""Build and publish Greengrass components the way the GDK CLI 1.6.2 does, without the GDK.

The GDK (``gdk component build|publish``) is not installable from PyPI, so this package
re-implements what it does for the repository's gdk projects: every ``components/<Name>/`` folder
and the repository root (the suite component), each with its own ``gdk-config.json`` and
``recipe.yaml|recipe.json``.

* :mod:`.project` reads and checks ``gdk-config.json`` files.
* :mod:`.build` builds one project (``zip`` or ``custom``) or all of them into ``greengrass-build/``.
* :mod:`.publish` uploads artifacts and creates component versions, dependencies first.
* :mod:`.cli` is the ``ggvision build`` / ``ggvision publish`` command line.
"""

from __future__ import annotations

from .build import (
    ArtifactFile,
    BuildError,
    BuiltComponent,
    RecipeSchemas,
    build_all,
    build_project,
    check_built,
    load_built,
)
from .project import GdkProject, PackagingError, ProjectError, discover_projects, load_project
from .publish import PublishedComponent, PublishError, publish_all

__all__ = [
    "ArtifactFile",
    "BuildError",
    "BuiltComponent",
    "GdkProject",
    "PackagingError",
    "ProjectError",
    "PublishError",
    "PublishedComponent",
    "RecipeSchemas",
    "build_all",
    "build_project",
    "check_built",
    "discover_projects",
    "load_built",
    "load_project",
    "publish_all",
]
