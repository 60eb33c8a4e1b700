"""Deployment-time conversations with components over IPC.

ValidationRegistry: SubscribeToValidateConfigurationUpdates / SendConfigurationValidityReport.
UpdateNotifier: SubscribeToComponentUpdates / DeferComponentUpdate.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from ..ipc.server import Stream


@dataclass
class _Pending:
    waiting: set[str]
    results: dict[str, tuple[str, str]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class ValidationRegistry:
    def __init__(self) -> None:
        self._streams: dict[str, list[Stream]] = {}
        self._pending: dict[str, _Pending] = {}

    def add(self, component: str, stream: Stream) -> None:
        streams = self._streams.setdefault(component, [])
        streams.append(stream)
        stream.on_close.append(lambda: streams.remove(stream) if stream in streams else None)

    def subscribed(self, component: str) -> bool:
        return bool(self._streams.get(component))

    async def validate(self, deployment_id: str, configs: dict[str, dict[str, Any]],
                       timeout: float) -> dict[str, tuple[str, str]]:
        """Ask each subscribed component to validate its new config; {component: (status, message)}.

        A component that does not answer within `timeout` is treated as accepting (nucleus behaviour).
        """
        targets = {c for c in configs if self.subscribed(c)}
        if not targets:
            return {}
        pending = _Pending(set(targets))
        self._pending[deployment_id] = pending
        try:
            for c in targets:
                for s in list(self._streams.get(c, [])):
                    s.send_event_obj("ValidateConfigurationUpdateEvents", {"validateConfigurationUpdateEvent": {
                        "deploymentId": deployment_id, "configuration": configs[c]}}, droppable=False)
            try:
                await asyncio.wait_for(pending.done.wait(), timeout)
            except asyncio.TimeoutError:
                pass
            return dict(pending.results)
        finally:
            self._pending.pop(deployment_id, None)

    def report(self, component: str, deployment_id: str, status: str, message: str) -> bool:
        pending = self._pending.get(deployment_id)
        if pending is None or component not in pending.waiting:
            return False
        pending.waiting.discard(component)
        pending.results[component] = (status, message)
        if not pending.waiting:
            pending.done.set()
        return True


class UpdateNotifier:
    def __init__(self) -> None:
        self._streams: dict[str, list[Stream]] = {}
        self._pending: dict[str, dict[str, float]] = {}  # deployment -> component -> recheck deadline
        self._events: dict[str, asyncio.Event] = {}
        self.deferrals: list[tuple[str, str, str]] = []

    def add(self, component: str, stream: Stream) -> None:
        streams = self._streams.setdefault(component, [])
        streams.append(stream)
        stream.on_close.append(lambda: streams.remove(stream) if stream in streams else None)

    def subscribed(self, component: str) -> bool:
        return bool(self._streams.get(component))

    def _send(self, component: str, event: dict[str, Any]) -> None:
        for s in list(self._streams.get(component, [])):
            s.send_event_obj("ComponentUpdatePolicyEvents", event, droppable=False)

    async def pre_update(self, deployment_id: str, timeout: float) -> None:
        """Tell subscribers an update is coming and wait until each acknowledges (DeferComponentUpdate
        with recheckAfterMs 0) or the timeout passes; a deferral re-asks after its recheck time."""
        targets = [c for c, s in self._streams.items() if s]
        if not targets:
            return
        deadline = time.monotonic() + timeout
        waiting: dict[str, float] = {c: 0.0 for c in targets}  # 0: no answer yet; >0: recheck time
        self._pending[deployment_id] = waiting
        event = self._events[deployment_id] = asyncio.Event()
        event_body = {"preUpdateEvent": {"deploymentId": deployment_id, "isGgcRestarting": False}}
        try:
            for c in targets:
                self._send(c, event_body)
            while waiting and (now := time.monotonic()) < deadline:
                event.clear()
                rechecks = [t for t in waiting.values() if t > 0]
                wait_for = deadline - now
                if rechecks:
                    wait_for = min(wait_for, max(0.0, min(rechecks) - now))
                try:
                    await asyncio.wait_for(event.wait(), max(wait_for, 0.001))
                except asyncio.TimeoutError:
                    pass
                now = time.monotonic()
                for c, t in list(waiting.items()):
                    if t > 0 and now >= t:
                        waiting[c] = 0.0
                        self._send(c, event_body)
        finally:
            self._pending.pop(deployment_id, None)
            self._events.pop(deployment_id, None)

    def post_update(self, deployment_id: str) -> None:
        for c in list(self._streams):
            self._send(c, {"postUpdateEvent": {"deploymentId": deployment_id}})

    def defer(self, component: str, deployment_id: str, recheck_ms: int, message: str) -> bool:
        """The component's answer to the pre-update event it was sent; False when no event awaits its answer
        (none sent, already answered, or the update stopped waiting), as the nucleus' one answer per event."""
        waiting = self._pending.get(deployment_id)
        if waiting is None or waiting.get(component) != 0.0:
            return False
        if recheck_ms > 0:
            waiting[component] = time.monotonic() + recheck_ms / 1000
            self.deferrals.append((component, deployment_id, message))
        else:
            waiting.pop(component, None)
        ev = self._events.get(deployment_id)
        if ev:
            ev.set()
        return True
