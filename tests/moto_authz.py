"""moto's server with its IAM enforcement given the request context AWS would evaluate: run as
`python tests/moto_authz.py -H 127.0.0.1 -p PORT` (with INITIAL_NO_AUTH_ACTION_COUNT set).

moto evaluates identity policies itself (Allow/Deny, wildcards), but for some services it asks the policy
about resource "*" with no condition keys, so a least-privilege policy can never pass. This launcher supplies
what the AWS Service Authorization Reference says each request carries, and leaves the decision to moto:

- the IAM service prefix, not the signing name: CloudWatch signs as `monitoring` but its actions are
  `cloudwatch:*` (SAR, "Actions, resources, and condition keys for Amazon CloudWatch");
- the resource of the request: Kinesis `PutRecords` → `arn:aws:kinesis:{region}:{account}:stream/{name}`
  (SAR, Amazon Kinesis Data Streams, resource type "stream"); Secrets Manager `GetSecretValue` → the secret's
  ARN (SAR, AWS Secrets Manager, resource type "Secret"); CloudWatch `PutMetricData` has no resource type ("*");
- condition keys: `cloudwatch:namespace` from PutMetricData's Namespace (SAR, Amazon CloudWatch, condition
  keys).
Nothing else of moto changes; S3 and SQS already pass their resource to the evaluator.
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any

from moto.iam import access_control as ac
from moto.iam.access_control import IAMPolicy, PermissionResult

IAM_PREFIX = {"monitoring": "cloudwatch"}
_CONDITIONS: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("conditions", default=None)


def _patch_action_prefix() -> None:
    original = ac.IAMRequestBase.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        service, _, operation = self._action.partition(":")
        self._action = f"{IAM_PREFIX.get(service, service)}:{operation}"

    ac.IAMRequestBase.__init__ = init


def _patch_conditions() -> None:
    def check_action_permitted(self: Any, resource: str) -> None:  # moto's, with the request's condition keys
        if self._action == "sts:GetCallerIdentity":
            return
        permitted = False
        for policy in self._access_key.collect_policies():
            result = IAMPolicy(policy).is_action_permitted(self._action, resource, None, _CONDITIONS.get())
            if result == PermissionResult.DENIED:
                self._raise_access_denied()
            permitted = permitted or result == PermissionResult.PERMITTED
        if not permitted:
            self._raise_access_denied()

    ac.IAMRequestBase.check_action_permitted = check_action_permitted


def _patch_resources() -> None:
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.kinesis.responses import KinesisResponse
    from moto.secretsmanager.responses import SecretsManagerResponse

    def kinesis_resource(self: Any) -> str:
        _CONDITIONS.set({})
        arn = self._get_param("StreamARN")
        name = self._get_param("StreamName")
        return arn or (f"arn:aws:kinesis:{self.region}:{self.current_account}:stream/{name}" if name else "*")

    def secret_resource(self: Any) -> str:
        _CONDITIONS.set({})
        secret_id = self._get_param("SecretId")
        secret = self.backend.secrets.get(secret_id) if secret_id else None
        return secret.arn if secret is not None else "*"

    def cloudwatch_resource(self: Any) -> str:
        namespace = self._get_param("Namespace")
        _CONDITIONS.set({"cloudwatch:namespace": namespace} if namespace else {})
        return "*"

    KinesisResponse._determine_resource = kinesis_resource
    SecretsManagerResponse._determine_resource = secret_resource
    CloudWatchResponse._determine_resource = cloudwatch_resource


def main(argv: list[str]) -> None:
    _patch_action_prefix()
    _patch_conditions()
    _patch_resources()
    from moto.server import main as moto_main

    moto_main(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
