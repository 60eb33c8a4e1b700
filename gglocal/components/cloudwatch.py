"""The local runtime's stand-in for `aws.greengrass.Cloudwatch`: metric requests on a topic become CloudWatch
PutMetricData calls, batched per namespace.

Run as a component process (`python -m gglocal.components.cloudwatch`, recipe in gglocal/components/__init__.py)
with the real awsiot IPC client. What it reproduces, and where each rule comes from:

- the developer guide page "CloudWatch metrics" (cloudwatch-metrics-component), v3.x: the configuration keys
  (PublishInterval ≤ 900 s, 0 = publish as received, default 10; MaxMetricsToRetain ≥ 2000, default 5000;
  InputTopic; OutputTopic; PubSubToIoTCore; PublishRegion), the input message (Input data: `{"request":
  {"namespace", "metricData": {"metricName", "value", "dimensions": [{"name", "value"}] (up to 10),
  "timestamp" (epoch seconds, default: when received), "unit"}}}`) and the status messages (Output data:
  `{"response": {"cloudwatch_rid", "namespace", "status": "success"}}`, `{"response": {"namespace", "error",
  "error_message", "status": "fail"}}`); a batch is sent after 20 metrics of a namespace or after the interval;
  a full buffer replaces the oldest metric of the same namespace; a retryable (connection) error is retried in
  the next batch;
- the component's published source (github aws-greengrass/aws-greengrass-cloudwatch-metrics, tag v3.2.0) where
  the guide is silent: the status messages also carry `"id": ""`; every metric gets the dimension
  `coreName` = AWS_IOT_THING_NAME; the unit defaults to `Count` (the guide says `None`; the code is what runs);
  input must arrive as a JSON message; out-of-range settings are clamped with a warning; the configuration is
  read once, at start;
- the CloudWatch API reference (PutMetricData, MetricDatum, Dimension) for limits the component leaves to
  CloudWatch. This stand-in checks them on input instead (a metric CloudWatch would refuse is answered with a
  `fail` status at once and never poisons a batch of good ones): value range and no NaN/infinity, namespace
  1–255 characters not starting with `:` or `AWS/`, metric and dimension names 1–255, dimension values 1–1024,
  timestamps from 14 days ago to 2 hours ahead. Input errors answer `"error": "InvalidInputException"` (the
  guide's example; the real code puts the Python exception class there), CloudWatch errors their error code.

Where it goes: `EndpointUrl` (this runtime's own key) or AWS_ENDPOINT_URL_CLOUDWATCH / AWS_ENDPOINT_URL (boto3's
standard variables), e.g. moto's server; `EndpointUrl: aws` uses AWS itself. With none of them it publishes
nothing (valid metrics are dropped and counted, input is still checked and answered), so a developer's
`make run` never writes into a real account by accident. Credentials: boto3's usual chain (the runtime has no
token exchange service); they are never logged.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import CLOUDWATCH, CLOUDWATCH_INPUT, CLOUDWATCH_OUTPUT

log = logging.getLogger("gglocal.cloudwatch")

DEFAULT_PUBLISH_INTERVAL_S = 10
MAX_PUBLISH_INTERVAL_S = 900
DEFAULT_MAX_METRICS = 5000
MIN_MAX_METRICS = 2000
BATCH_SIZE = 20  # metrics per PutMetricData call (the guide: "after it receives 20 metrics in the same namespace")
MAX_BATCHES_PER_FLUSH = 50  # per namespace and flush, as the component's source bounds a flush
MAX_DIMENSIONS = 10  # per request, v3.2.x ("A metric can define up to 10 dimensions"); coreName comes on top
MIN_MAGNITUDE, MAX_MAGNITUDE = 8.515920e-109, 1.174271e+108
MAX_PAST_S, MAX_FUTURE_S = 14 * 86400, 2 * 3600
INVALID_INPUT = "InvalidInputException"
UNITS = frozenset({
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes", "Bits",
    "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second", "Kilobytes/Second",
    "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second", "Megabits/Second",
    "Gigabits/Second", "Terabits/Second", "Count/Second", "None"})
DEFAULT_UNIT = "Count"
AWS = "aws"  # EndpointUrl value: AWS itself


# -- input --------------------------------------------------------------------------------------------------

class InvalidInput(ValueError):
    """A request the component refuses; the text names the field. `namespace` when the request had one."""

    def __init__(self, message: str, namespace: str | None = None) -> None:
        super().__init__(message)
        self.namespace = namespace


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _name(v: Any, field: str, most: int, namespace: str) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= most or not v.isascii() or not v.strip():
        raise InvalidInput(f"field ({field}) must be a string of 1 to {most} ASCII characters, got {v!r}", namespace)
    return v


def parse_request(message: Any, now: float, core_name: str) -> tuple[str, dict[str, Any]]:
    """A documented input message -> (namespace, PutMetricData MetricDatum with the coreName dimension)."""
    if not isinstance(message, dict):
        raise InvalidInput("the message must be a JSON object with a 'request' field")
    request = message.get("request")
    if request is None:
        raise InvalidInput("mandatory field (request) is absent in the input")
    if not isinstance(request, dict):
        raise InvalidInput("field (request) must be an object")
    namespace = request.get("namespace")
    if namespace is None:
        raise InvalidInput("mandatory field (namespace) is absent in the input")
    if not isinstance(namespace, str) or not 1 <= len(namespace) <= 255 or namespace.startswith(":"):
        raise InvalidInput(f"field (namespace) must be 1 to 255 characters matching [^:].*, got {namespace!r}")
    if namespace.startswith("AWS/"):
        raise InvalidInput(f"field (namespace) may not start with the reserved 'AWS/', got {namespace!r}", namespace)
    data = request.get("metricData")
    if data is None:
        raise InvalidInput("mandatory field (metricData) is absent in the input", namespace)
    if not isinstance(data, dict):
        raise InvalidInput("field (metricData) must be an object (one metric per message)", namespace)
    name = data.get("metricName")
    if name is None:
        raise InvalidInput("mandatory field (metricName) is absent in the input", namespace)
    name = _name(name, "metricName", 255, namespace)
    value = data.get("value")
    if value is None:
        raise InvalidInput("mandatory field (value) is absent in the input", namespace)
    if not _number(value):
        raise InvalidInput(f"field (value) must be a number, got {value!r}", namespace)
    if not math.isfinite(value) or (value != 0 and not MIN_MAGNITUDE <= abs(value) <= MAX_MAGNITUDE):
        raise InvalidInput(f"field (value) must be 0 or of magnitude {MIN_MAGNITUDE:g} to {MAX_MAGNITUDE:g}, "
                           f"got {value!r}", namespace)
    unit = data.get("unit")
    if unit is None:
        unit = DEFAULT_UNIT
    elif unit not in UNITS:
        raise InvalidInput(f"field (unit) must be one of {', '.join(sorted(UNITS))}, got {unit!r}", namespace)
    stamp = data.get("timestamp")
    if stamp is None:
        stamp = now
    elif not _number(stamp) or not math.isfinite(stamp):
        raise InvalidInput(f"field (timestamp) must be a number of seconds since the epoch, got {stamp!r}", namespace)
    elif not now - MAX_PAST_S <= stamp <= now + MAX_FUTURE_S:
        raise InvalidInput(f"field (timestamp) must be within 14 days before and 2 hours after now, got {stamp!r}",
                           namespace)
    dims = data.get("dimensions")
    dimensions: list[dict[str, str]] = []
    if dims is not None:
        if not isinstance(dims, list):
            raise InvalidInput("field (dimensions) must be a list", namespace)
        if len(dims) > MAX_DIMENSIONS:
            raise InvalidInput(f"more than {MAX_DIMENSIONS} entries in field (dimensions)", namespace)
        for i, d in enumerate(dims):
            if not isinstance(d, dict) or d.get("name") is None or d.get("value") is None:
                raise InvalidInput(f"dimensions[{i}] needs a name and a value", namespace)
            dimensions.append({"Name": _name(d["name"], f"dimensions[{i}].name", 255, namespace),
                               "Value": _name(d["value"], f"dimensions[{i}].value", 1024, namespace)})
    dimensions.append({"Name": "coreName", "Value": core_name})
    return namespace, {"MetricName": name, "Value": float(value), "Unit": unit, "Timestamp": float(stamp),
                       "Dimensions": dimensions}


def success(namespace: str, request_id: str) -> dict[str, Any]:
    return {"response": {"cloudwatch_rid": request_id, "namespace": namespace, "status": "success"}, "id": ""}


def failure(error: str, message: str, namespace: str | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"error": error, "error_message": message, "status": "fail"}
    if namespace is not None:
        response["namespace"] = namespace
    return {"response": response, "id": ""}


# -- configuration ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    publish_interval_s: int = DEFAULT_PUBLISH_INTERVAL_S
    max_metrics: int = DEFAULT_MAX_METRICS
    input_topic: str = CLOUDWATCH_INPUT
    output_topic: str = CLOUDWATCH_OUTPUT
    pubsub_to_iot_core: bool = False
    region: str | None = None
    endpoint: str | None = None  # None: publishing off; AWS: boto3's own resolution; otherwise this URL


def _whole(raw: Any) -> int | None:
    try:
        f = float(raw)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None


def load_settings(config: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """The component's configuration as it reads it (bad values fall back or are clamped, with a warning each)."""
    warnings: list[str] = []
    interval = DEFAULT_PUBLISH_INTERVAL_S
    if "PublishInterval" in config:
        got = _whole(config["PublishInterval"])
        if got is None or got < 0:
            warnings.append(f"invalid PublishInterval {config['PublishInterval']!r}; "
                            f"using the default {DEFAULT_PUBLISH_INTERVAL_S}")
        elif got > MAX_PUBLISH_INTERVAL_S:
            warnings.append(f"PublishInterval can not be more than {MAX_PUBLISH_INTERVAL_S} seconds; using that")
            interval = MAX_PUBLISH_INTERVAL_S
        else:
            interval = got
    retain = DEFAULT_MAX_METRICS
    if "MaxMetricsToRetain" in config:
        got = _whole(config["MaxMetricsToRetain"])
        if got is None:
            warnings.append(f"invalid MaxMetricsToRetain {config['MaxMetricsToRetain']!r}; "
                            f"using the default {DEFAULT_MAX_METRICS}")
        elif got < MIN_MAX_METRICS:
            warnings.append(f"MaxMetricsToRetain can not be less than {MIN_MAX_METRICS} metrics; using that")
            retain = MIN_MAX_METRICS
        else:
            retain = got

    def text(key: str, default: str | None) -> str | None:
        v = config.get(key)
        return v if isinstance(v, str) and v.strip() else default

    endpoint = text("EndpointUrl", None)
    if endpoint is None and (env.get("AWS_ENDPOINT_URL_CLOUDWATCH") or env.get("AWS_ENDPOINT_URL")):
        endpoint = AWS  # boto3 reads those variables itself
    elif endpoint is not None and endpoint.lower() == AWS:
        endpoint = AWS
    return Settings(
        publish_interval_s=interval, max_metrics=retain,
        input_topic=text("InputTopic", CLOUDWATCH_INPUT) or CLOUDWATCH_INPUT,
        output_topic=text("OutputTopic", CLOUDWATCH_OUTPUT) or CLOUDWATCH_OUTPUT,
        pubsub_to_iot_core=re.match("true", str(config.get("PubSubToIoTCore", "")), re.IGNORECASE) is not None,
        region=text("PublishRegion", None) or env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION"),
        endpoint=endpoint,
    ), warnings


# -- buffering and publishing -------------------------------------------------------------------------------

class MetricBuffer:
    """Metrics waiting per namespace, oldest timestamp first, at most `capacity` across all namespaces. When full,
    a new metric replaces the oldest of its own namespace; one whose namespace holds nothing is dropped."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._heaps: dict[str, list[tuple[float, int, dict[str, Any]]]] = {}
        self._seq = itertools.count()
        self.total = 0
        self.replaced = 0
        self.dropped = 0

    def add(self, namespace: str, datum: dict[str, Any]) -> bool:
        heap = self._heaps.setdefault(namespace, [])
        if self.total >= self.capacity:
            if not heap:
                self.dropped += 1
                return False
            heapq.heappop(heap)
            self.total -= 1
            self.replaced += 1
        heapq.heappush(heap, (datum["Timestamp"], next(self._seq), datum))
        self.total += 1
        return True

    def size(self, namespace: str) -> int:
        return len(self._heaps.get(namespace, ()))

    def namespaces(self) -> list[str]:
        return [ns for ns, heap in self._heaps.items() if heap]

    def take(self, namespace: str, count: int = BATCH_SIZE) -> list[dict[str, Any]]:
        heap = self._heaps.get(namespace, [])
        out = [heapq.heappop(heap)[2] for _ in range(min(count, len(heap)))]
        self.total -= len(out)
        return out

    def put_back(self, namespace: str, batch: list[dict[str, Any]]) -> None:
        """A batch that could not be sent goes back (as the component's source does, past the capacity)."""
        heap = self._heaps.setdefault(namespace, [])
        for datum in batch:
            heapq.heappush(heap, (datum["Timestamp"], next(self._seq), datum))
        self.total += len(batch)


class Retry(Exception):
    """The batch could not be delivered for a reason worth retrying (a connection error)."""


class SendFailed(Exception):
    def __init__(self, error: str, message: str) -> None:
        super().__init__(f"{error}: {message}")
        self.error = error
        self.message = message


Send = Callable[[str, list[dict[str, Any]]], str]  # (namespace, batch) -> request id; raises Retry / SendFailed


class Publisher:
    """Batches per namespace and sends: at BATCH_SIZE metrics of a namespace, every `interval_s` per namespace
    (its clock starts with its first metric), or at once with interval 0. `send` None: publishing is off and
    due batches are dropped and counted. `on_status` gets each status message."""

    def __init__(self, capacity: int, interval_s: float, send: Send | None,
                 on_status: Callable[[dict[str, Any]], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.buffer = MetricBuffer(capacity)
        self.interval_s = interval_s
        self.send = send
        self.on_status = on_status
        self.clock = clock
        self.sent = 0
        self.unsent = 0  # dropped because publishing is off
        self.failed_batches = 0  # refused by CloudWatch (or no credentials): answered with a fail status
        self._due: dict[str, float] = {}  # namespace -> when its next interval ends
        self._urgent: set[str] = set()
        self._cond = threading.Condition()
        self._unreachable: set[str] = set()

    def add(self, namespace: str, datum: dict[str, Any]) -> None:
        with self._cond:
            if not self.buffer.add(namespace, datum):
                n = self.buffer.dropped
                if n in (1, 10, 100) or n % 1000 == 0:
                    log.warning("buffer full (%d metrics): a metric of namespace %s was dropped (%d so far)",
                                self.buffer.capacity, namespace, n)
                return
            if self.interval_s > 0:
                self._due.setdefault(namespace, self.clock() + self.interval_s)
            if self.interval_s == 0 or self.buffer.size(namespace) >= BATCH_SIZE:
                self._urgent.add(namespace)
                self._cond.notify_all()

    def _take_due(self, now: float) -> list[str]:
        due = set(self._urgent)
        self._urgent.clear()
        for ns, at in self._due.items():
            if at <= now:
                due.add(ns)
                self._due[ns] = at + (math.floor((now - at) / self.interval_s) + 1) * self.interval_s
        return sorted(ns for ns in due if self.buffer.size(ns))

    def flush(self, namespace: str, max_batches: int = MAX_BATCHES_PER_FLUSH) -> None:
        """Send up to `max_batches` batches of `namespace` (outside the lock: add() never waits for CloudWatch)."""
        for _ in range(max_batches):
            with self._cond:
                batch = self.buffer.take(namespace)
            if not batch:
                return
            if self.send is None:
                before, self.unsent = self.unsent, self.unsent + len(batch)
                if before == 0 or before // 1000 != self.unsent // 1000:
                    log.info("publishing is off (no EndpointUrl, AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_CLOUDWATCH): "
                             "%d metrics checked and dropped so far", self.unsent)
                continue
            try:
                rid = self.send(namespace, batch)
            except Retry as e:
                with self._cond:
                    self.buffer.put_back(namespace, batch)
                if namespace not in self._unreachable:
                    log.warning("CloudWatch unreachable for namespace %s; retrying with the next batch: %s",
                                namespace, e)
                self._unreachable.add(namespace)
                return
            except SendFailed as e:
                self.failed_batches += 1
                if self.failed_batches in (1, 10, 100) or self.failed_batches % 1000 == 0:
                    log.error("PutMetricData for namespace %s failed, %d metrics lost (%d failed batches so far): %s",
                              namespace, len(batch), self.failed_batches, e)
                self.on_status(failure(e.error, e.message, namespace))
                continue
            self._unreachable.discard(namespace)
            self.sent += len(batch)
            self.on_status(success(namespace, rid))

    def step(self, timeout: float) -> None:
        """Wait until a batch is due (at most `timeout` seconds), then send what is due."""
        with self._cond:
            if not self._urgent:
                nearest = min(self._due.values(), default=math.inf)
                wait = min(timeout, max(0.0, nearest - self.clock()))
                if wait > 0:
                    self._cond.wait(wait)
            due = self._take_due(self.clock())
        for ns in due:
            self.flush(ns)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step(0.5)  # the longest it takes to notice `stop`

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


def cloudwatch_sender(settings: Settings) -> Send | None:
    """PutMetricData through boto3 (None when publishing is off)."""
    if settings.endpoint is None:
        return None
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, ConnectionError

    client = boto3.client("cloudwatch", region_name=settings.region,
                          endpoint_url=None if settings.endpoint == AWS else settings.endpoint,
                          config=Config(connect_timeout=5, read_timeout=15, retries={"max_attempts": 3}))

    def send(namespace: str, batch: list[dict[str, Any]]) -> str:
        try:
            out = client.put_metric_data(Namespace=namespace, MetricData=batch)
        except ConnectionError as e:
            raise Retry(str(e)) from None
        except ClientError as e:
            err = e.response.get("Error", {})
            raise SendFailed(err.get("Code") or "ClientError", err.get("Message") or str(e)) from None
        except BotoCoreError as e:  # no credentials, no region, parameter validation
            raise SendFailed(type(e).__name__, str(e)) from None
        return str(out.get("ResponseMetadata", {}).get("RequestId", ""))

    return send


# -- the component ------------------------------------------------------------------------------------------

class CloudwatchComponent:
    """Subscriptions (local pub/sub, and IoT Core with PubSubToIoTCore), status messages, the publisher thread."""

    def __init__(self, client: Any, settings: Settings, send: Send | None, core_name: str) -> None:
        self.client = client
        self.settings = settings
        self.core_name = core_name
        self.publisher = Publisher(settings.max_metrics, settings.publish_interval_s, send, self.publish_status)
        self.stop = threading.Event()
        self.refused = 0
        self._ops: list[Any] = []
        self._thread = threading.Thread(target=self.publisher.run, args=(self.stop,), name="cloudwatch-publisher",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        _, op = self.client.subscribe_to_topic(topic=self.settings.input_topic, on_stream_event=self._on_local,
                                               on_stream_error=self._on_stream_error)
        self._ops.append(op)
        if self.settings.pubsub_to_iot_core:
            from awsiot.greengrasscoreipc.model import QOS

            _, op = self.client.subscribe_to_iot_core(topic_name=self.settings.input_topic, qos=QOS.AT_MOST_ONCE,
                                                      on_stream_event=self._on_iot,
                                                      on_stream_error=self._on_stream_error)
            self._ops.append(op)

    def close(self) -> None:
        self.stop.set()
        self.publisher.wake()
        for op in self._ops:
            try:
                op.close()
            except Exception:
                pass
        self._thread.join(5)

    def _on_stream_error(self, error: Exception) -> bool:
        log.error("subscription error: %s", error)
        return False  # keep the stream open

    def _on_local(self, event: Any) -> None:
        if event.json_message is None:
            self._refuse(InvalidInput("the message must be a JSON message (PublishToTopic with jsonMessage)"))
            return
        self._take(event.json_message.message)

    def _on_iot(self, event: Any) -> None:
        try:
            message = json.loads(event.message.payload)
        except (ValueError, UnicodeDecodeError) as e:
            self._refuse(InvalidInput(f"the payload is not JSON: {e}"))
            return
        self._take(message)

    def _take(self, message: Any) -> None:
        try:
            namespace, datum = parse_request(message, time.time(), self.core_name)
        except InvalidInput as e:
            self._refuse(e)
            return
        self.publisher.add(namespace, datum)

    def _refuse(self, e: InvalidInput) -> None:
        self.refused += 1
        log.warning("refused a metric request: %s", e)
        # Not on the IPC thread that delivered it: a publish from a stream callback must not wait on that thread.
        threading.Thread(target=self.publish_status, args=(failure(INVALID_INPUT, str(e), e.namespace),),
                         daemon=True).start()

    def publish_status(self, status: dict[str, Any]) -> None:
        from awsiot.greengrasscoreipc.model import QOS, JsonMessage, PublishMessage

        topic = self.settings.output_topic
        try:
            self.client.publish_to_topic(topic=topic, publish_message=PublishMessage(
                json_message=JsonMessage(message=status)))
            if self.settings.pubsub_to_iot_core:
                self.client.publish_to_iot_core(topic_name=topic, qos=QOS.AT_LEAST_ONCE,
                                                payload=json.dumps(status).encode())
        except Exception as e:
            log.warning("status message to %s failed: %s", topic, e)


def main() -> int:
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2

    client = GreengrassCoreIPCClientV2()
    config = client.get_configuration().value or {}
    settings, warnings = load_settings(config, os.environ)
    for w in warnings:
        log.warning("%s", w)
    where = {None: "nowhere (publishing off)", AWS: "AWS (boto3's endpoint resolution)"}.get(
        settings.endpoint, settings.endpoint)
    log.info("%s stand-in: input %s, status %s, PublishInterval %d s, MaxMetricsToRetain %d, region %s, "
             "PubSubToIoTCore %s, CloudWatch at %s", CLOUDWATCH, settings.input_topic, settings.output_topic,
             settings.publish_interval_s, settings.max_metrics, settings.region, settings.pubsub_to_iot_core, where)
    component = CloudwatchComponent(client, settings, cloudwatch_sender(settings),
                                    os.environ.get("AWS_IOT_THING_NAME", ""))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    component.start()
    log.info("listening on %s%s", settings.input_topic, " (local and IoT Core)" if settings.pubsub_to_iot_core else "")
    stop.wait()
    component.close()
    client.close()
    log.info("%s stand-in stopped: %d metrics sent, %d requests refused", CLOUDWATCH, component.publisher.sent,
             component.refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
