"""`ggvision site apply` and `site status`: a stage's deployment document rendered from the site file, and each
device's per-site part written as the desired state of its components' named shadows.

Fleet-wide settings (the stage's `configuration`) are merged into each component's `configurationUpdate.merge`
in the stage's deployment document (a key the site file no longer sets is reset: `configurationUpdate.reset`),
and `aws.greengrass.ShadowManager` is made to sync the components' shadows of
each core device (synchronize.coreThing.namedShadows).

Per device, the components' shadows (ggvision/contract/shadows.py) get as `desired` exactly the device's
cameras and sensors: the update is the merge patch from the shadow's current desired state (a camera gone from
the site file is written as null). They are written through a `ShadowPlane`: the IoT data plane
(boto3 `iot-data` UpdateThingShadow/GetThingShadow) against AWS or moto, or, against a local runtime, the MQTT
shadow topics of its IoT Core stand-in (gglocal's ShadowTopicsClient): the same requests over the transport
that stand-in has (it has no HTTPS data plane). ShadowManager syncs the cloud shadow to the device.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ggvision.config.site import SiteFile
from ggvision.contract import secrets, shadows

from .plan import PlanError, device_state

# the per-device part of each followed shadow, as device_state() lays it out
_PART = {shadows.CAPTURE: "capture", shadows.FILTER: "filter"}


class ShadowPlane(Protocol):
    def get(self, thing: str, shadow: str) -> dict[str, Any] | None:
        """The shadow document ({"state": {...}, "version": n}) or None when there is none."""
        ...

    def update(self, thing: str, shadow: str, state: dict[str, Any]) -> int:
        """Send {"state": state}; the new version."""
        ...


class IotDataPlane:
    """The IoT data plane over HTTPS (boto3 `iot-data`): AWS IoT Core, or moto's server with endpoint_url."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, thing: str, shadow: str) -> dict[str, Any] | None:
        try:
            resp = self.client.get_thing_shadow(thingName=thing, shadowName=shadow)
        except self.client.exceptions.ResourceNotFoundException:
            return None
        return json.loads(resp["payload"].read())

    def update(self, thing: str, shadow: str, state: dict[str, Any]) -> int:
        resp = self.client.update_thing_shadow(thingName=thing, shadowName=shadow,
                                               payload=json.dumps({"state": state}).encode())
        return int(json.loads(resp["payload"].read()).get("version", 0))


class TopicsPlane:
    """The same two calls over the MQTT shadow topics of a local runtime's IoT Core stand-in."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, thing: str, shadow: str) -> dict[str, Any] | None:
        return self.client.get(thing, shadow)

    def update(self, thing: str, shadow: str, state: dict[str, Any]) -> int:
        return int(self.client.update(thing, shadow, json.dumps({"state": state}).encode())["version"])


@dataclass(frozen=True)
class ShadowChange:
    thing: str
    shadow: str
    patch: dict[str, Any]  # the desired-state update (null removes)
    before: dict[str, Any]  # the desired state it replaces


def wanted_shadows(site: SiteFile, stage: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """(thing, shadow) -> the desired state the site file gives it (devices of `stage`, or all)."""
    out = {}
    for thing, state in device_state(site).items():
        if stage is not None and site.sites[state["site"]].stage != stage:
            continue
        for shadow, part in _PART.items():
            out[(thing, shadow)] = state[part]
    return out


def shadow_changes(site: SiteFile, stage: str, plane: ShadowPlane) -> list[ShadowChange]:
    """What writing the stage's devices' shadows would change, read from the shadows as they are now."""
    changes = []
    for (thing, shadow), desired in sorted(wanted_shadows(site, stage).items()):
        doc = plane.get(thing, shadow) or {}
        before = (doc.get("state") or {}).get("desired") or {}
        patch = shadows.merge_patch(before, desired)
        if patch:
            changes.append(ShadowChange(thing, shadow, patch, before))
    return changes


def write_shadows(changes: list[ShadowChange], plane: ShadowPlane) -> None:
    for c in changes:
        plane.update(c.thing, c.shadow, {"desired": c.patch})


# -- the stage's deployment document -------------------------------------------------------------------------

def _deep_merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {**base, **{k: _deep_merge(base.get(k), v) for k, v in over.items()}}
    return copy.deepcopy(over)


def _merge_of(spec: dict[str, Any], component: str, path: Path) -> dict[str, Any]:
    try:
        return json.loads(spec.get("configurationUpdate", {}).get("merge") or "{}")
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: components.{component}.configurationUpdate.merge is not JSON: {e}") from None


def _sync_our_shadows(merge: dict[str, Any]) -> dict[str, Any]:
    """ShadowManager's merge with the components' shadows added to the core device's synced named shadows."""
    merge = copy.deepcopy(merge)
    core = merge.setdefault("synchronize", {}).setdefault("coreThing", {})
    core.setdefault("classic", False)
    names = core.setdefault("namedShadows", [])
    names += [n for n in (shadows.CAPTURE, shadows.FILTER) if n not in names]
    return merge


def render_stage(site: SiteFile, stage: str, deployments: Path) -> tuple[Path, dict[str, Any]]:
    """The stage's deployment document with the site file's configuration merged into each component's
    configurationUpdate.merge (keys the document sets and the site file does not stay: the document may carry
    settings of its own, the sink's bucket say), keys the site file set at the last apply and sets no longer
    taken out of the merge and reset (see "Greengrass `reset`" below), and ShadowManager syncing the
    components' shadows."""
    if stage not in site.stages:
        raise PlanError(f"no stage {stage!r} in the site file (one of {', '.join(site.stages)})")
    path = deployments / f"{stage}.json"
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise PlanError(f"{path}: no deployment document for stage {stage}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise PlanError(f"{path}: not JSON: {e}") from None
    doc = copy.deepcopy(doc)
    components = doc.setdefault("components", {})
    before = applied_configuration(path)
    configured = site.stages[stage].configuration
    for component in [*configured, *(c for c in before if c not in configured)]:
        wanted = configured.get(component, {})
        spec = components.get(component)
        if spec is None:
            if not wanted:
                continue  # gone from the site file and from the document: nothing of it to reset
            raise PlanError(f"{path}: the site file configures {component}, which this deployment does not name; "
                            "add it with the version the suite pins")
        _configure(spec, _merge_of(spec, component, path), before.get(component, {}), wanted, f"{path}: {component}")
    spec = components.setdefault(shadows.SHADOW_MANAGER, {"componentVersion": shadows.SHADOW_MANAGER_VERSION})
    merge = _sync_our_shadows(_merge_of(spec, shadows.SHADOW_MANAGER, path))
    spec.setdefault("configurationUpdate", {})["merge"] = json.dumps(merge, sort_keys=True)
    _carry_camera_secrets(site, stage, components, path)
    return path, doc


def stage_secret_arns(site: SiteFile, stage: str) -> list[str]:
    """The partial ARNs of the camera secrets of every device of `stage` (ggvision/contract/secrets.py)."""
    names = {getattr(cam.capture.source, "credentials_secret", None)
             for s in site.sites.values() if s.stage == stage
             for device in s.devices.values() for cam in device.cameras.values()}
    return sorted(secrets.secret_arn(n) for n in names if n)


def _carry_camera_secrets(site: SiteFile, stage: str, components: dict[str, Any], path: Path) -> None:
    """aws.greengrass.SecretManager in the stage's deployment with cloudSecrets = the stage's camera secrets (a
    list is replaced whole by a merge, so a camera gone takes its secret off every device). One stage-wide list
    meets per-device secrets through the device role: each device may download only its own thing name's."""
    arns = stage_secret_arns(site, stage)
    if not arns and secrets.SECRET_MANAGER not in components:
        return
    spec = components.setdefault(secrets.SECRET_MANAGER, {"componentVersion": secrets.SECRET_MANAGER_VERSION})
    merge = _merge_of(spec, secrets.SECRET_MANAGER, path)
    merge["cloudSecrets"] = [{"arn": arn} for arn in arns]
    spec.setdefault("configurationUpdate", {})["merge"] = json.dumps(merge, sort_keys=True)

# -- keys the site file no longer sets: Greengrass `reset` ---------------------------------------------------
# A deployment's merge keeps what it does not name (developer guide, "Update component configurations"), so a key
# dropped from the site file would stay on the devices forever. What the site file set at the last apply is kept
# beside the document (`<stage>.site.json`); a key set then and not now is taken out of the merge and listed in
# `reset` (JSON pointers, RFC 6901), which the device applies before the merge: back to the recipe's default, or
# removed where the recipe has none. Pointers stay listed while the site file leaves the key unset, so a device
# that missed the deployment which dropped it still loses it with a later one.

RESET_LIMIT = 256  # ComponentConfigurationUpdate.reset: at most 256 pointers


def applied_path(document: Path) -> Path:
    """Where apply keeps what the site file set in `document` (deploy/deployments/dev.json -> dev.site.json)."""
    return document.with_suffix(".site.json")


def applied_configuration(document: Path) -> dict[str, dict[str, Any]]:
    """component -> the configuration the site file set at the last apply of `document` ({} before the first)."""
    record = applied_path(document)
    try:
        data = json.loads(record.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as e:
        raise PlanError(f"{record}: cannot read what the last apply set: {e}") from None
    configuration = data.get("configuration") if isinstance(data, dict) else None
    if not isinstance(configuration, dict) or not all(isinstance(v, dict) for v in configuration.values()):
        raise PlanError(f"{record}: expected {{\"configuration\": {{component: {{...}}}}}}")
    return configuration


def applied_record(site: SiteFile, stage: str) -> dict[str, Any]:
    """What apply writes to applied_path(): the stage's configuration as the site file sets it now."""
    return {"stage": stage, "configuration": copy.deepcopy(site.stages[stage].configuration)}


def pointer(keys: tuple[str, ...]) -> str:
    return "".join("/" + k.replace("~", "~0").replace("/", "~1") for k in keys)


def _keys(ptr: str) -> tuple[str, ...]:
    return tuple(k.replace("~1", "/").replace("~0", "~") for k in ptr.split("/")[1:])


def _gone(old: dict[str, Any], new: dict[str, Any], merge: Any, at: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Key paths the site file set (`old`) and sets no longer (`new`); a whole subtree when the merge holds only
    the site file's keys there, else the site file's keys inside it (the document's own keys stay)."""
    out: list[tuple[str, ...]] = []
    for k, v in old.items():
        here, m = (*at, k), merge.get(k) if isinstance(merge, dict) else None
        if k in new:
            if isinstance(v, dict) and isinstance(new[k], dict):
                out += _gone(v, new[k], m, here)
            continue  # a value the site file still sets: the merge overwrites it
        if isinstance(v, dict) and isinstance(m, dict) and m != v:
            out += _gone(v, {}, m, here)
        else:
            out.append(here)
    return out


def _without(merge: dict[str, Any], keys: tuple[str, ...]) -> None:
    node, parents = merge, []
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            return
        parents.append((node, k))
        node = node[k]
    node.pop(keys[-1], None)
    for parent, k in reversed(parents):  # no empty objects left behind by the removal
        if parent[k]:
            break
        del parent[k]


def _sets(config: Any, keys: tuple[str, ...]) -> bool:
    for k in keys:
        if not isinstance(config, dict) or k not in config:
            return False
        config = config[k]
    return True


def _configure(spec: dict[str, Any], merge: dict[str, Any], before: dict[str, Any], wanted: dict[str, Any],
               where: str) -> None:
    """Set `spec`'s configurationUpdate: the site file's `wanted` merged over the document's merge, with what the
    site file set `before` and sets no longer taken out of the merge and reset."""
    gone = _gone(before, wanted, merge)
    for keys in gone:
        _without(merge, keys)
    update = spec.setdefault("configurationUpdate", {})
    update["merge"] = json.dumps(_deep_merge(merge, wanted), sort_keys=True)
    reset = [p for p in dict.fromkeys([*update.get("reset", []), *map(pointer, gone)])
             if not _sets(wanted, _keys(p))]
    if len(reset) > RESET_LIMIT:
        raise PlanError(f"{where}: {len(reset)} configuration keys to reset, more than a deployment carries "
                        f"({RESET_LIMIT}); drop old pointers from its configurationUpdate.reset")
    if reset:
        update["reset"] = reset
    else:
        update.pop("reset", None)


# -- status -------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ShadowStatus:
    thing: str
    shadow: str
    planned: dict[str, Any]  # what the site file says
    desired: dict[str, Any] | None  # what the shadow asks for (None: no shadow yet)
    reported: dict[str, Any] | None  # what the device runs
    error: str | None  # why the device refused its desired state

    @property
    def state(self) -> str:
        if self.desired is None:
            return "not applied"
        if self.error:
            return "refused"
        if _pruned(self.desired) != _pruned(self.planned):
            return "apply pending"
        reported = {k: v for k, v in (self.reported or {}).items() if k != shadows.ERROR_KEY}
        return "in sync" if _pruned(reported) == _pruned(self.desired) else "device pending"


def _pruned(doc: Any) -> Any:
    """`doc` without empty objects, which ShadowManager's sync drops (aws-greengrass-shadow-manager,
    SyncNodeMerger: a merged object with no fields is null): `"sensors": {}` as the site file writes it is gone
    from desired after a sync, and may stay in reported; either way it asks for nothing."""
    if not isinstance(doc, dict):
        return doc
    out = {k: _pruned(v) for k, v in doc.items()}
    return {k: v for k, v in out.items() if v != {}}


def shadow_status(site: SiteFile, plane: ShadowPlane) -> list[ShadowStatus]:
    out = []
    for (thing, shadow), planned in sorted(wanted_shadows(site).items()):
        doc = plane.get(thing, shadow)
        state = (doc or {}).get("state") or {}
        reported = state.get("reported")
        error = (reported or {}).get(shadows.ERROR_KEY) if isinstance(reported, dict) else None
        out.append(ShadowStatus(thing, shadow, planned, state.get("desired") if doc else None, reported,
                                error.get("message") if isinstance(error, dict) else None))
    return out
