"""The directory "bucket": objects under a local folder with the S3 key layout (the default sink, so `make run`
needs no AWS). Each object is written to a temporary name, fsynced and renamed into place, so a reader never
sees a partial object; its metadata goes next to it as `<name>.metadata.json` (same procedure)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ItemError, TransientError
from .queue import Item
from .throttle import CHUNK, Throttle, ThrottledSection


def object_metadata(item: Item) -> dict[str, str]:
    """S3 user metadata (ASCII strings): who, where, when, the checksum, and the producer's metadata."""
    meta = {"id": item.id, "producer": item.producer, "camera": item.camera, "priority": item.priority_name,
            "start": f"{item.start:.3f}", "end": f"{item.end:.3f}", "sha256": item.sha256}
    for k, v in item.metadata.items():
        key = "".join(c if c.isalnum() else "-" for c in str(k).lower())
        meta.setdefault(key, v if isinstance(v, str) and v.isascii() else json.dumps(v, separators=(",", ":")))
    return meta


def write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class DirectorySink:
    name = "directory"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def put(self, item: Item, key: str, throttle: Throttle, should_yield: Callable[[], bool],
            save_upload: Callable[[dict[str, Any]], None]) -> None:
        assert item.path is not None
        dest = self.root / key
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()

            def copy(out: Any) -> None:
                with open(item.path, "rb") as src:  # type: ignore[arg-type]
                    body = ThrottledSection(src, 0, item.size, throttle, item.camera)
                    while chunk := body.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != item.sha256:  # changed under us since it was verified: never publish it
                    raise ItemError(f"payload changed while copying: sha256 {h.hexdigest()} != {item.sha256}")

            write_atomic(dest, copy)
            meta = {"key": key, "size": item.size, "content_type": item.content_type,
                    "metadata": object_metadata(item), "producer_metadata": item.metadata}
            write_atomic(dest.with_name(dest.name + ".metadata.json"),
                          lambda f: f.write(json.dumps(meta, indent=1).encode()))
            fd = os.open(dest.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:  # full or read-only disk, permissions: the operator can fix it; keep the item
            raise TransientError(f"directory bucket {self.root}: {e}") from e

    def close(self) -> None:
        pass
