"""The nucleus as the IPC operations see it: the `Host` interface the kernel implements, and the errors its
stores raise. The IPC layer depends on this narrow face only, never on the nucleus (which builds the IPC
server), so the two import each other in no circle — as the real nucleus' IPC agents talk to its services."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from .server import Stream


class ConfigError(Exception):
    """A configuration update the store refuses."""


class StaleUpdateError(ConfigError):
    """The stored value is newer than the update's timestamp."""


class ShadowError(ValueError):
    """A shadow update that is not a valid shadow document."""


class ShadowNotFound(KeyError):
    pass


class ShadowVersionConflict(ShadowError):
    pass


class ConfigAccess(Protocol):
    version: int

    def get(self, component: str, key_path: list[str] | tuple[str, ...] = ()) -> Any: ...

    def update(self, component: str, key_path: list[str], value: Any, timestamp: float | None) -> Any: ...

    def subscribe(self, component: str, key_path: list[str] | tuple[str, ...],
                  listener: Callable[[str, list[str]], None]) -> Callable[[], None]: ...


class ShadowAccess(Protocol):
    def get(self, thing: str, name: str = "") -> dict[str, Any]: ...

    def update(self, thing: str, name: str, payload: bytes) -> dict[str, Any]: ...

    def delete(self, thing: str, name: str = "") -> dict[str, Any]: ...

    def list_named(self, thing: str) -> list[str]: ...


class SecretLookup(Protocol):
    def find(self, secret_id: str, refresh: bool = False, stage: str | None = None) -> Any: ...


class PubSub(Protocol):
    def publish(self, publisher: str, topic: str, kind: str, message: object) -> int: ...

    def subscribe(self, topic_filter: str, stream: Stream, from_others_only: bool) -> Any: ...


class Validators(Protocol):
    def add(self, component: str, stream: Stream) -> None: ...

    def report(self, component: str, deployment_id: str, status: str, message: str) -> bool: ...


class UpdateListeners(Protocol):
    def add(self, component: str, stream: Stream) -> None: ...

    def subscribed(self, component: str) -> bool: ...

    def defer(self, component: str, deployment_id: str, recheck_ms: int, message: str) -> bool: ...


class Deployments(Protocol):
    def submit_ipc(self, body: dict[str, Any]) -> str: ...

    def describe(self, dep_id: str) -> dict[str, Any] | None: ...

    def list(self) -> list[dict[str, Any]]: ...

    def cancel(self, dep_id: str) -> str | None:
        """CancelLocalDeployment: None for an unknown id, "finished" when it already ended, else "submitted"."""
        ...


class Host(Protocol):
    """Everything an IPC operation may ask of the nucleus (gglocal.nucleus.kernel.Kernel implements it)."""

    config: ConfigAccess
    pubsub: PubSub
    secrets: SecretLookup
    shadows: ShadowAccess
    counters: Counter[str]
    validators: Validators
    update_listeners: UpdateListeners
    deployments: Deployments
    debug_passwords: dict[str, float]  # CreateDebugPassword: password -> expiry (epoch seconds)

    def authenticate(self, token: str) -> str | None: ...

    def access_control(self, component: str) -> Any: ...

    def has_component(self, name: str) -> bool: ...

    def component_names(self) -> list[str]: ...

    def component_details(self, name: str) -> dict[str, Any]: ...

    def report_state(self, component: str, state: str) -> None: ...

    def request_restart(self, name: str) -> tuple[bool, str]: ...

    def request_stop(self, name: str) -> tuple[bool, str]: ...

    def component_state(self, name: str) -> str: ...

    def is_paused(self, name: str) -> bool: ...

    def pause_component(self, name: str) -> None:
        """Freeze the component's processes (OSError when that fails)."""
        ...

    def resume_component(self, name: str) -> None:
        """Thaw a paused component's processes (OSError when that fails)."""
        ...

    def put_metrics(self, component: str, metrics: list[dict[str, Any]]) -> None: ...

    def iot_publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                    user_properties: Any) -> Awaitable[dict[str, Any]]: ...

    def iot_subscribe(self, stream: Stream, topic_filter: str, qos: int) -> Awaitable[dict[str, Any]]: ...
