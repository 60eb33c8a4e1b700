"""Local stand-in for Secrets Manager as components see it through GetSecretValue.

Secrets come from a JSON file the operator owns (mode 0600 recommended):
  {"secrets": [{"name": "camera-1", "secretString": "...",            # or "secretBinary": base64
                "arn": "arn:aws:secretsmanager:...:secret:camera-1"}]}  # arn optional
Values are never logged; errors name the secret id only.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path


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
