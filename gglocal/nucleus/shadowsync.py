"""ShadowManager's cloud sync: the configured shadows kept equal between the local store and IoT Core.

Configuration (the `aws.greengrass.ShadowManager` component's, developer guide "Shadow manager" and "Sync local
device shadows with AWS IoT Core"):
  synchronize:
    coreThing: {classic: true, namedShadows: [...]}           the core device's own shadows
    shadowDocuments: [{thingName, classic: true, namedShadows: [...]}]
    direction: betweenDeviceAndCloud | deviceToCloud | cloudToDevice   (default betweenDeviceAndCloud)
  strategy: {type: realTime | periodic, delay: seconds}      (default realTime)

How a shadow syncs (aws-greengrass-shadow-manager, sync/model/FullShadowSyncRequest.java): read both copies;
with the versions both had at the last sync unchanged, nothing to do. Otherwise merge desired and reported
three ways against the last synced document (shadows.three_way_merge): a value changed on one side wins; changed
on both, desired takes the cloud's value and reported the device's ("Shadow merge conflict behavior"); a one-way
direction makes its source win everything and writes only the other side. The first sync copies a shadow that
exists on one side only; later, a shadow gone from one side is deleted on the other. What was synced (both
versions and the merged document) is kept in a file, so a runtime restart does not forget it.

When: realTime syncs a shadow after each local change (on_change of the store), after each cloud change (its
`update/documents` and `delete/accepted` topics, to which the sync subscribes), and every configured shadow
after each (re)connect — which is how changes made on either side while the link was down converge. periodic
syncs what changed every `delay` seconds. Requests go over the MQTT shadow topics with a clientToken (the real
ShadowManager uses the IoT data plane over HTTPS for requests; the stand-in broker has no HTTP side).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..ipc.host import ShadowError, ShadowNotFound
from .shadows import _ABSENT, ShadowStore, merge_patch, shadow_prefix, three_way_merge

log = logging.getLogger("gglocal.shadowsync")

SHADOW_MANAGER = "aws.greengrass.ShadowManager"
DIRECTIONS = ("betweenDeviceAndCloud", "deviceToCloud", "cloudToDevice")
Key = tuple[str, str]  # (thing, shadow name; '' = classic)


class SyncConfigError(ValueError):
    """The synchronize/strategy configuration is not what ShadowManager accepts; the text names the key."""


@dataclass(frozen=True)
class SyncConfig:
    shadows: frozenset[Key] = frozenset()
    direction: str = "betweenDeviceAndCloud"
    periodic_s: float | None = None  # None: realTime


def _names(entry: Any, where: str) -> list[str]:
    names = entry.get("namedShadows", []) if isinstance(entry, dict) else None
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise SyncConfigError(f"{where}.namedShadows must be a list of shadow names")
    return names


def _classic(entry: dict[str, Any], where: str) -> bool:
    value = entry.get("classic", True)
    if isinstance(value, str) and value.lower() in ("true", "false"):  # configuration often carries strings
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise SyncConfigError(f"{where}.classic must be true or false, got {value!r}")
    return value


def parse_sync_config(cfg: Any, core_thing: str) -> SyncConfig:
    """The sync configuration from ShadowManager's configuration (None or {} syncs nothing)."""
    if not cfg:
        return SyncConfig()
    if not isinstance(cfg, dict):
        raise SyncConfigError(f"{SHADOW_MANAGER} configuration must be an object")
    sync = cfg.get("synchronize") or {}
    if not isinstance(sync, dict):
        raise SyncConfigError("synchronize must be an object")
    shadows: set[Key] = set()
    core = sync.get("coreThing")
    if core is not None:
        if not isinstance(core, dict):
            raise SyncConfigError("synchronize.coreThing must be an object")
        if _classic(core, "synchronize.coreThing"):
            shadows.add((core_thing, ""))
        shadows.update((core_thing, n) for n in _names(core, "synchronize.coreThing"))
    docs = sync.get("shadowDocuments", [])
    if not isinstance(docs, list):
        raise SyncConfigError("synchronize.shadowDocuments must be a list")
    for i, doc in enumerate(docs):
        where = f"synchronize.shadowDocuments[{i}]"
        thing = doc.get("thingName") if isinstance(doc, dict) else None
        if not isinstance(thing, str) or not thing:
            raise SyncConfigError(f"{where}.thingName must be a thing name")
        if _classic(doc, where):
            shadows.add((thing, ""))
        shadows.update((thing, n) for n in _names(doc, where))
    direction = sync.get("direction", "betweenDeviceAndCloud")
    if direction not in DIRECTIONS:
        raise SyncConfigError(f"synchronize.direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    strategy = cfg.get("strategy") or {"type": "realTime"}
    kind = strategy.get("type", "realTime") if isinstance(strategy, dict) else None
    if kind == "realTime":
        return SyncConfig(frozenset(shadows), direction)
    if kind != "periodic":
        raise SyncConfigError(f"strategy.type must be realTime or periodic, got {kind!r}")
    try:
        delay = float(strategy.get("delay", 300))
    except (TypeError, ValueError):
        raise SyncConfigError(f"strategy.delay must be a number of seconds, got {strategy.get('delay')!r}") from None
    if delay <= 0:
        raise SyncConfigError("strategy.delay must be more than 0 seconds")
    return SyncConfig(frozenset(shadows), direction, delay)


class _Retry(Exception):
    """This sync could not finish (offline, no answer, a version race); try again later."""


class ShadowSync:
    """See the module docstring. `bridge` is the runtime's IoTCoreBridge; everything runs on its loop."""

    def __init__(self, store: ShadowStore, bridge: Any, core_thing: str, state_path: Path,
                 request_timeout_s: float = 5.0, retry_s: float = 2.0) -> None:
        self.store, self.bridge, self.core_thing = store, bridge, core_thing
        self.config = SyncConfig()
        self._state_path = state_path
        self._info: dict[str, dict[str, Any]] = json.loads(state_path.read_text()) if state_path.exists() else {}
        self._timeout, self._retry_s = request_timeout_s, retry_s
        self._dirty: set[Key] = set()
        self._pending: dict[str, tuple[str, asyncio.Future[tuple[str, dict[str, Any]]]]] = {}
        self._own = deque[str](maxlen=256)  # clientTokens of our own requests: their echoes are no cloud change
        self._subs: dict[Key, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._configuring: asyncio.Lock | None = None
        self.syncs = 0  # full syncs that changed something (for tests and the log)
        self.last_error: str | None = None
        store.on_change.append(self._on_local_change)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._configuring = asyncio.Lock()
        self._task = self._loop.create_task(self._run(), name="shadow-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def configure(self, cfg: Any) -> None:
        """Take ShadowManager's configuration (from any thread); a bad one is logged and the old one kept."""
        try:
            config = parse_sync_config(cfg, self.core_thing)
        except SyncConfigError as e:
            log.error("%s: ignoring invalid configuration: %s", SHADOW_MANAGER, e)
            self.last_error = str(e)
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(lambda: self._loop.create_task(self._reconfigure(config)))

    async def _reconfigure(self, config: SyncConfig) -> None:
        assert self._configuring is not None
        async with self._configuring:
            await self._resubscribe(config)

    async def _resubscribe(self, config: SyncConfig) -> None:
        for key in set(self._subs) - config.shadows:
            await self.bridge.unsubscribe(self._subs.pop(key))
        for key in config.shadows - set(self._subs):
            # One filter per shadow: get|update|delete / accepted|rejected|delta|documents.
            self._subs[key] = await self.bridge.subscribe(f"{shadow_prefix(*key)}/+/+", 1,
                                                          lambda t, p, key=key: self._on_cloud(key, t, p))
        self.config = config
        self._mark(config.shadows)
        if config.shadows:
            log.info("shadow sync: %d shadow(s), %s, %s", len(config.shadows), config.direction,
                     f"every {config.periodic_s}s" if config.periodic_s else "realTime")

    # -- what makes a shadow dirty ----------------------------------------------------------------------
    def _mark(self, keys: Any, wake: bool = True) -> None:
        self._dirty.update(k for k in keys if k in self.config.shadows)
        if wake and self._wake is not None and self.config.periodic_s is None:
            self._wake.set()

    def _on_local_change(self, thing: str, name: str, origin: str) -> None:
        if origin == "sync" or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._mark, [(thing, name)])

    def _on_cloud(self, key: Key, topic: str, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            return
        token = msg.get("clientToken") if isinstance(msg, dict) else None
        suffix = topic[len(shadow_prefix(*key)) + 1:]
        pending = self._pending.get(token) if isinstance(token, str) else None
        if pending is not None and suffix in (f"{pending[0]}/accepted", f"{pending[0]}/rejected"):
            if not pending[1].done():
                pending[1].set_result((suffix, msg))
            return
        if suffix in ("update/documents", "delete/accepted") and token not in self._own:
            self._mark([key])

    # -- the loop ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._wake is not None
        seen_connection = -1
        while True:
            if not self.bridge.connected:
                await self.bridge.wait_connected(timeout=365 * 86400.0)
            connection = self.bridge.stats()["reconnects"]
            if connection != seen_connection:  # a new link: what changed on either side meanwhile must converge
                seen_connection = connection
                self._dirty |= set(self.config.shadows)
            self._wake.clear()
            failed = False
            for key in sorted(self._dirty & self.config.shadows):
                self._dirty.discard(key)  # before the sync: a change marked while it runs must sync again
                try:
                    await self._sync(key)
                except _Retry as e:
                    self._dirty.add(key)
                    failed = True
                    self.last_error = f"{shadow_prefix(*key)}: {e}"
                    log.info("shadow sync of %s deferred: %s", shadow_prefix(*key), e)
                    break
                except Exception as e:  # a bug must not end syncing for every other shadow
                    self.last_error = f"{shadow_prefix(*key)}: {e}"
                    log.exception("shadow sync of %s failed", shadow_prefix(*key))
            timeout = self._retry_s if failed else self.config.periodic_s
            wake = asyncio.ensure_future(self._wake.wait())
            down = asyncio.ensure_future(self.bridge.wait_disconnected(timeout=365 * 86400.0))
            _, pending = await asyncio.wait({wake, down}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for t in pending:
                t.cancel()  # periodic: a timeout here is the period; what was marked meanwhile syncs now

    # -- one shadow ---------------------------------------------------------------------------------------
    async def _request(self, key: Key, op: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if not self.bridge.connected:
            raise _Retry("offline")
        assert self._loop is not None
        token = uuid.uuid4().hex
        self._own.append(token)
        fut: asyncio.Future[tuple[str, dict[str, Any]]] = self._loop.create_future()
        self._pending[token] = (op, fut)
        try:
            await self.bridge.publish(f"{shadow_prefix(*key)}/{op}", json.dumps({**body, "clientToken": token})
                                      .encode(), qos=0)
            return await asyncio.wait_for(fut, self._timeout)
        except asyncio.TimeoutError:
            raise _Retry(f"no answer to {op} within {self._timeout}s") from None
        finally:
            self._pending.pop(token, None)

    async def _cloud_document(self, key: Key) -> dict[str, Any] | None:
        suffix, msg = await self._request(key, "get", {})
        if suffix == "get/rejected":
            if msg.get("code") == 404:
                return None
            raise _Retry(f"get rejected: {msg.get('message')}")
        state = {k: v for k, v in (msg.get("state") or {}).items() if k in ("desired", "reported")}
        return {"state": state, "version": msg.get("version", 0)}

    def _record(self, key: Key, local: int, cloud: int, synced: dict[str, Any] | None) -> None:
        self._info[f"{key[0]}\x00{key[1]}"] = {"localVersion": local, "cloudVersion": cloud, "synced": synced}
        tmp = self._state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._info))
        tmp.replace(self._state_path)

    async def _sync(self, key: Key) -> None:
        info = self._info.get(f"{key[0]}\x00{key[1]}")
        local = self.store.document(*key)
        cloud = await self._cloud_document(key)
        to_cloud = self.config.direction != "cloudToDevice"
        to_device = self.config.direction != "deviceToCloud"
        if local is None and cloud is None:
            return
        if cloud is None or local is None:
            first = info is None
            if cloud is None and first and to_cloud:  # a shadow made on the device: create it in the cloud
                version = await self._write_cloud(key, {}, None, local["state"])
                self._record(key, local["version"], version, local["state"])
            elif local is None and first and to_device:  # made in the cloud: create it on the device
                version = self._write_local(key, {}, cloud["state"])
                self._record(key, version, cloud["version"], cloud["state"])
            elif cloud is None and not first and to_device:  # deleted in the cloud since the last sync
                with contextlib.suppress(ShadowNotFound):
                    self.store.delete(*key, origin="sync")
                self._info.pop(f"{key[0]}\x00{key[1]}", None)
            elif local is None and not first and to_cloud:  # deleted on the device since the last sync
                await self._request(key, "delete", {})
                self._info.pop(f"{key[0]}\x00{key[1]}", None)
            self.syncs += 1
            return
        if info and local["version"] == info["localVersion"] and cloud["version"] == info["cloudVersion"]:
            return
        base = (info or {}).get("synced") or {}
        merged: dict[str, Any] = {}
        for section, owner in (("desired", "cloud"), ("reported", "local")):
            prefer = {"deviceToCloud": "local", "cloudToDevice": "cloud"}.get(self.config.direction, owner)
            value = three_way_merge(local["state"].get(section, _ABSENT), cloud["state"].get(section, _ABSENT),
                                    base.get(section, _ABSENT), prefer)
            if value is not _ABSENT:
                merged[section] = value
        local_version, cloud_version = local["version"], cloud["version"]
        if to_device and (info is None or cloud["version"] != info["cloudVersion"]):
            local_version = self._write_local(key, local["state"], merged) or local_version
        if to_cloud and (info is None or local["version"] != info["localVersion"]):
            cloud_version = await self._write_cloud(key, cloud["state"], cloud["version"], merged) or cloud_version
        self._record(key, local_version, cloud_version, merged)
        self.syncs += 1

    @staticmethod
    def _patch(current: dict[str, Any], wanted: dict[str, Any]) -> dict[str, Any]:
        patch: dict[str, Any] = {}
        for section in ("desired", "reported"):
            if section in current and section not in wanted:
                patch[section] = None
            elif section in wanted:
                p = merge_patch(current.get(section, {}), wanted[section])
                if p:
                    patch[section] = p
        return patch

    def _write_local(self, key: Key, current: dict[str, Any], wanted: dict[str, Any]) -> int | None:
        patch = self._patch(current, wanted)
        if not patch:
            return None
        try:
            return self.store.update(*key, json.dumps({"state": patch}).encode(), origin="sync")["version"]
        except ShadowError as e:
            raise _Retry(f"local update refused: {e}") from None

    async def _write_cloud(self, key: Key, current: dict[str, Any], version: int | None,
                           wanted: dict[str, Any]) -> int | None:
        patch = self._patch(current, wanted)
        if not patch:
            return None
        body: dict[str, Any] = {"state": patch}
        if version is not None:
            body["version"] = version  # a cloud change since we read it makes this a 409: read and merge again
        suffix, msg = await self._request(key, "update", body)
        if suffix == "update/rejected":
            raise _Retry(f"cloud update rejected ({msg.get('code')}): {msg.get('message')}")
        return int(msg["version"])
