"""Build and publish the com.ggvision.Model.<Name> component version of a registered model.

Build = fetch the version from the store (digest verified) and lay it out as ``gdk component build`` does
(model_registry/component.py). Publish = what ``gdk component publish`` does for it: upload both artifacts to
``s3://<bucket>/<component>/<version>/<file>``, point the recipe's artifact URIs there (the Digest of each
artifact stays, so a device refuses altered bytes) and CreateComponentVersion with the inline recipe.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gglocal.packaging.build import BUILD_URI_PREFIX, dump_recipe

from .component import ComponentBuildError, build_model_component
from .names import RegistryError
from .registry import Registry

ClientFactory = Callable[[str, str], Any]  # (service, region) -> boto3 client


@dataclass(frozen=True)
class PublishedModel:
    component: str
    version: str
    arn: str
    bucket: str
    keys: tuple[str, ...]
    recipe: str  # the inline recipe sent


def build(registry: Registry, name: str, version: str, out_dir: Path, component: str | None = None) -> dict[str, Any]:
    """out_dir/recipes/<Component>-<version>.yaml + out_dir/artifacts/<Component>/<version>/…; the recipe.
    `component` names the component instead of the manifest's name (an A/B candidate: rollout/ab.py)."""
    with tempfile.TemporaryDirectory(prefix="ggv-model-") as tmp:
        model_dir = registry.fetch(name, version, Path(tmp) / "model")
        try:
            return build_model_component(model_dir, Path(out_dir), component)
        except ComponentBuildError as e:
            raise RegistryError(str(e)) from None


def publish(registry: Registry, name: str, version: str, *, bucket: str, region: str,
            client_factory: ClientFactory | None = None, session: Any = None) -> PublishedModel:
    """Upload the artifacts and create the component version; RegistryError naming the failed call."""
    from botocore.exceptions import BotoCoreError, ClientError

    if client_factory is None:
        import boto3

        session = session or boto3.Session()
        client_factory = lambda service, reg: session.client(service, region_name=reg)  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="ggv-publish-") as tmp:
        out = Path(tmp) / "greengrass-build"
        recipe = build(registry, name, version, out)
        component, cversion = recipe["ComponentName"], recipe["ComponentVersion"]
        art_dir = out / "artifacts" / component / cversion
        s3 = client_factory("s3", region)
        keys = []
        for art in recipe["Manifests"][0]["Artifacts"]:
            file = art["URI"].rsplit("/", 1)[-1]
            key = f"{component}/{cversion}/{file}"
            try:
                s3.upload_file(str(art_dir / file), bucket, key)
            except (ClientError, BotoCoreError, OSError) as e:
                raise RegistryError(f"publish {component} {cversion}: upload s3://{bucket}/{key}: {e}") from None
            if not art["URI"].startswith(BUILD_URI_PREFIX):
                raise RegistryError(f"{component}: unexpected artifact URI {art['URI']}")
            art["URI"] = f"s3://{bucket}/{key}"
            keys.append(key)
        text = dump_recipe(recipe, "yaml")
        gg = client_factory("greengrassv2", region)
        try:
            resp = gg.create_component_version(inlineRecipe=text.encode())
        except (ClientError, BotoCoreError) as e:
            raise RegistryError(f"publish {component} {cversion}: CreateComponentVersion: {e}") from None
    return PublishedModel(component, cversion, resp["arn"], bucket, tuple(keys), text)
