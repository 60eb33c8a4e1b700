"""How secrets a device reads are named: one Secrets Manager secret per camera credential, under the device's
own thing name, so the device role can be scoped to exactly its own secrets with `${credentials-iot:ThingName}`.

    {prefix}/{thing}/cameras/{camera}      e.g. ggvision/site-7-box/cameras/door   (SecretString: user:password)
"""

from __future__ import annotations

CLOUDWATCH_NAMESPACE = "ggvision"  # Health's metrics namespace: the device role may put metrics only there


def camera_secret_name(prefix: str, thing: str, camera: str) -> str:
    """The secret holding a camera's credentials: `{prefix}/{thing}/cameras/{camera}`."""
    return f"{prefix}/{thing}/cameras/{camera}"


def device_secret_pattern(prefix: str, thing: str) -> str:
    """The secret names a device may read (an IAM resource glob after `secret:`): `{prefix}/{thing}/*`."""
    return f"{prefix}/{thing}/*"
