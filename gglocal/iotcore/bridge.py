"""The runtime's connection to "IoT Core" (our mosquitto stand-in) for Publish/SubscribeToIoTCore.

Client choice: ``awscrt.mqtt5``. It works cleanly against mosquitto 2.x with mutual TLS and gives
us what the 3.1.1 client cannot: PUBACK reason codes (a broker-side rejection is not mistaken for
success), an explicit offline-queue policy, and subscription identifiers, which let us route each
incoming copy to exactly the local subscribers of the broker subscription it matched (mosquitto
sends one copy per overlapping subscription, so topic matching alone would duplicate messages).

Delivery model
* QoS1 publish: written to the durable ``DiskSpool`` first and acknowledged to the caller once the
  spool commit is fsynced, *not* on PUBACK: a component must not block (or fail) just because the
  device is offline, and from that point the message survives runtime restarts. One drain task
  sends spooled messages in order and deletes each on PUBACK. At-least-once: a message acked by
  the broker but not yet deleted when the runtime dies is sent again on the next start.
* QoS0 publish: sent if connected, otherwise dropped and counted (nucleus keepQos0WhenOffline=false).
* Subscriptions: ref-counted per topic filter (the table is subscriptions.py); re-sent after every
  (re)connect. Topics and filters are checked against the IoT Core rules first (topics.py).

Threading: CRT callbacks run on CRT event-loop threads. They only marshal onto the asyncio loop
with ``call_soon_threadsafe`` and never block. CRT futures are awaited through ``asyncio.shield``
because cancelling them would make the CRT's later ``set_result`` raise on its own thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Callable
from typing import Any

from awscrt import io, mqtt5
from awscrt.exceptions import AwsCrtError

from .pki import Pki
from .spool import DiskSpool, SpooledMessage, SpoolStorageError
from .subscriptions import BrokerSubscription, MessageCallback, SubscriptionTable
from .topics import validate_topic, validate_topic_filter

log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 131072  # nucleus mqtt.maxMessageSizeInBytes / IoT Core payload limit
_SESSION_EXPIRY_S = 3600  # broker keeps our subscriptions + queued QoS1 across short outages
_ACK_TIMEOUT_S = 10.0
_OK_PUBACK = {mqtt5.PubackReasonCode.SUCCESS, mqtt5.PubackReasonCode.NO_MATCHING_SUBSCRIBERS}


class MessageTooLargeError(ValueError):
    """The payload exceeds the configured IoT Core message size limit."""


class IoTCoreError(RuntimeError):
    """The broker refused an operation (e.g. a SUBACK with a failure reason code)."""


def _is_permanent(err: BaseException) -> bool:
    # Validation failures will fail again on every retry; anything else (disconnects, timeouts)
    # is worth retrying on the next connection.
    return isinstance(err, RuntimeError) or "VALIDATION" in getattr(err, "name", "")


async def _await_crt(fut: concurrent.futures.Future, timeout: float | None = None) -> Any:
    inner = asyncio.wrap_future(fut)
    # Retrieve the result even if we stop waiting, so asyncio never logs "exception never retrieved".
    inner.add_done_callback(lambda f: f.cancelled() or f.exception())
    return await asyncio.wait_for(asyncio.shield(inner), timeout)


class IoTCoreBridge:
    """Async MQTT5 (mTLS) client with a durable QoS1 spool; see the module docstring."""

    def __init__(
        self,
        host: str,
        port: int,
        pki: Pki,
        client_id: str,
        spool: DiskSpool,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        *,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        keep_alive_s: int = 30,
        inflight_window: int = 16,
        iot_core_limits: bool = True,
    ) -> None:
        self.host, self.port, self.pki, self.client_id = host, port, pki, client_id
        self.max_message_bytes = max_message_bytes
        self._spool = spool
        self._reconnect_min_s, self._reconnect_max_s = reconnect_min_s, reconnect_max_s
        self._keep_alive_s = keep_alive_s
        self._window = max(1, inflight_window)
        self._iot_core_limits = iot_core_limits

        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt5.Client | None = None
        self._drain_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False

        self._connected = False
        self._conn_gen = 0  # bumped on every successful connect
        self._connected_evt = asyncio.Event()
        self._disconnected_evt = asyncio.Event()
        self._disconnected_evt.set()
        self._new_conn_evt = asyncio.Event()
        # Set once subscriptions are re-sent after a (re)connect: spooled messages drain only then,
        # so a local subscriber to its own IoT Core topics never misses its spooled messages.
        self._subs_ready = asyncio.Event()
        self._work_evt = asyncio.Event()
        self._drained_evt = asyncio.Event()
        self._stopped_evt = asyncio.Event()

        self._subs = SubscriptionTable()

        self._published = 0
        self._rejected = 0
        self._dropped_qos0 = 0
        self._reconnects = 0
        self._last_error: str | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Begin connecting in the background; returns immediately (offline start is normal)."""
        if self._client is not None or self._stopping:
            raise RuntimeError("IoTCoreBridge.start() may be called once")
        self._loop = asyncio.get_running_loop()
        self._client = mqtt5.Client(self._client_options())
        self._client.start()  # the CRT reconnects with exponential backoff + jitter on its own
        self._drain_task = self._loop.create_task(self._drain(), name="iotcore-spool-drain")

    async def stop(self) -> None:
        """Stop draining and disconnect. Spooled messages stay in the spool for the next start."""
        if self._stopping:
            return
        self._stopping = True
        tasks = [t for t in [self._drain_task, *self._tasks] if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._client is not None:
            self._client.stop()
            try:
                await asyncio.wait_for(self._stopped_evt.wait(), 5.0)
            except asyncio.TimeoutError:
                log.warning("IoT Core client did not report 'stopped' within 5s")
        self._set_connected(False)

    def _client_options(self) -> mqtt5.ClientOptions:
        tls = io.TlsContextOptions.create_client_with_mtls_from_path(
            str(self.pki.client_cert), str(self.pki.client_key)
        )
        tls.override_default_trust_store_from_path(None, str(self.pki.ca_cert))
        tls.min_tls_ver = io.TlsVersion.TLSv1_2
        flow = (
            mqtt5.ExtendedValidationAndFlowControlOptions.AWS_IOT_CORE_DEFAULTS
            if self._iot_core_limits  # IoT Core's per-connection limits: 100 publish/s, 512 KB/s
            else mqtt5.ExtendedValidationAndFlowControlOptions.NONE
        )
        return mqtt5.ClientOptions(
            host_name=self.host,
            port=self.port,
            tls_ctx=io.ClientTlsContext(tls),
            connect_options=mqtt5.ConnectPacket(
                client_id=self.client_id,
                keep_alive_interval_sec=self._keep_alive_s,
                session_expiry_interval_sec=_SESSION_EXPIRY_S,
            ),
            # Rejoin only after a first success in this process: the broker session (queued QoS1
            # for our subscriptions) survives network blips, but a runtime restart starts clean, so
            # no stale subscriptions/sub ids. Note mosquitto persists a session over its *own*
            # restart only if the latest CONNECT had clean_start=0; we re-subscribe on every
            # connect, so our subscriptions come back either way.
            session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_POST_SUCCESS,
            # On disconnect the CRT fails everything except sent-but-unacked QoS1 (retransmitted),
            # so failures are always a suffix of what we sent: retrying from the spool head keeps order.
            offline_queue_behavior=mqtt5.ClientOperationQueueBehaviorType.FAIL_ALL_ON_DISCONNECT,
            extended_validation_and_flow_control_options=flow,
            min_reconnect_delay_ms=int(self._reconnect_min_s * 1000),
            max_reconnect_delay_ms=int(self._reconnect_max_s * 1000),
            disable_metrics=True,  # the SDK-metrics username is meaningless off AWS
            on_publish_callback_fn=self._crt_on_publish,
            on_lifecycle_event_connection_success_fn=self._crt_on_success,
            on_lifecycle_event_connection_failure_fn=self._crt_on_failure,
            on_lifecycle_event_disconnection_fn=self._crt_on_disconnect,
            on_lifecycle_event_stopped_fn=self._crt_on_stopped,
        )

    # ------------------------------------------------------------------ CRT thread callbacks

    def _post(self, fn: Callable[..., Any], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # loop closed between the check and the call
            pass

    def _crt_on_publish(self, data: mqtt5.PublishReceivedData) -> None:
        p = data.publish_packet
        self._post(self._dispatch, p.topic, bytes(p.payload or b""), list(p.subscription_identifiers or []))

    def _crt_on_success(self, data: mqtt5.LifecycleConnectSuccessData) -> None:
        self._post(self._on_connected)

    def _crt_on_failure(self, data: mqtt5.LifecycleConnectFailureData) -> None:
        self._post(self._note_error, f"connect to {self.host}:{self.port} failed: {data.exception}")

    def _crt_on_disconnect(self, data: mqtt5.LifecycleDisconnectData) -> None:
        self._post(self._on_disconnected, data.exception)

    def _crt_on_stopped(self, data: mqtt5.LifecycleStoppedData) -> None:
        self._post(self._stopped_evt.set)

    # ------------------------------------------------------------------ loop-side state

    def _note_error(self, message: str) -> None:
        if self._last_error != message:
            log.warning("IoT Core: %s", message)
        self._last_error = message

    def _set_connected(self, connected: bool) -> None:
        self._connected = connected
        (self._connected_evt.set if connected else self._connected_evt.clear)()
        (self._disconnected_evt.clear if connected else self._disconnected_evt.set)()

    def _on_connected(self) -> None:
        if self._stopping:
            return
        if self._conn_gen > 0:
            self._reconnects += 1
        self._conn_gen += 1
        self._set_connected(True)
        self._new_conn_evt.set()
        log.info("IoT Core: connected to %s:%s as %s", self.host, self.port, self.client_id)
        self._subs_ready.clear()
        self._spawn(self._resubscribe())

    def _on_disconnected(self, exc: BaseException | None) -> None:
        self._set_connected(False)
        if not self._stopping:
            self._note_error(f"disconnected: {exc}")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ publish

    async def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        user_properties: list[tuple[str, str]] | None = None,
    ) -> None:
        """QoS1: return once durably spooled (raises SpoolFullError when full). QoS0: best effort."""
        validate_topic(topic)
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core does not support QoS {qos})")
        payload = bytes(payload)
        if len(payload) > self.max_message_bytes:
            raise MessageTooLargeError(
                f"payload of {len(payload)} bytes on {topic!r} exceeds the IoT Core message size limit "
                f"of {self.max_message_bytes} bytes (mqtt.maxMessageSizeInBytes)"
            )
        props = [(str(k), str(v)) for k, v in (user_properties or [])]
        if qos == 0:
            self._publish_qos0(topic, payload, retain, props)
            return
        # Off the loop: the commit fsyncs. SpoolFullError propagates to the caller unchanged.
        await asyncio.to_thread(self._spool.put, topic, payload, 1, retain, props)
        self._work_evt.set()

    def _packet(
        self, topic: str, payload: bytes, qos: int, retain: bool, props: list[tuple[str, str]]
    ) -> mqtt5.PublishPacket:
        return mqtt5.PublishPacket(
            topic=topic,
            payload=payload,
            qos=mqtt5.QoS(qos),
            retain=retain,
            user_properties=[mqtt5.UserProperty(k, v) for k, v in props] or None,
        )

    def _publish_qos0(self, topic: str, payload: bytes, retain: bool, props: list[tuple[str, str]]) -> None:
        if not self._connected or self._client is None:
            self._dropped_qos0 += 1
            return
        try:
            fut = self._client.publish(self._packet(topic, payload, 0, retain, props))
        except RuntimeError as e:
            raise ValueError(f"publish to {topic!r} rejected by the MQTT client: {e}") from e

        def done(f: concurrent.futures.Future) -> None:  # CRT thread
            self._post(self._qos0_done, f.exception())

        fut.add_done_callback(done)

    def _qos0_done(self, exc: BaseException | None) -> None:
        if exc is None:
            self._published += 1
        else:  # went offline before it was written: same fate as an offline QoS0 publish
            self._dropped_qos0 += 1

    # ------------------------------------------------------------------ spool drain

    async def _drain(self) -> None:
        while True:
            try:
                await self._drain_once()
            except asyncio.CancelledError:
                raise
            except SpoolStorageError as e:  # the spool's disk: said once (until it changes), no traceback
                self._note_error(str(e))
                await asyncio.sleep(self._reconnect_max_s)
            except Exception as e:  # e.g. a disk error: keep the task alive, retry after a pause
                log.exception("IoT Core spool drain failed")
                self._note_error(f"spool drain failed: {e!r}")
                await asyncio.sleep(self._reconnect_max_s)

    async def _drain_once(self) -> None:
        self._work_evt.clear()  # before peeking, so a put() racing with the peek re-wakes us
        batch = await asyncio.to_thread(self._spool.peek, self._window)
        if not batch:
            self._drained_evt.set()
            await self._work_evt.wait()
            return
        await self._connected_evt.wait()
        await self._subs_ready.wait()
        gen = self._conn_gen
        if await self._send_batch(batch):
            return
        # Retry on the next connection. The timeout covers a failure that came without a
        # disconnect, which would otherwise leave us waiting forever.
        self._new_conn_evt.clear()
        if self._conn_gen == gen:
            try:
                await asyncio.wait_for(self._new_conn_evt.wait(), self._reconnect_max_s)
            except asyncio.TimeoutError:
                pass

    async def _send_batch(self, batch: list[SpooledMessage]) -> bool:
        """Publish a window of spooled messages in order; False if any must be retried."""
        assert self._client is not None
        pending: list[tuple[SpooledMessage, concurrent.futures.Future | BaseException]] = []
        for msg in batch:
            try:
                packet = self._packet(msg.topic, msg.payload, 1, msg.retain, msg.user_properties)
                pending.append((msg, self._client.publish(packet)))
            except RuntimeError as e:  # rejected synchronously by CRT validation
                pending.append((msg, e))
        all_ok = True
        for msg, fut in pending:
            try:
                if isinstance(fut, BaseException):
                    raise fut
                result = await _await_crt(fut)
            except (AwsCrtError, RuntimeError) as e:
                if not _is_permanent(e):
                    all_ok = False  # not sent: stays at the head of the spool
                    continue
                self._reject(msg, f"client refused it: {e}")
            else:
                code = result.puback.reason_code if result.puback else None
                if code is None or code in _OK_PUBACK:
                    self._published += 1
                else:
                    self._reject(msg, f"broker answered PUBACK {code.name}")
            await asyncio.to_thread(self._spool.remove, msg.id)
            if len(self._spool) == 0:
                self._drained_evt.set()
        return all_ok

    def _reject(self, msg: SpooledMessage, why: str) -> None:
        # A message that can never be delivered must not block the queue forever: drop it, loudly.
        self._rejected += 1
        self._note_error(f"dropped spooled message {msg.id} on {msg.topic!r}: {why}")

    # ------------------------------------------------------------------ subscribe

    async def subscribe(self, topic_filter: str, qos: int, callback: MessageCallback) -> int:
        """Register ``callback(topic, payload)`` (run on the event loop); returns a handle.

        When connected, waits for the SUBACK and raises IoTCoreError if the broker refuses. When
        offline, the subscription is registered and made on the broker once connected.
        """
        validate_topic_filter(topic_filter)
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1 (AWS IoT Core does not support QoS {qos})")
        handle, entry, need_broker = self._subs.add(topic_filter, qos, callback)
        if need_broker and self._connected:
            try:
                await self._broker_subscribe(entry)
            except IoTCoreError:
                await self.unsubscribe(handle)
                raise
        return handle

    async def _broker_subscribe(self, entry: BrokerSubscription) -> None:
        """SUBSCRIBE; raises IoTCoreError on a refusal. Transport failures are left to reconnect."""
        if self._client is None:
            return
        packet = mqtt5.SubscribePacket(
            subscriptions=[
                mqtt5.Subscription(
                    entry.topic_filter,
                    mqtt5.QoS(entry.qos),
                    # Re-subscribing on reconnect must not replay retained messages already seen.
                    retain_handling_type=mqtt5.RetainHandlingType.SEND_ON_SUBSCRIBE_IF_NEW,
                )
            ],
            subscription_identifier=entry.sub_id,
        )
        try:
            suback = await _await_crt(self._client.subscribe(packet), _ACK_TIMEOUT_S)
        except (AwsCrtError, RuntimeError, asyncio.TimeoutError) as e:
            self._note_error(f"subscribe {entry.topic_filter!r} not confirmed ({e!r}); retried on reconnect")
            return
        codes = suback.reason_codes or []
        if not codes or codes[0] is None or codes[0] > mqtt5.SubackReasonCode.GRANTED_QOS_2:
            name = codes[0].name if codes and codes[0] is not None else "unknown"
            raise IoTCoreError(f"broker refused subscription to {entry.topic_filter!r}: {name}")

    async def unsubscribe(self, handle: int) -> None:
        """Remove one local subscriber; the broker subscription goes when the last one does."""
        entry = self._subs.remove(handle)
        if entry is None:  # unknown handle, or the filter still has other subscribers
            return
        if self._connected:
            await self._broker_unsubscribe(entry.topic_filter)

    async def _broker_unsubscribe(self, topic_filter: str) -> None:
        if self._client is None:
            return
        packet = mqtt5.UnsubscribePacket(topic_filters=[topic_filter])
        try:
            await _await_crt(self._client.unsubscribe(packet), _ACK_TIMEOUT_S)
        except (AwsCrtError, RuntimeError, asyncio.TimeoutError) as e:
            self._note_error(f"unsubscribe {topic_filter!r} not confirmed yet ({e!r}); retried on reconnect")
            return
        self._subs.unsubscribed(topic_filter)

    async def _resubscribe(self) -> None:
        # Always resend: cheap, idempotent, and correct whether or not the broker kept our session.
        jobs = [self._broker_subscribe(e) for e in self._subs.subscriptions()]
        jobs += [self._broker_unsubscribe(f) for f in self._subs.pending_unsubscribes()]
        try:
            for result in await asyncio.gather(*jobs, return_exceptions=True):
                if isinstance(result, BaseException):
                    self._note_error(str(result))
        finally:
            self._subs_ready.set()

    def _dispatch(self, topic: str, payload: bytes, sub_ids: list[int]) -> None:
        for entry in self._subs.route(topic, sub_ids):
            for callback in list(entry.callbacks.values()):
                try:
                    result = callback(topic, payload)
                    if inspect.isawaitable(result):
                        self._spawn(result)
                except Exception:  # one faulty subscriber must not starve the others
                    log.exception("IoT Core subscriber callback for %r failed", entry.topic_filter)

    # ------------------------------------------------------------------ introspection

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_connected(self, timeout: float) -> None:
        """Wait for the broker connection; raises TimeoutError (with the last error) otherwise."""
        try:
            await asyncio.wait_for(self._connected_evt.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"not connected to {self.host}:{self.port} within {timeout}s (last error: {self._last_error})"
            ) from None

    async def wait_disconnected(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self._disconnected_evt.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"still connected to {self.host}:{self.port} after {timeout}s") from None

    async def wait_drained(self, timeout: float) -> None:
        """Wait until every spooled QoS1 message has been acknowledged (or dropped as undeliverable)."""

        async def drained() -> None:
            # The drain task sets the event on the loop after each removal, so checking and
            # clearing here (no await in between) cannot miss the final one.
            while len(self._spool) > 0:
                self._drained_evt.clear()
                await self._drained_evt.wait()

        try:
            await asyncio.wait_for(drained(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"{len(self._spool)} spooled messages still undelivered after {timeout}s "
                f"(connected={self._connected}, last error: {self._last_error})"
            ) from None

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "published": self._published,  # QoS1 PUBACKed + QoS0 written to the socket
            "spooled": len(self._spool),  # QoS1 messages currently waiting for a PUBACK
            "spool_bytes": self._spool.bytes_used,
            "dropped_qos0": self._dropped_qos0,
            "rejected": self._rejected,  # spooled messages dropped as undeliverable
            "reconnects": self._reconnects,
            "last_error": self._last_error,
        }
