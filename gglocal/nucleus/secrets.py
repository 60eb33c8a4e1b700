"""Local stand-in for aws.greengrass.SecretManager as components see it through GetSecretValue.

Secrets come from a JSON file the operator owns (mode 0600 recommended):
  {"secrets": [{"name": "camera-1", "secretString": "...",            # or "secretBinary": base64
                "arn": "arn:aws:secretsmanager:...:secret:camera-1"}]}  # arn optional
or from AWS Secrets Manager itself (boto3; moto's server in tests) when the runtime is given an endpoint.

`SecretManagerStandIn` answers GetSecretValue the way the component does (aws-greengrass-secret-manager,
SecretManager.java and SecretManagerService.java; developer guide "Secret manager", Configuration):
- its configuration `cloudSecrets` ([{"arn", "labels"?}], full or partial ARNs) says which secrets the device
  holds; each is downloaded (label AWSCURRENT, plus the labels given) when the configuration changes, and again
  every `periodicRefreshIntervalMin` minutes when that is set (2.2.0+); no refresh otherwise;
- GetSecretValue answers from that local copy only: a secret not configured is "not found", even if the file or
  the cloud has it; a configured one not downloaded yet is fetched first (2.2.5+), and `refresh: true` fetches the
  latest value before answering (2.2.0+), keeping the local copy when the fetch fails;
- a download the device's role refuses (another device's secret in a stage-wide list) is logged and skipped.
While no deployment names aws.greengrass.SecretManager the file's secrets are all served, as before (a developer
convenience the real nucleus does not have). Values are never logged; errors name the secret id only.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("gglocal.secrets")

SECRET_MANAGER = "aws.greengrass.SecretManager"
CURRENT = "AWSCURRENT"
# the component's VALID_SECRET_ARN_PATTERN: a full ARN (name + "-" + 6 characters) or a partial one (name only)
ARN_RE = re.compile(r"arn:([^:]+):secretsmanager:[a-z0-9\-]+:[0-9]{12}:secret:([a-zA-Z0-9\\]+/)*"
                    r"[a-zA-Z0-9/_+=,.@\-]+(-[a-zA-Z0-9]+)?")


class SecretError(ValueError):
    pass


@dataclass(frozen=True)
class Secret:
    name: str
    arn: str
    string: str | None
    binary: bytes | None
    version_id: str
    version_stages: list[str] = field(default_factory=lambda: ["AWSCURRENT"])

    def __repr__(self) -> str:  # keep values out of any accidental log line
        return f"Secret(name={self.name!r}, arn={self.arn!r})"


class SecretStore:
    def __init__(self, region: str = "us-east-1", account: str = "000000000000") -> None:
        self._by_id: dict[str, Secret] = {}
        self.region = region
        self.account = account

    @classmethod
    def from_file(cls, path: Path | None, region: str = "us-east-1") -> SecretStore:
        store = cls(region=region)
        if path is None:
            return store
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError as e:
            raise SecretError(f"secrets file {path} not found") from e
        except ValueError as e:
            raise SecretError(f"secrets file {path}: not valid JSON ({e.__class__.__name__} at {e})") from None
        items = doc.get("secrets") if isinstance(doc, dict) else None
        if not isinstance(items, list):
            raise SecretError(f"secrets file {path}: expected an object with a 'secrets' list")
        for i, item in enumerate(items):
            where = f"secrets file {path}: secrets[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
                raise SecretError(f"{where}: needs a non-empty 'name'")
            s, b = item.get("secretString"), item.get("secretBinary")
            if (s is None) == (b is None):
                raise SecretError(f"{where} ({item['name']}): give exactly one of secretString / secretBinary")
            try:
                binary = base64.b64decode(b, validate=True) if b is not None else None
            except ValueError:
                raise SecretError(f"{where} ({item['name']}): secretBinary is not base64") from None
            store.add(item["name"], string=s, binary=binary, arn=item.get("arn"),
                      version_id=str(item.get("versionId", "1")))
        return store

    def add(self, name: str, string: str | None = None, binary: bytes | None = None,
            arn: str | None = None, version_id: str = "1") -> Secret:
        arn = arn or f"arn:aws:secretsmanager:{self.region}:{self.account}:secret:{name}"
        secret = Secret(name, arn, string, binary, version_id)
        self._by_id[name] = secret
        self._by_id[arn] = secret
        return secret

    def find(self, secret_id: str) -> Secret | None:
        return self._by_id.get(secret_id)

    def entries(self) -> list[Secret]:
        return list({id(s): s for s in self._by_id.values()}.values())


# -- where cloudSecrets are downloaded from ---------------------------------------------------------------------

class Cloud(Protocol):
    def download(self, arn: str, label: str) -> Secret:
        """The secret's version with `label`; raises LookupError (none), PermissionError (refused), OSError."""
        ...


def _name_of(arn: str) -> str:
    return arn.split(":secret:", 1)[1] if ":secret:" in arn else arn


class FileCloud:
    """The secrets file standing for Secrets Manager: read again at every download, so editing it is a rotation."""

    def __init__(self, path: Path | None, region: str) -> None:
        self.path, self.region = path, region

    def download(self, arn: str, label: str) -> Secret:
        store = SecretStore.from_file(self.path, region=self.region)
        name = _name_of(arn)
        for s in store.entries():  # a full ARN, or a partial one (no 6-character suffix) naming the entry
            if arn in (s.arn, f"{s.arn.rsplit(':secret:', 1)[0]}:secret:{s.name}") or name == s.name or (
                    s.arn.startswith(arn + "-") and len(s.arn) == len(arn) + 7):
                if label not in s.version_stages:
                    raise LookupError(f"{arn} has no version labelled {label}")
                return s
        raise LookupError(f"no secret {arn} in {self.path}")


class SecretsManagerCloud:
    """AWS Secrets Manager through boto3 (its usual credential chain; `endpoint_url` for moto's server)."""

    def __init__(self, endpoint_url: str | None, region: str) -> None:
        import boto3

        # a session of its own: credentials resolved now, not those another client of the process cached
        self.client = boto3.session.Session().client("secretsmanager", endpoint_url=endpoint_url, region_name=region)

    _quiet = threading.Lock()

    def download(self, arn: str, label: str) -> Secret:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with self._quiet:  # botocore logs response bodies at DEBUG, and this one is the secret: keep it out
                loggers = [logging.getLogger(n) for n in ("botocore", "urllib3")]
                levels = [lg.level for lg in loggers]
                for lg in loggers:
                    lg.setLevel(max(logging.INFO, lg.getEffectiveLevel()))
                try:
                    r = self.client.get_secret_value(SecretId=arn, VersionStage=label)
                finally:
                    for lg, level in zip(loggers, levels, strict=True):
                        lg.setLevel(level)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("AccessDeniedException", "AccessDenied"):
                raise PermissionError(f"{arn}: the device's role may not read it ({code})") from None
            if code == "ResourceNotFoundException":
                raise LookupError(f"{arn}: not found in Secrets Manager") from None
            raise OSError(f"{arn}: Secrets Manager refused: {code}") from None
        except BotoCoreError as e:
            raise OSError(f"{arn}: Secrets Manager unreachable: {type(e).__name__}") from None
        return Secret(r["Name"], r["ARN"], r.get("SecretString"), r.get("SecretBinary"), r["VersionId"],
                      list(r.get("VersionStages") or [label]))


# -- the component ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CloudSecret:
    arn: str
    labels: tuple[str, ...]  # AWSCURRENT always among them


def parse_config(config: Any) -> tuple[list[CloudSecret], float]:
    """(cloudSecrets, periodicRefreshIntervalMin) of the component's configuration; entries the component would
    skip (not an object, no valid ARN) are logged and skipped."""
    config = config if isinstance(config, dict) else {}
    out = []
    items = config.get("cloudSecrets") or []
    for i, item in enumerate(items if isinstance(items, list) else []):
        arn = item.get("arn") if isinstance(item, dict) else None
        if not isinstance(arn, str) or not ARN_RE.fullmatch(arn):
            log.warning("%s: cloudSecrets[%d]: skipping an invalid secret ARN %r", SECRET_MANAGER, i, arn)
            continue
        labels = [str(x) for x in (item.get("labels") or []) if isinstance(x, str)]
        out.append(CloudSecret(arn, tuple(dict.fromkeys([*labels, CURRENT]))))
    try:
        minutes = float(config.get("periodicRefreshIntervalMin") or 0)
    except (TypeError, ValueError):
        minutes = 0.0
    return out, max(minutes, 0.0)


class SecretManagerStandIn:
    def __init__(self, files: SecretStore, cloud: Cloud) -> None:
        self.files, self.cloud = files, cloud
        self.deployed = False  # does a deployment name the component (else: the file's secrets, all of them)
        self.configured: list[CloudSecret] = []
        self.refresh_min = 0.0
        self.downloads = 0  # from the cloud, for tests and the status view
        self._local: dict[tuple[str, str], Secret] = {}  # (configured ARN, label) -> the downloaded version
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self.synced = threading.Event()  # set when a sync of the current configuration has run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def configure(self, config: Any) -> None:
        """The component's configuration changed (None: no deployment names it): sync again, in the background."""
        with self._lock:
            self.deployed = config is not None
            self.configured, self.refresh_min = parse_config(config)
            keep = {(c.arn, label) for c in self.configured for label in c.labels}
            self._local = {k: v for k, v in self._local.items() if k in keep}
            self.synced.clear()
        if self.deployed:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="secret-manager", daemon=True)
                self._thread.start()
            self._wake.set()

    def close(self) -> None:
        self._stop.set()
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.sync()
            if not self._wake.is_set():  # no newer configuration arrived meanwhile
                self.synced.set()
            period = self.refresh_min * 60 if self.refresh_min > 0 else None
            self._wake.wait(period)  # a new configuration, the next periodic sync, or close()

    def sync(self) -> None:
        """Download every configured secret and label (the component's syncFromCloud)."""
        with self._lock:
            wanted = [(c.arn, label) for c in self.configured for label in c.labels]
        for arn, label in wanted:
            self._download(arn, label)

    def _download(self, arn: str, label: str) -> Secret | None:
        try:
            secret = self.cloud.download(arn, label)
        except (LookupError, PermissionError, OSError, SecretError) as e:
            log.error("%s: cannot download %s (%s): %s; the local copy, if any, stays", SECRET_MANAGER, arn, label, e)
            return None
        with self._lock:
            self.downloads += 1
            if any(c.arn == arn and label in c.labels for c in self.configured):
                self._local[(arn, label)] = secret
        return secret

    def _configured(self, secret_id: str) -> CloudSecret | None:
        for c in self.configured:
            held = [s for (a, _), s in self._local.items() if a == c.arn]
            if secret_id in (c.arn, _name_of(c.arn)) or any(secret_id in (s.arn, s.name) for s in held):
                return c
        return None

    def find(self, secret_id: str, refresh: bool = False, stage: str | None = None) -> Secret | None:
        """The local copy of `secret_id` (name or ARN) with label `stage` (AWSCURRENT), fetched first when asked to
        `refresh` or not downloaded yet; None when the device holds no such secret."""
        if not self.deployed:
            return self.files.find(secret_id)
        with self._lock:
            c = self._configured(secret_id)
        label = stage or CURRENT
        if c is None or label not in c.labels:
            return None
        with self._lock:
            held = self._local.get((c.arn, label))
        if refresh or held is None:
            self._download(c.arn, label)
        with self._lock:
            return self._local.get((c.arn, label))
