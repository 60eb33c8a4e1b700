"""AWS backend: a promote and an automatic rollback against Stubber'd greengrassv2/iot clients (every request is
validated against botocore's service model; moto has no GreengrassV2), metrics from recorded summaries or from
the S3 archive on moto's server over HTTP.

The canary is a subdeployment (parentTargetArn = the stage group): a core device applies a subdeployment on behalf
of its parent group, replacing that group's deployment (nucleus DeploymentDocument.getGroupName, "For sub-group
deployments root group name is used"; DG "Create subdeployments", nucleus >= 2.9.0), whereas a deployment of the
canary group's own would be resolved together with the stage group's and fail on the model's two pinned versions
(DG "Deploy AWS IoT Greengrass components to devices", component dependency resolution; API
ResolveComponentCandidates). So a promote refuses, before deploying anything, a canary group that holds a deployment
of its own, canary devices outside the stage group and canary devices on a nucleus older than 2.9.0 (GetCoreDevice
coreVersion); the rollback of a canary is a subdeployment too."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from rich.console import Console
from rollout_records import series, summary

from rollout.backends.aws import AwsBackend, RecordedMetrics, S3MetricsSource
from rollout.config import parse_config
from rollout.engine import Engine, RolloutError
from rollout.state import StateFile

REGION, ACCOUNT = "eu-west-1", "123456789012"
MODEL, COMPONENT = "detector", "com.ggvision.Model.Detector"
DEV = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/ggv-dev"
CANARY = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/ggv-dev-canary"
JOB = {"jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 5, "incrementFactor": 2.0,
                                                          "rateIncreaseCriteria": {"numberOfSucceededThings": 5}},
                                      "maximumPerMinute": 50},
       "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 20.0,
                                         "minNumberOfExecutedThings": 5}]},
       "timeoutConfig": {"inProgressTimeoutInMinutes": 60}}
POLICIES = {"failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": 120}}
SUITE = {"com.ggvision.Suite": {"componentVersion": "0.1.0"}}
TAGS = {"cost-centre": "vision", "owner": "ml-platform"}


def config(tmp_path: Path) -> Any:
    return parse_config({"backend": "aws", "baseline_s": 60, "poll_s": 0.05, "soak_s": 0,
                         "stages": [{"name": "dev", "group": "ggv-dev", "canary": {"group": "ggv-dev-canary"}}],
                         "gates": {"min_samples": 2}, "aws": {"region": REGION, "account": ACCOUNT}},
                        tmp_path / "rollout.yaml")


class Fleet:
    def __init__(self, metrics: list[dict]) -> None:
        session = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name=REGION)
        self.gg = session.client("greengrassv2")
        self.iot = session.client("iot")
        self.gg_stub, self.iot_stub = Stubber(self.gg), Stubber(self.iot)
        self.sent: list[dict] = []
        self.gg.meta.events.register("provide-client-params.greengrassv2.CreateDeployment",
                                     lambda params, **_: self.sent.append(params))
        self.backend = AwsBackend(self.gg, self.iot, RecordedMetrics(metrics), REGION, ACCOUNT)

    def current(self, arn: str, dep: str | None, version: str = "1.0.0", parent: str | None = None) -> None:
        if dep is None:
            self.gg_stub.add_response("list_deployments", {"deployments": []},
                                      {"targetArn": arn, "historyFilter": "LATEST_ONLY"})
            return
        self.gg_stub.add_response("list_deployments", {"deployments": [
            {"targetArn": arn, "revisionId": "3", "deploymentId": dep, "deploymentName": "dev",
             "creationTimestamp": dt.datetime(2026, 1, 1), "deploymentStatus": "ACTIVE", "isLatestForTarget": True}]},
            {"targetArn": arn, "historyFilter": "LATEST_ONLY"})
        got = {"targetArn": arn, "revisionId": "3", "deploymentId": dep, "deploymentName": "dev",
               "deploymentStatus": "ACTIVE", "components": {**SUITE, COMPONENT: {"componentVersion": version}},
               "deploymentPolicies": POLICIES, "iotJobConfiguration": JOB, "tags": TAGS,
               "creationTimestamp": dt.datetime(2026, 1, 1), "isLatestForTarget": True}
        if parent:
            got["parentTargetArn"] = parent
        self.gg_stub.add_response("get_deployment", got, {"deploymentId": dep})

    def core(self, thing: str, version: str = "2.14.0") -> None:
        self.gg_stub.add_response("get_core_device", {"coreDeviceThingName": thing, "coreVersion": version,
                                                      "status": "HEALTHY"}, {"coreDeviceThingName": thing})

    def things(self, group: str, things: list[str]) -> None:
        self.iot_stub.add_response("list_things_in_thing_group", {"things": things}, {"thingGroupName": group})

    def create(self, dep: str) -> None:
        self.gg_stub.add_response("create_deployment", {"deploymentId": dep, "iotJobId": f"job-{dep}"})

    def status(self, thing: str, dep: str, state: str, version: str, reason: str = "") -> None:
        eff = {"deploymentId": dep, "deploymentName": "x", "iotJobId": f"job-{dep}", "targetArn": DEV,
               "coreDeviceExecutionStatus": state, "creationTimestamp": dt.datetime(2026, 1, 1),
               "modifiedTimestamp": dt.datetime(2026, 1, 1)}
        if reason:
            eff["reason"] = reason
        self.gg_stub.add_response("list_effective_deployments", {"effectiveDeployments": [eff]},
                                  {"coreDeviceThingName": thing})
        self.gg_stub.add_response("list_installed_components", {"installedComponents": [
            {"componentName": COMPONENT, "componentVersion": version, "lifecycleState": "FINISHED"}]},
            {"coreDeviceThingName": thing})


def run(fleet: Fleet, tmp_path: Path, version: str) -> bool:
    engine = Engine(config(tmp_path), fleet.backend, StateFile(tmp_path / "state.json"), Console(width=200),
                    sleep=lambda s: None)
    with fleet.gg_stub, fleet.iot_stub:
        ok = engine.promote(MODEL, version, "dev")
        fleet.gg_stub.assert_no_pending_responses()
        fleet.iot_stub.assert_no_pending_responses()
    return ok


def test_promote_canary_then_group(tmp_path: Path) -> None:
    now = time.time()
    metrics = (series("a", "1.0.0", 3, t0=now - 30) + series("b", "1.0.0", 3, t0=now - 30)
               + series("a", "1.1.0", 3, t0=now + 100) + series("b", "1.1.0", 3, t0=now + 100))
    f = Fleet(metrics)
    f.current(DEV, "dep-1")
    f.current(CANARY, None)
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a"])
    f.core("a")
    f.create("dep-2")
    f.status("a", "dep-2", "SUCCEEDED", "1.1.0")
    f.create("dep-3")
    f.status("a", "dep-3", "SUCCEEDED", "1.1.0")
    f.status("b", "dep-3", "SUCCEEDED", "1.1.0")
    assert run(f, tmp_path, "1.1.0")
    canary, group = f.sent
    assert canary["targetArn"] == CANARY and canary["parentTargetArn"] == DEV
    assert canary["components"] == {**SUITE, COMPONENT: {"componentVersion": "1.1.0"}}
    # The stage's rollout and abort settings and its tags are kept from its current revision.
    assert canary["iotJobConfiguration"] == JOB and group["deploymentPolicies"] == POLICIES
    assert canary["tags"] == TAGS and group["tags"] == TAGS
    assert group["targetArn"] == DEV and "parentTargetArn" not in group
    st = StateFile(tmp_path / "state.json")
    assert st.stage(MODEL, "dev")["version"] == "1.1.0" and st.rollouts()[-1]["status"] == "succeeded"


def test_bad_canary_is_rolled_back_to_the_previous_revision(tmp_path: Path) -> None:
    now = time.time()
    metrics = (series("a", "1.0.0", 3, t0=now - 30) + series("b", "1.0.0", 3, t0=now - 30)
               + series("a", "1.2.0", 3, t0=now + 100, error_ratio=0.3))
    f = Fleet(metrics)
    f.current(DEV, "dep-1")
    f.current(CANARY, None)
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a"])
    f.core("a")
    f.create("dep-2")
    f.status("a", "dep-2", "SUCCEEDED", "1.2.0")
    f.create("dep-3")  # the rollback: the canary group gets the group's previous revision
    f.things("ggv-dev-canary", ["a"])
    f.status("a", "dep-3", "SUCCEEDED", "1.0.0")
    f.status("a", "dep-3", "SUCCEEDED", "1.0.0")
    assert not run(f, tmp_path, "1.2.0")
    canary, rollback = f.sent
    assert canary["components"][COMPONENT] == {"componentVersion": "1.2.0"}
    assert rollback["targetArn"] == CANARY and rollback["components"][COMPONENT] == {"componentVersion": "1.0.0"}
    assert rollback["parentTargetArn"] == DEV  # the canary's rollback replaces the candidate in the same way
    r = StateFile(tmp_path / "state.json").rollouts()[-1]
    assert r["status"] == "rolled_back"
    assert r["reason"].startswith("a: inference error ratio 0.3 > 0.01")
    assert [e["event"] for e in r["events"]][-3:] == ["rollback", "deployment_done", "rolled_back"]


def test_failed_device_deployment_rolls_back(tmp_path: Path) -> None:
    now = time.time()
    f = Fleet(series("a", "1.0.0", 3, t0=now - 30) + series("b", "1.0.0", 3, t0=now - 30))
    f.current(DEV, "dep-1")
    f.current(CANARY, None)
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a"])
    f.core("a")
    f.create("dep-2")
    f.status("a", "dep-2", "FAILED", "1.0.0", reason="com.ggvision.Inference went BROKEN")
    f.create("dep-3")
    f.things("ggv-dev-canary", ["a"])
    f.status("a", "dep-3", "SUCCEEDED", "1.0.0")
    f.status("a", "dep-3", "SUCCEEDED", "1.0.0")
    assert not run(f, tmp_path, "1.3.0")
    r = StateFile(tmp_path / "state.json").rollouts()[-1]
    assert r["reason"] == "deployment failed on a: FAILED com.ggvision.Inference went BROKEN"


def refused(fleet: Fleet, tmp_path: Path, version: str) -> str:
    engine = Engine(config(tmp_path), fleet.backend, StateFile(tmp_path / "state.json"), Console(width=200),
                    sleep=lambda s: None)
    with fleet.gg_stub, fleet.iot_stub, pytest.raises(RolloutError) as e:
        engine.promote(MODEL, version, "dev")
    fleet.gg_stub.assert_no_pending_responses()
    fleet.iot_stub.assert_no_pending_responses()
    assert fleet.sent == []  # nothing was deployed
    assert StateFile(tmp_path / "state.json").rollouts() == []
    return str(e.value)


def test_canary_group_with_a_deployment_of_its_own_is_refused(tmp_path: Path) -> None:
    f = Fleet([])
    f.current(DEV, "dep-1", "1.0.0")
    f.current(CANARY, "dep-c", "1.0.0")  # not a subdeployment: a target of its own on the devices
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a"])
    why = refused(f, tmp_path, "1.1.0")
    assert "dep-c is not a subdeployment of ggv-dev" in why


def test_canary_subdeployment_of_the_stage_group_is_accepted_as_the_previous_revision(tmp_path: Path) -> None:
    """The canary group's current deployment is an earlier subdeployment of the stage group: no refusal, and the
    canary is deployed as a subdeployment again."""
    now = time.time()
    f = Fleet(series("a", "1.0.0", 3, t0=now - 30) + series("b", "1.0.0", 3, t0=now - 30)
              + series("a", "1.1.0", 3, t0=now + 100) + series("b", "1.1.0", 3, t0=now + 100))
    f.current(DEV, "dep-1")
    f.current(CANARY, "dep-c", "1.0.0", parent=DEV)
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a"])
    f.core("a")
    f.create("dep-2")
    f.status("a", "dep-2", "SUCCEEDED", "1.1.0")
    f.create("dep-3")
    f.status("a", "dep-3", "SUCCEEDED", "1.1.0")
    f.status("b", "dep-3", "SUCCEEDED", "1.1.0")
    assert run(f, tmp_path, "1.1.0")
    assert f.sent[0]["targetArn"] == CANARY and f.sent[0]["parentTargetArn"] == DEV


def test_canary_device_outside_the_stage_group_is_refused(tmp_path: Path) -> None:
    f = Fleet([])
    f.current(DEV, "dep-1")
    f.current(CANARY, None)
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a", "z"])
    assert "canary devices ['z'] of ggv-dev-canary are not in ggv-dev" in refused(f, tmp_path, "1.1.0")


def test_canary_device_on_a_nucleus_without_subdeployments_is_refused(tmp_path: Path) -> None:
    f = Fleet([])
    f.current(DEV, "dep-1")
    f.current(CANARY, None)
    f.things("ggv-dev", ["a", "b"])
    f.things("ggv-dev-canary", ["a"])
    f.core("a", "2.8.1")
    why = refused(f, tmp_path, "1.1.0")
    assert "older than 2.9.0" in why and "'a': '2.8.1'" in why


def test_s3_metrics_source_reads_the_rule_archive(moto_url: str) -> None:
    s3 = boto3.Session(aws_access_key_id="t", aws_secret_access_key="t", region_name="us-east-1").client(
        "s3", endpoint_url=moto_url)
    s3.create_bucket(Bucket="ggv-data")
    t0 = dt.datetime(2026, 3, 1, 10, 59, 50, tzinfo=dt.timezone.utc).timestamp()
    for i in range(4):  # crosses an hour boundary
        doc = summary("a", t0 + 5 * i, "1.0.0")
        hour = dt.datetime.fromtimestamp(doc["timestamp"], dt.timezone.utc).strftime("%Y/%m/%d/%H")
        s3.put_object(Bucket="ggv-data", Key=f"results/iot-rules/metrics/a/{hour}/{i}.json", Body=json.dumps(doc))
    s3.put_object(Bucket="ggv-data", Key="results/iot-rules/metrics/a/2026/03/01/11/bad.json", Body=b"{oops")
    src = S3MetricsSource(s3, "ggv-data", now=lambda: t0 + 3600)
    got = src.health(["a", "b"], since=t0 + 1)
    assert [d["timestamp"] for d in got] == [t0 + 5, t0 + 10, t0 + 15]
