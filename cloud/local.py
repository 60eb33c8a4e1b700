"""The cloud half on this machine, for `make run` (`ggvision run`): moto's server on loopback with the stacks of
deploy/cloudformation deployed into it as CloudFormation stacks (storage, routing, processing: the same
templates as AWS gets, less the resources moto cannot create), the second-stage endpoint process
(`cloud.endpoint`), and the SQS runner (`cloud.runner`) calling the ingest handler (`cloud.ingest`) in a
thread, as Lambda's event source mapping would. `python -m cloud.local --dir D --model M` writes `D/cloud.json`
(the URLs, names and credentials the edge needs) once everything answers, and runs until SIGTERM or Ctrl-C.

What stays out, and why: Lambda's execution (moto needs Docker for it: the runner calls the same handler),
the IoT rules (the local runtime archives device messages into the data bucket itself: gglocal/iotcore/rules.py),
and AWS's managed TTL deletions (moto keeps items). Everything is in memory: it starts empty each time.
Needs the dev extras (moto, cfn-lint), which `make run` installs; a device never imports this module.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

log = logging.getLogger("cloud.local")

REGION = "us-east-1"
PREFIX = "ggvision"
TEMPLATES = Path(__file__).resolve().parent.parent / "deploy" / "cloudformation"
STACKS = (("ggvision-storage", "storage.yaml"), ("ggvision-routing", "routing.yaml"),
          ("ggvision-processing", "processing.yaml"))
# What moto's CloudFormation cannot create (it logs "No Moto CloudFormation support for ..."): control-plane
# wiring the local cloud does another way (the IoT rules: gglocal/iotcore/rules.py) or does not need.
MOTO_GAPS = {"AWS::IoT::ThingGroup", "AWS::IoT::TopicRule", "AWS::Pipes::Pipe", "AWS::SQS::QueuePolicy"}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}  # moto takes any; never real


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        out: set[str] = set()
        for k, v in node.items():
            if k == "Ref" and isinstance(v, str):
                out.add(v)
            elif k == "Fn::GetAtt":
                out.add(v[0] if isinstance(v, list) else str(v).split(".")[0])
            out |= _refs(v)
        return out
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


def template_doc(template: Path) -> dict[str, Any]:
    """A CloudFormation template as plain JSON values (short tags as their long forms)."""
    from cfnlint.decode import cfn_yaml

    return json.loads(json.dumps(cfn_yaml.load(str(template))))


def template_notifications(template: Path, bucket: str, arns: dict[str, str],
                           params: dict[str, str] | None = None) -> dict[str, Any]:
    """A bucket's NotificationConfiguration as the template declares it, in the S3 API's shape (moto's
    CloudFormation ignores the property, so a test puts exactly this): `arns` resolves each destination's
    logical name (`!GetAtt Queue.Arn`) to the deployed ARN; `params` the parameters (defaults otherwise) that a
    filter rule's `!Ref` or a `!If` on a `!Not [!Equals [!Ref P, ""]]` condition names."""
    doc = template_doc(template)
    values = {k: str(p.get("Default", "")) for k, p in doc.get("Parameters", {}).items()} | (params or {})

    def resolve(v: Any) -> Any:
        if isinstance(v, dict) and "Ref" in v:
            return values[v["Ref"]]
        if isinstance(v, dict) and "Fn::If" in v:
            cond, yes, no = v["Fn::If"]
            ref = doc["Conditions"][cond]["Fn::Not"][0]["Fn::Equals"][0]["Ref"]
            return resolve(yes if values[ref] != "" else no)
        if isinstance(v, list):
            return [resolve(x) for x in v]
        if isinstance(v, dict):
            return {k: resolve(x) for k, x in v.items()}
        return v

    conf = doc["Resources"][bucket]["Properties"]["NotificationConfiguration"]
    out = []
    for q in conf["QueueConfigurations"]:
        ref = q["Queue"]["Fn::GetAtt"]
        out.append({"QueueArn": arns[ref[0] if isinstance(ref, list) else ref.split(".")[0]], "Events": [q["Event"]],
                    "Filter": {"Key": {"FilterRules": resolve(q["Filter"]["S3Key"]["Rules"])}}})
    return {"QueueConfigurations": out}


def moto_template(path: Path) -> dict[str, Any]:
    """The template as deployed to moto: MOTO_GAPS resources (and outputs naming them) dropped, KMS key tags
    dropped (moto's KMS reads CloudFormation's Key/Value tags as TagKey/TagValue and fails). A resource that
    needs a dropped one is an error: the template would not work in moto at all."""
    doc = template_doc(path)
    dropped = {name for name, r in doc["Resources"].items() if r["Type"] in MOTO_GAPS}
    for name in dropped:
        del doc["Resources"][name]
    for name, r in doc["Resources"].items():
        if r["Type"] == "AWS::KMS::Key":
            r["Properties"].pop("Tags", None)
        if _refs(r) & dropped:
            raise ValueError(f"{path.name}: {name} needs a resource moto cannot create: {_refs(r) & dropped}")
    doc["Outputs"] = {k: v for k, v in doc.get("Outputs", {}).items() if not (_refs(v) & dropped)}
    return doc


def code_zip() -> bytes:
    """The ingest function's zip as the stack expects it: the cloud and ggvision.contract packages."""
    import ggvision.contract

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for pkg in (Path(__file__).resolve().parent, Path(ggvision.contract.__file__).resolve().parent):
            top = pkg.parent if pkg.name == "cloud" else pkg.parent.parent
            for p in sorted(pkg.rglob("*.py")):
                z.write(p, p.relative_to(top).as_posix())
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.1)  # a process coming up offers nothing to await but its port
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f} s")


class LocalCloud:
    def __init__(self, directory: Path, model: Path) -> None:
        self.dir, self.model = Path(directory), Path(model)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.stop = threading.Event()
        self.info: dict[str, Any] = {}
        self.runner_thread: threading.Thread | None = None

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        out = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **CREDENTIALS},
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, endpoint_url=self.info["endpoint_url"], region_name=REGION,
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def deploy(self, name: str, template: Path) -> dict[str, str]:
        cfn = self.client("cloudformation")
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(moto_template(template)),
                         Capabilities=["CAPABILITY_NAMED_IAM"])
        cfn.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def start(self) -> dict[str, Any]:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "cloud.json").unlink(missing_ok=True)
        port = _free_port()
        moto = self._spawn([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], "moto")
        url = f"http://127.0.0.1:{port}"
        _wait(f"{url}/moto-api/", moto, "moto's server")
        self.info = {"endpoint_url": url, "region": REGION, **{k.lower(): v for k, v in CREDENTIALS.items()}}
        outputs: dict[str, str] = {}
        for stack, template in STACKS:
            if stack == "ggvision-processing":  # its function's code must be in the artifacts bucket first
                self.client("s3").put_object(Bucket=outputs["ArtifactsBucketName"], Key="cloud/ingest.zip",
                                             Body=code_zip())
            outputs.update(self.deploy(stack, TEMPLATES / template))
        self._notify(outputs)
        ep_port = _free_port()
        endpoint = self._spawn([sys.executable, "-m", "cloud.endpoint", "--port", str(ep_port), "--model",
                                str(self.model), "--threads", "1"], "endpoint")
        _wait(f"http://127.0.0.1:{ep_port}/ping", endpoint, "the second-stage endpoint")
        self.info.update(data_bucket=outputs["DataBucketName"], table=outputs["VerdictsTableName"],
                         queue_url=outputs["IngestQueueUrl"], results_bucket=outputs["ResultsBucketName"],
                         sagemaker_url=f"http://127.0.0.1:{ep_port}")
        self._start_runner(outputs)
        (self.dir / "cloud.json").write_text(json.dumps(self.info, indent=1))
        return self.info

    def _notify(self, outputs: dict[str, str]) -> None:
        """The data bucket's notification to the ingest queue exactly as storage.yaml declares it (moto's
        CloudFormation ignores a bucket's NotificationConfiguration)."""
        self.client("s3").put_bucket_notification_configuration(
            Bucket=outputs["DataBucketName"], NotificationConfiguration=template_notifications(
                TEMPLATES / "storage.yaml", "DataBucket", {"IngestQueue": outputs["IngestQueueArn"]}))

    def _start_runner(self, outputs: dict[str, str]) -> None:
        from .ingest import Ingest
        from .runner import SqsRunner

        env = {"TABLE_NAME": outputs["VerdictsTableName"], "RESULTS_BUCKET": outputs["ResultsBucketName"],
               "DLQ_URL": outputs["IngestDeadLetterQueueUrl"], "ENDPOINT_NAME": "ggvision-second-stage",
               "EVENT_BUS_NAME": f"{PREFIX}-alerts",  # routing.yaml's bus "RETENTION_DAYS": "7",
               "AWS_ENDPOINT_URL": self.info["endpoint_url"], "AWS_DEFAULT_REGION": REGION,
               "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.info["sagemaker_url"], **CREDENTIALS}
        os.environ.update(env)  # the handler reads its settings and boto3 its endpoints from the environment
        ingest = Ingest.from_env()
        runner = SqsRunner(self.client("sqs"), outputs["IngestQueueUrl"], ingest.handle, visibility_timeout=30,
                           wait_s=1)

        def loop() -> None:
            while not self.stop.is_set():
                try:
                    runner.poll_once()
                except Exception as e:  # moto going away at shutdown, or a transient error: keep polling
                    if not self.stop.is_set():
                        log.warning("ingest runner: %s", e)
                        self.stop.wait(1.0)

        self.runner_thread = threading.Thread(target=loop, name="ingest-runner", daemon=True)
        self.runner_thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.runner_thread is not None:
            self.runner_thread.join(5)
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        (self.dir / "cloud.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloud.local", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="folder for cloud.json and the processes' logs")
    ap.add_argument("--model", type=Path, required=True, help="the second-stage model folder (model.onnx, manifest)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s cloud %(message)s")
    cloud = LocalCloud(args.dir, args.model)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        info = cloud.start()
        log.info("local cloud up: moto %s, data bucket %s, table %s, endpoint %s", info["endpoint_url"],
                 info["data_bucket"], info["table"], info["sagemaker_url"])
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        cloud.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
