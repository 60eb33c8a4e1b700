"""The runtime's stand-in for the AWS-provided `aws.greengrass.Cloudwatch` component (gglocal/components).

What it must reproduce is the component's documentation: the developer guide page "CloudWatch metrics"
(https://docs.aws.amazon.com/greengrass/v2/developerguide/cloudwatch-metrics-component.html), sections
Configuration (v3.x), Input data and Output data; where the page is silent, the component's published source
(github aws-greengrass/aws-greengrass-cloudwatch-metrics, tag v3.2.0: src/request.py, src/metric/publisher.py,
src/cloudwatch_metric_connector.py). The batching policy is checked as pure logic; PutMetricData goes to moto's
CloudWatch server over HTTP with boto3; the component itself runs under `ggvision nucleus`, reached with the real
IPC client (the test agent), and its metrics are read back with boto3.
"""

from __future__ import annotations

import base64
import datetime
import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from harness import Runtime, wait_until

from gglocal.components import CLOUDWATCH, CLOUDWATCH_INPUT, CLOUDWATCH_OUTPUT, provided_recipes
from gglocal.components.cloudwatch import (
    AWS,
    BATCH_SIZE,
    InvalidInput,
    MetricBuffer,
    Publisher,
    Retry,
    SendFailed,
    Settings,
    cloudwatch_sender,
    load_settings,
    parse_request,
)
from ggvision.contract import topics

AGENT = "com.ggvision.test.Agent"
NOW = 1_795_000_000.0
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}

# The "Example input" of the guide's Input data section.
GUIDE_EXAMPLE = {"request": {"namespace": "Greengrass", "metricData": {
    "metricName": "latency", "dimensions": [{"name": "hostname", "value": "test_hostname"}],
    "timestamp": 1539027324, "value": 123.0, "unit": "Seconds"}}}


def request(namespace: str = "ggvision-test", **data: Any) -> dict[str, Any]:
    return {"request": {"namespace": namespace, "metricData": {"metricName": "m", "value": 1.0, **data}}}


def test_the_contract_names_the_components_default_topics() -> None:
    """Health publishes where the component listens by default (guide: Input data / Output data, default topics)."""
    assert topics.CLOUDWATCH_PUT == CLOUDWATCH_INPUT == "cloudwatch/metric/put"
    assert topics.CLOUDWATCH_STATUS == CLOUDWATCH_OUTPUT == "cloudwatch/metric/put/status"
    defaults = provided_recipes("/usr/bin/python3")[CLOUDWATCH]["ComponentConfiguration"]["DefaultConfiguration"]
    assert defaults["InputTopic"] == topics.CLOUDWATCH_PUT and defaults["OutputTopic"] == topics.CLOUDWATCH_STATUS
    policies = defaults["accessControl"]["aws.greengrass.ipc.pubsub"]
    assert policies[f"{CLOUDWATCH}:pubsub:1"]["resources"] == [topics.CLOUDWATCH_PUT]
    assert policies[f"{CLOUDWATCH}:pubsub:2"]["resources"] == [topics.CLOUDWATCH_STATUS]


# -- input (guide: Input data) ------------------------------------------------------------------------------

def test_the_guides_example_input_becomes_a_metric_datum_with_core_name() -> None:
    namespace, datum = parse_request(GUIDE_EXAMPLE, 1539027324 + 5, "box-1")
    assert namespace == "Greengrass"
    assert datum == {"MetricName": "latency", "Value": 123.0, "Unit": "Seconds", "Timestamp": 1539027324.0,
                     "Dimensions": [{"Name": "hostname", "Value": "test_hostname"},
                                    {"Name": "coreName", "Value": "box-1"}]}
    # timestamp defaults to when it arrives; unit to Count (the component's code; the guide says None)
    _, datum = parse_request(request(), NOW, "box-1")
    assert datum["Timestamp"] == NOW and datum["Unit"] == "Count"
    assert datum["Dimensions"] == [{"Name": "coreName", "Value": "box-1"}]
    # up to 10 dimensions of its own (v3.2.x), 0 is a valid value, integers are doubles
    dims = [{"name": f"d{i}", "value": "v"} for i in range(10)]
    _, datum = parse_request(request(value=0, dimensions=dims), NOW, "box-1")
    assert datum["Value"] == 0.0 and len(datum["Dimensions"]) == 11


MALFORMED = [
    ("a list", ["request"], "JSON object"),
    ("no request", {"metricData": {}}, "(request) is absent"),
    ("request not an object", {"request": "x"}, "(request) must be an object"),
    ("no namespace", {"request": {"metricData": {"metricName": "m", "value": 1}}}, "(namespace) is absent"),
    ("reserved namespace", request("AWS/EC2"), "reserved 'AWS/'"),
    ("namespace with a colon first", request(":x"), "[^:].*"),
    ("no metricData", {"request": {"namespace": "n"}}, "(metricData) is absent"),
    ("metricData a list", {"request": {"namespace": "n", "metricData": [{"metricName": "m", "value": 1}]}},
     "(metricData) must be an object"),
    ("no metricName", {"request": {"namespace": "n", "metricData": {"value": 1}}}, "(metricName) is absent"),
    ("no value", {"request": {"namespace": "n", "metricData": {"metricName": "m"}}}, "(value) is absent"),
    ("value a string", request(value="12"), "(value) must be a number"),
    ("value a boolean", request(value=True), "(value) must be a number"),
    ("value too large", request(value=1e300), "magnitude"),
    ("value too small", request(value=1e-200), "magnitude"),
    ("value infinite", request(value=math.inf), "magnitude"),
    ("unknown unit", request(unit="Percents"), "(unit) must be one of"),
    ("timestamp a string", request(timestamp="2026-11-18T11:00:00Z"), "(timestamp) must be a number"),
    ("timestamp too old", request(timestamp=NOW - 15 * 86400), "14 days"),
    ("timestamp too far ahead", request(timestamp=NOW + 3 * 3600), "2 hours"),
    ("dimensions an object", request(dimensions={"name": "a", "value": "b"}), "(dimensions) must be a list"),
    ("11 dimensions", request(dimensions=[{"name": f"d{i}", "value": "v"} for i in range(11)]), "more than 10"),
    ("dimension without a value", request(dimensions=[{"name": "a"}]), "dimensions[0] needs a name and a value"),
    ("empty dimension value", request(dimensions=[{"name": "a", "value": ""}]), "dimensions[0].value"),
]


@pytest.mark.parametrize(("why", "message", "says"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_input_is_refused_naming_the_field(why: str, message: Any, says: str) -> None:
    with pytest.raises(InvalidInput) as e:
        parse_request(message, NOW, "box-1")
    assert says in str(e.value), (why, str(e.value))


# -- configuration (guide: Configuration, v3.x) ---------------------------------------------------------------

def test_configuration_defaults_clamps_and_endpoint() -> None:
    s, warnings = load_settings({}, {})
    assert (s.publish_interval_s, s.max_metrics, s.input_topic, s.output_topic) == (
        10, 5000, "cloudwatch/metric/put", "cloudwatch/metric/put/status")
    assert not s.pubsub_to_iot_core and s.endpoint is None and warnings == []  # no endpoint: publishing off
    s, warnings = load_settings({"PublishInterval": "1200", "MaxMetricsToRetain": 10, "PubSubToIoTCore": "True",
                                 "PublishRegion": "eu-west-1"}, {"AWS_DEFAULT_REGION": "us-east-1"})
    assert (s.publish_interval_s, s.max_metrics, s.pubsub_to_iot_core, s.region) == (900, 2000, True, "eu-west-1")
    assert len(warnings) == 2 and "900" in warnings[0] and "2000" in warnings[1]
    s, warnings = load_settings({"PublishInterval": "often", "MaxMetricsToRetain": -1}, {"AWS_REGION": "ap-south-1"})
    assert (s.publish_interval_s, s.max_metrics, s.region) == (10, 2000, "ap-south-1") and len(warnings) == 2
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_CLOUDWATCH"):  # boto3 reads them itself
        assert load_settings({}, {var: "http://127.0.0.1:5000"})[0].endpoint == AWS
    assert load_settings({"EndpointUrl": "http://h:1"}, {})[0].endpoint == "http://h:1"
    assert load_settings({"EndpointUrl": "AWS"}, {})[0].endpoint == AWS


# -- buffering and batching (guide: PublishInterval, MaxMetricsToRetain; Output data) -------------------------

def datum(t: float, name: str = "m") -> dict[str, Any]:
    return {"MetricName": name, "Value": 1.0, "Unit": "Count", "Timestamp": t, "Dimensions": []}


def test_a_full_buffer_replaces_the_oldest_metric_of_the_same_namespace() -> None:
    b = MetricBuffer(3)
    for t in (3.0, 1.0, 2.0):
        assert b.add("a", datum(t))
    assert b.add("a", datum(4.0)) and b.replaced == 1  # 1.0, the oldest timestamp, made room
    assert not b.add("b", datum(5.0)) and b.dropped == 1  # "b" holds nothing to replace
    assert [d["Timestamp"] for d in b.take("a", 10)] == [2.0, 3.0, 4.0] and b.total == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Recorder:
    """A send function that records its batches (the real one is exercised against moto below)."""

    def __init__(self) -> None:
        self.batches: list[tuple[str, int]] = []
        self.fail: Exception | None = None

    def __call__(self, namespace: str, batch: list[dict[str, Any]]) -> str:
        if self.fail is not None:
            raise self.fail
        self.batches.append((namespace, len(batch)))
        return f"rid-{len(self.batches)}"


def test_batches_per_namespace_at_20_metrics_or_each_interval() -> None:
    clock, send, statuses = Clock(), Recorder(), []
    p = Publisher(5000, 10, send, statuses.append, clock)
    for i in range(BATCH_SIZE - 1):
        p.add("a", datum(i))
    p.add("b", datum(1))
    p.step(0)
    assert send.batches == []
    p.add("a", datum(19))
    p.step(0)  # the 20th metric of "a": its batch goes at once
    assert send.batches == [("a", 20)]
    for i in range(5):
        p.add("a", datum(20 + i))
    p.step(0)  # the rest waits for the interval
    assert send.batches == [("a", 20)]
    clock.now += 9.9
    p.step(0)
    assert send.batches == [("a", 20)]
    clock.now += 0.2  # 10 s after each namespace's first metric
    p.step(0)
    assert sorted(send.batches[1:]) == [("a", 5), ("b", 1)]
    assert statuses[0] == {"response": {"cloudwatch_rid": "rid-1", "namespace": "a", "status": "success"}, "id": ""}
    assert p.sent == 26


def test_interval_zero_publishes_as_received_and_connection_errors_retry() -> None:
    clock, send, statuses = Clock(), Recorder(), []
    p = Publisher(5000, 0, send, statuses.append, clock)
    send.fail = Retry("connection refused")
    p.add("a", datum(1))
    p.step(0)
    assert send.batches == [] and statuses == [] and p.buffer.size("a") == 1  # kept for the next batch
    send.fail = None
    p.add("a", datum(2))
    p.step(0)
    assert send.batches == [("a", 2)] and statuses[-1]["response"]["status"] == "success"


def test_a_refused_batch_is_answered_with_the_documented_failure() -> None:
    clock, send, statuses = Clock(), Recorder(), []
    p = Publisher(5000, 0, send, statuses.append, clock)
    send.fail = SendFailed("InvalidParameterValue", "The value NaN for parameter MetricData.member.1.Value")
    p.add("a", datum(1))
    p.step(0)
    assert statuses == [{"response": {"error": "InvalidParameterValue", "status": "fail", "namespace": "a",
                                      "error_message": "The value NaN for parameter MetricData.member.1.Value"},
                         "id": ""}]
    assert p.buffer.size("a") == 0  # not retried: CloudWatch refused it


def test_without_an_endpoint_nothing_is_sent() -> None:
    statuses: list[Any] = []
    p = Publisher(5000, 0, None, statuses.append, Clock())
    p.add("a", datum(1))
    p.step(0)
    assert p.unsent == 1 and p.sent == 0 and statuses == []


# -- PutMetricData through boto3 to moto's server -----------------------------------------------------------

def test_the_sender_puts_metric_data_and_classifies_errors(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    send = cloudwatch_sender(Settings(region="us-east-1", endpoint=moto_url))
    assert send is not None and cloudwatch_sender(Settings()) is None
    _, d = parse_request(request("sender-test", metricName="Lat", value=5.0, unit="Milliseconds"), _now(), "box-9")
    assert send("sender-test", [d])  # CloudWatch's RequestId
    cw = _cloudwatch(moto_url)
    assert cw.list_metrics(Namespace="sender-test")["Metrics"] == [
        {"Namespace": "sender-test", "MetricName": "Lat", "Dimensions": [{"Name": "coreName", "Value": "box-9"}]}]
    with pytest.raises(SendFailed) as e:  # what CloudWatch refuses is a failure, not retried
        send("sender-test", [{**d, "Value": math.nan}])
    assert e.value.error == "InvalidParameterValue"
    dead = cloudwatch_sender(Settings(region="us-east-1", endpoint="http://127.0.0.1:9"))
    assert dead is not None
    with pytest.raises(Retry):  # a connection error is retried with the next batch
        dead("sender-test", [d])


def _now() -> float:
    return time.time()


def _cloudwatch(url: str) -> Any:
    return boto3.client("cloudwatch", endpoint_url=url, region_name="us-east-1", **{
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing"})


# -- under the runtime ----------------------------------------------------------------------------------------

def _agent_recipe(doc: dict[str, Any]) -> None:
    """The test agent as a component that uses the CloudWatch component: it depends on it (as the ggvision suite
    does) and may publish requests and read the status answers (guide: the component's default accessControl
    names exactly these topics)."""
    doc["ComponentDependencies"] = {CLOUDWATCH: {"VersionRequirement": ">=3.2.0 <4.0.0", "DependencyType": "SOFT"}}
    doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"] = {"aws.greengrass.ipc.pubsub": {
        f"{AGENT}:pubsub:1": {"operations": ["aws.greengrass#PublishToTopic"], "resources": [CLOUDWATCH_INPUT]},
        f"{AGENT}:pubsub:2": {"operations": ["aws.greengrass#SubscribeToTopic"], "resources": [CLOUDWATCH_OUTPUT]},
        f"{AGENT}:pubsub:3": {"operations": ["aws.greengrass#PublishToTopic", "aws.greengrass#SubscribeToTopic"],
                              "resources": ["test/*"]}},
        "aws.greengrass.Cli": {f"{AGENT}:cli:1": {"operations": ["aws.greengrass#ListComponents"],
                                                   "resources": ["*"]}}}


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory, moto_url: str) -> Iterator[Runtime]:
    """A runtime whose only deployed recipe depends on aws.greengrass.Cloudwatch and gives no recipe for it: the
    runtime supplies the stand-in (default configuration; CloudWatch found through AWS_ENDPOINT_URL)."""
    rt = Runtime(tmp_path_factory.mktemp("cloudwatch"), [])
    try:
        rt.write_component(AGENT, edit=_agent_recipe)
        with pytest.MonkeyPatch.context() as env:  # the runtime passes its environment on to components
            for k, v in {**CREDENTIALS, "AWS_ENDPOINT_URL": moto_url}.items():
                env.setenv(k, v)
            rt.launch()
        rt.wait_state(CLOUDWATCH, "RUNNING", 60)
        rt.wait_state(AGENT, "RUNNING", 60)
        # RUNNING is when its Run step started (as on a device); requests count once it has subscribed
        wait_until(lambda: f"listening on {CLOUDWATCH_INPUT}" in rt.log(CLOUDWATCH), 30, what="the subscription")
        yield rt
    finally:
        rt.cleanup()


def test_a_dependency_on_the_aws_component_gets_the_stand_in(standin: Runtime) -> None:
    rt = standin
    listed = {c.component_name: c for c in rt.client.list_components().components}
    assert listed[CLOUDWATCH].version == "3.2.0" and listed[CLOUDWATCH].state == "RUNNING"
    details = rt.client.get_component_details(component_name=CLOUDWATCH).component_details
    assert details.configuration["InputTopic"] == "cloudwatch/metric/put"
    assert details.configuration["PublishInterval"] == 10 and details.configuration["MaxMetricsToRetain"] == 5000
    assert "PublishInterval 10 s" in rt.log(CLOUDWATCH)


def test_malformed_requests_get_failure_statuses_and_the_component_keeps_running(standin: Runtime,
                                                                                 moto_url: str) -> None:
    """Each malformed request is answered on cloudwatch/metric/put/status with the guide's failure shape
    (Output data: {"response": {"error", "error_message", "status": "fail", "namespace"?}}); then 20 good ones
    in a namespace go out at once as one PutMetricData (guide, PublishInterval: "after it receives 20 metrics in
    the same namespace"), answered with the success shape, and moto has them with their dimensions."""
    rt = standin
    a = rt.agent()
    a.call("subscribe", id="status", topic=CLOUDWATCH_OUTPUT)
    bad = [request("runtime-test", value="high"), {"request": {"namespace": "runtime-test"}},
           request("AWS/EC2"), request("runtime-test", unit="Percents")]
    for message in bad:
        a.call("publish_json", topic=CLOUDWATCH_INPUT, message=message)
    a.call("publish_binary", topic=CLOUDWATCH_INPUT, b64=base64.b64encode(b'{"request": {}}').decode())
    answers = a.call("events", id="status", count=len(bad) + 1, timeout=20)
    assert len(answers) == len(bad) + 1, answers
    responses = [e["json"]["response"] for e in answers]
    for r in responses:
        assert r["status"] == "fail" and r["error"] == "InvalidInputException" and r["error_message"], r
    said = " | ".join(r["error_message"] for r in responses)
    for field in ("(value)", "(metricData)", "'AWS/'", "(unit)", "JSON message"):
        assert field in said, said
    assert {r.get("namespace") for r in responses} == {"runtime-test", "AWS/EC2", None}
    assert rt.state(CLOUDWATCH) == "RUNNING"

    for i in range(BATCH_SIZE):
        a.call("publish_json", topic=CLOUDWATCH_INPUT, message=request(
            "runtime-test", metricName=f"m{i % 2}", value=float(i), unit="Percent",
            dimensions=[{"name": "camera", "value": "door"}]))
    answers = a.call("events", id="status", count=len(bad) + 2, timeout=20)  # before PublishInterval (10 s) ends
    ok = answers[len(bad) + 1]["json"]
    assert ok["response"]["status"] == "success" and ok["response"]["namespace"] == "runtime-test"
    assert ok["response"]["cloudwatch_rid"]
    cw = _cloudwatch(moto_url)
    metrics = cw.list_metrics(Namespace="runtime-test")["Metrics"]
    assert {m["MetricName"] for m in metrics} == {"m0", "m1"}  # moto lists a metric once per datapoint
    dims = [{"Name": "camera", "Value": "door"}, {"Name": "coreName", "Value": "test-thing"}]
    assert all(sorted(m["Dimensions"], key=lambda d: d["Name"]) == dims for m in metrics)
    now = datetime.datetime.now(datetime.timezone.utc)
    out = cw.get_metric_data(MetricDataQueries=[{"Id": "q", "MetricStat": {"Metric": {
        "Namespace": "runtime-test", "MetricName": "m1", "Dimensions": dims}, "Period": 60, "Stat": "SampleCount"}}],
        StartTime=now - datetime.timedelta(minutes=5), EndTime=now + datetime.timedelta(minutes=1))
    assert sum(out["MetricDataResults"][0]["Values"]) == BATCH_SIZE / 2
    assert rt.state(CLOUDWATCH) == "RUNNING" and rt.log(CLOUDWATCH).count("stand-in: input") == 1  # never restarted


def test_a_recipe_of_the_same_name_replaces_the_stand_in(tmp_path: Path) -> None:
    """The stand-in is offered only when no recipe of that name was given (the runtime has no public catalogue)."""
    from gglocal.nucleus.deployments import DeploymentManager
    from gglocal.nucleus.kernel import Kernel, KernelOptions
    from gglocal.nucleus.recipeparser import parse_recipe

    kernel = Kernel(KernelOptions(root=tmp_path / "root", iot=False, console=False), DeploymentManager)
    offered = {(r.name, r.version) for r in kernel.available_recipes()}
    assert (CLOUDWATCH, "3.2.0") in offered
    own = {"RecipeFormatVersion": "2020-01-25", "ComponentName": CLOUDWATCH, "ComponentVersion": "3.2.1",
           "Manifests": [{"Platform": {"os": "linux"}, "Lifecycle": {"Run": "true"}}]}
    kernel.recipes.add_text(parse_recipe(own), json.dumps(own))
    assert [r.version for r in kernel.available_recipes() if r.name == CLOUDWATCH] == ["3.2.1"]
    kernel.hub.close()


def test_pubsub_to_iot_core_takes_requests_from_iot_core_and_answers_there(tmp_path: Path, moto_url: str,
                                                                           mosquitto_available: None) -> None:
    """PubSubToIoTCore "true" (guide, Configuration): the component also subscribes to InputTopic on IoT Core and
    publishes its status there too. Deployed by name with a configuration and no recipe; `EndpointUrl` (the
    runtime's own key) points it at moto; PublishInterval 0 sends each metric as it arrives."""

    def agent(doc: dict[str, Any]) -> None:
        doc["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"] = {"aws.greengrass.ipc.mqttproxy": {
            f"{AGENT}:mqtt:1": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": [CLOUDWATCH_INPUT]},
            f"{AGENT}:mqtt:2": {"operations": ["aws.greengrass#SubscribeToIoTCore"],
                                "resources": [CLOUDWATCH_OUTPUT]}}}

    rt = Runtime(tmp_path, [], iot=True)
    try:
        rt.write_component(AGENT, edit=agent)
        with pytest.MonkeyPatch.context() as env:
            for k, v in CREDENTIALS.items():
                env.setenv(k, v)
            rt.launch()
        rt.wait_state(AGENT, "RUNNING", 60)
        d = rt.deploy(root_component_versions_to_add={CLOUDWATCH: "3.2.0"}, component_to_configuration={
            CLOUDWATCH: {"MERGE": {"PubSubToIoTCore": "true", "PublishInterval": "0", "EndpointUrl": moto_url}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: "listening on cloudwatch/metric/put (local and IoT Core)" in rt.log(CLOUDWATCH), 30,
                   what="the IoT Core subscription")
        a = rt.agent()
        a.call("subscribe_iot", id="status", topic=CLOUDWATCH_OUTPUT)
        a.call("publish_iot", topic=CLOUDWATCH_INPUT, b64=base64.b64encode(b"not json").decode())
        good = request("iot-test", metricName="FromIoT", value=7.0, unit="Count")
        a.call("publish_iot", topic=CLOUDWATCH_INPUT, b64=base64.b64encode(json.dumps(good).encode()).decode())
        answers = [json.loads(base64.b64decode(e["b64"])) for e in a.call("events", id="status", count=2,
                                                                            timeout=30)]
        by_status = {r["response"]["status"]: r["response"] for r in answers}
        assert set(by_status) == {"fail", "success"}, answers
        fail = by_status["fail"]
        assert fail["error"] == "InvalidInputException" and "not JSON" in fail["error_message"]
        assert by_status["success"]["namespace"] == "iot-test" and by_status["success"]["cloudwatch_rid"]
        metrics = _cloudwatch(moto_url).list_metrics(Namespace="iot-test")["Metrics"]
        assert [m["MetricName"] for m in metrics] == ["FromIoT"]
    finally:
        rt.cleanup()
