"""What a site file asks for, next to what is deployed: per stage, the configuration merge of every component
it configures against the stage's deployment document; per device, the desired state that will reach it (the
cameras and sensors Capture and the Filter run there)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ggvision.config.site import SiteFile


class PlanError(ValueError):
    """The site file and the deployment documents cannot be reconciled; the text says where."""


@dataclass(frozen=True)
class Change:
    where: str  # "stage dev" or "device site-7-box"
    what: str  # "com.ggvision.Uplink.bandwidthKbps" or "cameras.door"
    before: Any
    after: Any


def _flat(doc: Any, prefix: str) -> dict[str, Any]:
    if isinstance(doc, dict) and doc:
        out: dict[str, Any] = {}
        for k, v in doc.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out
    return {prefix: doc}


def _merge_of(doc: dict[str, Any], component: str, path: Path) -> dict[str, Any]:
    spec = doc.get("components", {}).get(component)
    if spec is None:
        raise PlanError(f"{path}: the site file configures {component}, which this deployment does not name; "
                        "add it with the version the suite pins")
    merge = spec.get("configurationUpdate", {}).get("merge") or "{}"
    try:
        return json.loads(merge)
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: components.{component}.configurationUpdate.merge is not JSON: {e}") from None


def stage_changes(site: SiteFile, deployments: Path) -> list[Change]:
    """Per stage, each configuration value the site file sets that its deployment document does not carry yet."""
    changes: list[Change] = []
    for stage, cfg in site.stages.items():
        path = deployments / f"{stage}.json"
        try:
            doc = json.loads(path.read_text())
        except OSError as e:
            raise PlanError(f"{path}: no deployment document for stage {stage}: {e.strerror}") from None
        except json.JSONDecodeError as e:
            raise PlanError(f"{path}: not JSON: {e}") from None
        group = str(doc.get("targetArn", "")).rsplit("thinggroup/", 1)[-1]
        if group != cfg.thing_group:
            raise PlanError(f"{path}: targets thing group {group!r}, the site file says {cfg.thing_group!r}")
        for component, wanted in cfg.configuration.items():
            current = _flat(_merge_of(doc, component, path), component)
            for key, value in _flat(wanted, component).items():
                if current.get(key) != value:
                    changes.append(Change(f"stage {stage}", key, current.get(key), value))
    return changes


def device_state(site: SiteFile) -> dict[str, dict[str, Any]]:
    """thing -> the desired state of its per-site configuration: Capture's cameras and sensors, the Filter's
    cameras (as the components' configuration keys, only what the site file sets: a shadow holds 8 KB by
    default), and its site id."""
    out = {}
    for thing, (site_id, device) in site.devices().items():
        out[thing] = {
            "site": site_id,
            "capture": {"cameras": {c: cam.capture.model_dump(by_alias=True, mode="json", exclude_unset=True)
                                    for c, cam in device.cameras.items()},
                        "sensors": {s: sensor.model_dump(by_alias=True, mode="json", exclude_unset=True)
                                    for s, sensor in device.sensors.items()}},
            "filter": {"cameras": {c: cam.filter.model_dump(by_alias=True, mode="json", exclude_unset=True)
                                   for c, cam in device.cameras.items()}},
        }
    return out
