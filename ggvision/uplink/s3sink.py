"""Objects to S3 with boto3.

Credentials: boto3's default chain. On a Greengrass device the token exchange service sets
AWS_CONTAINER_CREDENTIALS_FULL_URI and AWS_CONTAINER_AUTHORIZATION_TOKEN, which botocore's container
provider reads and refreshes; nothing here handles keys.

Integrity: every PUT and every part carries ChecksumSHA256, so S3 refuses a body that does not match what
was queued (the engine also verifies the payload file before each attempt; moto's server does not check
these checksums). The whole object's sha256 is in its metadata, which is what makes a re-upload after a
crash skippable: if the key already holds an object with that sha256, the item is done.

Multipart (objects over multipartThresholdBytes): the UploadId and each finished part's ETag and checksum
are committed to the queue's index before the next part starts; after a crash or a preemption the upload
resumes at the first part not recorded. An upload S3 no longer knows (completed or aborted) is checked
against the key and otherwise started again. Uploads orphaned by a crash before their UploadId was saved are
aborted when the item starts again (ListMultipartUploads on the key); an S3 lifecycle rule
AbortIncompleteMultipartUpload is still recommended (docs/uplink.md).
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..config.uplink import SinkConfig
from .dirsink import object_metadata
from .errors import ItemError, Preempted, TransientError
from .queue import Item
from .throttle import Throttle, ThrottledSection

# Refusals about the object itself: retrying cannot help. Anything else (AccessDenied, NoSuchBucket, expired
# credentials, 5xx, throttling) is the sink's state and the item waits for it to change.
_ITEM_ERRORS = {"EntityTooLarge", "KeyTooLongError", "MetadataTooLarge"}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class S3Sink:
    name = "s3"

    def __init__(self, cfg: SinkConfig, threshold: int, part_bytes: int, client: Any = None) -> None:
        self.cfg = cfg
        self.bucket = cfg.bucket
        self.threshold = threshold
        self.part_bytes = part_bytes
        # No botocore retries: the engine's backoff decides, and an outage is noticed at the first failure.
        self.client = client or boto3.session.Session().client(
            "s3", region_name=cfg.region or None, endpoint_url=cfg.endpoint_url or None,
            config=Config(connect_timeout=cfg.timeout_s, read_timeout=cfg.timeout_s,
                          retries={"total_max_attempts": 1, "mode": "standard"},
                          request_checksum_calculation="when_required"))
        self.extra: dict[str, str] = {}
        if cfg.sse_kms_key_id:
            self.extra = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": cfg.sse_kms_key_id}

    def put(self, item: Item, key: str, throttle: Throttle, should_yield: Callable[[], bool],
            save_upload: Callable[[dict[str, Any]], None]) -> None:
        try:
            if (item.attempts or item.upload) and self._already_there(key, item):
                return
            if item.size <= self.threshold and not item.upload:
                self._put_single(item, key, throttle)
            else:
                self._put_multipart(item, key, throttle, should_yield, save_upload)
        except ClientError as e:
            err = e.response.get("Error", {})
            code = err.get("Code", "")
            if code in _ITEM_ERRORS:
                raise ItemError(f"S3 refused {key}: {code}: {err.get('Message', '')}") from e
            raise TransientError(f"S3 {e.operation_name} {key}: {code or 'error'}: {err.get('Message', e)}") from e
        except (BotoCoreError, OSError) as e:  # connection refused / timed out, DNS, credentials unavailable
            raise TransientError(f"S3 unreachable ({self.cfg.endpoint_url or 'aws'}): {e}") from e

    def _already_there(self, key: str, item: Item) -> bool:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return head.get("ContentLength") == item.size and head.get("Metadata", {}).get("sha256") == item.sha256

    def _put_single(self, item: Item, key: str, throttle: Throttle) -> None:
        assert item.path is not None
        with open(item.path, "rb") as f:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=ThrottledSection(f, 0, item.size, throttle, item.camera),
                ContentLength=item.size, ContentType=item.content_type, Metadata=object_metadata(item),
                ChecksumSHA256=_b64(bytes.fromhex(item.sha256)), **self.extra)

    def _abort_orphans(self, key: str) -> None:
        """Uploads of this key that a crash left behind before their UploadId was saved."""
        try:
            resp = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key)
        except ClientError:
            return  # not permitted or not supported: the bucket's lifecycle rule cleans them up
        for up in resp.get("Uploads", []):
            if up.get("Key") == key:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=up["UploadId"])
                except ClientError:
                    pass

    def _put_multipart(self, item: Item, key: str, throttle: Throttle, should_yield: Callable[[], bool],
                       save_upload: Callable[[dict[str, Any]], None]) -> None:
        assert item.path is not None
        up = dict(item.upload)
        if up.get("upload_id"):
            try:
                self.client.list_parts(Bucket=self.bucket, Key=key, UploadId=up["upload_id"], MaxParts=1)
            except ClientError as e:
                if e.response.get("Error", {}).get("Code") != "NoSuchUpload":
                    raise
                if self._already_there(key, item):  # completed just before a crash
                    return
                up = {}
        if not up.get("upload_id"):
            self._abort_orphans(key)
            r = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=item.content_type, Metadata=object_metadata(item),
                ChecksumAlgorithm="SHA256", **self.extra)
            up = {"upload_id": r["UploadId"], "part_bytes": self.part_bytes, "parts": {}}
            save_upload(up)
        part_bytes = int(up["part_bytes"])
        parts: dict[str, dict[str, str]] = up["parts"]
        with open(item.path, "rb") as f:
            for n in range(1, max(1, math.ceil(item.size / part_bytes)) + 1):
                if str(n) in parts:
                    continue
                if should_yield():
                    raise Preempted(key)
                offset = (n - 1) * part_bytes
                length = min(part_bytes, item.size - offset)
                f.seek(offset)
                checksum = _b64(hashlib.sha256(f.read(length)).digest())
                r = self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=up["upload_id"], PartNumber=n, ContentLength=length,
                    Body=ThrottledSection(f, offset, length, throttle, item.camera), ChecksumSHA256=checksum)
                parts[str(n)] = {"ETag": r["ETag"], "ChecksumSHA256": checksum}
                save_upload(up)
        try:
            self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=up["upload_id"], MultipartUpload={"Parts": [
                    {"PartNumber": int(n), **p} for n, p in sorted(parts.items(), key=lambda kv: int(kv[0]))]})
        except ClientError as e:
            if self._already_there(key, item):  # e.g. completed by an attempt whose answer was lost
                return
            if e.response.get("Error", {}).get("Code") in ("NoSuchUpload", "InvalidPart"):
                save_upload({})  # start over with a new upload next time
            raise

    def close(self) -> None:
        self.client.close()
