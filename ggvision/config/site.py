"""The site model: one YAML file that describes the fleet — stages (their thing groups and the configuration
that is the same for every device of a stage), sites, their core devices and each device's cameras and
sensors. It is built from the components' own models (a camera's `capture` part is Capture's camera model, its
`filter` part the Filter's), so a site file is valid exactly when the components would accept what it says.

    stages:
      production: {thingGroup: ggvision-production, configuration: {com.ggvision.Inference: {...}}}
    sites:
      site-7:
        stage: production
        devices:
          site-7-box:
            cameras:
              door:
                capture: {source: {type: rtsp, url: rtsp://10.0.0.5/stream1,
                                   credentialsSecret: ggvision/site-7-box/cameras/door}, detectFps: 5}
                filter: {zones: {road: [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}}

`load_site(path)` gives the model or a ConfigError naming the file, the line and the key path. Credentials
are references to Secrets Manager secrets only (under the device's own name, the only ones its role may read).
How the model reaches devices (stage deployments, device shadows, `ggvision site apply`) is the site CLI's job.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BeforeValidator, Field, ValidationError, model_validator

from ..contract import secrets, topics
from .base import ConfigError, ConfigModel, describe, error_at, explain, json_schema
from .capture import CameraConfig as CaptureCamera
from .capture import CameraId, SensorConfig
from .components import MODELS, model_of
from .filter import CameraConfig as FilterCamera
from .filter import MotionConfig

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")  # site ids, thing names (IoT thing name rules)
SECRET_PREFIX = "ggvision"
MOTION_PREFIX = topics.MOTION.removesuffix("{camera}")


def _name(what: str) -> BeforeValidator:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not NAME_RE.match(v):
            raise ValueError(f"{what} must match {NAME_RE.pattern}, got {v!r}")
        return v

    return BeforeValidator(check)


Name = Annotated[str, _name("a name")]


class StageConfig(ConfigModel):
    """What every device of a stage shares: its thing group and the component configuration its deployment
    merges (component name -> configuration; each is validated by that component's model)."""

    thing_group: Name
    configuration: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _components_accept_it(self) -> StageConfig:
        for component, cfg in self.configuration.items():
            if component not in MODELS:
                raise error_at(("configuration", component),
                               f"no ggvision component of that name (one of {', '.join(MODELS)})")
            try:
                model_of(component).model_validate(cfg)
            except ValidationError as e:
                raise error_at(("configuration", component), explain(e)) from None
        return self


class SiteCamera(ConfigModel):
    """A camera: how Capture reads it and how the Filter treats what is seen in it."""

    capture: CaptureCamera
    filter: FilterCamera = FilterCamera()


class Device(ConfigModel):
    """A core device (its thing name is the key) and what is connected to it."""

    cameras: dict[CameraId, SiteCamera] = Field(default_factory=dict)
    sensors: dict[CameraId, SensorConfig] = Field(default_factory=dict)


class Site(ConfigModel):
    stage: Name
    devices: dict[Name, Device] = Field(default_factory=dict)


class SiteFile(ConfigModel):
    """The whole fleet: stages and sites. A thing belongs to one site; a site names a stage that exists; a
    camera's credentials are a secret under its own device's name."""

    stages: dict[Name, StageConfig]
    sites: dict[Name, Site] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> SiteFile:
        seen: dict[str, str] = {}
        for site_id, site in self.sites.items():
            if site.stage not in self.stages:
                raise error_at(("sites", site_id, "stage"),
                               f"{site.stage!r} is not one of the stages ({', '.join(self.stages)})")
            for thing, device in site.devices.items():
                if thing in seen:
                    raise error_at(("sites", site_id, "devices", thing), f"already a device of site {seen[thing]}")
                seen[thing] = site_id
                for cam_id, cam in device.cameras.items():
                    secret = getattr(cam.capture.source, "credentials_secret", None)
                    own = secrets.device_secret_pattern(SECRET_PREFIX, thing).removesuffix("*")
                    if secret and not secret.startswith(own):
                        raise error_at(
                            ("sites", site_id, "devices", thing, "cameras", cam_id, "capture", "source",
                             "credentialsSecret"),
                            f"a device may read only secrets under {own} (e.g. "
                            f"{secrets.camera_secret_name(SECRET_PREFIX, thing, cam_id)}), got {secret!r}")
                    self._motion_published(site.stage, ("sites", site_id, "devices", thing, "cameras", cam_id), cam)
        return self

    def _motion_published(self, stage: str, where: tuple[str, ...], cam: SiteCamera) -> None:
        """The motion gate's two ends must meet: Inference reading the Filter's motion topics gets a camera's frames
        only if the Filter publishes them (`motion.publish`, off by default), and the Filter's motion gate sees a
        camera's frames only if Capture publishes their descriptors (`frameDescriptors`, off by default: Inference
        reads the rings). Refuse the file rather than leave a camera unanalysed or ungated."""
        conf = self.stages[stage].configuration
        if "motion" in cam.filter.model_fields_set and "publish" in cam.filter.motion.model_fields_set:
            publish = cam.filter.motion.publish
        else:  # the stage's Filter defaults (already validated with the stage)
            defaults = conf.get("com.ggvision.Filter", {}).get("defaults") or {}
            publish = MotionConfig.model_validate(defaults.get("motion") or {}).publish
        if publish and not cam.capture.frame_descriptors:
            raise error_at((*where, "capture", "frameDescriptors"),
                           "the Filter's motion gate (motion.publish on for this camera) reads the camera's frame "
                           "descriptors, which Capture publishes only with frameDescriptors on: set it here, or "
                           "turn motion.publish off")
        read = [t for t in conf.get("com.ggvision.Inference", {}).get("frameTopics") or ()
                if isinstance(t, str) and t.startswith(MOTION_PREFIX)]
        if read and not publish:
            raise error_at((*where, "filter", "motion", "publish"),
                           f"the stage's com.ggvision.Inference frameTopics read {', '.join(read)}, which the Filter "
                           "publishes only with motion.publish on: set it here or in the stage's com.ggvision.Filter "
                           "defaults, or this camera is never analysed")

    def devices(self) -> dict[str, tuple[str, Device]]:
        """thing name -> (site id, device)."""
        return {thing: (site_id, d) for site_id, s in self.sites.items() for thing, d in s.devices.items()}


# -- reading a file, with line numbers --------------------------------------------------------------------

def _lines(node: yaml.Node, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """key path -> 1-based line of every mapping key and sequence item in a composed YAML document."""
    out = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            key = (*path, str(k.value))
            out[key] = k.start_mark.line + 1
            out.update({p: n for p, n in _lines(v, key).items() if p != key})
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out.update(_lines(v, (*path, str(i))))
    return out


def _line_of(lines: dict[tuple[str, ...], int], err: Mapping[str, Any]) -> int | None:
    loc = tuple(str(p) for p in err["loc"] if not str(p).startswith("function-"))
    for n in range(len(loc), -1, -1):
        if loc[:n] in lines:
            return lines[loc[:n]]
    return None


def load_site(path: Path | str) -> SiteFile:
    """The site file as a SiteFile; ConfigError `file:line: key.path: what is wrong` (one line per problem)."""
    path = Path(path)
    try:
        text = path.read_text()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        doc = yaml.safe_load(text)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping with stages and sites")
    try:
        return SiteFile.model_validate(doc)
    except ValidationError as e:
        lines = _lines(node) if node is not None else {}
        problems = []
        for err in e.errors(include_url=False):
            line = _line_of(lines, err)
            problems.append(f"{path}:{line}: {describe(err)}" if line else f"{path}: {describe(err)}")
        raise ConfigError("\n".join(problems)) from None


def site_schema() -> dict[str, Any]:
    """The site file's JSON Schema, for editors (docs/config/site.schema.json)."""
    schema = json_schema(SiteFile)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "ggvision site file"
    return schema
