"""What the rollout engine needs from a fleet: thing-group deployments, per-device status, health summaries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Per-device outcome of a deployment, in Greengrass' words (ListEffectiveDeployments coreDeviceExecutionStatus).
DONE_OK = {"SUCCEEDED", "COMPLETED"}
DONE_FAILED = {"FAILED", "TIMED_OUT", "REJECTED", "CANCELED"}


class BackendError(RuntimeError):
    """A backend call failed; the message names the call and the target."""


@dataclass
class Deployment:
    """A thing group's deployment (one revision): what a rollback redeploys."""

    group: str
    components: dict[str, dict[str, Any]]  # name -> {"componentVersion": ..., "configurationUpdate": {...}}
    deployment_id: str = ""
    revision: str = ""
    created: float = 0.0
    parent_group: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # backend-specific fields kept for a faithful redeploy

    def version_of(self, component: str) -> str | None:
        c = self.components.get(component)
        return None if c is None else c.get("componentVersion")

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "components": self.components, "deployment_id": self.deployment_id,
                "revision": self.revision, "created": self.created, "parent_group": self.parent_group,
                "extra": self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Deployment:
        return cls(group=d["group"], components=d["components"], deployment_id=d.get("deployment_id", ""),
                   revision=d.get("revision", ""), created=d.get("created", 0.0), parent_group=d.get("parent_group"),
                   extra=d.get("extra", {}))


@dataclass(frozen=True)
class DeviceStatus:
    thing: str
    deployment_id: str | None  # the deployment the device last reported on
    status: str  # IN_PROGRESS | QUEUED | SUCCEEDED | COMPLETED | FAILED | ... | UNKNOWN
    reason: str = ""
    components: dict[str, str] = field(default_factory=dict)  # installed name -> version


class Backend(Protocol):
    name: str

    def current(self, group: str) -> Deployment | None:
        """The group's latest deployment, None when it never had one."""

    def deploy(self, group: str, components: dict[str, dict[str, Any]], *, parent_group: str | None = None,
               name: str = "", template: Deployment | None = None) -> Deployment:
        """Create a deployment (a new revision) for the group; `template` carries policies to keep."""

    def devices(self, group: str) -> list[str]:
        """Thing names in the group."""

    def device_status(self, thing: str, deployment_id: str) -> DeviceStatus:
        """How `deployment_id` went on the device."""

    def health(self, things: list[str], since: float) -> list[dict[str, Any]]:
        """health-summary/1.0 documents of `things` with timestamp >= since."""

    def close(self) -> None: ...
