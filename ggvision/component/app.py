"""What every ggvision component does with Greengrass: IPC, configuration, secrets, metrics, shutdown.

A component builds one ComponentApp, gives it a validator for its configuration, and gets:
- the configuration from GetConfiguration, checked by the validator (an invalid configuration
  at start is reported ERRORED with the reason; the component does not run on it);
- live updates: deployments ask SubscribeToValidateConfigurationUpdates first and a bad
  configuration is REJECTED with the validator's reason; accepted changes arrive through
  SubscribeToConfigurationUpdate and reach `on_config` callbacks; the last good configuration
  stays in force otherwise;
- `publish()` of versioned JSON messages on local topics (failures counted, never raised);
- a stop event set on SIGTERM/SIGINT, so `run()` returns within the Shutdown timeout.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..config.cpulist import parse_cpus
from . import cpus

log = logging.getLogger("ggvision.component")

Validator = Callable[[dict[str, Any]], str | None]  # returns the reason a configuration is refused


class ComponentApp:
    def __init__(self, name: str, validate: Validator | None = None, client: Any = None) -> None:
        self.name = name
        self._validate = validate or (lambda cfg: None)
        self._client = client
        self.config: dict[str, Any] = {}
        self.stop_event = threading.Event()
        self._config_callbacks: list[Callable[[dict[str, Any]], None]] = []
        self._lock = threading.Lock()
        self._ops: list[Any] = []
        self.publish_errors = 0
        self.rejected_configs = 0

    # -- start-up ---------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

            self._client = GreengrassCoreIPCClientV2()
        return self._client

    def start(self) -> dict[str, Any]:
        """Connect, read and check the configuration, subscribe to changes, handle SIGTERM."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stop_event.set())
        config = self.client.get_configuration().value or {}
        reason = self._validate(config)
        if reason:
            self.report_errored()
            raise ValueError(f"{self.name}: invalid configuration: {reason}")
        self.config = config
        self._apply_cpus(config)
        _, op = self.client.subscribe_to_validate_configuration_updates(
            on_stream_event=self._on_validate, on_stream_error=self._on_stream_error)
        self._ops.append(op)
        _, op = self.client.subscribe_to_configuration_update(
            on_stream_event=self._on_config_event, on_stream_error=self._on_stream_error)
        self._ops.append(op)
        return config

    def on_config(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Called (on an IPC thread) with each new valid configuration."""
        self._config_callbacks.append(callback)

    # -- configuration ------------------------------------------------------------------
    def _on_validate(self, event: Any) -> None:
        from awsiot.greengrasscoreipc.model import ConfigurationValidityReport

        ev = event.validate_configuration_update_event
        reason = self._validate(ev.configuration or {})
        status = "REJECTED" if reason else "ACCEPTED"
        if reason:
            self.rejected_configs += 1
            log.warning("%s: refusing configuration of deployment %s: %s", self.name, ev.deployment_id, reason)
        try:
            self.client.send_configuration_validity_report(configuration_validity_report=ConfigurationValidityReport(
                status=status, deployment_id=ev.deployment_id, message=reason or "ok"))
        except Exception as e:  # the deployment then times out; nothing else to do from here
            log.error("%s: could not send the validity report: %s", self.name, e)

    def _on_config_event(self, event: Any) -> None:
        try:
            config = self.client.get_configuration().value or {}
        except Exception as e:
            log.error("%s: configuration changed but could not be read: %s", self.name, e)
            return
        with self._lock:
            if config == self.config:
                return
            reason = self._validate(config)
            if reason:  # e.g. UpdateConfiguration by someone else: keep the last good one
                self.rejected_configs += 1
                log.warning("%s: ignoring invalid configuration change: %s", self.name, reason)
                return
            self.config = config
        self._apply_cpus(config)
        for cb in list(self._config_callbacks):
            try:
                cb(config)
            except Exception:
                log.exception("%s: configuration callback failed", self.name)

    def _apply_cpus(self, config: dict[str, Any]) -> None:
        """`cpus` (every component's configuration, validated already): the CPUs this process's threads run on."""
        try:
            cpus.apply_process(parse_cpus(config.get("cpus")))
        except ValueError as e:  # a validator that let it through: keep running where the threads are
            log.error("%s: cpus: %s", self.name, e)

    def _on_stream_error(self, error: Exception) -> bool:
        log.error("%s: IPC stream error: %s", self.name, error)
        return False  # keep the stream open

    # -- messages, secrets, state ---------------------------------------------------------
    def subscribe(self, topic: str, on_message: Callable[[str, Any | None], None], timeout: float = 10.0) -> Any:
        """Call on_message(topic, JSON message) for each message on `topic` (None for a binary one: every
        ggvision message is JSON). Runs straight on the connection's event thread, skipping clientv2's
        per-event executor hand-off, which dominates the cost on busy topics: on_message must be quick
        and never block. Returns the subscription, for `unsubscribe`."""
        from awsiot.greengrasscoreipc.client import SubscribeToTopicStreamHandler
        from awsiot.greengrasscoreipc.model import SubscribeToTopicRequest

        app = self

        class Handler(SubscribeToTopicStreamHandler):
            def on_stream_event(self, event: Any) -> None:
                if event.json_message is not None:
                    on_message(event.json_message.context.topic, event.json_message.message)
                elif event.binary_message is not None:
                    on_message(event.binary_message.context.topic, None)

            def on_stream_error(self, error: Exception) -> bool:
                return app._on_stream_error(error)

            def on_stream_closed(self) -> None:
                pass

        op = self.client.client.new_subscribe_to_topic(Handler())
        op.activate(SubscribeToTopicRequest(topic=topic)).result(timeout)
        op.get_response().result(timeout)
        self._ops.append(op)
        return op

    def unsubscribe(self, op: Any) -> None:
        """End a subscription `subscribe` returned (closing its stream is how a Greengrass client unsubscribes)."""
        if op in self._ops:
            self._ops.remove(op)
        try:
            op.close()
        except Exception as e:  # the connection is going away anyway
            log.debug("%s: closing a subscription failed: %s", self.name, e)

    def publish(self, topic: str, message: dict[str, Any]) -> bool:
        from awsiot.greengrasscoreipc.model import JsonMessage, PublishMessage

        try:
            self.client.publish_to_topic(topic=topic, publish_message=PublishMessage(
                json_message=JsonMessage(message=message)))
            return True
        except Exception as e:
            self.publish_errors += 1
            if self.publish_errors in (1, 10, 100) or self.publish_errors % 1000 == 0:
                log.warning("%s: publish to %s failed (%d so far): %s", self.name, topic, self.publish_errors,
                            error_text(e))
            return False

    def get_secret(self, secret_id: str) -> str:
        """A secret's string value; never log it."""
        return self.client.get_secret_value(secret_id=secret_id).secret_value.secret_string

    def report_running(self) -> None:
        self.client.update_state(state="RUNNING")

    def report_errored(self) -> None:
        try:
            self.client.update_state(state="ERRORED")
        except Exception as e:
            log.error("%s: could not report ERRORED: %s", self.name, e)

    def run(self, tick: Callable[[], None] | None = None, period_s: float = 1.0) -> None:
        """Block until SIGTERM/SIGINT, calling `tick` every period (e.g. to publish metrics)."""
        next_tick = time.monotonic() + period_s
        while not self.stop_event.wait(max(0.0, next_tick - time.monotonic())):
            next_tick += period_s
            if tick is not None:
                try:
                    tick()
                except Exception:
                    log.exception("%s: periodic task failed", self.name)

    def close(self) -> None:
        for op in self._ops:
            try:
                op.close()
            except Exception:
                pass
        if self._client is not None:
            self._client.close()


class Component(Protocol):
    def tick(self) -> None: ...
    def close(self) -> None: ...


def run_component(name: str, validate: Validator, build: Callable[[ComponentApp, dict[str, Any]], Component],
                  tick_period_s: float = 0.5) -> int:
    """The process of a component: start, build it from the first valid configuration, report RUNNING,
    tick until SIGTERM, close. Exit 1 (ERRORED already reported) when the configuration is invalid."""
    configure_logging()
    app = ComponentApp(name, validate)
    try:
        cfg = app.start()
    except ValueError as e:
        log.error("%s", e)
        return 1
    comp = build(app, cfg)
    app.report_running()
    try:
        app.run(comp.tick, period_s=tick_period_s)
    finally:
        comp.close()
        app.close()
    return 0


def error_text(e: BaseException | str) -> str:
    """What went wrong, in words: the IPC client's errors (ServiceError, ...) keep their text in `message`
    and print as an empty string, which would hide the nucleus' reason (a full spool, say)."""
    if isinstance(e, str):
        return e
    text = getattr(e, "message", None) or str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def configure_logging(level: int = logging.INFO) -> None:
    """One line per record on stderr: the runtime (or Greengrass) stores it in the component log."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))
