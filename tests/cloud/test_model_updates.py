"""Automated model updates on moto's server (IAM enforced): storage.yaml and deploy/cloudformation/model-updates.yaml
deployed; a model registered with the real registry into the deployed bucket notifies the deployed queue (the
bucket's notification put exactly as the template declares it: moto's CloudFormation ignores it); SqsRunner stands
in for the mapping and calls cloud.model_updates; the component version and the rollout's deployments go to
greengrassv2 / iot clients under botocore's Stubber (moto has no GreengrassV2 backend): the Stubber checks every
request's parameters and every canned response against botocore's service models
(botocore/data/greengrassv2/2020-11-30/service-2.json, iot/2015-05-28), so a call the real API would refuse fails
the test.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber
from cloud_dev import template_doc, template_notifications
from harness import REPO, wait_until
from onnx_graphs import mean_color_model
from rollout_records import series
from stack_dev import REGION, TEMPLATES, AuthMoto, moto_template
from uplink_dev import aws_test_env

from cloud.model_updates import ENV_VARS, ModelUpdates, stage_budget_s
from cloud.runner import SqsRunner
from ggvision.contract import cloud as names
from model_registry.registry import Registry
from model_registry.storage import LocalStore, S3Store
from rollout.backends.aws import RecordedMetrics

PREFIX, ACCOUNT, MODEL, COMPONENT = "ggvision", "123456789012", "colors", "com.ggvision.Model.Colors"
DEV = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/ggv-dev"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    d = Path(tmp_path_factory.mktemp("updates"))
    aws_test_env()
    moto = AuthMoto(d / "moto.log")
    try:
        out = moto.deploy("ggvision-storage", moto_template(TEMPLATES / "storage.yaml"))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("cloud/model_updates.py", (REPO / "cloud" / "model_updates.py").read_text())
        moto.client("s3").put_object(Bucket=out["ArtifactsBucketName"], Key="cloud/model-updates.zip",
                                     Body=buf.getvalue())
        out.update(moto.deploy("ggvision-model-updates", moto_template(TEMPLATES / "model-updates.yaml")))
        # moto's CloudFormation ignores a bucket's VersioningConfiguration and NotificationConfiguration: put both
        # exactly as the template declares them
        bucket = template_doc(TEMPLATES / "model-updates.yaml")["Resources"]["ModelsBucket"]["Properties"]
        moto.client("s3").put_bucket_versioning(Bucket=out["ModelsBucketName"],
                                                VersioningConfiguration=bucket["VersioningConfiguration"])
        moto.client("s3").put_bucket_notification_configuration(
            Bucket=out["ModelsBucketName"], NotificationConfiguration=template_notifications(
                TEMPLATES / "model-updates.yaml", "ModelsBucket", {"UpdatesQueue": out["UpdatesQueueArn"]}))
        yield {"moto": moto, "dir": d, **out}
    finally:
        moto.stop()


def _rollout_yaml(path: Path, data_bucket: str, **top: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "backend": "aws", "baseline_s": 0, "poll_s": 0.05, "soak_s": 0, "deployment_timeout_s": 30,
        "stages": [{"name": "dev", "group": "ggv-dev"}, {"name": "staging", "group": "ggv-staging"}],
        "gates": {"min_samples": 2}, "components": {"com.ggvision.Inference": "0.1.0"},
        "aws": {"region": REGION, "account": ACCOUNT, "metrics": {"bucket": data_bucket}}, **top}))
    return path


class World:
    def __init__(self, stack: dict[str, Any], tmp_path: Path, mp: pytest.MonkeyPatch) -> None:
        moto: AuthMoto = stack["moto"]
        for k, v in {**moto.admin.env(), "AWS_ENDPOINT_URL": moto.url, "AWS_DEFAULT_REGION": REGION}.items():
            mp.setenv(k, v)
        fn = template_doc(TEMPLATES / "model-updates.yaml")["Resources"]["UpdatesFunction"]["Properties"]
        env = {"TABLE_NAME": stack["UpdatesTableName"], "REGISTRY_PREFIX": "",
               "COMPONENTS_BUCKET": stack["ArtifactsBucketName"],
               "ROLLOUT_CONFIG": str(_rollout_yaml(tmp_path / "rollout.yaml", stack["DataBucketName"])),
               "DLQ_URL": stack["UpdatesDeadLetterQueueUrl"], "FUNCTION_TIMEOUT_S": "900"}
        assert set(env) == set(ENV_VARS) == set(fn["Environment"]["Variables"])
        self.s3 = moto.client("s3")
        session = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name=REGION)
        self.gg, self.iot = session.client("greengrassv2"), session.client("iot")
        self.gg_stub, self.iot_stub = Stubber(self.gg), Stubber(self.iot)
        self.deployments: list[dict[str, Any]] = []
        self.gg.meta.events.register("provide-client-params.greengrassv2.CreateDeployment",
                                     lambda params, **_: self.deployments.append(params))
        clients = {"s3": self.s3, "greengrassv2": self.gg, "iot": self.iot}
        self.updates = ModelUpdates.from_env(env)
        self.updates.client_factory = lambda service, region: clients[service]
        self.updates.metrics = RecordedMetrics()
        self.runner = SqsRunner(moto.client("sqs"), stack["UpdatesQueueUrl"], self.updates.handle,
                                visibility_timeout=1, wait_s=0)
        self.registry = Registry(S3Store(stack["ModelsBucketName"], client=self.s3))
        # a session of its own: boto3's default one keeps the credentials it resolved first (an earlier test's)
        self.table = boto3.session.Session().resource("dynamodb").Table(stack["UpdatesTableName"])
        self.sqs, self.stack = moto.client("sqs"), stack

    def register(self, tmp_path: Path, version: str) -> None:
        model = tmp_path / f"m-{version}.onnx"
        model.write_bytes(mean_color_model(3, 32).SerializeToString())
        self.registry.register(model, name=MODEL, version=version, family="classification",
                               labels=["blue", "green", "red"], input_overrides={"color": "BGR"})

    def item(self, version: str) -> dict[str, Any]:
        return self.table.get_item(Key={names.UPDATE_KEY: f"{MODEL}#{version}"}).get("Item", {})

    def until(self, version: str, *statuses: str) -> dict[str, Any]:
        def step() -> dict[str, Any] | None:
            self.runner.poll_once()
            it = self.item(version)
            return it if it.get(names.UPDATE_STATUS) in statuses else None

        return wait_until(step, 40, interval=0.1, what=f"{MODEL} {version}: {statuses}")

    def expect_publish(self, version: str) -> None:
        self.gg_stub.add_response("create_component_version", {
            "arn": f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{COMPONENT}:versions:{version}",
            "componentName": COMPONENT, "componentVersion": version, "creationTimestamp": dt.datetime(2026, 1, 1),
            "status": {"componentState": "REQUESTED"}}, {"inlineRecipe": ANY})

    def expect_dev_rollout(self, version: str, state: str = "SUCCEEDED") -> None:
        """The engine's calls for a first version at dev (no canary, no previous deployment): the group's
        current deployment, its devices, the deployment, the device's report."""
        self.gg_stub.add_response("list_deployments", {"deployments": []},
                                  {"targetArn": DEV, "historyFilter": "LATEST_ONLY"})
        self.iot_stub.add_response("list_things_in_thing_group", {"things": ["box-a"]}, {"thingGroupName": "ggv-dev"})
        self.gg_stub.add_response("create_deployment", {"deploymentId": "dep-1", "iotJobId": "job-1"})
        self.gg_stub.add_response("list_effective_deployments", {"effectiveDeployments": [{
            "deploymentId": "dep-1", "deploymentName": "x", "iotJobId": "job-1", "targetArn": DEV,
            "coreDeviceExecutionStatus": state, "creationTimestamp": dt.datetime(2026, 1, 1),
            "modifiedTimestamp": dt.datetime(2026, 1, 1)}]}, {"coreDeviceThingName": "box-a"})
        self.gg_stub.add_response("list_installed_components", {"installedComponents": [
            {"componentName": COMPONENT, "componentVersion": version, "lifecycleState": "RUNNING"}]},
            {"coreDeviceThingName": "box-a"})


@pytest.fixture
def world(stack: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    return World(stack, tmp_path, monkeypatch)


def test_the_stack_is_named_by_the_contract(stack: dict[str, Any]) -> None:
    assert stack["ModelsBucketName"] == names.models_bucket_name(PREFIX, REGION, ACCOUNT)
    assert stack["UpdatesQueueUrl"].endswith("/" + names.updates_queue_name(PREFIX))
    assert stack["UpdatesDeadLetterQueueUrl"].endswith("/" + names.updates_dlq_name(PREFIX))
    assert stack["UpdatesTableName"] == names.updates_table_name(PREFIX)
    doc = template_doc(TEMPLATES / "model-updates.yaml")
    res = doc["Resources"]
    assert res["ModelsBucket"]["DependsOn"] == "UpdatesQueuePolicy"
    assert res["ModelsBucket"]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = template_notifications(TEMPLATES / "model-updates.yaml", "ModelsBucket", {"UpdatesQueue": "q"},
                                   {"RegistryPrefix": "reg/"})["QueueConfigurations"][0]["Filter"]["Key"]["FilterRules"]
    assert rules == [{"Name": "prefix", "Value": "reg/"}, {"Name": "suffix", "Value": names.MODEL_TRIGGER_SUFFIX}]
    mapping = res["UpdatesEventSource"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"] and mapping["BatchSize"] == 1
    assert res["UpdatesFunction"]["Properties"]["Handler"] == "cloud.model_updates.handler"


def test_a_registered_version_becomes_a_component_and_passes_dev(world: World, tmp_path: Path) -> None:
    now = time.time()
    world.updates.metrics.summaries = series("box-a", "1.0.0", 3, t0=now + 5, model=MODEL)
    world.expect_publish("1.0.0")
    world.expect_dev_rollout("1.0.0")
    with world.gg_stub, world.iot_stub:
        world.register(tmp_path, "1.0.0")  # the real registry: model.onnx, then manifest.json (the trigger)
        item = world.until("1.0.0", names.PASSED, names.ROLLED_BACK, names.REFUSED)
        world.gg_stub.assert_no_pending_responses()
        world.iot_stub.assert_no_pending_responses()
    assert item[names.UPDATE_STATUS] == names.PASSED, item
    assert item[names.UPDATE_COMPONENT] == COMPONENT and item[names.UPDATE_STAGE] == "dev"
    assert item[names.UPDATE_COMPONENT_ARN].endswith(f":components:{COMPONENT}:versions:1.0.0")
    [dep] = world.deployments
    assert dep["targetArn"] == DEV and dep["components"][COMPONENT] == {"componentVersion": "1.0.0"}
    rollout = json.loads(item[names.UPDATE_ROLLOUT])
    assert rollout["status"] == "succeeded" and rollout["stage"] == "dev"
    assert [e["event"] for e in rollout["events"]][-2:] == ["gates_passed", "passed"]
    # the artifacts went to the components bucket with the recipe's digests (model_registry.publish)
    keys = [o["Key"] for o in world.s3.list_objects_v2(Bucket=world.stack["ArtifactsBucketName"],
                                                         Prefix=f"{COMPONENT}/1.0.0/")["Contents"]]
    assert sorted(keys) == [f"{COMPONENT}/1.0.0/manifest.json", f"{COMPONENT}/1.0.0/model.onnx"]
    # the same notification again (redelivery): nothing is published or deployed twice (no stubbed responses left)
    body = json.dumps({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": world.stack["ModelsBucketName"]}, "object": {"key": f"{MODEL}/1.0.0/manifest.json",
                                                                     "size": 10}}}]})
    with world.gg_stub, world.iot_stub:
        assert world.updates.handle({"Records": [{"messageId": "m1", "body": body}]}) == {"batchItemFailures": []}
    assert world.item("1.0.0")[names.UPDATE_STATUS] == names.PASSED


def test_a_version_that_fails_validation_stops_with_its_reason(world: World, tmp_path: Path) -> None:
    # a version whose model is not the one its manifest describes (altered after registration)
    model = tmp_path / "m.onnx"
    model.write_bytes(mean_color_model(3, 32).SerializeToString())
    manifest, _ = Registry(LocalStore(tmp_path / "store")).register(
        model, name=MODEL, version="3.0.0", family="classification", labels=["blue", "green", "red"],
        input_overrides={"color": "BGR"})
    bucket = world.stack["ModelsBucketName"]
    world.s3.put_object(Bucket=bucket, Key=f"{MODEL}/3.0.0/model.onnx", Body=b"not the registered bytes")
    world.s3.put_object(Bucket=bucket, Key=f"{MODEL}/3.0.0/manifest.json",
                        Body=json.dumps(manifest.to_dict()).encode())
    with world.gg_stub, world.iot_stub:  # no responses: any greengrassv2 or iot call fails the test
        item = world.until("3.0.0", names.REFUSED, names.RETRYING, names.PASSED)
    assert item[names.UPDATE_STATUS] == names.REFUSED
    assert "sha256" in item[names.UPDATE_REASON] and "altered" in item[names.UPDATE_REASON], item
    assert world.deployments == []
    # refused is final: not retried, not a dead letter
    assert not world.sqs.receive_message(QueueUrl=world.stack["UpdatesDeadLetterQueueUrl"]).get("Messages")


def test_a_failed_gate_rolls_dev_back_and_records_the_engines_reason(world: World, tmp_path: Path) -> None:
    world.updates.metrics.summaries = series("box-a", "5.0.0", 3, t0=time.time() + 5, model=MODEL, error_ratio=0.3)
    world.expect_publish("5.0.0")
    world.expect_dev_rollout("5.0.0")
    # the engine's rollback: the group's previous revision (none: the configuration's components), then it checks
    # that no device runs the candidate
    world.gg_stub.add_response("create_deployment", {"deploymentId": "dep-2", "iotJobId": "job-2"})
    world.iot_stub.add_response("list_things_in_thing_group", {"things": ["box-a"]}, {"thingGroupName": "ggv-dev"})
    for _ in range(2):
        world.gg_stub.add_response("list_effective_deployments", {"effectiveDeployments": [{
            "deploymentId": "dep-2", "deploymentName": "x", "iotJobId": "job-2", "targetArn": DEV,
            "coreDeviceExecutionStatus": "SUCCEEDED", "creationTimestamp": dt.datetime(2026, 1, 1),
            "modifiedTimestamp": dt.datetime(2026, 1, 1)}]}, {"coreDeviceThingName": "box-a"})
        world.gg_stub.add_response("list_installed_components", {"installedComponents": []},
                                   {"coreDeviceThingName": "box-a"})
    with world.gg_stub, world.iot_stub:
        world.register(tmp_path, "5.0.0")
        item = world.until("5.0.0", names.PASSED, names.ROLLED_BACK, names.REFUSED)
        world.gg_stub.assert_no_pending_responses()
    assert item[names.UPDATE_STATUS] == names.ROLLED_BACK
    assert item[names.UPDATE_REASON].startswith("box-a: inference error ratio 0.3 > 0.01"), item
    assert [d["components"].get(COMPONENT) for d in world.deployments] == [{"componentVersion": "5.0.0"}, None]


def test_a_throttled_publish_is_retried_and_then_goes_on(world: World, tmp_path: Path) -> None:
    world.updates.metrics.summaries = series("box-a", "4.0.0", 3, t0=time.time() + 5, model=MODEL)
    world.gg_stub.add_client_error("create_component_version", service_error_code="ThrottlingException",
                                   service_message="Rate exceeded", http_status_code=429)
    world.expect_publish("4.0.0")
    world.expect_dev_rollout("4.0.0")
    with world.gg_stub, world.iot_stub:
        world.register(tmp_path, "4.0.0")
        first = world.until("4.0.0", names.RETRYING, names.PASSED)
        assert first[names.UPDATE_STATUS] == names.RETRYING and "ThrottlingException" in first[names.UPDATE_REASON]
        item = world.until("4.0.0", names.PASSED, names.ROLLED_BACK)  # the next receive, after the visibility
        world.gg_stub.assert_no_pending_responses()
    assert item[names.UPDATE_STATUS] == names.PASSED and item[names.UPDATE_ATTEMPTS] == 2


def test_a_first_stage_longer_than_the_function_may_run_is_refused_at_start(tmp_path: Path) -> None:
    path = _rollout_yaml(tmp_path / "rollout.yaml", "data", soak_s=600, deployment_timeout_s=900)
    env = {"TABLE_NAME": "t", "COMPONENTS_BUCKET": "c", "ROLLOUT_CONFIG": str(path), "FUNCTION_TIMEOUT_S": "900"}
    with pytest.raises(RuntimeError, match=r"stage dev may take 2400 s .* more than the function's 900 s timeout"):
        ModelUpdates.from_env(env)
    from rollout.config import load_config

    assert stage_budget_s(load_config(_rollout_yaml(tmp_path / "short.yaml", "data", soak_s=120,
                                                    deployment_timeout_s=300))) == 120 + 600


def test_docs_name_what_the_code_uses() -> None:
    doc = (REPO / "docs" / "cloud.md").read_text().split("## Automated model updates")[1].split("\n## ")[0]
    for name in (*names.UPDATE_STATUSES, names.UPDATE_COMPONENT, names.UPDATE_COMPONENT_ARN, names.UPDATE_ROLLOUT,
                 names.UPDATE_ATTEMPTS, names.UPDATE_REASON, names.MODEL_TRIGGER_SUFFIX, "cloud.model_updates.handler",
                 "ReportBatchItemFailures", "Stubber", "service-2.json"):
        assert name in doc, f"docs/cloud.md's model-updates section does not name {name}"
    for template in (names.MODELS_BUCKET_TEMPLATE, names.UPDATES_QUEUE_TEMPLATE, names.UPDATES_DLQ_TEMPLATE,
                     names.UPDATES_TABLE_TEMPLATE):
        assert template in doc, template
