"""`ggvision site apply --deploy`: the stage's rendered deployment document sent to where its devices take it.

- AWS (no `--runtime`/`--fleet`): the whole document, placeholders filled for the account (deploy/render.py), as
  greengrassv2 CreateDeployment to the stage's thing group through the rollout CLI's AwsBackend (one code path
  for every deployment the project makes), with the document's deploymentPolicies and iotJobConfiguration.
- a local fleet (`--fleet DIR`): the rollout CLI's LocalBackend, to the stage's thing group;
- one local runtime (`--runtime ROOT`): CreateLocalDeployment over the runtime's CLI IPC socket, as
  `ggvision deployment create` does.

A local target gets only what the site file drives: the components the stage's `configuration` names (the site
file's keys as the merge, the document's resets), ShadowManager (which shadows sync) and SecretManager (the camera
secrets). The rest of the document is the AWS account's (its data bucket, queue and stream): a local device keeps
its own sink and the components it already runs. A fleet group's deployment replaces the group's last one, so the
group's current components are kept and these laid over them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from deploy.render import RenderError, render_document
from ggvision.config.site import SiteFile
from ggvision.contract import secrets, shadows

LOCAL_ACCOUNT = "123456789012"  # moto's default account: the local cloud's (`ggvision run`) and the fleet's
LOCAL_REGION = "us-east-1"  # the local runtime's default AWS_REGION (`ggvision nucleus --region`)
DEPLOY_TIMEOUT_S = 300.0


class DeployError(RuntimeError):
    """The document could not be deployed; the message says where and why."""


def fill(doc: dict[str, Any], region: str, account: str) -> dict[str, Any]:
    """The document with ${AWS_REGION}/${AWS_ACCOUNT_ID} filled (the secrets' partial ARNs among them)."""
    try:
        return render_document(doc, region, account)
    except RenderError as e:
        raise DeployError(f"cannot fill the document for {region}/{account}: {e}") from None


def thing_group(site: SiteFile, stage: str, doc: dict[str, Any]) -> str:
    """The stage's thing group; the document's targetArn, when it names one, must agree."""
    group = site.stages[stage].thing_group
    target = str(doc.get("targetArn") or "")
    if target and target.rsplit("/", 1)[-1] != group:
        raise DeployError(f"the document targets {target}, the site file's stage {stage} names thing group {group}; "
                          "make them agree")
    return group


def site_part(site: SiteFile, stage: str, doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> {"componentVersion", "configurationUpdate": {"merge": {...}, "reset"?: [...]}} of what the site file
    drives in the (filled) document: see the module docstring."""
    components = doc.get("components") or {}
    names = [*site.stages[stage].configuration, shadows.SHADOW_MANAGER,
             *([secrets.SECRET_MANAGER] if secrets.SECRET_MANAGER in components else [])]
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        spec = components.get(name) or {}
        update = spec.get("configurationUpdate") or {}
        if name in (shadows.SHADOW_MANAGER, secrets.SECRET_MANAGER):  # wholly the site file's
            merge = json.loads(update.get("merge") or "{}")
        else:
            merge = site.stages[stage].configuration[name]
        part: dict[str, Any] = {"merge": merge}
        if update.get("reset"):
            part["reset"] = list(update["reset"])
        out[name] = {"componentVersion": spec.get("componentVersion"), "configurationUpdate": part}
    return out


def greengrass_client(session: Any) -> Any:
    """The greengrassv2 client deployments go through (moto has no greengrassv2: tests stub this one)."""
    return session.client("greengrassv2")


def deploy_aws(doc: dict[str, Any], group: str, region: str | None, account: str | None) -> str:
    """CreateDeployment of the whole filled document to the thing group; the deployment id."""
    import boto3

    from rollout.backends.aws import AwsBackend, RecordedMetrics
    from rollout.backends.base import BackendError

    session = boto3.Session(region_name=region)
    region = session.region_name
    if not region:
        raise DeployError("no AWS region: give --region or configure one for boto3")
    if account is None:
        account = str(session.client("sts").get_caller_identity()["Account"])
    filled = fill(doc, region, account)
    backend = AwsBackend(greengrass_client(session), session.client("iot"), RecordedMetrics(), region, account,
                         iot_job=filled.get("iotJobConfiguration"), policies=filled.get("deploymentPolicies"))
    try:
        return backend.deploy(group, filled["components"], name=filled.get("deploymentName", "")).deployment_id
    except BackendError as e:
        raise DeployError(str(e)) from None


def deploy_fleet(fleet: Path, group: str, part: dict[str, dict[str, Any]], name: str) -> str:
    """The site part laid over the group's current deployment, published to the fleet; the deployment id."""
    from gglocal.fleet.layout import FleetError, FleetInfo
    from rollout.backends.base import BackendError
    from rollout.backends.local import LocalBackend

    try:
        backend = LocalBackend(FleetInfo.load(fleet))
    except (FleetError, BackendError) as e:
        raise DeployError(f"{fleet}: {e}") from None
    try:
        current = backend.current(group)
        components = dict(current.components) if current else {}
        for cname, spec in part.items():
            kept = components.get(cname) or {}
            components[cname] = {"componentVersion": kept.get("componentVersion") or spec["componentVersion"],
                                 "configurationUpdate": spec["configurationUpdate"]}
        return backend.deploy(group, components, name=name).deployment_id
    except BackendError as e:
        raise DeployError(str(e)) from None
    finally:
        backend.close()


def deploy_runtime(root: Path, part: dict[str, dict[str, Any]], timeout_s: float = DEPLOY_TIMEOUT_S) -> str:
    """CreateLocalDeployment of the site part on the runtime at `root` (ShadowManager and SecretManager as roots:
    the runtime supplies both), waited for; the deployment id. DeployError with the runtime's cause if it fails."""
    from awsiot.greengrasscoreipc import connect
    from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    from awsiot.greengrasscoreipc.model import CreateLocalDeploymentRequest

    info_path = root / "cli_ipc_info" / "cli.json"
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        raise DeployError(f"no runtime at {root}: {info_path} not readable (is `ggvision run` running?)") from None
    roots = {n: s["componentVersion"] for n, s in part.items()
             if n in (shadows.SHADOW_MANAGER, secrets.SECRET_MANAGER)}
    config = {n: {"MERGE": s["configurationUpdate"]["merge"],
                  **({"RESET": s["configurationUpdate"]["reset"]} if s["configurationUpdate"].get("reset") else {})}
              for n, s in part.items()}
    try:
        client = GreengrassCoreIPCClientV2(client=connect(ipc_socket=info["socket"], authtoken=info["token"]))
    except Exception as e:
        raise DeployError(f"cannot reach the runtime at {root}: {e}") from None
    try:
        op = client.client.new_create_local_deployment()
        op.activate(CreateLocalDeploymentRequest(root_component_versions_to_add=roots,
                                                 component_to_configuration=config)).result(30)
        dep_id = op.get_response().result(30).deployment_id
        deadline = time.monotonic() + timeout_s
        while True:
            d = client.get_local_deployment_status(deployment_id=dep_id).deployment
            if d.status in ("SUCCEEDED", "FAILED", "CANCELED"):
                break
            if time.monotonic() > deadline:
                raise DeployError(f"deployment {dep_id} on {root}: not done within {timeout_s:.0f} s ({d.status})")
            time.sleep(0.25)  # a CLI poll, as greengrass-cli does: IPC has no deployment-status event for it
        if d.status != "SUCCEEDED":
            det = d.deployment_status_details
            cause = f"{det.detailed_deployment_status}: {det.deployment_failure_cause}" if det else d.status
            raise DeployError(f"deployment {dep_id} on {root}: {d.status} ({cause})")
        return dep_id
    finally:
        client.close()
