"""Where registered models live: a local folder (default) or a versioned S3 bucket.

Both lay out ``<name>/<version>/{model.onnx, manifest.json}`` and never overwrite a version: the local
store renames a finished temporary folder into place (the rename fails if the version exists), the S3
store writes with ``If-None-Match: *`` (refused if the key exists) and requires bucket versioning, so
even a forced overwrite outside the registry keeps the old bytes as a noncurrent object version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ggvision.model.manifest import MANIFEST_FILE

from .names import RegistryError, check_name, check_version

DEFAULT_STORE = ".ggvision/models"


@dataclass(frozen=True)
class StoredVersion:
    name: str
    version: str
    location: str  # folder path or s3:// URL of the version's folder
    object_versions: dict[str, str] = field(default_factory=dict)  # S3: file -> VersionId


class Store(Protocol):
    url: str

    def names(self) -> list[str]: ...
    def versions(self, name: str) -> list[str]: ...
    def read_manifest(self, name: str, version: str) -> dict[str, Any]: ...
    def put(self, name: str, version: str, src_dir: Path, files: list[str]) -> StoredVersion: ...
    def fetch(self, name: str, version: str, dest: Path, files: list[str]) -> Path: ...
    def describe(self, name: str, version: str) -> StoredVersion: ...


def open_store(url: str | os.PathLike[str] | None = None, *, endpoint_url: str | None = None,
               session: Any = None) -> Store:
    """``s3://bucket[/prefix]`` or a folder path (default GGVISION_MODEL_STORE or .ggvision/models)."""
    url = str(url or os.environ.get("GGVISION_MODEL_STORE") or DEFAULT_STORE)
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        return S3Store(bucket, prefix, endpoint_url=endpoint_url, session=session)
    return LocalStore(Path(url))


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _dir(self, name: str, version: str) -> Path:
        check_name(name)
        check_version(version)
        return self.root / name / version

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def versions(self, name: str) -> list[str]:
        d = self.root / check_name(name)
        if not d.is_dir():
            return []
        return [p.name for p in d.iterdir() if (p / MANIFEST_FILE).is_file() and not p.name.startswith(".")]

    def read_manifest(self, name: str, version: str) -> dict[str, Any]:
        path = self._dir(name, version) / MANIFEST_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RegistryError(f"{name} {version}: not registered in {self.url}") from None
        except ValueError as e:
            raise RegistryError(f"{path}: not valid JSON: {e}") from None

    def put(self, name: str, version: str, src_dir: Path, files: list[str]) -> StoredVersion:
        final = self._dir(name, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            raise RegistryError(f"{name} {version}: already registered in {self.url}; versions are immutable, "
                                "register a new version")
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=final.parent))
        try:
            for f in files:
                shutil.copyfile(src_dir / f, tmp / f)
                with open(tmp / f, "rb") as fh:
                    os.fsync(fh.fileno())
            try:
                os.rename(tmp, final)  # atomic; fails if a concurrent register won the race
            except OSError:
                raise RegistryError(f"{name} {version}: already registered in {self.url}") from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return StoredVersion(name, version, str(final))

    def fetch(self, name: str, version: str, dest: Path, files: list[str]) -> Path:
        src = self._dir(name, version)
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            try:
                shutil.copyfile(src / f, dest / f)
            except FileNotFoundError:
                raise RegistryError(f"{src / f}: missing from the registry") from None
        return dest

    def describe(self, name: str, version: str) -> StoredVersion:
        d = self._dir(name, version)
        if not (d / MANIFEST_FILE).is_file():
            raise RegistryError(f"{name} {version}: not registered in {self.url}")
        return StoredVersion(name, version, str(d))


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None, session: Any = None,
                 client: Any = None) -> None:
        if not bucket:
            raise RegistryError("s3:// store URL needs a bucket: s3://BUCKET[/PREFIX]")
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{bucket}/{self.prefix}"
        if client is None:
            import boto3

            client = (session or boto3.Session()).client("s3", endpoint_url=endpoint_url)
        self.s3 = client
        self._checked = False

    def _key(self, name: str, version: str, file: str = "") -> str:
        check_name(name)
        check_version(version)
        return f"{self.prefix}{name}/{version}/{file}"

    def _error(self, e: Exception, what: str) -> RegistryError:
        code = getattr(e, "response", {}).get("Error", {}).get("Code", type(e).__name__)
        return RegistryError(f"{self.url}: {what}: {code}: {e}")

    def check_versioning(self) -> None:
        """Refuse an unversioned bucket: a registry must keep every byte it ever served."""
        if self._checked:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
        except (ClientError, BotoCoreError) as e:
            raise self._error(e, "cannot read bucket versioning") from None
        if status != "Enabled":
            raise RegistryError(f"s3://{self.bucket}: bucket versioning is {status or 'off'}; the registry needs "
                                f"a versioned bucket (aws s3api put-bucket-versioning --bucket {self.bucket} "
                                "--versioning-configuration Status=Enabled)")
        self._checked = True

    def _common_prefixes(self, prefix: str) -> list[str]:
        out = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix,
                                                                      Delimiter="/"):
            out += [p["Prefix"][len(prefix):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return out

    def names(self) -> list[str]:
        return sorted(self._common_prefixes(self.prefix))

    def versions(self, name: str) -> list[str]:
        return self._common_prefixes(f"{self.prefix}{check_name(name)}/")

    def read_manifest(self, name: str, version: str) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        key = self._key(name, version, MANIFEST_FILE)
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except ClientError as e:
            if e.response["Error"]["Code"] in ("NoSuchKey", "404"):
                raise RegistryError(f"{name} {version}: not registered in {self.url}") from None
            raise self._error(e, f"get {key}") from None
        try:
            return json.loads(body)
        except ValueError as e:
            raise RegistryError(f"s3://{self.bucket}/{key}: not valid JSON: {e}") from None

    def put(self, name: str, version: str, src_dir: Path, files: list[str]) -> StoredVersion:
        """Upload the files (the manifest last, so a listed version is complete); never replace a key."""
        from botocore.exceptions import ClientError

        self.check_versioning()
        if self.versions(name) and version in self.versions(name):
            raise RegistryError(f"{name} {version}: already registered in {self.url}; versions are immutable")
        ids = {}
        order = [f for f in files if f != MANIFEST_FILE] + [f for f in files if f == MANIFEST_FILE]
        for f in order:
            key = self._key(name, version, f)
            try:
                with open(src_dir / f, "rb") as fh:
                    resp = self.s3.put_object(Bucket=self.bucket, Key=key, Body=fh, IfNoneMatch="*")
            except ClientError as e:
                if e.response["Error"]["Code"] in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise RegistryError(f"{name} {version}: s3://{self.bucket}/{key} already exists "
                                        "(registered concurrently?); versions are immutable") from None
                raise self._error(e, f"put {key}") from None
            ids[f] = resp.get("VersionId", "")
        return StoredVersion(name, version, f"s3://{self.bucket}/{self._key(name, version)}", ids)

    def fetch(self, name: str, version: str, dest: Path, files: list[str]) -> Path:
        from botocore.exceptions import ClientError

        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            key = self._key(name, version, f)
            try:
                self.s3.download_file(self.bucket, key, str(dest / f))
            except ClientError as e:
                raise self._error(e, f"download {key}") from None
        return dest

    def describe(self, name: str, version: str) -> StoredVersion:
        from botocore.exceptions import ClientError

        ids = {}
        for f in (MANIFEST_FILE,):
            key = self._key(name, version, f)
            try:
                ids[f] = self.s3.head_object(Bucket=self.bucket, Key=key).get("VersionId", "")
            except ClientError:
                raise RegistryError(f"{name} {version}: not registered in {self.url}") from None
        return StoredVersion(name, version, f"s3://{self.bucket}/{self._key(name, version)}", ids)
