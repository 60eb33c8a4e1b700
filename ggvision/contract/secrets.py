"""How secrets a device reads are named: one Secrets Manager secret per camera credential, under the device's
own thing name, so the device role can be scoped to exactly its own secrets with `${credentials-iot:ThingName}`.

    {prefix}/{thing}/cameras/{camera}      e.g. ggvision/site-7-box/cameras/door   (SecretString: user:password)

How they reach a device: a stage's deployment carries `aws.greengrass.SecretManager` with `cloudSecrets` = the
partial ARNs (`secret_arn`) of the camera secrets of every device of that stage. Each device's SecretManager
downloads them with the device role, which may read only `{prefix}/{thing}/*` of its own thing name: a device
holds its own cameras' passwords, and the others' are refused (and logged) by Secrets Manager, not by trust.
"""

from __future__ import annotations

CLOUDWATCH_NAMESPACE = "ggvision"  # Health's metrics namespace: the device role may put metrics only there
SECRET_MANAGER = "aws.greengrass.SecretManager"
SECRET_MANAGER_VERSION = "2.2.9"  # 2.2.0+: GetSecretValue `refresh`, periodicRefreshIntervalMin; 2.2.2+: partial ARNs
# the placeholders deploy/render.py fills in a deployment document
ARN_REGION, ARN_ACCOUNT = "${AWS_REGION}", "${AWS_ACCOUNT_ID}"


def camera_secret_name(prefix: str, thing: str, camera: str) -> str:
    """The secret holding a camera's credentials: `{prefix}/{thing}/cameras/{camera}`."""
    return f"{prefix}/{thing}/cameras/{camera}"


def device_secret_pattern(prefix: str, thing: str) -> str:
    """The secret names a device may read (an IAM resource glob after `secret:`): `{prefix}/{thing}/*`."""
    return f"{prefix}/{thing}/*"


def secret_arn(name: str, region: str = ARN_REGION, account: str = ARN_ACCOUNT, partition: str = "aws") -> str:
    """A secret's partial ARN: without the 6 random characters Secrets Manager appends, so it is known before the
    secret exists (SecretManager accepts partial ARNs from 2.2.2). A name ending in "-" and 6 letters or digits
    would read as a full ARN: camera ids should not end so."""
    return f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}"
