"""com.ggvision.Uplink's SQS and Kinesis lanes against moto's server over HTTP: batches within the limits,
order per camera, idempotency keys, partial failures and throttling (injected by tests/faultproxy.py between
boto3 and moto), a message too large for the queue, kill -9 at random moments; and the real component under
`ggvision nucleus`, switched on by a deployment, through an outage and a kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from faultproxy import KINESIS_PUT, SQS_BATCH, FaultProxy
from harness import Runtime, wait_until
from killloop import AckPipe, kill_loop
from typer.testing import CliRunner
from uplink_dev import NAME as UPLINK
from uplink_dev import MotoProcess, aws_test_env, drained, uplink_dev_recipe

from ggvision.config.base import parse
from ggvision.config.uplink import UplinkConfig
from ggvision.contract import streams
from ggvision.uplink.engine import Engine, object_sink, run_engine, stream_sinks
from ggvision.uplink.messages import parse_put
from ggvision.uplink.queue import UplinkQueue
from ggvision_cli import app as cli_app

pytestmark = pytest.mark.timeout(120)
THING = "thing-1"
T0 = time.time() - 3600  # recent: the component expires items older than retentionDays
CAMERAS = ("door", "yard", "gate")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProcess]:
    aws_test_env()
    m = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def proxy(moto: MotoProcess) -> Iterator[FaultProxy]:
    p = FaultProxy(moto.url)
    try:
        yield p
    finally:
        p.stop()


def make_queue(moto: MotoProcess, name: str, **attrs: str) -> str:
    if name.endswith(".fifo"):
        attrs["FifoQueue"] = "true"
    return moto.client("sqs").create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]


def make_stream(moto: MotoProcess, name: str, shards: int = 2) -> None:
    k = moto.client("kinesis")
    k.create_stream(StreamName=name, ShardCount=shards)
    wait_until(lambda: k.describe_stream(StreamName=name)["StreamDescription"]["StreamStatus"] == "ACTIVE", 10,
               what="stream active")


def config(endpoint: str, queue_url: str | None, stream: str | None, **kw: Any) -> dict[str, Any]:
    sqs, kinesis = kw.pop("sqs", {}), kw.pop("kinesis", {})
    out: dict[str, Any] = {"site": "s1", "iot": {"enabled": False}, "archive": {"enabled": False},
                           "backoffMaxS": 0.2, **kw}
    if queue_url:
        out["sqs"] = {"queueUrl": queue_url, "region": "us-east-1", "endpointUrl": endpoint, "timeoutS": 2, **sqs}
    if stream:
        out["kinesis"] = {"streamName": stream, "region": "us-east-1", "endpointUrl": endpoint, "timeoutS": 2,
                          **kinesis}
    return out


def result(camera: str, n: int, pad: int = 0, priority: str = "results") -> dict[str, Any]:
    return {"schema": "uplink-put/1.0", "id": f"res:{camera}:{n}", "producer": "test", "priority": priority,
            "camera": camera, "start": T0 + n, "destination": "iot", "topic": "ggvision/{thing}/results",
            "payload": {"camera": camera, "n": n, "pad": "x" * pad}}


def enqueue(queue_dir: Path, cfg: UplinkConfig, specs: list[dict[str, Any]]) -> None:
    """Items queued before the engine starts: its first round sees them all (deterministic batches)."""
    q = UplinkQueue(queue_dir, ("object", *cfg.message_lanes))
    try:
        out = q.put_many([parse_put(s, THING, 130000) for s in specs])
        assert {s for s, _ in out} == {"persisted"}, out
    finally:
        q.close()


def start(queue_dir: Path, cfg: UplinkConfig, work: Path, changes: list[tuple[str, bool, str]]) -> Engine:
    queue = UplinkQueue(queue_dir, ("object", *cfg.message_lanes), cfg.quota_bytes, cfg.retention_s)
    engine = Engine(queue, cfg, THING, object_sink(cfg, work), stream_sinks(cfg, work, THING),
                    on_change=lambda lane, online, error: changes.append((lane, online, error)))
    engine.start()
    return engine


def read_queue(moto: MotoProcess, url: str, into: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Receive (and delete) what is there, appended to `into` in receive order: a FIFO queue gives each
    message group in order."""
    sqs = moto.client("sqs")
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                      MessageSystemAttributeNames=["All"]).get("Messages", []):
        for m in msgs:
            attrs = {k: v["StringValue"] for k, v in m.get("MessageAttributes", {}).items()}
            into.append({"body": json.loads(m["Body"]), "attributes": m.get("Attributes", {}),
                         "message_attributes": attrs})
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                        for i, m in enumerate(msgs)])
    return into


def read_stream(moto: MotoProcess, name: str) -> list[dict[str, Any]]:
    """Every record, shard by shard in sequence order."""
    k = moto.client("kinesis")
    out = []
    for shard in k.list_shards(StreamName=name)["Shards"]:
        it = k.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            out += [{"body": json.loads(x["Data"]), "key": x["PartitionKey"], "shard": shard["ShardId"]}
                    for x in r["Records"]]
            if not r["Records"]:
                break
            it = r.get("NextShardIterator")
    return out


def per_camera(bodies: list[dict[str, Any]], first_only: bool = True) -> dict[str, list[int]]:
    """Each camera's payload numbers in arrival order (first arrival of each id only, as a consumer that
    de-duplicates on (thing, id) sees them)."""
    seen: set[tuple[str, str]] = set()
    out: dict[str, list[int]] = {}
    for b in bodies:
        if first_only and (b["thing"], b["id"]) in seen:
            continue
        seen.add((b["thing"], b["id"]))
        out.setdefault(b["camera"], []).append(b["payload"]["n"])
    return out


def sqs_size(entry: dict[str, Any]) -> int:
    """A message's size as SQS counts it: body plus each attribute's name, type and value."""
    return len(entry["MessageBody"].encode()) + sum(len(k) + len(v["DataType"]) + len(v["StringValue"].encode())
                                                    for k, v in entry.get("MessageAttributes", {}).items())


# -- batching, keys, order ---------------------------------------------------------------------------------

def test_batches_within_the_limits_keep_each_cameras_order_and_carry_the_keys(
        tmp_path: Path, moto: MotoProcess, proxy: FaultProxy) -> None:
    url = make_queue(moto, "batches.fifo")
    make_stream(moto, "batches")
    cfg = parse(UplinkConfig, config(proxy.url, url, "batches", sqs={"maxRequestBytes": 6000},
                                     kinesis={"maxRequestBytes": 9000}))
    rng = random.Random(3)
    specs = [result(cam, n, rng.randrange(100, 1500)) for n in range(20) for cam in CAMERAS]
    enqueue(tmp_path / "q", cfg, specs)
    changes: list[tuple[str, bool, str]] = []
    engine = start(tmp_path / "q", cfg, tmp_path, changes)
    try:
        wait_until(lambda: drained(tmp_path / "q"), 30, what="both lanes delivered")
        links = engine.status()["links"]
    finally:
        engine.stop()
        engine.queue.close()
    ids = {s["id"] for s in specs}

    # batches: within the limits, and really batched
    sqs_reqs, kin_reqs = proxy.sent(SQS_BATCH), proxy.sent(KINESIS_PUT)
    assert all(len(r.ids) <= 10 and sum(map(sqs_size, r.entries)) <= 6000 for r in sqs_reqs)
    assert all(len(r.ids) <= 500 and sum(n + len(e["PartitionKey"]) for n, e in zip(r.sizes, r.entries,
                                                                                    strict=True)) <= 9000
               for r in kin_reqs)
    assert len(sqs_reqs) < len(specs) / 2 and len(kin_reqs) < len(specs) / 4
    assert max(len(r.ids) for r in sqs_reqs) > 1
    assert Counter(proxy.accepted(SQS_BATCH)) == Counter(ids) == Counter(proxy.accepted(KINESIS_PUT))  # each once

    # SQS FIFO: group = thing/camera, de-duplication id from thing/id, attributes, each camera in order
    got = read_queue(moto, url, [])
    assert sorted(m["body"]["id"] for m in got) == sorted(ids)
    for m in got:
        body, attrs = m["body"], m["attributes"]
        assert body["schema"] == "uplink-record/1.0" and body["thing"] == THING and body["site"] == "s1"
        assert m["message_attributes"] == {"id": body["id"], "thing": THING, "camera": body["camera"],
                                           "topic": f"ggvision/{THING}/results"}
        assert attrs["MessageGroupId"] == f"{THING}/{body['camera']}" == streams.group_id(THING, body["camera"])
        assert attrs["MessageDeduplicationId"] == streams.deduplication_id(THING, body["id"])
        assert body["payload"] == result(body["camera"], body["payload"]["n"], len(body["payload"]["pad"]))["payload"]
    assert per_camera([m["body"] for m in got], first_only=False) == {c: list(range(20)) for c in CAMERAS}

    # Kinesis: partition key = thing/camera, so each camera is on one shard and in order there
    recs = read_stream(moto, "batches")
    assert sorted(r["body"]["id"] for r in recs) == sorted(ids)
    assert all(r["key"] == f"{THING}/{r['body']['camera']}" for r in recs)
    assert all(len({r["shard"] for r in recs if r["body"]["camera"] == c}) == 1 for c in CAMERAS)
    assert per_camera([r["body"] for r in recs], first_only=False) == {c: list(range(20)) for c in CAMERAS}
    seqs = [r["body"]["seq"] for r in recs if r["body"]["camera"] == "door"]
    assert seqs == sorted(seqs)

    assert links["sqs"]["delivered_items"] == links["kinesis"]["delivered_items"] == len(specs)
    assert links["sqs"]["retried_items"] == links["kinesis"]["rejected_items"] == 0
    assert ("sqs", True, "") in changes and not [c for c in changes if c[1] is False]


def test_a_standard_queue_gets_no_fifo_keys(tmp_path: Path, moto: MotoProcess, proxy: FaultProxy) -> None:
    url = make_queue(moto, "standard")
    cfg = parse(UplinkConfig, config(proxy.url, url, None))
    specs = [result(cam, n) for n in range(6) for cam in CAMERAS]
    enqueue(tmp_path / "q", cfg, specs)
    engine = run_engine(tmp_path / "q", cfg, tmp_path, THING)
    try:
        wait_until(lambda: drained(tmp_path / "q"), 20, what="delivered")
    finally:
        engine.stop()
        engine.queue.close()
    entries = [e for r in proxy.sent(SQS_BATCH) for e in r.entries]
    assert len(entries) == len(specs)
    assert not [e for e in entries if "MessageGroupId" in e or "MessageDeduplicationId" in e]
    assert sorted(m["body"]["id"] for m in read_queue(moto, url, [])) == sorted(s["id"] for s in specs)


# -- failures ----------------------------------------------------------------------------------------------

def reorders(proxy: FaultProxy, op: str) -> int:
    """Accepted entries that followed a failed entry of their camera in the same request."""
    n = 0
    for r in proxy.sent(op):
        failed_cams: set[str] = set()
        for i in r.ids:
            cam = i.split(":")[1]
            if i in r.failed:
                failed_cams.add(cam)
            elif cam in failed_cams and not (r.throttled or r.refused):
                n += 1
    return n


@pytest.mark.parametrize("strict", [False, True], ids=["batched", "strict-order"])
def test_partial_failures_retry_only_the_failed_entries(tmp_path: Path, moto: MotoProcess, proxy: FaultProxy,
                                                         strict: bool) -> None:
    name = f"partial-{'strict' if strict else 'batched'}"
    url = make_queue(moto, f"{name}.fifo")
    make_stream(moto, name)
    cfg = parse(UplinkConfig, config(proxy.url, url, name, sqs={"strictOrder": strict},
                                     kinesis={"strictOrder": strict}))
    specs = [result(cam, n) for n in range(10) for cam in CAMERAS[:2]]
    failing = {"res:door:1", "res:door:6", "res:yard:3"}
    proxy.fail_once = {SQS_BATCH: set(failing), KINESIS_PUT: set(failing)}
    enqueue(tmp_path / "q", cfg, specs)
    changes: list[tuple[str, bool, str]] = []
    engine = start(tmp_path / "q", cfg, tmp_path, changes)
    try:
        wait_until(lambda: drained(tmp_path / "q"), 30, what="every item delivered")
        links = engine.status()["links"]
    finally:
        engine.stop()
        engine.queue.close()
    ids = [s["id"] for s in specs]
    for op, lane in ((SQS_BATCH, "sqs"), (KINESIS_PUT, "kinesis")):
        sent = proxy.sent(op)
        assert {i for r in sent for i in r.failed} == failing  # each failed once ...
        assert Counter(proxy.accepted(op)) == Counter(ids)  # ... and was accepted once; nothing else went twice
        assert links[lane]["retried_items"] == len(failing) and links[lane]["delivered_items"] == len(ids)
        assert links[lane]["reordered_items"] == reorders(proxy, op)
        if strict:
            assert all(len({i.split(":")[1] for i in r.ids}) == len(r.ids) for r in sent)  # one per camera
            assert links[lane]["reordered_items"] == 0
        else:
            assert links[lane]["reordered_items"] > 0  # a later item of the camera overtook a failed one
    assert not [c for c in changes if c[1] is False]  # the services answered: the links never went offline

    want = {c: list(range(10)) for c in CAMERAS[:2]}
    for bodies in ([m["body"] for m in read_queue(moto, url, [])], [r["body"] for r in read_stream(moto, name)]):
        arrived = per_camera(bodies)
        if strict:
            assert arrived == want
        else:
            assert arrived != want and {c: sorted(v) for c, v in arrived.items()} == want
        # `seq` restores the production order whatever the arrival order
        by_seq = sorted(bodies, key=lambda b: b["seq"])
        assert per_camera(by_seq) == want


def test_throttling_is_retried_and_a_message_too_large_for_the_queue_is_rejected_and_reported(
        tmp_path: Path, moto: MotoProcess, proxy: FaultProxy) -> None:
    url = make_queue(moto, "small.fifo", MaximumMessageSize="1024")
    make_stream(moto, "small")
    cfg = parse(UplinkConfig, config(proxy.url, url, "small"))
    specs = [result("door", n, 1500 if n == 3 else 50) for n in range(8)]
    proxy.throttle = {SQS_BATCH: 2, KINESIS_PUT: 2}
    enqueue(tmp_path / "q", cfg, specs)
    changes: list[tuple[str, bool, str]] = []
    engine = start(tmp_path / "q", cfg, tmp_path, changes)
    try:
        wait_until(lambda: drained(tmp_path / "q"), 30, what="every item handled")
        status = engine.status()
        evictions = [e for _, e in engine.queue.unreported()]
    finally:
        engine.stop()
        engine.queue.close()
    big = "res:door:3"
    # throttled twice, then delivered; the links were never called offline for it
    assert [r.throttled for r in proxy.sent(KINESIS_PUT)][:3] == [True, True, False]
    assert sum(r.throttled for r in proxy.sent(SQS_BATCH)) == 2
    assert not [c for c in changes if c[1] is False]
    # the message too large for the queue: refused, found by splitting the request, rejected from SQS only
    assert 2 <= sum(big in r.ids for r in proxy.sent(SQS_BATCH) if not r.throttled) <= 4
    assert Counter(proxy.accepted(SQS_BATCH)) == Counter(s["id"] for s in specs if s["id"] != big)
    assert per_camera([m["body"] for m in read_queue(moto, url, [])]) == {"door": [0, 1, 2, 4, 5, 6, 7]}
    assert per_camera([r["body"] for r in read_stream(moto, "small")]) == {"door": list(range(8))}
    assert status["links"]["sqs"]["rejected_items"] == 1 and status["links"]["kinesis"]["rejected_items"] == 0
    assert status["links"]["sqs"]["retried_items"] >= len(specs)  # the throttled requests' entries
    assert status["evicted_by_reason"] == {"rejected": 1}
    assert [(e.id, e.reason) for e in evictions] == [(big, "rejected")]
    assert evictions[0].detail.startswith("sqs: ") and "1024" in evictions[0].detail
    out = CliRunner().invoke(cli_app, ["uplink", "status", "--queue", str(tmp_path / "q")])
    assert out.exit_code == 0 and "evictions by reason: rejected 1" in out.output, out.output
    assert "sqs: 7 delivered" in out.output and "1 rejected" in out.output, out.output


# -- kill -9 -----------------------------------------------------------------------------------------------

def _child(queue: Path, cfg: dict[str, Any], specs: list[dict[str, Any]], wfd: int, until_empty: bool) -> None:
    """A whole uplink process: produce (acks to the pipe once put_many returned) and drain, until killed."""
    code = 0
    try:
        engine = run_engine(queue, parse(UplinkConfig, cfg), queue.parent, THING)
        for i in range(0, len(specs), 30):
            chunk = specs[i:i + 30]
            out = engine.queue.put_many([parse_put(s, THING, 130000) for s in chunk])
            assert "refused" not in {s for s, _ in out}, out
            os.write(wfd, "".join(s["id"] + "\n" for s in chunk).encode())
        while True:
            time.sleep(0.02)
            if until_empty and not engine.queue.head("sqs") and not engine.queue.head("kinesis"):
                engine.stop()
                break
    except BaseException:
        traceback.print_exc()
        code = 1
    os._exit(code)


def test_kill9_loop_loses_nothing_and_the_fifo_queue_has_no_duplicates(
        tmp_path: Path, moto: MotoProcess, proxy: FaultProxy) -> None:
    url = make_queue(moto, "kill9.fifo")
    make_stream(moto, "kill9")
    proxy.response_delay_s = 0.2  # accepted, answer late: a kill then leaves accepted items unacknowledged
    cfg = config(proxy.url, url, "kill9", kinesis={"maxRequestBytes": 4096})
    specs = [result(cam, n, 100) for n in range(60) for cam in CAMERAS]
    queue = tmp_path / "work" / "q"
    queue.parent.mkdir()
    rng = random.Random(11)
    acks = AckPipe()
    wfd, read_acks, acked = acks.wfd, acks.read, acks.acked

    def accepted_unanswered(round_: int) -> bool:
        """The first rounds kill while the proxy holds an accepted request's answer (SQS, then Kinesis), so the
        re-send case is proven whatever the machine's speed; the others kill at random."""
        if round_ >= 6:
            return False
        op = (SQS_BATCH, KINESIS_PUT)[round_ % 2]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with proxy.lock:
                if proxy.pending[op]:
                    return True
            time.sleep(0.005)
        return True

    kills = kill_loop(lambda until_empty: _child(queue, cfg, specs, wfd, until_empty=until_empty),
                      30, (0.1, 0.5), rng, read_acks, moment=accepted_unanswered)
    ids = [s["id"] for s in specs]
    assert kills == 30 and acked == set(ids)
    resent = {op: [i for i, n in Counter(proxy.accepted(op)).items() if n > 1] for op in (SQS_BATCH, KINESIS_PUT)}
    assert all(resent.values()), f"no kill landed between acceptance and ack (the test proves nothing): {resent}"

    want = {c: list(range(60)) for c in CAMERAS}
    fifo = [m["body"] for m in read_queue(moto, url, [])]
    assert Counter(b["id"] for b in fifo) == Counter(ids)  # every item once: SQS dropped the re-sends ...
    assert len(fifo) < len(proxy.accepted(SQS_BATCH))  # ... that it accepted more than once
    assert per_camera(fifo, first_only=False) == want
    recs = [r["body"] for r in read_stream(moto, "kill9")]
    assert set(b["id"] for b in recs) == set(ids) and len(recs) > len(ids)  # at least once (re-sends kept) ...
    assert per_camera(recs) == want  # ... and de-duplicated on (thing, id), each camera in order


# -- the component under `ggvision nucleus` ---------------------------------------------------------------

AGENT = "com.ggvision.test.Agent"
THING_RT = "test-thing"  # the thing name tests/harness.py gives the runtime
AGENT_ACL = {
    "aws.greengrass.ipc.pubsub": {
        "com.ggvision.test.Agent:pubsub:1": {"operations": ["aws.greengrass#PublishToTopic"],
                                             "resources": ["ggvision/v1/uplink/put"]},
        "com.ggvision.test.Agent:pubsub:2": {"operations": ["aws.greengrass#SubscribeToTopic"],
                                             "resources": ["ggvision/v1/*"]}}}


def uplink_pid(rt: Runtime) -> int | None:
    """The Uplink component's python process under this runtime (found by its IPC socket)."""
    sock = str(rt.root.resolve() / "ipc.socket")
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
            if "ggvision.uplink" in cmd and "-m" in cmd and \
                    p.environ().get("AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT") == sock:
                return p.pid
        except psutil.Error:
            continue
    return None


def kill9_and_wait_restart(rt: Runtime, metrics: Callable[[], list[dict[str, Any]]]) -> None:
    """kill -9 the Uplink; back when the runtime restarted it and the new process published metrics (it has
    subscribed to uplink-put by then)."""
    pid = uplink_pid(rt)
    assert pid, "the Uplink process was not found"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: (lambda p: p if p and p != pid else None)(uplink_pid(rt)), 30, what="the Uplink restarted")
    seen = len(metrics())
    wait_until(lambda: len(metrics()) > seen, 20, what="metrics of the restarted Uplink")
    rt.wait_state(UPLINK, "RUNNING")


def test_component_switched_on_by_a_deployment_delivers_through_an_outage_and_kill9(
        tmp_path: Path, moto: MotoProcess, proxy: FaultProxy) -> None:
    url = make_queue(moto, "ggvision-uplink.fifo")
    stream = streams.stream_name("ggvision")
    assert url.endswith("/" + streams.queue_name("ggvision"))
    make_stream(moto, stream)
    rt = Runtime(tmp_path, [AGENT], config={AGENT: {"accessControl": AGENT_ACL}})
    # the product recipe: SQS and Kinesis off by default; no IoT Core in this test
    uplink_dev_recipe(rt.recipes, site="s1", metricsPeriodS=0.3, backoffMaxS=1, iot={"enabled": False})
    fifo: list[dict[str, Any]] = []
    try:
        rt.start(wait_for={AGENT: ("RUNNING",), UPLINK: ("RUNNING",)})
        a = rt.agent()
        a.call("subscribe", id="acks", topic="ggvision/v1/uplink/acks")
        a.call("subscribe", id="metrics", topic="ggvision/v1/metrics/uplink")

        def acks() -> dict[str, str]:
            return {e["json"]["id"]: e["json"]["status"] for e in a.call("events", id="acks", count=0, timeout=0)}

        def metrics() -> list[dict[str, Any]]:
            return [e["json"] for e in a.call("events", id="metrics", count=0, timeout=0)]

        def publish(ns: range) -> None:
            msgs = [result(cam, n, 200) for n in ns for cam in ("door", "yard")]
            for m in msgs:
                a.call("publish_json", topic="ggvision/v1/uplink/put", message=m)
            want = {m["id"] for m in msgs}
            wait_until(lambda: want <= {i for i, s in acks().items() if s == "persisted"}, 20, what="acks")

        wait_until(metrics, 20, what="the first metrics")
        assert set(metrics()[-1]["online"]) == {"directory", "archive"}  # SQS and Kinesis are off

        # -- a deployment switches them on ------------------------------------------------------------
        on = {"enabled": True, "region": "us-east-1", "endpointUrl": proxy.url, "timeoutS": 3}
        d = rt.deploy(component_to_configuration={UPLINK: {"MERGE": {"sqs": {**on, "queueUrl": url},
                                                                    "kinesis": {**on, "streamName": stream}}}})
        assert d.status == "SUCCEEDED", d.deployment_status_details
        wait_until(lambda: {"sqs", "kinesis"} <= set(metrics()[-1]["online"]), 10, what="the lanes started")
        publish(range(0, 10))
        wait_until(lambda: len(read_queue(moto, url, fifo)) == 20, 20, interval=0.2, what="batch 1 in SQS")

        # -- the link drops: items are acknowledged (durable) and wait; kill -9 of the component --------
        proxy.down()
        publish(range(10, 20))
        wait_until(lambda: [m for m in metrics() if m["online"].get("sqs") is False and
                            m["online"].get("kinesis") is False], 20, what="SQS and Kinesis offline")
        assert metrics()[-1]["links"]["sqs"]["backlog_items"] == 20
        kill9_and_wait_restart(rt, metrics)
        publish(range(20, 25))

        # -- the link returns slowly: accepted, the answer late, and kill -9 before it arrives ------------
        proxy.response_delay_s = 1.8
        proxy.up()
        wait_until(lambda: proxy.pending[SQS_BATCH] and proxy.pending[KINESIS_PUT], 20,
                   what="a request of each service accepted and its answer pending")
        kill9_and_wait_restart(rt, metrics)
        proxy.response_delay_s = 0.0

        ids = {result(cam, n)["id"] for n in range(25) for cam in ("door", "yard")}
        wait_until(lambda: {m["body"]["id"] for m in read_queue(moto, url, fifo)} == ids, 30, interval=0.2,
                   what="everything in SQS")
        wait_until(lambda: {r["body"]["id"] for r in read_stream(moto, stream)} == ids, 30, interval=0.2,
                   what="everything in Kinesis")
        wait_until(lambda: [m for m in metrics()[-3:] if m["online"].get("sqs") and m["online"].get("kinesis")
                            and sum(m["backlog_items"].values()) == 0], 20, what="online, nothing left")
        assert rt.state(UPLINK) == "RUNNING"
    finally:
        rt.cleanup()

    want = {"door": list(range(25)), "yard": list(range(25))}
    # SQS FIFO: every item exactly once although some were accepted twice (re-sent after the kill), in order
    assert sorted(m["body"]["id"] for m in fifo) == sorted(ids)
    assert len(proxy.accepted(SQS_BATCH)) > len(ids)
    assert per_camera([m["body"] for m in fifo], first_only=False) == want
    assert all(m["message_attributes"]["id"] == m["body"]["id"] and m["attributes"]["MessageDeduplicationId"] ==
               streams.deduplication_id(THING_RT, m["body"]["id"]) for m in fifo)
    # Kinesis: at least once; de-duplicated on (thing, id), each camera in order
    recs = read_stream(moto, stream)
    assert len(recs) > len(ids) and {r["body"]["thing"] for r in recs} == {THING_RT}
    assert per_camera([r["body"] for r in recs]) == want
    assert all(r["key"] == streams.partition_key(THING_RT, r["body"]["camera"]) for r in recs)
