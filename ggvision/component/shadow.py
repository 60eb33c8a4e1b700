"""A component's named device shadow as live, per-device desired state (ShadowManager over IPC).

`ShadowFollower(app, shadow, keys, validate, apply, topics)`:
- at start, reads the shadow (GetThingShadow on the core device's thing, AWS_IOT_THING_NAME) and applies its
  `desired` state (no shadow yet: nothing to apply, the configuration stands);
- subscribes to the shadow's local `update/delta` and `update/documents` topics (ShadowManager publishes them
  after each update; a removal in desired shows only in `documents`), and on each re-reads the shadow on its own
  thread (an IPC call must not be made from the IPC event thread) and applies a desired state it has not seen;
- checks it first: only `keys` may be set, and `validate(desired)` must accept it (the component's own
  configuration model, with the desired keys laid over its configuration) — otherwise nothing changes;
- reports back with UpdateThingShadow: `reported` = the desired state in force, plus `error`
  ({"message", "version"}) while the latest desired state is refused, removed once one is accepted.
A recipe whose accessControl lacks the shadow (or a runtime without ShadowManager) turns following off with a
warning; the component runs on its configuration alone.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..contract.shadows import ERROR_KEY, merge_patch
from .app import ComponentApp, error_text

log = logging.getLogger("ggvision.component.shadow")


class ShadowFollower:
    """See the module docstring. `desired` is the state in force ({} until a shadow says otherwise)."""

    def __init__(self, app: ComponentApp, shadow: str, keys: Sequence[str],
                 validate: Callable[[dict[str, Any]], str | None], apply: Callable[[dict[str, Any]], None],
                 topics: Sequence[str], thing: str | None = None) -> None:
        self.app, self.shadow, self.keys = app, shadow, tuple(keys)
        self._validate, self._apply, self._topics = validate, apply, tuple(topics)
        self.thing = thing or os.environ.get("AWS_IOT_THING_NAME", "")
        self.desired: dict[str, Any] = {}
        self.enabled = False
        self.refused = 0
        self._seen: Any = None  # the last desired state handled (applied or refused)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # -- start ---------------------------------------------------------------------------------------
    def start(self) -> bool:
        """Read and apply the shadow, then follow it. False (with a warning) when it cannot be followed."""
        if not self.thing:
            log.warning("%s: no AWS_IOT_THING_NAME: not following shadow %s", self.app.name, self.shadow)
            return False
        try:  # subscribed first: a change made while the shadow is read is not missed
            for topic in self._topics:
                self.app.subscribe(topic.format(thing=self.thing), lambda _t, _m: self._wake.set())
            self.refresh()
        except Exception as e:
            log.warning("%s: not following shadow %s of %s (%s); running on the configuration alone",
                        self.app.name, self.shadow, self.thing, error_text(e))
            return False
        self.enabled = True
        self._thread = threading.Thread(target=self._follow, name=f"shadow-{self.shadow}", daemon=True)
        self._thread.start()
        log.info("%s: following shadow %s of %s", self.app.name, self.shadow, self.thing)
        return True

    def _follow(self) -> None:
        while not self.app.stop_event.is_set():
            if not self._wake.wait(1.0):  # the wait is bounded only to notice the stop event
                continue
            self._wake.clear()
            try:
                self.refresh()
            except Exception as e:  # the next change tries again; the state in force stays
                log.warning("%s: shadow %s could not be read or reported: %s", self.app.name, self.shadow,
                            error_text(e))

    def overlay(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with the desired state in force laid over it (what the component runs)."""
        return {**config, **self.desired}

    # -- one change ----------------------------------------------------------------------------------
    def _read(self) -> dict[str, Any] | None:
        from awsiot.greengrasscoreipc.model import ResourceNotFoundError

        try:
            resp = self.app.client.get_thing_shadow(thing_name=self.thing, shadow_name=self.shadow)
        except ResourceNotFoundError:
            return None
        return json.loads(resp.payload)

    def refresh(self) -> None:
        """Read the shadow; apply and report a desired state not handled yet."""
        with self._lock:
            doc = self._read()
            if doc is None:
                return
            state = doc.get("state") or {}
            desired = state.get("desired") or {}
            if desired == self._seen:
                return
            self._seen = copy.deepcopy(desired)
            reason = self._check(desired)
            if reason is None:
                try:
                    self._apply(desired)
                except Exception as e:  # applying failed part-way: say so; the next desired state retries
                    reason = f"could not apply: {error_text(e)}"
            if reason is None:
                self.desired = copy.deepcopy(desired)
                wanted = copy.deepcopy(desired)
                log.info("%s: shadow %s version %s applied", self.app.name, self.shadow, doc.get("version"))
            else:
                self.refused += 1
                wanted = {**copy.deepcopy(self.desired),
                          ERROR_KEY: {"message": reason[:1000], "version": doc.get("version")}}
                log.warning("%s: shadow %s version %s refused, keeping the last good state: %s", self.app.name,
                            self.shadow, doc.get("version"), reason)
            patch = merge_patch(state.get("reported") or {}, wanted)
            if patch:
                self.app.client.update_thing_shadow(thing_name=self.thing, shadow_name=self.shadow,
                                                    payload=json.dumps({"state": {"reported": patch}}).encode())

    def _check(self, desired: dict[str, Any]) -> str | None:
        unknown = sorted(set(desired) - set(self.keys))
        if unknown:
            return (f"shadow {self.shadow}: desired.{unknown[0]} is not a per-device key "
                    f"(one of {', '.join(self.keys)})")
        return self._validate(desired)
