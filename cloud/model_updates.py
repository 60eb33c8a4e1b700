"""Automated model updates: `handler(event, context)` for Lambda's SQS event source whose messages are the
model registry bucket's ObjectCreated notifications of `{prefix}{model}/{version}/manifest.json` (the registry
writes a version's manifest last, model_registry/storage.py). Names: ggvision/contract/cloud.py.

For each new version, one item in the updates table records what became of it:

1. claim (`validating`; condition: no item yet, or `retrying`): a redelivered notification changes nothing;
2. validate exactly as a device would take the version: the registry's manifest, the model's sha256 against it
   (`Registry.fetch`), ONNX Runtime loads it and runs one warm-up inference (`ggvision.model.loader`). A failure
   stops here: `refused` with the reason, no component version, no rollout, the message is not retried;
3. publish the `com.ggvision.Model.<Name>` component version (`model_registry.publish`: artifacts to the
   components bucket, greengrassv2 CreateComponentVersion with the recipe and its digests): `published`;
4. promote it to the first stage (dev) with the one rollout engine (`rollout.engine.Engine`, AWS backend):
   canary, soak, gates, automatic rollback as `rollout promote` does; `passed`, `rolled_back` (with the gate's
   reason) or `rollout_refused` (a paused stage, a canary the engine refuses). The engine's record of the promote
   (its events) is kept in the item.

A transient failure (AWS throttled or down) puts the item to `retrying` with the reason and reports the message in
batchItemFailures; after maxReceiveCount SQS's redrive moves it to the dead-letter queue. A message that is not an
S3 notification of a manifest goes to the dead-letter queue at once with the reason (as cloud/ingest.py does).

The promote runs to its end inside the invocation, so the first stage's deployment timeouts and soaks must fit the
function's timeout (at most 15 minutes); `from_env` refuses a rollout configuration whose first stage cannot.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ggvision.contract import cloud as names
from ggvision.model.manifest import MANIFEST_FILE, ModelError

from .s3events import Malformed, S3Object, parse_body

log = logging.getLogger("cloud.model_updates")

ENV_TABLE, ENV_REGISTRY_PREFIX, ENV_COMPONENTS_BUCKET = "TABLE_NAME", "REGISTRY_PREFIX", "COMPONENTS_BUCKET"
ENV_ROLLOUT_CONFIG, ENV_DLQ_URL, ENV_TIMEOUT_S = "ROLLOUT_CONFIG", "DLQ_URL", "FUNCTION_TIMEOUT_S"
ENV_VARS = (ENV_TABLE, ENV_REGISTRY_PREFIX, ENV_COMPONENTS_BUCKET, ENV_ROLLOUT_CONFIG, ENV_DLQ_URL, ENV_TIMEOUT_S)
REASON_ATTRIBUTE = "reason"
MARGIN_S = 60  # the function's own work around the promote (validation, publish, state writes)


class Transient(RuntimeError):
    """A failure a later receive can get past (throttling, a service down)."""


def stage_budget_s(cfg: Any) -> float:
    """The longest the engine can take for the first stage: baseline, each phase's deployment wait and soak, and
    a rollback's deployment waits."""
    stage = cfg.stages[0]
    phases = [stage.soak_s] + ([stage.canary.soak_s] if stage.canary else [])
    return cfg.baseline_s + sum(phases) + 2 * len(phases) * cfg.deployment_timeout_s


@dataclass
class ModelUpdates:
    table_name: str
    registry_prefix: str
    components_bucket: str
    rollout_config: Any  # rollout.config.RolloutConfig
    dlq_url: str = ""
    region: str = ""
    clients: dict[str, Any] = field(default_factory=dict)
    session: Any = field(default_factory=boto3.session.Session)
    # (service, region) -> client for publish and the rollout backend; tests give Stubber'd greengrassv2/iot here
    client_factory: Callable[[str, str], Any] | None = None
    metrics: Any = None  # the rollout gates' health source (default: the config's S3 metrics archive)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ModelUpdates:
        from rollout.config import ConfigError, load_config

        env = dict(os.environ if env is None else env)
        missing = [k for k in (ENV_TABLE, ENV_COMPONENTS_BUCKET, ENV_ROLLOUT_CONFIG) if not env.get(k)]
        if missing:
            raise RuntimeError(f"cloud.model_updates: environment variables not set: {', '.join(missing)}")
        try:
            cfg = load_config(env[ENV_ROLLOUT_CONFIG])
        except ConfigError as e:
            raise RuntimeError(f"cloud.model_updates: {e}") from None
        if cfg.backend != "aws":
            raise RuntimeError(f"{cfg.path}: backend must be aws for cloud model updates, got {cfg.backend!r}")
        budget, timeout = stage_budget_s(cfg), float(env.get(ENV_TIMEOUT_S) or 900)
        if budget + MARGIN_S > timeout:
            raise RuntimeError(f"{cfg.path}: stage {cfg.stages[0].name} may take {budget:g} s (baseline_s, soaks, "
                               f"2 x deployment_timeout_s per phase) plus {MARGIN_S} s: more than the function's "
                               f"{timeout:g} s timeout")
        return cls(env[ENV_TABLE], env.get(ENV_REGISTRY_PREFIX, ""), env[ENV_COMPONENTS_BUCKET], cfg,
                   env.get(ENV_DLQ_URL, ""), str(cfg.aws.get("region") or ""))

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = (self.session.resource("dynamodb").Table(self.table_name) if service == "table"
                                     else self.session.client(service))
        return self.clients[service]

    def _factory(self, service: str, region: str) -> Any:
        if self.client_factory is not None:
            return self.client_factory(service, region)
        return self.session.client(service, region_name=region or None)

    # ------------------------------------------------------------------ one SQS event
    def handle(self, event: dict[str, Any], context: Any = None) -> dict[str, Any]:
        failures = []
        for rec in event.get("Records", []):
            mid = rec.get("messageId", "?")
            try:
                for obj in parse_body(rec.get("body"), mid):
                    self.update(obj)
            except Malformed as e:
                log.warning("to the dead-letter queue: %s", e)
                if not self._dead_letter(rec, str(e)):
                    failures.append({"itemIdentifier": mid})
            except Exception as e:  # Transient, or anything unforeseen: SQS delivers it again, then the DLQ
                log.warning("message %s retried: %s: %s", mid, type(e).__name__, e)
                failures.append({"itemIdentifier": mid})
        return {"batchItemFailures": failures}

    def _dead_letter(self, rec: dict[str, Any], reason: str) -> bool:
        if not self.dlq_url:
            return False
        try:
            self.client("sqs").send_message(QueueUrl=self.dlq_url, MessageBody=rec.get("body") or "(empty)",
                                            MessageAttributes={REASON_ATTRIBUTE: {
                                                "DataType": "String", "StringValue": reason[:1000]}})
            return True
        except Exception as e:
            log.error("cannot send to the dead-letter queue: %s", e)
            return False

    def model_of(self, obj: S3Object) -> tuple[str, str]:
        """(model, version) of `{REGISTRY_PREFIX}{model}/{version}/manifest.json`; Malformed otherwise."""
        from model_registry.names import RegistryError, check_name, check_version

        prefix = self.registry_prefix.strip("/") + "/" if self.registry_prefix.strip("/") else ""
        rest = obj.key[len(prefix):].split("/") if obj.key.startswith(prefix) else []
        if len(rest) != 3 or rest[2] != MANIFEST_FILE:
            raise Malformed(f"s3://{obj.bucket}/{obj.key}: not a registered version's manifest "
                            f"({prefix}{{model}}/{{version}}/{MANIFEST_FILE})")
        try:
            check_name(rest[0])
            check_version(rest[1])
        except RegistryError as e:
            raise Malformed(f"s3://{obj.bucket}/{obj.key}: {e}") from None
        return rest[0], rest[1]

    # ------------------------------------------------------------------ one new model version
    def update(self, obj: S3Object) -> None:
        model, version = self.model_of(obj)
        key = f"{model}#{version}"
        if not self._claim(key, model, version):
            log.info("%s %s: handled already", model, version)
            return
        from model_registry.registry import Registry
        from model_registry.storage import S3Store

        registry = Registry(S3Store(obj.bucket, self.registry_prefix, client=self._factory("s3", self.region)))
        problem = self._validate(registry, model, version)
        if problem:
            self._record(key, names.REFUSED, reason=problem)
            log.warning("%s %s refused: %s", model, version, problem)
            return
        try:
            published = self._publish(registry, model, version)
        except Transient as e:
            self._record(key, names.RETRYING, reason=str(e))
            raise
        self._record(key, names.PUBLISHED, **{names.UPDATE_COMPONENT: published.component,
                                              names.UPDATE_COMPONENT_ARN: published.arn})
        self._promote(key, model, version)

    def _claim(self, key: str, model: str, version: str) -> bool:
        try:
            self.client("table").update_item(
                Key={names.UPDATE_KEY: key},
                UpdateExpression="SET #s = :validating, #m = :m, #v = :v, #u = :now ADD #a :one",
                ConditionExpression="attribute_not_exists(#s) OR #s = :retrying",
                ExpressionAttributeNames={"#s": names.UPDATE_STATUS, "#m": names.UPDATE_MODEL,
                                          "#v": names.UPDATE_VERSION, "#u": names.UPDATE_UPDATED_AT,
                                          "#a": names.UPDATE_ATTEMPTS},
                ExpressionAttributeValues={":validating": names.VALIDATING, ":retrying": names.RETRYING,
                                           ":m": model, ":v": version, ":now": int(time.time()), ":one": 1})
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise

    def _record(self, key: str, status: str, **values: Any) -> None:
        sets = {names.UPDATE_STATUS: status, names.UPDATE_UPDATED_AT: int(time.time()), **values}
        self.client("table").update_item(
            Key={names.UPDATE_KEY: key},
            UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(sets))),
            ExpressionAttributeNames={f"#a{i}": k for i, k in enumerate(sets)},
            ExpressionAttributeValues={f":v{i}": v for i, v in enumerate(sets.values())})

    def _validate(self, registry: Any, model: str, version: str) -> str:
        """'' when the version is whole and runs as a device would run it; else why not."""
        from ggvision.model.loader import load_model
        from model_registry.names import RegistryError

        with tempfile.TemporaryDirectory(prefix="ggv-update-") as tmp:
            try:
                manifest = registry.manifest(model, version)
                if (manifest.name, manifest.version) != (model, version):
                    return (f"{model}/{version}/{MANIFEST_FILE} names {manifest.name} {manifest.version}: the key "
                            "and the manifest disagree")
                loaded = load_model(registry.fetch(model, version, Path(tmp) / "model"), provider="cpu", threads=1)
                close = getattr(loaded, "close", None)
                if close is not None:
                    close()
            except (RegistryError, ModelError) as e:
                return str(e)
            except (ClientError, BotoCoreError) as e:
                raise Transient(f"reading {model} {version} from the registry: {e}") from e
            except Exception as e:  # ONNX Runtime refusing the graph, a failing warm-up: the model is the problem
                return f"{model} {version} does not load or run as a device would: {type(e).__name__}: {e}"
        return ""

    def _publish(self, registry: Any, model: str, version: str) -> Any:
        from model_registry.names import RegistryError
        from model_registry.publish import publish

        try:
            return publish(registry, model, version, bucket=self.components_bucket, region=self.region,
                           client_factory=self._factory)
        except RegistryError as e:  # publish names the failed call: an AWS error, retried
            raise Transient(str(e)) from e

    def _promote(self, key: str, model: str, version: str) -> None:
        from rich.console import Console

        from rollout.backends.aws import AwsBackend, S3MetricsSource
        from rollout.backends.base import BackendError
        from rollout.engine import Engine, RolloutError
        from rollout.state import StateFile

        cfg = self.rollout_config
        stage = cfg.stages[0].name
        m = cfg.aws.get("metrics") or {}
        metrics = self.metrics or S3MetricsSource(self._factory("s3", self.region), m.get("bucket", ""),
                                                  **({"prefix": m["prefix"]} if m.get("prefix") else {}))
        backend = AwsBackend(self._factory("greengrassv2", self.region), self._factory("iot", self.region), metrics,
                             self.region, str(cfg.aws.get("account") or self._account()), cfg.aws.get("iot_job"),
                             cfg.aws.get("policies"))
        with tempfile.TemporaryDirectory(prefix="ggv-rollout-") as tmp:
            state = StateFile(Path(tmp) / "state.json")  # the function's; the item keeps the record
            engine = Engine(cfg, backend, state, Console(file=io.StringIO(), width=160))
            try:
                ok = engine.promote(model, version, stage)
            except RolloutError as e:
                self._record(key, names.ROLLOUT_REFUSED, reason=str(e), **{names.UPDATE_STAGE: stage})
                return
            except BackendError as e:
                self._record(key, names.RETRYING, reason=f"rollout: {e}", **{names.UPDATE_STAGE: stage},
                             **self._rollout(state))
                raise Transient(str(e)) from e
            record = self._rollout(state)
            reason = json.loads(record[names.UPDATE_ROLLOUT])["reason"] if record else ""
            self._record(key, names.PASSED if ok else names.ROLLED_BACK, reason=reason,
                         **{names.UPDATE_STAGE: stage}, **record)

    @staticmethod
    def _rollout(state: Any) -> dict[str, str]:
        rollouts = state.rollouts()
        if not rollouts:
            return {}
        r = rollouts[-1]
        return {names.UPDATE_ROLLOUT: json.dumps({k: r.get(k) for k in ("id", "status", "reason", "stage", "events",
                                                                          "previous_version")}, default=str)}

    def _account(self) -> str:
        return str(self._factory("sts", self.region).get_caller_identity()["Account"])


_UPDATES: ModelUpdates | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Lambda's entry point (Handler `cloud.model_updates.handler`, ReportBatchItemFailures)."""
    global _UPDATES
    if _UPDATES is None:
        _UPDATES = ModelUpdates.from_env()
    return _UPDATES.handle(event, context)
