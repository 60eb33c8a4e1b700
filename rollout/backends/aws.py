"""AWS backend: Greengrass v2 thing-group deployments (boto3 greengrassv2 + iot), health summaries from S3.

- current(group): ListDeployments(targetArn, LATEST_ONLY) → GetDeployment: the revision a rollback redeploys
  (components, deploymentPolicies, iotJobConfiguration and tags kept as they were).
- deploy: CreateDeployment with the stage's iotJobConfiguration (jobExecutionsRolloutConfig + abortConfig +
  timeoutConfig; from the template revision, else rollout.yaml `aws.iot_job`); a canary is a subdeployment
  (parentTargetArn = the stage group): a core device applies it in place of the stage group's deployment, where a
  deployment of the canary group's own would be resolved together with the stage group's and fail on the model's
  conflicting pinned versions (docs/rollout.md, "Devices in several targets").
- nucleus_versions: GetCoreDevice coreVersion per canary device (subdeployments need nucleus >= 2.9.0).
- per-device status: ListEffectiveDeployments (coreDeviceExecutionStatus, reason) + ListInstalledComponents.
- devices: iot ListThingsInThingGroup.
- health summaries (the metrics source): Health publishes health-summary/1.0 to ggvision/{thing}/metrics; an IoT
  rule archives them to the data bucket as results/iot-rules/metrics/{thing}/YYYY/MM/DD/HH/{uuid}.json (the same
  pattern as the ggvision_results rule in deploy/cloudformation/routing.yaml). S3MetricsSource reads the hours
  since `since`. Why S3 rather than CloudWatch: the gates compare per-device, per-model-version values, which
  CloudWatch would need one metric (dimension set) per version for; the archive keeps the whole document.
  Any object with ``health(things, since)`` can be given instead (tests use recorded summaries).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any, Protocol

from ..config import RolloutConfig
from .base import BackendError, Deployment, DeviceStatus

METRICS_PREFIX = "results/iot-rules/metrics/"


class MetricsSource(Protocol):
    def health(self, things: list[str], since: float) -> list[dict[str, Any]]: ...


class RecordedMetrics:
    """Health summaries held in memory (recorded from a fleet, or fed by a test)."""

    def __init__(self, summaries: list[dict[str, Any]] | None = None) -> None:
        self.summaries = list(summaries or [])

    def health(self, things: list[str], since: float) -> list[dict[str, Any]]:
        return [s for s in self.summaries if s.get("thing") in things and (s.get("timestamp") or 0) >= since]


class S3MetricsSource:
    """Summaries archived by the IoT rule: <prefix><thing>/YYYY/MM/DD/HH/<uuid>.json."""

    def __init__(self, s3: Any, bucket: str, prefix: str = METRICS_PREFIX,
                 now: Callable[[], float] | None = None) -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix
        self._now = now or (lambda: dt.datetime.now(dt.timezone.utc).timestamp())

    def health(self, things: list[str], since: float) -> list[dict[str, Any]]:
        out = []
        start = dt.datetime.fromtimestamp(since, dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
        end = dt.datetime.fromtimestamp(self._now(), dt.timezone.utc)
        hours = []
        while start <= end and len(hours) < 24 * 14:
            hours.append(start.strftime("%Y/%m/%d/%H/"))
            start += dt.timedelta(hours=1)
        for thing in things:
            for hour in hours:
                pages = self.s3.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=f"{self.prefix}{thing}/{hour}")
                for page in pages:
                    for obj in page.get("Contents", []):
                        try:
                            doc = json.loads(self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read())
                        except ValueError:
                            continue  # a malformed archive object is skipped, like a malformed message
                        if isinstance(doc, dict) and (doc.get("timestamp") or 0) >= since:
                            out.append(doc)
        return sorted(out, key=lambda d: d.get("timestamp") or 0)


# What a stage's next revision (promote, canary, rollback) keeps from its current one besides the components.
TEMPLATE_KEYS = ("deploymentPolicies", "iotJobConfiguration", "tags")
DEFAULT_POLICIES = {"failureHandlingPolicy": "ROLLBACK",
                    "componentUpdatePolicy": {"action": "NOTIFY_COMPONENTS", "timeoutInSeconds": 120},
                    "configurationValidationPolicy": {"timeoutInSeconds": 60}}
DEFAULT_IOT_JOB = {"jobExecutionsRolloutConfig": {"maximumPerMinute": 100},
                   "abortConfig": {"criteriaList": [{"failureType": "FAILED", "action": "CANCEL",
                                                     "thresholdPercentage": 10.0, "minNumberOfExecutedThings": 1}]},
                   "timeoutConfig": {"inProgressTimeoutInMinutes": 60}}


class AwsBackend:
    name = "aws"

    def __init__(self, greengrass: Any, iot: Any, metrics: MetricsSource, region: str, account: str,
                 iot_job: dict[str, Any] | None = None, policies: dict[str, Any] | None = None) -> None:
        self.gg, self.iot, self.metrics = greengrass, iot, metrics
        self.region, self.account = region, account
        self.iot_job = iot_job or DEFAULT_IOT_JOB
        self.policies = policies or DEFAULT_POLICIES

    @classmethod
    def from_config(cls, cfg: RolloutConfig) -> AwsBackend:
        import boto3

        a = cfg.aws
        region = a.get("region")
        if not region:
            raise BackendError(f"{cfg.path}: aws.region is required for the aws backend")
        session = boto3.Session(region_name=region)
        account = a.get("account") or session.client("sts").get_caller_identity()["Account"]
        m = a.get("metrics") or {}
        if not m.get("bucket"):
            raise BackendError(f"{cfg.path}: aws.metrics.bucket (the data bucket the metrics rule archives to) "
                               "is required")
        metrics = S3MetricsSource(session.client("s3"), m["bucket"], m.get("prefix", METRICS_PREFIX))
        return cls(session.client("greengrassv2"), session.client("iot"), metrics, region, str(account),
                   a.get("iot_job"), a.get("policies"))

    def group_arn(self, group: str) -> str:
        return f"arn:aws:iot:{self.region}:{self.account}:thinggroup/{group}"

    def _call(self, what: str, fn: Callable[..., Any], **kw: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(**kw)
        except (ClientError, BotoCoreError) as e:
            raise BackendError(f"{what}: {e}") from None

    def current(self, group: str) -> Deployment | None:
        arn = self.group_arn(group)
        listed = self._call(f"ListDeployments {arn}", self.gg.list_deployments, targetArn=arn,
                            historyFilter="LATEST_ONLY")
        latest = [d for d in listed.get("deployments", []) if d.get("isLatestForTarget", True)
                  and d.get("deploymentStatus") != "CANCELED"]
        if not latest:
            return None
        d = self._call(f"GetDeployment {latest[0]['deploymentId']}", self.gg.get_deployment,
                       deploymentId=latest[0]["deploymentId"])
        comps = {}
        for name, c in (d.get("components") or {}).items():
            comps[name] = {"componentVersion": c["componentVersion"]}
            if c.get("configurationUpdate"):
                upd = dict(c["configurationUpdate"])
                if isinstance(upd.get("merge"), str):
                    upd["merge"] = json.loads(upd["merge"])
                comps[name]["configurationUpdate"] = upd
        created = d.get("creationTimestamp")
        parent = d.get("parentTargetArn")
        return Deployment(group=group, components=comps, deployment_id=d["deploymentId"],
                          revision=str(d.get("revisionId", "")),
                          created=created.timestamp() if hasattr(created, "timestamp") else 0.0,
                          parent_group=parent.rsplit("/", 1)[-1] if parent else None,
                          extra={k: d[k] for k in TEMPLATE_KEYS if d.get(k)})

    def deploy(self, group: str, components: dict[str, dict[str, Any]], *, parent_group: str | None = None,
               name: str = "", template: Deployment | None = None) -> Deployment:
        comps: dict[str, Any] = {}
        for cname, c in components.items():
            comps[cname] = {"componentVersion": c["componentVersion"]}
            upd = c.get("configurationUpdate")
            if upd:
                u: dict[str, Any] = {}
                if upd.get("merge") is not None:
                    u["merge"] = upd["merge"] if isinstance(upd["merge"], str) else json.dumps(upd["merge"])
                if upd.get("reset"):
                    u["reset"] = list(upd["reset"])
                comps[cname]["configurationUpdate"] = u
        extra = template.extra if template else {}
        req: dict[str, Any] = {
            "targetArn": self.group_arn(group), "deploymentName": (name or f"ggvision-{group}")[:256],
            "components": comps,
            "deploymentPolicies": extra.get("deploymentPolicies") or self.policies,
            "iotJobConfiguration": extra.get("iotJobConfiguration") or self.iot_job,
        }
        if extra.get("tags"):  # the stage's own tags (cost allocation, ownership) stay on its next revision
            req["tags"] = extra["tags"]
        if parent_group:
            req["parentTargetArn"] = self.group_arn(parent_group)
        resp = self._call(f"CreateDeployment {req['targetArn']}", self.gg.create_deployment, **req)
        return Deployment(group=group, components=components, deployment_id=resp["deploymentId"],
                          created=dt.datetime.now(dt.timezone.utc).timestamp(), parent_group=parent_group,
                          extra={k: req[k] for k in TEMPLATE_KEYS if req.get(k)})

    def devices(self, group: str) -> list[str]:
        things: list[str] = []
        token = None
        while True:
            kw = {"thingGroupName": group, **({"nextToken": token} if token else {})}
            page = self._call(f"ListThingsInThingGroup {group}", self.iot.list_things_in_thing_group, **kw)
            things += page.get("things", [])
            token = page.get("nextToken")
            if not token:
                return sorted(things)

    def nucleus_versions(self, things: list[str]) -> dict[str, str | None]:
        """GetCoreDevice coreVersion (= the Greengrass nucleus version) per thing; None when not reported."""
        return {t: self._call(f"GetCoreDevice {t}", self.gg.get_core_device, coreDeviceThingName=t).get("coreVersion")
                for t in things}

    def device_status(self, thing: str, deployment_id: str) -> DeviceStatus:
        eff = self._call(f"ListEffectiveDeployments {thing}", self.gg.list_effective_deployments,
                         coreDeviceThingName=thing).get("effectiveDeployments", [])
        mine = [e for e in eff if e.get("deploymentId") == deployment_id] if deployment_id else eff[:1]
        installed = self._call(f"ListInstalledComponents {thing}", self.gg.list_installed_components,
                               coreDeviceThingName=thing).get("installedComponents", [])
        comps = {c["componentName"]: c["componentVersion"] for c in installed if "componentVersion" in c}
        if not mine:
            return DeviceStatus(thing, None, "QUEUED" if deployment_id else "UNKNOWN", "", comps)
        e = mine[0]
        reason = e.get("reason") or ""
        details = e.get("statusDetails") or {}
        if details.get("errorTypes"):
            reason = f"{reason} {details['errorTypes']}".strip()
        return DeviceStatus(thing, e["deploymentId"], e["coreDeviceExecutionStatus"], reason, comps)

    def health(self, things: list[str], since: float) -> list[dict[str, Any]]:
        return self.metrics.health(things, since)

    def wait(self, seconds: float) -> None:
        import time

        time.sleep(seconds)

    def close(self) -> None:
        pass
