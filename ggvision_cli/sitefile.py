"""The site file `ggvision run` starts a user from: one site, one device (the runtime's thing name) with the
cameras and sensors it runs now, read from the build's Capture and Filter recipes, in stage `dev`.

A shadow's desired `cameras` replaces the recipe's whole (ggvision/component/shadow.py lays desired keys over the
configuration), so a site file that named only the camera a user adds would take the demo camera away; this one
lists the demo camera too, and `camera add` appends to it. It is written once and never overwritten: after that it
is the user's. Beside it, the stage's deployment document (`deployments/dev.json`, a copy of the suite's) that
`site apply` renders into, so a local try does not rewrite the repository's deploy/deployments.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from ggvision.config.base import ConfigError
from ggvision.config.site import load_site

SITE, STAGE, GROUP = "local", "dev", "ggvision-dev"
CAPTURE, FILTER = "com.ggvision.Capture", "com.ggvision.Filter"
SUITE_DEPLOYMENTS = Path(__file__).resolve().parents[1] / "deploy" / "deployments"


def _default_configuration(build: Path, component: str) -> dict[str, Any]:
    for path in sorted((build / "recipes").glob("*")):
        if path.suffix.lower() not in (".json", ".yaml", ".yml"):
            continue
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and doc.get("ComponentName") == component:
            return (doc.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
    return {}


def device_site(build: Path, thing: str) -> dict[str, Any]:
    """The site file's data: `thing` with the cameras and sensors the build's recipes give it."""
    capture, filters = _default_configuration(build, CAPTURE), _default_configuration(build, FILTER)
    cameras: dict[str, Any] = {}
    for name, cam in (capture.get("cameras") or {}).items():
        cameras[name] = {"capture": cam, **({"filter": filters["cameras"][name]}
                                             if name in (filters.get("cameras") or {}) else {})}
    device: dict[str, Any] = {"cameras": cameras}
    if capture.get("sensors"):
        device["sensors"] = capture["sensors"]
    return {"stages": {STAGE: {"thingGroup": GROUP}},
            "sites": {SITE: {"stage": STAGE, "devices": {thing: device}}}}


def ensure_site(path: Path, build: Path, thing: str) -> bool:
    """Write the site file (and its deployments folder) unless it exists; True when written. ValueError when the
    build's recipes make no valid site file (the message says where)."""
    deployments = path.parent / "deployments"
    if not (deployments / f"{STAGE}.json").exists():
        deployments.mkdir(parents=True, exist_ok=True)
        shutil.copy(SUITE_DEPLOYMENTS / f"{STAGE}.json", deployments / f"{STAGE}.json")
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# This device as `ggvision run` starts it ({thing}); add cameras with `ggvision camera add`, send them\n"
            f"# with `ggvision site apply` (docs/sites.md). Written once from {build}'s recipes; yours to edit.\n"
            + yaml.safe_dump(device_site(build, thing), sort_keys=False, default_flow_style=None))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    try:
        load_site(tmp)
    except ConfigError as e:
        tmp.unlink()
        raise ValueError(f"the site file made from {build}'s recipes is not valid: {e}") from None
    tmp.rename(path)
    return True


def two_commands(site: Path, root: Path, thing: str, secrets_endpoint_url: str | None,
                 region: str | None, env: str = "") -> list[str]:
    """What a user types to add an RTSP camera to this running device (docs/sites.md, "Adding a camera to
    `make run`")."""
    where = f" --secrets-endpoint-url {secrets_endpoint_url}" if secrets_endpoint_url else ""
    where += f" --region {region}" if region else ""
    return [f"printf '%s' \"$CAM_PASSWORD\" | {env}ggvision camera add {site} --site {SITE} --device {thing} "
            f"--name CAM --url rtsp://HOST/PATH --user USER --password-stdin{where}",
            f"ggvision site apply {site} --stage {STAGE} --deployments {site.parent / 'deployments'} "
            f"--runtime {root} --deploy"]
