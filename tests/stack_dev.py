"""The project's CloudFormation stacks deployed into moto's server with IAM enforcement on, and credentials that
carry exactly a device's token-exchange policy — the cloud half as the suite will meet it.

moto's CloudFormation lacks a few resource types and one property (listed in MOTO_GAPS with the reason); the
deployment drops exactly those and nothing else, and tests/cloud/test_site_contract.py checks the dropped parts
statically (cfn-lint, properties). moto enforces IAM in server mode after INITIAL_NO_AUTH_ACTION_COUNT
unauthenticated calls: the first three create an administrator, everything after is authorized.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from harness import REPO
from uplink_dev import MotoProcess

from cloud.local import MOTO_GAPS, moto_template  # noqa: F401 - re-exported for the tests

REGION = "us-east-1"
TEMPLATES = REPO / "deploy" / "cloudformation"
STACKS = (("ggvision-storage", "storage.yaml"), ("ggvision-device-access", "device-access.yaml"),
          ("ggvision-routing", "routing.yaml"))
THING_VARIABLE = "${credentials-iot:ThingName}"

# What moto's CloudFormation cannot create and how a template is trimmed for it: one home, cloud/local.py
# (the local cloud of `make run` deploys the same templates).
# moto authorizes SQS batch calls under their own names; IAM authorizes SendMessageBatch as sqs:SendMessage
# (Amazon SQS API Reference, SendMessageBatch: "the permission for this action is sqs:SendMessage").
MOTO_ACTION_ALIASES = {"sqs:SendMessage": ["sqs:SendMessageBatch"]}
# (moto_authz.py supplies what moto's evaluator lacks for Kinesis, Secrets Manager and CloudWatch.)


@dataclass
class Creds:
    key: str
    secret: str

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret}


class AuthMoto:
    """moto's server in a subprocess with IAM enforcement, and an administrator made in its first three calls."""

    def __init__(self, log: Path) -> None:
        env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3", "MOTO_IAM_LOAD_MANAGED_POLICIES": "false"}
        launcher = Path(__file__).with_name("moto_authz.py")  # moto's server, its evaluator given the request context
        self.server = MotoProcess(log, launcher=[sys.executable, str(launcher)], env=env)
        self.url = self.server.url
        iam = self.client("iam", Creds("bootstrap", "bootstrap"))
        iam.create_user(UserName="admin")
        iam.put_user_policy(UserName="admin", PolicyName="admin", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
        k = iam.create_access_key(UserName="admin")["AccessKey"]
        self.admin = Creds(k["AccessKeyId"], k["SecretAccessKey"])

    def client(self, service: str, creds: Creds | None = None) -> Any:
        c = creds or self.admin
        return boto3.client(service, endpoint_url=self.url, region_name=REGION, aws_access_key_id=c.key,
                            aws_secret_access_key=c.secret)

    def deploy(self, name: str, template: dict[str, Any], params: dict[str, str] | None = None) -> dict[str, str]:
        cfn = self.client("cloudformation")
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(template), Capabilities=["CAPABILITY_NAMED_IAM"],
                         Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (params or {}).items()])
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack
        return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}

    def device_policy(self, thing: str, role: str = "ggvision-token-exchange") -> dict[str, Any]:
        """The deployed token-exchange role's inline policy as the IoT credentials provider hands it to `thing`:
        ${credentials-iot:ThingName} resolved to the thing name the nucleus sent (x-amzn-iot-thingname)."""
        iam = self.client("iam")
        [name] = iam.list_role_policies(RoleName=role)["PolicyNames"]
        doc = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        if isinstance(doc, str):  # moto keeps a CloudFormation-made inline policy as the repr of a dict
            doc = json.loads(doc) if doc.startswith('{"') else ast.literal_eval(doc)
        return json.loads(json.dumps(doc).replace(THING_VARIABLE, thing))

    def credentials_for(self, user: str, policy: dict[str, Any]) -> Creds:
        """Access keys of a user holding exactly `policy` (plus moto's names for batch actions)."""
        policy = copy.deepcopy(policy)
        for st in policy["Statement"]:
            actions = [st["Action"]] if isinstance(st["Action"], str) else list(st["Action"])
            st["Action"] = actions + [a for x in actions for a in MOTO_ACTION_ALIASES.get(x, [])]
        iam = self.client("iam")
        iam.create_user(UserName=user)
        iam.put_user_policy(UserName=user, PolicyName="device", PolicyDocument=json.dumps(policy))
        k = iam.create_access_key(UserName=user)["AccessKey"]
        return Creds(k["AccessKeyId"], k["SecretAccessKey"])

    def stop(self) -> None:
        self.server.stop()
