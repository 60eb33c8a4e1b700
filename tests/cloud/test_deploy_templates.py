"""deploy/: the CloudFormation templates lint clean and keep their security promises; the deployment documents
are valid create_deployment requests that pin versions, roll back, and roll out slower the closer to production.

Offline: cfn-lint runs with its bundled specs, and botocore validates against its installed service model.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
import yaml
from botocore.stub import Stubber
from botocore.validate import validate_parameters

from deploy.render import RenderError, render, render_document

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
TEMPLATES = sorted((DEPLOY / "cloudformation").glob("*.yaml"))
STAGES = ("dev", "staging", "production")
REGION, ACCOUNT = "eu-west-1", "123456789012"
EXACT_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


# ----------------------------------------------------------------------------------------------- loading


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns CloudFormation short-form tags (!Ref, !Sub, ...) into their long form."""


def _cfn_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(name: str) -> dict[str, Any]:
    return yaml.load((DEPLOY / "cloudformation" / name).read_text(), Loader=_CfnLoader)


def resources(template: dict[str, Any], rtype: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def as_list(x: Any) -> list[Any]:
    return x if isinstance(x, list) else [x]


def sub_text(value: Any) -> str:
    """The text of a string or an Fn::Sub (either form) as CloudFormation leaves it: ``${!x}`` becomes ``${x}``
    (a literal IAM/IoT policy variable) while ``${Param}`` references stay, for pattern assertions."""
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return (sub if isinstance(sub, str) else sub[0]).replace("${!", "${")
    if isinstance(value, str):
        return value
    return repr(value)


# ----------------------------------------------------------------------------------------------- cfn-lint


def test_templates_exist() -> None:
    assert {p.name for p in TEMPLATES} >= {"storage.yaml", "device-access.yaml", "routing.yaml"}


def test_cfn_lint_passes_on_every_template() -> None:
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    if not cfn_lint.exists():
        pytest.skip(f"cfn-lint is not installed in this environment ({cfn_lint})")
    proc = subprocess.run(
        [str(cfn_lint), "--format", "parseable", "--", *map(str, TEMPLATES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ----------------------------------------------------------------------------------------------- storage


@pytest.fixture(scope="module")
def storage() -> dict[str, Any]:
    return load_template("storage.yaml")


def _buckets(storage: dict[str, Any]) -> dict[str, dict[str, Any]]:
    buckets = resources(storage, "AWS::S3::Bucket")
    assert {"DataBucket", "ArtifactsBucket"} <= set(buckets)
    return buckets


def test_buckets_versioned_kms_encrypted_and_private(storage: dict[str, Any]) -> None:
    for name, bucket in _buckets(storage).items():
        props = bucket["Properties"]
        assert props["VersioningConfiguration"]["Status"] == "Enabled", name
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms", name
        assert rule["ServerSideEncryptionByDefault"]["KMSMasterKeyID"] == {"Fn::GetAtt": ["DataKey", "Arn"]}, name
        assert rule["BucketKeyEnabled"] is True, name
        pab = props["PublicAccessBlockConfiguration"]
        assert all(
            pab[k] is True
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        ), name
        assert bucket.get("DeletionPolicy") == "Retain", name


def test_customer_managed_key_rotates(storage: dict[str, Any]) -> None:
    key = storage["Resources"]["DataKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["Properties"]["KeyPolicy"]["Statement"]


def test_every_bucket_is_tls_only(storage: dict[str, Any]) -> None:
    policies = resources(storage, "AWS::S3::BucketPolicy")
    covered = set()
    for policy in policies.values():
        for st in policy["Properties"]["PolicyDocument"]["Statement"]:
            if st["Effect"] == "Deny" and st["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false":
                assert st["Principal"] == "*" and st["Action"] == "s3:*"
                covered.add(policy["Properties"]["Bucket"]["Ref"])
    assert covered == set(_buckets(storage))


def test_uploads_expire_within_seven_days_and_old_versions_too(storage: dict[str, Any]) -> None:
    """Every kind, results included (the privacy rule covers images and their metadata); the contract-level
    checks are in test_site_contract.py."""
    params = storage["Parameters"]
    days = params["RetentionDays"]
    assert days["Default"] == "7" and max(int(v) for v in days["AllowedValues"]) <= 7  # nobody can raise it
    rules = storage["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    by_prefix = {r.get("Prefix"): r for r in rules}
    for prefix in ("segments/", "clips/", "images/", "results/"):
        rule = by_prefix[prefix]
        assert rule["Status"] == "Enabled"
        assert rule["ExpirationInDays"] == {"Fn::FindInMap": ["Retention", {"Ref": "RetentionDays"}, "CurrentDays"]}
        assert rule["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1
    whole = [r for r in rules if "Prefix" not in r and "Filter" not in r]
    assert any(
        r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == {"Ref": "AbortMultipartDays"} for r in whole
    )
    assert params["AbortMultipartDays"]["MaxValue"] <= 7  # parts hold video too
    artifact_rules = storage["Resources"]["ArtifactsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    assert any("NoncurrentVersionExpiration" in r for r in artifact_rules)


def test_artifacts_bucket_is_where_gdk_publishes() -> None:
    """gdk publishes to '<publish.bucket>-<region>-<account>' unless told otherwise."""
    gdk = json.loads((REPO / "gdk-config.json").read_text())
    (component,) = gdk["component"].values()
    name = load_template("storage.yaml")["Resources"]["ArtifactsBucket"]["Properties"]["BucketName"]["Fn::Sub"]
    expected = component["publish"]["bucket"] + "-${AWS::Region}-${AWS::AccountId}"
    assert name.replace("${NamePrefix}", "ggvision") == expected


# ----------------------------------------------------------------------------------------------- device access


@pytest.fixture(scope="module")
def device() -> dict[str, Any]:
    return load_template("device-access.yaml")


def _role_statements(device: dict[str, Any]) -> list[dict[str, Any]]:
    role = device["Resources"]["TokenExchangeRole"]["Properties"]
    principal = role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
    assert principal == {"Service": "credentials.iot.amazonaws.com"}
    return [st for pol in role["Policies"] for st in pol["PolicyDocument"]["Statement"]]


def test_role_alias_fronts_the_token_exchange_role(device: dict[str, Any]) -> None:
    (alias,) = resources(device, "AWS::IoT::RoleAlias").values()
    assert alias["Properties"]["RoleArn"] == {"Fn::GetAtt": ["TokenExchangeRole", "Arn"]}
    policy = device["Resources"]["CoreDevicePolicy"]["Properties"]["PolicyDocument"]
    assume = [st for st in policy["Statement"] if st["Action"] == "iot:AssumeRoleWithCertificate"]
    assert assume and assume[0]["Resource"] == {"Fn::GetAtt": ["TokenExchangeRoleAlias", "RoleAliasArn"]}


def test_device_role_puts_only_under_its_own_thing_prefix(device: dict[str, Any]) -> None:
    statements = _role_statements(device)
    put_allows = [
        st
        for st in statements
        if st["Effect"] == "Allow" and any(a in ("s3:PutObject", "s3:*", "*") for a in as_list(st["Action"]))
    ]
    assert put_allows
    for st in put_allows:
        for res in as_list(st["Resource"]):
            text = sub_text(res)
            assert text.startswith("${DataBucketArn}/"), text
            key = text.removeprefix("${DataBucketArn}/")
            kind = key.split("/", 1)[0]
            assert kind in ("segments", "clips", "images", "results"), text  # never a bucket-wide "*"
            assert key == f"{kind}/*/${{credentials-iot:ThingName}}/*", text
    deny = [st for st in statements if st["Effect"] == "Deny"]
    denied = {sub_text(r) for st in deny for r in as_list(st["Resource"])}
    for kind in ("segments", "clips", "images", "results"):
        assert f"${{DataBucketArn}}/{kind}/*/*/${{credentials-iot:ThingName}}/*" in denied
    assert "${DataBucketArn}/results/iot-rules/*" in denied
    # no statement grants anything on every resource, and no service-wide wildcard actions
    for st in statements:
        # PutMetricData has no resource type (Service Authorization Reference, CloudWatch): "*", held to one
        # namespace by its condition instead
        assert st["Resource"] != "*" or (st["Sid"] == "PutOwnMetrics" and "cloudwatch:namespace" in
                                         st["Condition"]["StringEquals"]), st["Sid"]
        assert not any(a.endswith(":*") or a == "*" for a in as_list(st["Action"])), st["Sid"]


def _wildcard_match(pattern: str, text: str) -> bool:
    """IAM/IoT resource wildcard semantics: '*' any run of characters (slashes included), '?' one character."""
    return (
        re.fullmatch(
            "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), text, flags=re.S
        )
        is not None
    )


def test_device_key_scoping_semantics(device: dict[str, Any]) -> None:
    """Evaluate the role's S3 statements the way IAM does (explicit deny wins) for a device named 'cam-box-7'."""
    thing = "cam-box-7"
    statements = _role_statements(device)

    def resolved(st: dict[str, Any]) -> list[str]:
        return [
            sub_text(r).replace("${DataBucketArn}", "arn:aws:s3:::data").replace("${credentials-iot:ThingName}", thing)
            for r in as_list(st["Resource"])
        ]

    def may_put(key: str) -> bool:
        arn = f"arn:aws:s3:::data/{key}"
        puts = [st for st in statements if "s3:PutObject" in as_list(st["Action"])]
        if any(_wildcard_match(p, arn) for st in puts if st["Effect"] == "Deny" for p in resolved(st)):
            return False
        return any(_wildcard_match(p, arn) for st in puts if st["Effect"] == "Allow" for p in resolved(st))

    assert may_put(f"segments/site-a/{thing}/cam1/2025/01/02/03/000001.ts")
    assert may_put(f"images/site-a/{thing}/cam1/2025/01/02/03/snap.jpg")
    assert may_put(f"results/site-a/{thing}/cam1/2025/01/02/03/batch.json.gz")
    assert not may_put("segments/site-a/other-box/cam1/2025/01/02/03/000001.ts")  # someone else's keys
    assert not may_put(f"segments/site-a/other-box/{thing}/x.ts")  # its name deeper inside another device's keys
    assert not may_put(f"segments/{thing}/cam1/x.ts")  # thing name in the site slot
    assert not may_put(f"results/iot-rules/{thing}/x.json")  # the rules' archive
    assert not may_put(f"secrets/site-a/{thing}/x")  # unknown top-level prefix
    assert not may_put(f"segments/site-a/{thing}-2/cam1/x.ts")  # a longer name is a different thing


def test_device_kms_and_artifact_access_are_narrow(device: dict[str, Any]) -> None:
    statements = {st["Sid"]: st for st in _role_statements(device)}
    kms = statements["UseDataKeyThroughS3"]
    assert set(as_list(kms["Action"])) == {"kms:GenerateDataKey", "kms:Decrypt"}
    assert "kms:ViaService" in kms["Condition"]["StringEquals"]
    read = statements["ReadGgvisionArtifacts"]
    assert as_list(read["Action"]) == ["s3:GetObject"]
    assert sub_text(read["Resource"]).endswith("/com.ggvision.*")
    logs = statements["GreengrassLogs"]
    assert ":log-group:/aws/greengrass/" in sub_text(logs["Resource"])


def test_iot_policy_keeps_each_device_on_its_own_topics(device: dict[str, Any]) -> None:
    policy = device["Resources"]["CoreDevicePolicy"]["Properties"]["PolicyDocument"]
    thing = "${iot:Connection.Thing.ThingName}"
    topic_actions = {"iot:Publish", "iot:Receive", "iot:Subscribe"}
    seen: set[str] = set()
    ggvision_topics = []
    for st in policy["Statement"]:
        assert st["Effect"] == "Allow"
        actions = set(as_list(st["Action"]))
        assert "iot:*" not in actions and "*" not in actions
        if actions & topic_actions:
            seen |= actions & topic_actions
            for res in as_list(st["Resource"]):
                text = sub_text(res)
                prefix = "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:"
                assert text.startswith(prefix + ("topicfilter/" if "iot:Subscribe" in actions else "topic/")), text
                name = text.split(":", 5)[5].split("/", 1)[1]
                # every topic or filter is under the connecting thing's own name
                assert name.startswith((f"ggvision/{thing}/", f"$aws/things/{thing}/")), text
                if name.startswith("ggvision/"):
                    ggvision_topics.append((frozenset(actions), name))
        if "iot:Connect" in actions:
            for res in as_list(st["Resource"]):
                assert sub_text(res).split(":client/")[1] in (thing, f"{thing}#*")
        if any(a.startswith("greengrass:") for a in actions):
            assert actions <= {
                "greengrass:ResolveComponentCandidates",
                "greengrass:GetComponentVersionArtifact",
                "greengrass:GetDeploymentConfiguration",
                "greengrass:ListThingGroupsForCoreDevice",
            }
    assert seen == topic_actions
    assert {n for a, n in ggvision_topics if "iot:Publish" in a} == {f"ggvision/{thing}/*"}
    assert {n for a, n in ggvision_topics if "iot:Subscribe" in a} == {f"ggvision/{thing}/*"}


def test_thing_groups_match_the_deployment_targets(device: dict[str, Any]) -> None:
    names = {g["Properties"]["ThingGroupName"] for g in resources(device, "AWS::IoT::ThingGroup").values()}
    targets = {
        render(DEPLOY / "deployments" / f"{s}.json", REGION, ACCOUNT)["targetArn"].rsplit("/", 1)[1] for s in STAGES
    }
    assert names == targets


# ----------------------------------------------------------------------------------------------- routing


@pytest.fixture(scope="module")
def routing() -> dict[str, Any]:
    return load_template("routing.yaml")


def _sql(rule: dict[str, Any]) -> str:
    return " ".join(sub_text(rule["Properties"]["TopicRulePayload"]["Sql"]).split())


def test_rules_route_results_events_and_alerts(routing: dict[str, Any]) -> None:
    rules = {r["Properties"]["RuleName"]: r for r in resources(routing, "AWS::IoT::TopicRule").values()}
    assert set(rules) == {"ggvision_results", "ggvision_events", "ggvision_alerts", "ggvision_metrics"}

    def kinds(rule: dict[str, Any]) -> set[str]:
        return {k for action in rule["Properties"]["TopicRulePayload"]["Actions"] for k in action}

    assert "FROM 'ggvision/+/results'" in _sql(rules["ggvision_results"])
    assert kinds(rules["ggvision_results"]) == {"S3", "Sqs"}
    assert "FROM 'ggvision/+/events'" in _sql(rules["ggvision_events"])
    assert kinds(rules["ggvision_events"]) == {"DynamoDBv2", "S3", "Sqs"}
    assert "expires_at" in _sql(rules["ggvision_events"])
    assert _sql(rules["ggvision_alerts"]).endswith(
        "FROM 'ggvision/+/events' WHERE schema = 'alert/1.0' OR schema = 'uplink-batch/1.0'")
    # the rollout's AWS backend reads the health summaries where this rule puts them
    from rollout.backends.aws import METRICS_PREFIX

    metrics_key = rules["ggvision_metrics"]["Properties"]["TopicRulePayload"]["Actions"][0]["S3"]["Key"]
    assert "FROM 'ggvision/+/metrics'" in _sql(rules["ggvision_metrics"])
    assert metrics_key.startswith(METRICS_PREFIX + "${topic(2)}/")
    assert kinds(rules["ggvision_alerts"]) == {"Sqs"}
    for name, rule in rules.items():
        payload = rule["Properties"]["TopicRulePayload"]
        assert payload["ErrorAction"]["Sqs"]["QueueUrl"] == {"Ref": "RuleErrorQueue"}, name
        for action in payload["Actions"]:
            for spec in action.values():
                assert spec["RoleArn"] == {"Fn::GetAtt": ["TopicRuleRole", "Arn"]}, name
            if "S3" in action:
                assert action["S3"]["Key"].startswith("results/iot-rules/"), name


def test_events_table_has_ttl(routing: dict[str, Any]) -> None:
    table = routing["Resources"]["EventsTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"]["SSEEnabled"] is True


def test_alerts_reach_eventbridge_through_a_pipe(routing: dict[str, Any]) -> None:
    (pipe,) = resources(routing, "AWS::Pipes::Pipe").values()
    assert pipe["Properties"]["Source"] == {"Fn::GetAtt": ["AlertsQueue", "Arn"]}
    assert pipe["Properties"]["Target"] == {"Fn::GetAtt": ["AlertsEventBus", "Arn"]}


def test_rule_role_is_scoped_to_exactly_its_targets(routing: dict[str, Any]) -> None:
    role = routing["Resources"]["TopicRuleRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "iot.amazonaws.com"}
    statements = [st for pol in role["Policies"] for st in pol["PolicyDocument"]["Statement"]]
    by_action: dict[str, list[Any]] = {}
    for st in statements:
        assert st["Effect"] == "Allow" and st["Resource"] != "*"
        for action in as_list(st["Action"]):
            by_action.setdefault(action, []).extend(as_list(st["Resource"]))
    assert set(by_action) == {"s3:PutObject", "kms:GenerateDataKey", "dynamodb:PutItem", "sqs:SendMessage"}
    assert [sub_text(r) for r in by_action["s3:PutObject"]] == ["${DataBucketArn}/results/iot-rules/*"]
    assert by_action["dynamodb:PutItem"] == [{"Fn::GetAtt": ["EventsTable", "Arn"]}]
    assert sorted(r["Fn::GetAtt"][0] for r in by_action["sqs:SendMessage"]) == [
        "AlertsQueue",
        "PipelineQueue",
        "RuleErrorQueue",
    ]


def test_queues_are_encrypted_and_redrive(routing: dict[str, Any]) -> None:
    queues = resources(routing, "AWS::SQS::Queue")
    assert all(q["Properties"]["SqsManagedSseEnabled"] is True for q in queues.values())
    for name in ("PipelineQueue", "AlertsQueue"):
        redrive = queues[name]["Properties"]["RedrivePolicy"]
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["ConsumerDeadLetterQueue", "Arn"]}


# ----------------------------------------------------------------------------------------------- deployments


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    return {stage: render(DEPLOY / "deployments" / f"{stage}.json", REGION, ACCOUNT) for stage in STAGES}


@pytest.fixture(scope="module")
def greengrass() -> Any:
    return boto3.client(
        "greengrassv2",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
    )


def _check_model_limits(shape: Any, value: Any, path: str) -> list[str]:
    """What botocore's validator leaves out: maximums, patterns and enums of the service model."""
    errors = []
    meta = shape.metadata
    if shape.type_name == "structure":
        for k, v in value.items():
            errors += _check_model_limits(shape.members[k], v, f"{path}.{k}")
    elif shape.type_name == "map":
        for k, v in value.items():
            errors += _check_model_limits(shape.key, k, f"{path} key")
            errors += _check_model_limits(shape.value, v, f"{path}.{k}")
    elif shape.type_name == "list":
        for i, v in enumerate(value):
            errors += _check_model_limits(shape.member, v, f"{path}[{i}]")
    else:
        size = len(value) if isinstance(value, str) else value
        if "max" in meta and size > meta["max"]:
            errors.append(f"{path}: {value!r} over max {meta['max']}")
        if "min" in meta and size < meta["min"]:
            errors.append(f"{path}: {value!r} under min {meta['min']}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if getattr(shape, "enum", None) and value not in shape.enum:
            errors.append(f"{path}: {value!r} not in {shape.enum}")
    return errors


@pytest.mark.parametrize("stage", STAGES)
def test_deployment_is_a_valid_create_deployment_request(stage: str, docs: dict[str, Any], greengrass: Any) -> None:
    doc = docs[stage]
    model = botocore.session.get_session().get_service_model("greengrassv2")
    input_shape = model.operation_model("CreateDeployment").input_shape
    validate_parameters(doc, input_shape)  # raises ParamValidationError
    assert _check_model_limits(input_shape, doc, "$") == []
    with Stubber(greengrass) as stub:
        stub.add_response(
            "create_deployment",
            {"deploymentId": "d-1", "iotJobId": "j-1", "iotJobArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:job/j-1"},
            expected_params={**doc, "clientToken": "ggvision-test"},
        )
        out = greengrass.create_deployment(**doc, clientToken="ggvision-test")
        stub.assert_no_pending_responses()
    assert out["deploymentId"] == "d-1"
    assert doc["targetArn"] == f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/ggvision-{stage}"


@pytest.mark.parametrize("stage", STAGES)
def test_deployment_pins_versions_and_rolls_back(stage: str, docs: dict[str, Any]) -> None:
    doc = docs[stage]
    assert "com.ggvision.Suite" in doc["components"]
    for name, spec in doc["components"].items():
        assert EXACT_SEMVER.match(spec["componentVersion"]), (name, spec)  # pinned, never a range
    policies = doc["deploymentPolicies"]
    assert policies["failureHandlingPolicy"] == "ROLLBACK"
    assert policies["componentUpdatePolicy"]["action"] == "NOTIFY_COMPONENTS"
    assert policies["componentUpdatePolicy"]["timeoutInSeconds"] >= 60  # time to finish a segment
    assert policies["configurationValidationPolicy"]["timeoutInSeconds"] >= 30
    job = doc["iotJobConfiguration"]
    assert job["abortConfig"]["criteriaList"]
    assert job["timeoutConfig"]["inProgressTimeoutInMinutes"] >= 1


def _start_rate(doc: dict[str, Any]) -> int:
    rollout = doc["iotJobConfiguration"]["jobExecutionsRolloutConfig"]
    return rollout.get("exponentialRate", {}).get("baseRatePerMinute", rollout.get("maximumPerMinute", 1000))


def _top_rate(doc: dict[str, Any]) -> int:
    return doc["iotJobConfiguration"]["jobExecutionsRolloutConfig"].get("maximumPerMinute", 1000)


def _abort_threshold(doc: dict[str, Any]) -> float:
    return min(c["thresholdPercentage"] for c in doc["iotJobConfiguration"]["abortConfig"]["criteriaList"])


def test_production_rolls_out_slower_than_staging_slower_than_dev(docs: dict[str, Any]) -> None:
    dev, staging, prod = (docs[s] for s in STAGES)
    assert _start_rate(prod) < _start_rate(staging) < _start_rate(dev)
    assert _top_rate(prod) < _top_rate(staging) < _top_rate(dev)
    assert _abort_threshold(prod) < _abort_threshold(staging) < _abort_threshold(dev)
    exp = prod["iotJobConfiguration"]["jobExecutionsRolloutConfig"]["exponentialRate"]
    assert exp["rateIncreaseCriteria"].get("numberOfSucceededThings", 0) >= 1  # grows only on successes
    assert 1 < exp["incrementFactor"] <= 2


def test_render_substitutes_only_known_placeholders(tmp_path: Path) -> None:
    raw = (DEPLOY / "deployments" / "dev.json").read_text()
    assert "${AWS_REGION}" in raw and "${AWS_ACCOUNT_ID}" in raw
    rendered = render(DEPLOY / "deployments" / "dev.json", REGION, ACCOUNT)
    assert "${" not in repr(rendered)
    with pytest.raises(RenderError):
        render_document({"targetArn": "arn:aws:iot:${AWS_REGION}:${ACCOUNT}:thinggroup/x"}, REGION, ACCOUNT)
    with pytest.raises(RenderError):
        render(DEPLOY / "deployments" / "dev.json", "Europe", ACCOUNT)
    with pytest.raises(RenderError):
        render(DEPLOY / "deployments" / "dev.json", REGION, "12345")
