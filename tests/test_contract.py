"""The contract (ggvision/contract) is the one home of the names both halves depend on: the docs document
exactly its messages and topics, the code uses no topic or schema outside it, and every recipe's accessControl
names only contract topics."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from harness import REPO

from ggvision.contract import schemas, topics
from ggvision.contract.keys import object_key

MESSAGES_MD = (REPO / "docs" / "messages.md").read_text()
SCHEMA_ID = re.compile(r"\b([a-z][a-z-]*/\d+\.\d+)\b")
RUNTIME_OWN = {"group-deployment/1.0", "device-deployment/1.0"}  # gglocal's fleet messages, not the product's


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)))


def _code(pkg: str) -> list[Path]:
    return [p for p in (REPO / pkg).rglob("*.py") if "contract" not in p.relative_to(REPO).parts[:2]]


def test_every_message_and_topic_is_documented() -> None:
    headings = "\n".join(line for line in MESSAGES_MD.splitlines() if line.startswith("#"))
    for m in schemas.MESSAGES:
        assert m.schema in headings, f"docs/messages.md has no section for {m.schema}"
    for t in (*topics.LOCAL, *topics.IOT):
        assert f"`{t}`" in MESSAGES_MD or t.replace("{component}", "") in MESSAGES_MD, f"{t} undocumented"


def test_the_docs_document_no_message_the_contract_lacks() -> None:
    documented = {s for line in MESSAGES_MD.splitlines() if line.startswith("#") for s in SCHEMA_ID.findall(line)}
    assert documented - RUNTIME_OWN <= set(schemas.BY_SCHEMA), documented - RUNTIME_OWN - set(schemas.BY_SCHEMA)


def test_every_schema_the_product_writes_is_in_the_contract() -> None:
    literal = re.compile(r"[\"']([a-z][a-z-]*/\d+\.\d+)[\"']")
    seen = {s for p in _code("ggvision") for s in literal.findall(p.read_text())}
    assert seen, "no schema literal found: the scan is broken"
    assert seen <= set(schemas.BY_SCHEMA), f"schemas outside the contract: {sorted(seen - set(schemas.BY_SCHEMA))}"


@pytest.mark.parametrize("pkg", ["ggvision", "gglocal"])
def test_no_topic_is_spelled_outside_the_contract(pkg: str) -> None:
    spelled = re.compile(r"[\"'](ggvision/(v1/|\{thing\}/|\+/)[^\"']*)[\"']")
    hits = [f"{p.relative_to(REPO)}: {m.group(1)}" for p in _code(pkg) for m in spelled.finditer(p.read_text())]
    assert hits == [], "topics must come from ggvision.contract.topics:\n" + "\n".join(hits)


def _recipe_topics() -> list[tuple[str, str]]:
    out = []
    for recipe in sorted((REPO / "components").glob("com.ggvision.*/recipe.yaml")):
        doc = yaml.safe_load(recipe.read_text())
        acl = (doc.get("ComponentConfiguration") or {}).get("DefaultConfiguration", {}).get("accessControl", {})
        for service in ("aws.greengrass.ipc.pubsub", "aws.greengrass.ipc.mqttproxy"):
            for policy in (acl.get(service) or {}).values():
                out += [(recipe.parent.name, r) for r in policy.get("resources", [])]
    return out


def test_every_recipe_topic_is_a_contract_topic() -> None:
    pairs = _recipe_topics()
    assert len(pairs) >= 10, "the recipes' accessControl was not found"
    regexes = [_template_regex(t) for t in (*topics.LOCAL, *topics.IOT)]
    for component, resource in pairs:
        concrete = re.sub(r"\{iot:thingName\}", "thing-1", resource).replace("+", "x").replace("*", "x")
        assert any(r.fullmatch(concrete) for r in regexes), f"{component}: {resource} is no contract topic"


def test_every_topic_filter_of_the_contract_is_valid_mqtt() -> None:
    from topicmatch import mqtt_match, valid_publish_topic, valid_topic_filter

    for t in (*topics.LOCAL, *topics.IOT):
        assert valid_topic_filter(topics.every(t)) is None
        concrete = t.format(camera="door", sensor="t1", component="capture", thing="box-1")
        assert valid_publish_topic(concrete) is None and mqtt_match(topics.every(t), concrete)


def test_object_key_layout() -> None:
    key = object_key("p/", "images", "site-7", "box-1", "door", 1795000000.0, "a.webp")
    assert key == "p/images/site-7/box-1/door/2026/11/18/11/a.webp"
    with pytest.raises(ValueError, match="kind must be one of"):
        object_key("", "pictures", "site-7", "box-1", "door", 1795000000.0, "a.webp")


def test_stream_names_and_keys() -> None:
    from ggvision.contract import streams

    assert streams.queue_name("ggvision") == "ggvision-uplink.fifo" and streams.is_fifo(
        "https://sqs.eu-west-1.amazonaws.com/123456789012/" + streams.queue_name("ggvision"))
    assert streams.stream_name("ggv-dev") == "ggv-dev-uplink" and not streams.is_fifo("https://h/1/ggv-alerts")
    with pytest.raises(ValueError, match="prefix"):
        streams.queue_name("Bad_Prefix")
    # the stacks' NamePrefix allows exactly the prefixes the contract names things for
    for template in ("routing.yaml", "device-access.yaml"):
        doc = yaml.load((REPO / "deploy" / "cloudformation" / template).read_text(), Loader=_CfnLoader)
        assert doc["Parameters"]["NamePrefix"]["AllowedPattern"] == streams.NAME_PREFIX.pattern, template
    for name in (streams.QUEUE_TEMPLATE, streams.STREAM_TEMPLATE):
        assert f"`{name}`" in MESSAGES_MD, f"docs/messages.md does not name {name}"
    # keys within the services' limits whatever the thing and camera (each up to 128 characters)
    long_thing, long_camera = "t" * 128, "c" * 128
    assert len(streams.group_id(long_thing, long_camera)) <= 128
    assert len(streams.partition_key(long_thing, long_camera)) <= 256
    assert streams.group_id("box-1", "door") == streams.partition_key("box-1", "door") == "box-1/door"
    dedup = streams.deduplication_id("box-1", "filter:door:évt 1")
    assert re.fullmatch(r"[0-9a-f]{64}", dedup) and dedup != streams.deduplication_id("box-2", "filter:door:évt 1")


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Sub, !Ref, ...) read as plain values."""


_CfnLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_cloud_ingest_names() -> None:
    from ggvision.contract import cloud, keys

    assert (cloud.queue_name("ggv"), cloud.dlq_name("ggv"), cloud.table_name("ggv")) == (
        "ggv-ingest", "ggv-ingest-dlq", "ggv-verdicts")
    assert cloud.results_bucket_name("ggv", "eu-west-1", "123456789012") == "ggv-results-eu-west-1-123456789012"
    with pytest.raises(ValueError, match="prefix"):
        cloud.table_name("Bad_Prefix")
    # the triggers are the keys the edge writes: the rule's results archive and the snapshots
    assert keys.rule_archive_key("results", "box-1", 1795000000.0, "u.json").startswith(cloud.RECORD_PREFIX)
    assert object_key("", keys.IMAGES, "s", "box-1", "door", 1795000000.0, "e-1.jpg").startswith(cloud.SNAPSHOT_PREFIX)
    # one item per edge event, kept no longer than the privacy rule allows
    assert cloud.item_key("box-1", "door-1-2") == "box-1#door-1-2"
    assert cloud.expires_at(1795000000.5) == 1795000000 + keys.RETENTION_DAYS_MAX * 86400
    with pytest.raises(ValueError, match="privacy"):
        cloud.expires_at(0, keys.RETENTION_DAYS_MAX + 1)
    assert cloud.result_key("s", "box-1", "door", 1795000000.0, "e") == "verdicts/s/box-1/door/2026/11/18/11/e.json"
    assert set(cloud.VERDICTS) == {cloud.CONFIRMED, cloud.DISPUTED, cloud.UNVERIFIED}


def test_every_table_expires_items_on_the_contracts_one_ttl_attribute() -> None:
    from cfnlint.decode import cfn_yaml

    from ggvision.contract import cloud

    tables = {}
    for path in sorted((REPO / "deploy" / "cloudformation").glob("*.yaml")):
        doc = cfn_yaml.load(str(path))
        for name, r in doc["Resources"].items():
            if r["Type"] == "AWS::DynamoDB::Table":
                tables[f"{path.name}:{name}"] = r["Properties"].get("TimeToLiveSpecification")
    # the tables of event data must expire (the privacy rule); the model-update history holds none and keeps
    event_data = {"routing.yaml:EventsTable", "processing.yaml:VerdictsTable", "realtime.yaml:CountsTable"}
    assert event_data <= set(tables) and tables["model-updates.yaml:UpdatesTable"] is None
    for where, ttl in tables.items():
        if where in event_data or ttl is not None:
            assert ttl == {"AttributeName": cloud.TTL_ATTRIBUTE, "Enabled": True}, where
    # the events table's items get the attribute from the IoT rule's SELECT
    rule = cfn_yaml.load(str(REPO / "deploy" / "cloudformation" / "routing.yaml"))["Resources"]["EventsRule"]
    sql = rule["Properties"]["TopicRulePayload"]["Sql"]["Fn::Sub"]
    assert re.search(rf"\bAS {cloud.TTL_ATTRIBUTE}\b", sql), sql
    assert cloud.ITEM_TTL == cloud.TTL_ATTRIBUTE

