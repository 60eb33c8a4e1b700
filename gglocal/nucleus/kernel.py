"""The local runtime's kernel: component store, services, config, IPC server and IoT Core bridge."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..components import provided_recipes
from ..iotcore.rules import ArchiveTarget
from ..ipc.errors import ServiceError
from ..ipc.operations import build_operations
from ..ipc.pubsub import LocalPubSub
from ..ipc.server import IpcServer, ServerLimits, Stream
from .artifacts import component_paths, install_artifacts
from .configstore import ConfigStore
from .dependencies import start_order
from .interpolation import ComponentPaths, InterpolationContext, interpolate
from .lifecyclesteps import LifecycleStep
from .logs import LogHub
from .notify import UpdateNotifier, ValidationRegistry
from .platforms import current_platform
from .recipe import Recipe
from .recipeparser import parse_recipe
from .recipestore import RecipeStore
from .secrets import SECRET_MANAGER, FileCloud, SecretManagerStandIn, SecretsManagerCloud, SecretStore
from .service import HEALTHY, ComponentService, State
from .shadows import ShadowStore
from .shadowsync import SHADOW_MANAGER, ShadowSync

log = logging.getLogger("gglocal.nucleus")

NUCLEUS_VERSION = "2.14.0"  # the Greengrass nucleus behaviour this runtime reproduces (GGC_VERSION)
CLI_IDENTITY = "gglocal.cli"


@dataclass
class KernelOptions:
    root: Path
    thing_name: str = "ggvision-local"
    region: str = "us-east-1"
    secrets_file: Path | None = None
    # aws.greengrass.SecretManager's cloudSecrets come from this Secrets Manager endpoint (moto's server; "aws":
    # AWS itself) instead of the secrets file
    secrets_endpoint_url: str | None = None
    iot: bool = True  # start mosquitto + the IoT Core bridge
    iot_spool_max_bytes: int = 2621440  # the nucleus' mqtt.spooler.maxSizeInBytes default (2.5 MB)
    iot_max_message_bytes: int = 131072
    # Use an already running MQTT broker (host:port) with the PKI in iot_pki instead of starting mosquitto.
    iot_endpoint: str | None = None
    iot_pki: Path | None = None
    error_reset_time: float = 3600.0
    settle_s: float = 3.0  # a changed component must stay healthy this long for a deployment to succeed
    thing_groups: tuple[str, ...] = ()  # follow these groups' deployments from the local fleet (groupdeploy.py)
    console: bool = True
    log_file_size_kb: int = 1024  # the nucleus' logging.fileSizeKB default
    log_total_size_kb: int = 10240  # the nucleus' logging.totalLogsSizeKB default (per component)
    limits: ServerLimits = field(default_factory=ServerLimits)
    platform: dict[str, str] = field(default_factory=current_platform)
    # a local cloud's data bucket: archive ggvision/+/{results,events,metrics} there as the IoT rules do
    rules_archive: ArchiveTarget | None = None
    # configuration the startup deployment resets (component -> JSON pointers) and merges (component -> JSON
    # object), e.g. a local cloud's sink
    startup_reset: dict[str, list[str]] = field(default_factory=dict)
    startup_merge: dict[str, dict[str, Any]] = field(default_factory=dict)


class DeploymentService(Protocol):
    """The deployment manager as the kernel uses it (deployments.DeploymentManager; runtime.py wires it in, so
    the kernel never imports the module that drives it)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...

    def submit(self, req: Any) -> str: ...

    async def wait(self, dep_id: str, timeout: float | None = None) -> Any: ...

    def submit_ipc(self, body: dict[str, Any]) -> str: ...

    def describe(self, dep_id: str) -> dict[str, Any] | None: ...

    def list(self) -> list[dict[str, Any]]: ...

    def cancel(self, dep_id: str) -> str | None: ...


class Kernel:
    def __init__(self, options: KernelOptions, deployments: Callable[[Kernel], DeploymentService]) -> None:
        self.options = options
        self.root = options.root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        for d in ("config", "logs", "work", "packages/recipes", "deployments"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        import sys

        self.hub = LogHub(self.root / "logs", console=sys.stderr if options.console else None,
                          file_size_kb=options.log_file_size_kb, total_size_kb=options.log_total_size_kb)
        self.config = ConfigStore(self.root / "config" / "config.json")
        self.pubsub = LocalPubSub()
        files = SecretStore.from_file(options.secrets_file, region=options.region)
        cloud = (FileCloud(options.secrets_file, options.region) if options.secrets_endpoint_url is None else
                 SecretsManagerCloud(None if options.secrets_endpoint_url == "aws" else options.secrets_endpoint_url,
                                     options.region))
        self.secrets = SecretManagerStandIn(files, cloud)
        self._configure_secrets()  # as the last deployment left it
        self.config.subscribe(SECRET_MANAGER, [], lambda *_: self._configure_secrets())
        # ShadowManager publishes each shadow's accepted/delta/documents topics on local pub/sub as binary messages.
        self.shadows = ShadowStore(self.root / "config" / "shadows.json", publish=lambda topic, payload: (
            self.pubsub.publish(SHADOW_MANAGER, topic, "binaryMessage", base64.b64encode(payload).decode())))
        self.shadow_sync: ShadowSync | None = None
        self.cloud_shadows: Any = None  # the IoT Core stand-in's Device Shadow service, when we run its broker
        self.recipes = RecipeStore(self.root / "packages" / "recipes")
        # AWS-provided components the runtime supplies stand-ins for (gglocal/components), offered to a
        # deployment only when no recipe of that name was given.
        self.provided = {name: parse_recipe(doc, f"<stand-in {name}>") for name, doc in provided_recipes().items()}
        self.counters: Counter[str] = Counter()
        self.metrics: dict[str, dict[str, dict[str, Any]]] = {}
        self.debug_passwords: dict[str, float] = {}  # CreateDebugPassword (no Local Debug Console uses them)
        self.validators = ValidationRegistry()
        self.update_listeners = UpdateNotifier()
        self.services: dict[str, ComponentService] = {}
        self.state_listeners: list[Callable[[ComponentService, State, State], None]] = []
        self._state_file = self.root / "deployments" / "state.json"
        state = json.loads(self._state_file.read_text()) if self._state_file.exists() else {}
        self.roots: dict[str, str] = state.get("roots", {})
        self.installed: dict[str, str] = state.get("installed", {})
        # name -> the version and interpolated Bootstrap step it was deployed with (bootstrap.py): what the
        # nucleus compares a deployment against to decide whether a component's Bootstrap must run.
        self.bootstrapped: dict[str, str] = state.get("bootstrapped", {})
        self.socket_path = self.root / "ipc.socket"
        self.cli_token = os.urandom(18).hex()
        self.server = IpcServer(self.socket_path, build_operations(self), self.authenticate, options.limits)
        self.server.drop_listeners.append(self._on_drop)
        self.bridge: Any = None
        self.broker: Any = None
        self.pki: Any = None
        self.deployments = deployments(self)
        self._changed = asyncio.Event()
        self._started = False
        self._broker_watch: asyncio.Task[None] | None = None

    # -- startup / shutdown -------------------------------------------------------------
    # -- process groups left by a runtime that was killed -------------------------------------
    @property
    def _groups_file(self) -> Path:
        return self.root / "deployments" / "process-groups.json"

    def track_group(self, pgid: int) -> None:
        """Remember a component process group, so a runtime killed with -9 can clean up at its next start."""
        groups = {pgid}
        if self._groups_file.exists():
            for g in json.loads(self._groups_file.read_text()):
                try:
                    os.killpg(g, 0)
                    groups.add(g)
                except (ProcessLookupError, PermissionError):
                    pass  # that group has ended
        tmp = self._groups_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(sorted(groups)))
        os.replace(tmp, self._groups_file)

    async def _reap_orphans(self) -> None:
        """Stop components a previous runtime left running (it was killed before it could stop them)."""
        if not self._groups_file.exists():
            return
        import psutil

        sock = str(self.socket_path)
        for pgid in json.loads(self._groups_file.read_text()):
            ours = []
            for p in psutil.process_iter():
                try:
                    if os.getpgid(p.pid) == pgid and p.environ().get(
                            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") == sock:
                        ours.append(p)
                except (psutil.Error, ProcessLookupError, OSError):
                    continue
            if not ours:
                continue  # ended, or the id now belongs to someone else's processes
            log.warning("stopping %d process(es) a previous runtime left running (group %d)", len(ours), pgid)
            for p in ours:
                with contextlib.suppress(psutil.Error):
                    p.terminate()
            _, alive = await asyncio.to_thread(psutil.wait_procs, ours, 5.0)
            for p in alive:
                with contextlib.suppress(psutil.Error):
                    p.kill()
        self._groups_file.unlink(missing_ok=True)

    async def start(self) -> None:
        await self._reap_orphans()
        await self.server.start()
        self._write_cli_info()
        if self.options.iot:
            await self._start_iot()
        self._started = True
        self.deployments.start()
        log.info("ggvision runtime up: root=%s thing=%s socket=%s",
                 self.root, self.options.thing_name, self.socket_path)

    async def _start_iot(self) -> None:
        from ..iotcore.bridge import IoTCoreBridge
        from ..iotcore.broker import MosquittoBroker
        from ..iotcore.pki import ensure_pki
        from ..iotcore.spool import DiskSpool

        iot_dir = self.root / "iotcore"
        iot_dir.mkdir(exist_ok=True)
        self.pki = ensure_pki(self.options.iot_pki or iot_dir / "pki", self.options.thing_name)
        if self.options.iot_endpoint:
            host, _, port_s = self.options.iot_endpoint.rpartition(":")
            host, port = host or "127.0.0.1", int(port_s)
        else:
            port_file = iot_dir / "port"
            # Keep the same port across runtime restarts so outside clients can reconnect.
            saved = int(port_file.read_text()) if port_file.exists() else 0
            self.broker = MosquittoBroker(iot_dir / "broker", self.pki, port=saved)
            self.broker.start()
            port_file.write_text(str(self.broker.port))
            host, port = "127.0.0.1", self.broker.port
            self._broker_watch = asyncio.get_running_loop().create_task(self._watch_broker())
        spool = DiskSpool(iot_dir / "spool.sqlite", self.options.iot_spool_max_bytes)
        self.bridge = IoTCoreBridge(host, port, self.pki, self.options.thing_name, spool,
                                    max_message_bytes=self.options.iot_max_message_bytes)
        await self.bridge.start()
        if self.broker is not None:  # our own IoT Core stand-in: it answers the shadow topics too
            from .shadowcloud import CloudShadowService

            self.cloud_shadows = CloudShadowService(iot_dir / "cloud-shadows", host, port, self.pki)
            await self.cloud_shadows.start()
        self.shadow_sync = ShadowSync(self.shadows, self.bridge, self.options.thing_name,
                                      self.root / "config" / "shadow-sync.json")
        self.shadow_sync.start()
        self.shadow_sync.configure(self.config.peek(SHADOW_MANAGER))
        self.config.subscribe(SHADOW_MANAGER, [], lambda *_: self.shadow_sync and self.shadow_sync.configure(
            self.config.peek(SHADOW_MANAGER)))
        if self.options.rules_archive is not None:
            from ..iotcore.rules import RuleArchive

            await RuleArchive(self.options.rules_archive).start(self.bridge)
            log.info("IoT rules stand-in: archiving ggvision/+/{results,events,metrics} to s3://%s",
                     self.options.rules_archive.bucket)

    async def _watch_broker(self, period_s: float = 2.0) -> None:
        """Restart the embedded mosquitto if it dies; the bridge reconnects and drains its spool."""
        while True:
            await asyncio.sleep(period_s)  # process liveness offers no event to await here
            if self.broker is not None and not self.broker.running:
                log.warning("IoT Core stand-in: mosquitto is not running; restarting it")
                try:
                    # Started from the loop thread on purpose: its parent-death signal is tied to this thread.
                    self.broker.start()
                except Exception as e:
                    log.error("IoT Core stand-in: mosquitto did not restart: %s", e)

    def _configure_secrets(self) -> None:
        """The SecretManager stand-in follows its component's configuration; None while no deployment has it."""
        self.secrets.configure(self.config.peek(SECRET_MANAGER) if self.config.has(SECRET_MANAGER) else None)

    async def stop(self) -> None:
        if self._broker_watch is not None:
            self._broker_watch.cancel()
        await self.deployments.stop()
        order = self.start_order()
        for name in reversed(order):
            svc = self.services.get(name)
            if svc is not None:
                await svc.stop()
        self.secrets.close()
        if self.shadow_sync is not None:
            await self.shadow_sync.stop()
        if self.cloud_shadows is not None:
            await self.cloud_shadows.stop()
        if self.bridge is not None:
            await self.bridge.stop()
        if self.broker is not None:
            self.broker.stop()
        await self.server.stop()
        self.hub.close()

    def _write_cli_info(self) -> None:
        # Like the Greengrass CLI's cli_ipc_info: lets `ggvision deployment …` reach this runtime.
        info_dir = self.root / "cli_ipc_info"
        info_dir.mkdir(exist_ok=True)
        os.chmod(info_dir, 0o700)
        path = info_dir / "cli.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"socket": str(self.socket_path), "token": self.cli_token}))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)

    # -- identity and authorization ----------------------------------------------------
    def authenticate(self, token: str) -> str | None:
        if token == self.cli_token:
            return CLI_IDENTITY
        for svc in self.services.values():
            if svc.token == token:
                return svc.name
        return None

    def access_control(self, component: str) -> Any:
        if component == CLI_IDENTITY:
            return {"aws.greengrass.Cli": {"cli": {"operations": ["*"], "resources": ["*"]}}}
        return self.config.peek(component, ("accessControl",))

    def available_recipes(self) -> list[Recipe]:
        """Every recipe a deployment may resolve against: the store's, plus the stand-in of each AWS-provided
        component of which the store has no recipe at all."""
        stored = self.recipes.all()
        names = {r.name for r in stored}
        return stored + [r for name, r in self.provided.items() if name not in names]

    # -- services -----------------------------------------------------------------------
    def has_component(self, name: str) -> bool:
        return name in self.services

    def component_names(self) -> list[str]:
        return sorted(self.services)

    def component_details(self, name: str) -> dict[str, Any]:
        svc = self.services[name]
        try:
            cfg = self.config.get(name)
        except KeyError:
            cfg = {}
        return {"componentName": name, "version": svc.version, "state": str(svc.state), "configuration": cfg}

    def start_order(self) -> list[str]:
        return start_order({n: s.recipe for n, s in self.services.items()})

    def dependencies_ready(self, svc: ComponentService) -> bool:
        for dep in svc.recipe.dependencies:
            d = self.services.get(dep)
            if d is None or d.state not in HEALTHY:
                return False
        return True

    def reconcile(self) -> None:
        """Start every service whose dependencies are healthy and that is not running yet."""
        for name in self.start_order():
            svc = self.services[name]
            if svc.state in (State.NEW, State.INSTALLED) and svc.wanted and self.dependencies_ready(svc):
                svc.start()

    def on_state_change(self, svc: ComponentService, old: State, new: State) -> None:
        reason = f" ({svc.reason})" if svc.reason and new in (State.ERRORED, State.BROKEN) else ""
        self.hub.line(svc.name, "nucleus", f"state {old} -> {new}{reason}")
        for cb in list(self.state_listeners):
            cb(svc, old, new)
        if new in HEALTHY or (new == State.INSTALLED and old == State.STOPPING):
            # A dependency became healthy, or a dependent finished stopping after it already had.
            asyncio.get_running_loop().call_soon(self.reconcile)
        elif old in HEALTHY and new in (State.ERRORED, State.STOPPING):
            # HARD dependents restart around a dependency's restart, as the nucleus does.
            for other in self.services.values():
                dep = other.recipe.dependencies.get(svc.name)
                if dep and dep.dependency_type == "HARD" and other.state in (State.RUNNING, State.STARTING):
                    asyncio.get_running_loop().create_task(other.stop(State.INSTALLED))

    def report_state(self, component: str, state: str) -> None:
        svc = self.services.get(component)
        if svc is None:
            raise ServiceError(f"{component} is not a running component")
        svc.report_state(state)

    def request_restart(self, name: str) -> tuple[bool, str]:
        svc = self.services[name]
        asyncio.get_running_loop().create_task(svc.restart())
        return True, f"restarting {name}"

    def request_stop(self, name: str) -> tuple[bool, str]:
        svc = self.services[name]
        svc.wanted = False
        asyncio.get_running_loop().create_task(svc.stop())
        return True, f"stopping {name}"

    def component_state(self, name: str) -> str:
        return str(self.services[name].state)

    def is_paused(self, name: str) -> bool:
        return self.services[name].paused

    def pause_component(self, name: str) -> None:
        self.services[name].pause()

    def resume_component(self, name: str) -> None:
        self.services[name].resume()

    def put_metrics(self, component: str, metrics: list[dict[str, Any]]) -> None:
        now = time.time()
        per = self.metrics.setdefault(component, {})
        for m in metrics:
            per[m["name"]] = {**m, "timestamp": now}

    def _on_drop(self, conn: Any, stream: Stream) -> None:
        self.counters["ipc_events_dropped"] += 1
        if stream.dropped in (1, 100, 10_000) or stream.dropped % 100_000 == 0:
            log.warning("IPC: %s is not keeping up on %s; %d events dropped so far",
                        conn.component, stream.operation, stream.dropped)

    # -- installed versions ---------------------------------------------------------------
    def _install_key(self, name: str, version: str) -> str:
        # Version plus the installed artifacts' identity: a rebuilt artifact of the same version
        # (a local development loop) installs again; an unchanged one does not.
        art = component_paths(self.root, name, version).artifacts_path
        files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in art.glob("*") if p.is_file())
        return f"{version}:{hashlib.sha256(repr(files).encode()).hexdigest()[:16]}"

    def is_installed(self, name: str, version: str) -> bool:
        return self.installed.get(name) == self._install_key(name, version)

    def mark_installed(self, name: str, version: str) -> None:
        self.installed[name] = self._install_key(name, version)
        self.save_state()

    def save_state(self) -> None:
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"roots": self.roots, "installed": self.installed,
                                   "bootstrapped": self.bootstrapped}, indent=1))
        os.replace(tmp, self._state_file)

    # -- environment and interpolation -----------------------------------------------------
    def work_path(self, name: str) -> Path:
        return self.root / "work" / name

    def paths_for(self, name: str, version: str) -> ComponentPaths:
        p = component_paths(self.root, name, version)
        try:
            cfg = self.config.get(name)
        except KeyError:
            cfg = {}
        return ComponentPaths(p.artifacts_path, p.decompressed_path, self.work_path(name), cfg)

    def interpolation_context(self, svc: ComponentService) -> InterpolationContext:
        deps = {}
        for dep in svc.recipe.dependencies:
            d = self.services.get(dep)
            if d is not None:
                deps[dep] = self.paths_for(dep, d.version)
        return InterpolationContext(svc.name, self.paths_for(svc.name, svc.version), self.root,
                                    self.options.thing_name, deps)

    def interpolate(self, svc: ComponentService, text: str) -> str:
        return interpolate(text, self.interpolation_context(svc))

    def lifecycle_fingerprint(self, svc: ComponentService) -> str:
        """The interpolated lifecycle; when a config change alters it, the component restarts."""
        ctx = self.interpolation_context(svc)
        parts = {k: interpolate(v.script, ctx) for k, v in sorted(svc.resolved.steps.items())}
        parts["setenv"] = json.dumps({k: interpolate(v, ctx) for k, v in sorted(svc.resolved.setenv.items())})
        return json.dumps(parts, sort_keys=True)

    def component_env(self, svc: ComponentService, step: LifecycleStep) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SVCUID", "AWS_GG_", "AWS_CONTAINER_"))}
        sock = str(self.socket_path)
        env.update({
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": sock,
            "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH": sock,
            "SVCUID": svc.token,
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": svc.token,
            "AWS_IOT_THING_NAME": self.options.thing_name,
            "AWS_REGION": self.options.region,
            "AWS_DEFAULT_REGION": self.options.region,
            "GGC_VERSION": NUCLEUS_VERSION,
            "GG_ROOT_CA_PATH": str(self.pki.ca_cert) if self.pki is not None else "",
        })
        ctx = self.interpolation_context(svc)
        for k, v in svc.resolved.setenv.items():
            env[k] = interpolate(v, ctx)
        for k, v in step.setenv.items():
            env[k] = interpolate(v, ctx)
        return env

    # -- building services ----------------------------------------------------------------
    def install_artifacts(self, recipe: Recipe, artifact_dir: Path | None) -> None:
        """Pick the platform manifest and install its artifacts (RecipeError / ArtifactError on failure)."""
        install_artifacts(recipe.resolve(self.options.platform), artifact_dir, self.root)

    # -- IoT Core -----------------------------------------------------------------------
    async def iot_publish(self, topic: str, payload: bytes, qos: int, retain: bool,
                          user_properties: list[tuple[str, str]]) -> dict[str, Any]:
        if self.bridge is None:
            raise ServiceError("PublishToIoTCore: the IoT Core bridge is not running (runtime started without --iot)")
        from ..iotcore.bridge import MessageTooLargeError
        from ..iotcore.spool import SpoolFullError, SpoolStorageError

        try:
            await self.bridge.publish(topic, payload, qos=qos, retain=retain, user_properties=user_properties or None)
        except MessageTooLargeError as e:
            from ..ipc.errors import InvalidArgumentsError

            raise InvalidArgumentsError(f"PublishToIoTCore: {e}") from None
        except SpoolStorageError as e:  # the disk under the spool: a clear reason, no traceback
            raise ServiceError(f"PublishToIoTCore: {e}") from None
        except SpoolFullError as e:
            raise ServiceError(f"PublishToIoTCore: offline spool is full, message refused: {e}") from None
        except ValueError as e:
            from ..ipc.errors import InvalidArgumentsError

            raise InvalidArgumentsError(f"PublishToIoTCore: {e}") from None
        return {}

    async def iot_subscribe(self, stream: Stream, topic_filter: str, qos: int) -> dict[str, Any]:
        if self.bridge is None:
            raise ServiceError("SubscribeToIoTCore: the IoT Core bridge is not running (runtime started without --iot)")
        import base64

        def deliver(topic: str, payload: bytes) -> None:
            stream.send_event_obj("IoTCoreMessage", {"message": {
                "topicName": topic, "payload": base64.b64encode(payload).decode()}})

        handle = await self.bridge.subscribe(topic_filter, qos, deliver)
        loop = asyncio.get_running_loop()
        stream.on_close.append(lambda: loop.create_task(self.bridge.unsubscribe(handle)))
        return {}
