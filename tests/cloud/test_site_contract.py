"""One edge↔cloud contract, held from both sides: the CloudFormation templates against ggvision/contract (key
layout, retention, stream and secret names, the metrics namespace), and the stacks deployed into moto's server
with IAM enforcement on, accepting everything the real suite sends with a device's own credentials — and
denying what another device's credentials would do.

The device credentials carry exactly the deployed token-exchange role's inline policy with
${credentials-iot:ThingName} resolved to the thing name, as the AWS IoT credentials provider does (developer
guide "Authorize core devices to interact with AWS services": the nucleus sends x-amzn-iot-thingname and the
provider only honours it for the thing the certificate is attached to).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
from cfnlint.decode import cfn_yaml
from harness import REPO, Runtime, wait_until
from stack_dev import STACKS, TEMPLATES, THING_VARIABLE, AuthMoto, Creds, moto_template

from ggvision.contract import keys, secrets, streams

THING, OTHER = "test-thing", "other-thing"  # the harness runs the nucleus as test-thing
SITE, CAMERA = "site-7", "door"
CLOUDWATCH = "aws.greengrass.Cloudwatch"
RUN_S = float(os.environ.get("GGVISION_SITE_RUN_S", "180"))  # the suite's run against the stacks


def _template(name: str) -> dict[str, Any]:
    return json.loads(json.dumps(cfn_yaml.load(str(TEMPLATES / name))))


def _statements(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role = doc["Resources"]["TokenExchangeRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    return {st["Sid"]: st for st in role["Statement"]}


def _sub_text(node: Any) -> str:
    """The text of a !Sub (either form), with ${!x} escapes written as ${x} as CloudFormation renders them."""
    text = node["Fn::Sub"][0] if isinstance(node["Fn::Sub"], list) else node["Fn::Sub"]
    return text.replace("${!", "${")


# -- the templates against the contract ------------------------------------------------------------------

def test_device_role_is_scoped_to_the_contract_key_layout() -> None:
    st = _statements(_template("device-access.yaml"))
    allow = [_sub_text(r).removeprefix("${DataBucketArn}/") for r in st["UploadOwnMediaAndResults"]["Resource"]]
    deny = [_sub_text(r).removeprefix("${DataBucketArn}/") for r in st["DenyThingNameOutsideItsSlotAndRuleOutput"]
            ["Resource"]]
    assert allow == keys.device_write_patterns(THING_VARIABLE)
    assert deny == [*keys.foreign_slot_patterns(THING_VARIABLE), keys.RULE_ARCHIVE_PREFIX + "*"]


def test_device_role_names_the_contract_streams_secrets_and_namespace() -> None:
    st = _statements(_template("device-access.yaml"))
    prefix = "${NamePrefix}"
    assert _sub_text(st["SendUplinkMessages"]["Resource"]).endswith(f":{streams.QUEUE_TEMPLATE.format(prefix=prefix)}")
    assert list(streams.DEVICE_ACTIONS["sqs"]) == [st["SendUplinkMessages"]["Action"]]
    assert _sub_text(st["PutUplinkRecords"]["Resource"]).endswith(
        f":stream/{streams.STREAM_TEMPLATE.format(prefix=prefix)}")
    assert list(streams.DEVICE_ACTIONS["kinesis"]) == [st["PutUplinkRecords"]["Action"]]
    assert _sub_text(st["ReadOwnCameraSecrets"]["Resource"]).endswith(
        ":secret:" + secrets.device_secret_pattern(prefix, THING_VARIABLE))
    ns = st["PutOwnMetrics"]["Condition"]["StringEquals"]["cloudwatch:namespace"]
    assert ns == secrets.CLOUDWATCH_NAMESPACE
    from ggvision.config.base import parse
    from ggvision.config.health import HealthConfig

    assert parse(HealthConfig, {}).cloudwatch.namespace == ns  # what Health sends by default is what is allowed


def test_routing_creates_the_contract_streams() -> None:
    res = _template("routing.yaml")["Resources"]
    assert _sub_text(res["UplinkQueue"]["Properties"]["QueueName"]) == streams.QUEUE_TEMPLATE.format(
        prefix="${NamePrefix}")
    assert res["UplinkQueue"]["Properties"]["FifoQueue"] is True
    assert _sub_text(res["UplinkStream"]["Properties"]["Name"]) == streams.STREAM_TEMPLATE.format(
        prefix="${NamePrefix}")
    for name in ("ggvision_results", "ggvision_events", "ggvision_metrics"):
        rule = next(r for r in res.values() if r["Type"] == "AWS::IoT::TopicRule"
                    and r["Properties"].get("RuleName") == name)
        s3 = [a["S3"] for a in rule["Properties"]["TopicRulePayload"]["Actions"] if "S3" in a]
        stream = name.removeprefix("ggvision_")
        assert [a["Key"] for a in s3] == [
            keys.rule_archive_key(stream, "${topic(2)}", 0, "${newuuid()}.json").replace(
                "1970/01/01/00", '${parse_time("yyyy/MM/dd/HH", timestamp())}')], name


def test_every_uploaded_kind_is_gone_within_the_privacy_window() -> None:
    doc = _template("storage.yaml")
    param = doc["Parameters"]["RetentionDays"]
    assert max(int(v) for v in param["AllowedValues"]) <= keys.RETENTION_DAYS_MAX
    assert int(param["Default"]) == keys.RETENTION_DAYS_MAX
    mapping = doc["Mappings"]["Retention"]
    assert set(mapping) == set(param["AllowedValues"])
    for days, row in mapping.items():
        assert row["CurrentDays"] + 1 == int(days)  # current, then one day as a noncurrent version
    rules = doc["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    expiring = {r["Prefix"]: r for r in rules if "Prefix" in r}
    assert set(expiring) == {f"{k}/" for k in keys.KINDS}
    for r in expiring.values():
        assert r["ExpirationInDays"] == {"Fn::FindInMap": ["Retention", {"Ref": "RetentionDays"}, "CurrentDays"]}
        assert r["NoncurrentVersionExpiration"] == {"NoncurrentDays": 1}
    abort = next(r for r in rules if "AbortIncompleteMultipartUpload" in r)
    assert doc["Parameters"]["AbortMultipartDays"]["MaxValue"] <= keys.RETENTION_DAYS_MAX
    assert abort["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"] == {"Ref": "AbortMultipartDays"}


def test_event_records_and_messages_are_kept_no_longer_than_the_privacy_window() -> None:
    doc = _template("routing.yaml")
    assert doc["Parameters"]["EventRetentionDays"]["MaxValue"] <= keys.RETENTION_DAYS_MAX
    assert doc["Parameters"]["EventRetentionDays"]["Default"] <= keys.RETENTION_DAYS_MAX
    res = doc["Resources"]
    table = res["EventsTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is False
    for name, r in res.items():
        if r["Type"] == "AWS::SQS::Queue":
            assert r["Properties"]["MessageRetentionPeriod"] <= keys.RETENTION_DAYS_MAX * 86400, name
        if r["Type"] == "AWS::Kinesis::Stream":
            assert r["Properties"]["RetentionPeriodHours"] <= keys.RETENTION_DAYS_MAX * 24, name


# -- the stacks in moto, with IAM enforcement ---------------------------------------------------------

class Site:
    def __init__(self, tmp: Path) -> None:
        self.moto = AuthMoto(tmp / "moto.log")
        self.out: dict[str, str] = {}
        for name, template in STACKS:
            self.out.update(self.moto.deploy(name, moto_template(TEMPLATES / template)))
        self.policy = self.moto.device_policy(THING)
        self.device = self.moto.credentials_for(f"device-{THING}", self.policy)
        self.bucket = self.out["DataBucketName"]

    def client(self, service: str, creds: Creds | None = None) -> Any:
        return self.moto.client(service, creds)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    s = Site(tmp_path_factory.mktemp("site"))
    try:
        yield s
    finally:
        s.moto.stop()


def _denied(call: Any) -> bool:
    try:
        call()
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"] in ("AccessDenied", "AccessDeniedException", "403")
    return False


def _key(kind: str, thing: str = THING) -> str:
    return keys.object_key("", kind, SITE, thing, CAMERA, time.time(), f"probe-{kind}.bin")


def test_a_device_writes_its_own_keys_and_no_other_things(site: Site) -> None:
    s3 = site.client("s3", site.device)
    for kind in keys.KINDS:
        s3.put_object(Bucket=site.bucket, Key=_key(kind), Body=b"x")  # its own slot: allowed
        assert _denied(lambda k=kind: s3.put_object(Bucket=site.bucket, Key=_key(k, OTHER), Body=b"x")), kind
        assert _denied(lambda k=kind: s3.put_object(
            Bucket=site.bucket, Key=f"{k}/{SITE}/x/{THING}/{CAMERA}/a.bin", Body=b"x")), kind  # posing deeper
    assert _denied(lambda: s3.put_object(Bucket=site.bucket, Key=keys.rule_archive_key("events", THING, 0, "a.json"),
                                         Body=b"{}"))


@pytest.mark.parametrize("mutation", ["key layout without the kind", "role without its upload statement"])
def test_a_change_on_one_side_alone_is_refused(site: Site, mutation: str) -> None:
    """Mutations: the Uplink's old key layout (no kind prefix) or a role missing the statement the layout needs
    are both denied — the two halves cannot drift apart silently."""
    if mutation == "key layout without the kind":
        s3 = site.client("s3", site.device)
        assert _denied(lambda: s3.put_object(Bucket=site.bucket, Key=_key("images").split("/", 1)[1], Body=b"x"))
    else:
        policy = json.loads(json.dumps(site.policy))
        policy["Statement"] = [st for st in policy["Statement"] if st.get("Sid") != "UploadOwnMediaAndResults"]
        s3 = site.client("s3", site.moto.credentials_for(f"mutant-{int(time.time() * 1000)}", policy))
        assert _denied(lambda: s3.put_object(Bucket=site.bucket, Key=_key("images"), Body=b"x"))


def test_a_device_reads_only_its_own_camera_secrets(site: Site) -> None:
    admin = site.client("secretsmanager")
    own, other = (secrets.camera_secret_name("ggvision", t, CAMERA) for t in (THING, OTHER))
    for name in (own, other):
        admin.create_secret(Name=name, SecretString="admin:s3cret")
    sm = site.client("secretsmanager", site.device)
    assert sm.get_secret_value(SecretId=own)["SecretString"] == "admin:s3cret"
    assert _denied(lambda: sm.get_secret_value(SecretId=other))


def test_a_device_puts_metrics_only_in_its_namespace(site: Site) -> None:
    cw = site.client("cloudwatch", site.device)
    cw.put_metric_data(Namespace=secrets.CLOUDWATCH_NAMESPACE, MetricData=[{"MetricName": "Probe", "Value": 1}])
    assert _denied(lambda: cw.put_metric_data(Namespace="Other", MetricData=[{"MetricName": "Probe", "Value": 1}]))


# -- the real suite against the stacks --------------------------------------------------------------

def _suite(rt: Runtime, site: Site) -> dict[str, str]:
    from capture_dev import NAME as CAPTURE
    from capture_dev import capture_dev_recipe
    from filter_dev import NAME as FILTER
    from filter_dev import filter_dev_recipe
    from health_dev import NAME as HEALTH
    from health_dev import health_dev_recipe
    from inference_dev import NAME as INFERENCE
    from inference_dev import inference_dev_recipe, model_component
    from uplink_dev import NAME as UPLINK
    from uplink_dev import uplink_dev_recipe

    model = "com.ggvision.Model.SyntheticDetector"
    model_dir = REPO / "components" / model
    version = json.loads((model_dir / "manifest.json").read_text())["version"]
    model_component(rt.recipes, rt.artifacts, model, version, model_dir)
    capture_dev_recipe(rt.recipes, cameras={CAMERA: {
        "source": {"type": "synthetic", "width": 640, "height": 360, "fps": 10, "seed": 3, "objects": 4},
        "detectFps": 5, "record": {"enabled": True, "segmentSeconds": 10, "dir": "segments"}}}, metricsPeriodS=2)
    inference_dev_recipe(rt.recipes, models={"detector": {"component": model, "cameras": ["*"]}}, provider="cpu",
                         threads=1, metricsPeriodS=2)
    filter_dev_recipe(rt.recipes, cameras={CAMERA: {"policy": "events", "clipsFor": "all", "budgetKbps": 0}},
                      workDir=str(rt.tmp / "filter"), metricsPeriodS=2)
    endpoint = {"endpointUrl": site.moto.url, "region": "us-east-1"}
    uplink_dev_recipe(rt.recipes, site=SITE, iot={"enabled": False},
                      sink={"type": "s3", "bucket": site.bucket, "sseKmsKeyId": site.out["DataKeyArn"], **endpoint},
                      sqs={"queueUrl": site.out["UplinkQueueUrl"], **endpoint},
                      kinesis={"streamName": site.out["UplinkStreamName"], **endpoint})
    health_dev_recipe(rt.recipes, promPort=0, periodS=2, summaryPeriodS=5, inferenceComponent=INFERENCE)
    return {"capture": CAPTURE, "inference": INFERENCE, "filter": FILTER, "uplink": UPLINK, "health": HEALTH}


def _sqs_messages(site: Site) -> list[dict[str, Any]]:
    sqs, out = site.client("sqs"), []
    url = site.out["UplinkQueueUrl"]
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                  AttributeNames=["MessageGroupId"]).get("Messages", [])
        if not got:
            return out
        out += [{"body": json.loads(m["Body"]), "group": m["Attributes"]["MessageGroupId"]} for m in got]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(got)])


def _kinesis_records(site: Site) -> list[dict[str, Any]]:
    kin, out = site.client("kinesis"), []
    name = site.out["UplinkStreamName"]
    for shard in kin.list_shards(StreamName=name)["Shards"]:
        it = kin.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                    ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kin.get_records(ShardIterator=it, Limit=1000)
            out += [{"body": json.loads(x["Data"]), "key": x["PartitionKey"]} for x in r["Records"]]
            it = r.get("NextShardIterator") if r["Records"] else None
    return out


@pytest.mark.timeout(RUN_S + 300)
def test_the_stacks_accept_everything_the_suite_sends(site: Site, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in site.device.env().items():  # the runtime's environment: every component gets these credentials
        monkeypatch.setenv(k, v)
    for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", site.moto.url)  # the CloudWatch component's endpoint
    rt = Runtime(tmp_path, [])
    names = _suite(rt, site)
    try:
        rt.launch()
        for name in names.values():
            rt.wait_state(name, ("RUNNING",), 90)
        # Health's metrics leave through aws.greengrass.Cloudwatch, as the suite deploys it (the runtime's stand-in)
        d = rt.deploy(root_component_versions_to_add={CLOUDWATCH: "3.2.0"},
                      component_to_configuration={CLOUDWATCH: {"MERGE": {"PublishInterval": "5"}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        time.sleep(RUN_S)  # the run itself: the suite works for this long, there is nothing to await
        states = rt.states()
        assert all(str(states[n]) == "RUNNING" for n in names.values()), states  # nothing failed along the way
        rt.client.stop_component(component_name=names["capture"])  # no new input; let the rest drain
        queue = rt.root / "work" / names["uplink"] / "queue"
        from ggvision.uplink.cli import status_of

        def drained() -> dict[str, Any] | None:
            st = status_of(queue)
            return st if sum(st["backlog_items"].values()) == 0 else None

        status = wait_until(drained, 120, interval=1, what="the uplink queue drained")
    finally:
        rt.cleanup()  # stops the runtime: every component gets SIGTERM
    for name in names.values():  # ... and exits without a traceback (a Thread subclass once shadowed _stop)
        assert "Traceback" not in rt.log(name), f"{name}:\n{rt.log(name)[-3000:]}"
    # every object landed under the device's own slot, counted per kind
    objects = [o["Key"] for page in site.client("s3").get_paginator("list_objects_v2").paginate(
        Bucket=site.bucket, Prefix="") for o in page.get("Contents", []) if "probe-" not in o["Key"]]
    per_kind = Counter(k.split("/", 1)[0] for k in objects if not k.endswith(".metadata.json"))
    own = {kind: f"{kind}/{SITE}/{THING}/{CAMERA}/" for kind in keys.KINDS}
    assert all(k.startswith(own[k.split("/", 1)[0]]) for k in objects), objects[:5]
    sqs, kin = _sqs_messages(site), _kinesis_records(site)
    links = status["links"]
    print(f"\nsuite run {RUN_S:.0f} s: objects per kind {dict(per_kind)}, SQS messages {len(sqs)}, Kinesis records "
          f"{len(kin)}; uplink lanes {json.dumps(links)}")
    assert per_kind["images"] > 0 and per_kind["clips"] > 0, per_kind
    for lane, link in links.items():
        assert link["rejected_items"] == 0 and link["last_error"] == "", (lane, link)
    assert links["object"]["delivered_items"] == sum(per_kind.values())  # 100 % of what it sent was accepted
    assert len(sqs) == links["sqs"]["delivered_items"] > 0
    assert len(kin) == links["kinesis"]["delivered_items"] > 0
    assert {m["group"] for m in sqs} == {streams.group_id(THING, CAMERA)}
    assert {r["key"] for r in kin} == {streams.partition_key(THING, CAMERA)}
    cw = site.client("cloudwatch")
    metrics = cw.list_metrics(Namespace=secrets.CLOUDWATCH_NAMESPACE)["Metrics"]
    assert {m["MetricName"] for m in metrics} >= {"CpuUsage", "DetectionFps"}, metrics
    points = cw.get_metric_data(StartTime=time.time() - RUN_S - 600, EndTime=time.time() + 60, MetricDataQueries=[{
        "Id": "fps", "MetricStat": {"Metric": {"Namespace": secrets.CLOUDWATCH_NAMESPACE, "MetricName": "DetectionFps",
                                               "Dimensions": [{"Name": "coreName", "Value": THING}]},
                                    "Period": 60, "Stat": "Maximum"}}])["MetricDataResults"][0]["Values"]
    assert points and max(points) > 0, points  # detections really flowed, and their rate reached CloudWatch
    print(f"CloudWatch: {len(metrics)} metrics in {secrets.CLOUDWATCH_NAMESPACE}, DetectionFps per minute {points}")


@pytest.mark.parametrize("stage", ["dev", "staging", "production"])
def test_stage_deployments_point_the_uplink_at_the_stacks(stage: str) -> None:
    """Each stage's deployment configures the Uplink (a merge the model accepts) for exactly the bucket, key,
    queue and stream the stacks create — with the names from the contract."""
    import yaml

    from deploy.render import render
    from ggvision.config.base import parse
    from ggvision.config.uplink import UplinkConfig

    region, account = "eu-west-1", "123456789012"
    doc = render(REPO / "deploy" / "deployments" / f"{stage}.json", region, account)
    merge = json.loads(doc["components"]["com.ggvision.Uplink"]["configurationUpdate"]["merge"])
    # what a device runs: the recipe's DefaultConfiguration with the deployment's merge on top (developer guide,
    # "Update component configurations": merge replaces values key by key, objects recursively)
    default = yaml.safe_load((REPO / "components" / "com.ggvision.Uplink" / "recipe.yaml").read_text())[
        "ComponentConfiguration"]["DefaultConfiguration"]

    def merged(base: Any, patch: Any) -> Any:
        if isinstance(base, dict) and isinstance(patch, dict):
            return {**base, **{k: merged(base.get(k), v) for k, v in patch.items()}}
        return patch

    cfg = parse(UplinkConfig, merged(default, merge))
    storage = _template("storage.yaml")
    assert _sub_text(storage["Resources"]["DataBucket"]["Properties"]["BucketName"]).replace(
        "${NamePrefix}", "ggvision").replace("${AWS::Region}", region).replace("${AWS::AccountId}", account) \
        == cfg.sink.bucket
    assert _sub_text(storage["Resources"]["DataKeyAlias"]["Properties"]["AliasName"]).replace(
        "${NamePrefix}", "ggvision") == cfg.sink.sse_kms_key_id
    assert cfg.sink.prefix == ""  # the device role is scoped to {kind}/... at the bucket's root
    assert cfg.sqs.enabled and cfg.sqs.queue_url == \
        f"https://sqs.{region}.amazonaws.com/{account}/{streams.queue_name('ggvision')}"
    assert cfg.kinesis.enabled and cfg.kinesis.stream_name == streams.stream_name("ggvision")
    import semantic_version

    suite = yaml.safe_load((REPO / "recipes" / "com.ggvision.Suite.yaml").read_text())
    wanted = suite["ComponentDependencies"]["com.ggvision.Uplink"]["VersionRequirement"]
    pinned = doc["components"]["com.ggvision.Uplink"]["componentVersion"]
    assert semantic_version.NpmSpec(wanted).match(semantic_version.Version(pinned)), (wanted, pinned)
