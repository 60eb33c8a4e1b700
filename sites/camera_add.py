"""Adding a camera to a site: its entry in the site file and its credentials in AWS Secrets Manager.

- `camera_entry(...)`  the camera's site-file entry: the URL without credentials, `credentialsSecret` naming the
                       contract's secret (ggvision/{thing}/cameras/{camera}), detectFps and maxWidth capped to
                       what the probe saw
- `add_to_text(...)`   the site file's text with the entry inserted under sites.S.devices.THING.cameras: a text
                       edit, so the file's comments, order and layout stay (PyYAML only reads; ruamel.yaml is not
                       a dependency). Where the place is not a block mapping to insert into (flow style `{}`, an
                       empty key), the file is rewritten from its data and the result says comments were lost.
- `store_credentials`  create_secret, or put_secret_value when the secret exists (a new password for a camera)

The password goes only into the secret: never into the site file, a message or a log record.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import yaml

from ggvision.config.site import SECRET_PREFIX
from ggvision.contract import secrets

log = logging.getLogger(__name__)

DEFAULT_DETECT_FPS = 5.0  # Capture's default
DEFAULT_MAX_WIDTH = 1920  # wider frames are scaled down at decode: the detectors' inputs are far smaller


class AddError(Exception):
    """The camera cannot be added as asked; the message says why and where."""


def secret_name(thing: str, camera: str) -> str:
    return secrets.camera_secret_name(SECRET_PREFIX, thing, camera)


def camera_entry(url: str, thing: str, camera: str, *, with_secret: bool, fps: float | None, width: int | None,
                 detect_fps: float = DEFAULT_DETECT_FPS, max_width: int = DEFAULT_MAX_WIDTH,
                 transport: str = "tcp") -> dict[str, Any]:
    """The camera's entry; fps/width are the probe's (None: not probed, Capture's defaults stand)."""
    source: dict[str, Any] = {"type": "rtsp", "url": url}
    if transport != "tcp":
        source["transport"] = transport
    if with_secret:
        source["credentialsSecret"] = secret_name(thing, camera)
    capture: dict[str, Any] = {"source": source,
                               "detectFps": round(min(detect_fps, fps), 2) if fps else detect_fps}
    if width:
        capture["maxWidth"] = min(width, max_width)
    return {"capture": capture}


@dataclass(frozen=True)
class Edit:
    text: str
    comments_kept: bool  # False: rewritten from the data (the file's comments are gone)


def _last_line(node: yaml.Node) -> int:
    """0-based line of the last character a node spans (its nested content included)."""
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        return max(_last_line(v) for _, v in node.value)
    if isinstance(node, yaml.SequenceNode) and not node.flow_style and node.value:
        return max(_last_line(v) for v in node.value)
    end = node.end_mark
    return end.line - 1 if end.column == 0 and end.line > node.start_mark.line else end.line


def _child(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return v
    return None


def add_to_text(text: str, site: str, thing: str, camera: str, entry: dict[str, Any], *,
                where: str = "site file") -> Edit:
    """`text` with `entry` as sites.{site}.devices.{thing}.cameras.{camera}; the device and its `cameras` are
    created when missing; the site must exist and the camera must not."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    data = yaml.safe_load(text)
    sites = _child(root, "sites") if root is not None else None
    site_node = _child(sites, site) if sites is not None else None
    if site_node is None:
        known = ", ".join(str(k) for k in (data or {}).get("sites") or {}) or "none"
        raise AddError(f"{where}: no site {site!r} (sites: {known}); add the site and its stage first")
    path = ["devices", thing, "cameras"]
    node, depth = site_node, 0
    while depth < len(path) and (nxt := _child(node, path[depth])) is not None:
        node, depth = nxt, depth + 1
    if depth == len(path) and isinstance(node, yaml.MappingNode):
        for k, _ in node.value:
            if k.value == camera:
                raise AddError(f"{where}:{k.start_mark.line + 1}: device {thing} already has a camera {camera!r}")
    fragment: dict[str, Any] = {camera: entry}
    for key in reversed(path[depth:]):
        fragment = {key: fragment}
    if isinstance(node, yaml.MappingNode) and not node.flow_style and node.value:
        indent = node.value[0][0].start_mark.column
        body = yaml.safe_dump(fragment, sort_keys=False, default_flow_style=False, indent=2)
        insert = "".join(" " * indent + line + "\n" for line in body.splitlines())
        lines = text.splitlines(keepends=True)
        at = _last_line(node) + 1
        if at > 0 and not lines[at - 1].endswith("\n"):
            lines[at - 1] += "\n"
        return Edit("".join([*lines[:at], insert, *lines[at:]]), True)
    # nowhere to insert text (`cameras: {}`, `devices:` with no value): rewrite from the data
    holder = data["sites"][site]
    for key in path:
        if not isinstance(holder.get(key), dict):
            holder[key] = {}
        holder = holder[key]
    holder[camera] = entry
    return Edit(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, indent=2), False)


def store_credentials(client: Any, name: str, user: str, password: str, *, thing: str, camera: str) -> str:
    """Create the secret (or give it a new value when it exists); 'created' or 'updated'."""
    value = json.dumps({"username": user, "password": password})
    try:
        client.create_secret(Name=name, SecretString=value,
                             Description=f"ggvision: RTSP credentials of camera {camera} on {thing}",
                             Tags=[{"Key": "ggvision:thing", "Value": thing},
                                   {"Key": "ggvision:camera", "Value": camera}])
        log.info("created secret %s", name)
        return "created"
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=value)
        log.info("updated secret %s", name)
        return "updated"
