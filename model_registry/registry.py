"""The model registry: register (verify + describe + store), list, show, diff and fetch model versions.

A registered version is a model directory (model.onnx + manifest.json, ``model-manifest/1.0``) in a store
(storage.py). Registering checks everything the devices would check before a version can reach them: the
manifest is valid, the digest matches, ONNX Runtime loads the model and a warm-up inference on a sample input
runs (``ggvision.model.loader.load_model``).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ggvision.model.manifest import (
    FAMILY_TASKS,
    MANIFEST_FILE,
    ModelError,
    ModelManifest,
    load_manifest,
    sha256_file,
    write_model_dir,
)

from .names import RegistryError, check_name, check_version
from .onnx_io import input_spec
from .storage import Store, StoredVersion, open_store

UNSET: Any = object()


class Registry:
    def __init__(self, store: Store | str | Path | None = None) -> None:
        self.store = store if store is not None and not isinstance(store, str | Path) else open_store(store)

    # -- queries ---------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return self.store.names()

    def versions(self, name: str) -> list[str]:
        """Registered versions of `name`, oldest first (semver order)."""
        return sorted(self.store.versions(check_name(name)), key=check_version)

    def latest(self, name: str) -> str | None:
        v = self.versions(name)
        return v[-1] if v else None

    def manifest(self, name: str, version: str) -> ModelManifest:
        check_name(name)
        check_version(version)
        raw = self.store.read_manifest(name, version)
        try:
            return ModelManifest.from_dict(raw, f"{self.store.url} {name}/{version}/{MANIFEST_FILE}")
        except ModelError as e:
            raise RegistryError(str(e)) from None

    def describe(self, name: str, version: str) -> StoredVersion:
        return self.store.describe(name, version)

    def fetch(self, name: str, version: str, dest: Path) -> Path:
        """Copy a version into `dest` and verify the model's digest against its manifest."""
        m = self.manifest(name, version)
        self.store.fetch(name, version, Path(dest), [m.file, MANIFEST_FILE])
        actual = sha256_file(Path(dest) / m.file)
        if actual != m.sha256:
            raise RegistryError(f"{self.store.url} {name} {version}: {m.file} has sha256 {actual}, the manifest "
                                f"says {m.sha256}: the stored model was altered")
        return Path(dest)

    def diff(self, name: str, a: str, b: str, name_b: str | None = None) -> dict[str, Any]:
        """What differs between two versions: {key: (a, b)}, metrics with b - a where numeric."""
        ma = self.manifest(name, a).to_dict()
        mb = self.manifest(name_b or name, b).to_dict()
        out: dict[str, Any] = {}
        for key in sorted(set(ma) | set(mb)):
            if key in ("created_at",):
                continue
            va, vb = ma.get(key), mb.get(key)
            if va == vb:
                continue
            if key == "labels":
                out[key] = {"added": [x for x in vb or [] if x not in (va or [])],
                            "removed": [x for x in va or [] if x not in (vb or [])],
                            "order_changed": set(va or []) == set(vb or [])}
            elif key == "metrics":
                m: dict[str, Any] = {}
                for k in sorted(set(va or {}) | set(vb or {})):
                    xa, xb = (va or {}).get(k), (vb or {}).get(k)
                    if xa != xb:
                        delta = xb - xa if isinstance(xa, int | float) and isinstance(xb, int | float) else None
                        m[k] = {"a": xa, "b": xb, "delta": delta}
                out[key] = m
            elif isinstance(va, dict) and isinstance(vb, dict):
                out[key] = {k: {"a": va.get(k), "b": vb.get(k)} for k in sorted(set(va) | set(vb))
                            if va.get(k) != vb.get(k)}
            else:
                out[key] = {"a": va, "b": vb}
        return out

    # -- register --------------------------------------------------------------------------------------------
    def register(self, source: str | Path, *, name: str | None = None, version: str | None = None,
                 family: str | None = None, labels: list[str] | None = None,
                 input_overrides: dict[str, Any] | None = None, thresholds: dict[str, Any] | None = None,
                 decoder: dict[str, Any] | None = None, metrics: dict[str, Any] | None = None,
                 parent: str | None = UNSET, description: str | None = None, created_by: str | None = None,
                 check: bool = True) -> tuple[ModelManifest, StoredVersion]:
        """Register `source`: a model directory (manifest.json + model file) or an .onnx file.

        Values given here override the directory's manifest. From a bare .onnx, `family` and (except
        tabular) `labels` are required; the input name/shape/dtype are read from the file. `parent`
        defaults to the newest registered version below this one (lineage); None means no parent.
        """
        source = Path(source)
        base: dict[str, Any] = {}
        if source.is_dir():
            mpath = source / MANIFEST_FILE
            if not mpath.is_file():
                raise RegistryError(f"{source}: a model directory needs {MANIFEST_FILE} (or give an .onnx file)")
            try:
                base = json.loads(mpath.read_text(encoding="utf-8"))
            except ValueError as e:
                raise RegistryError(f"{mpath}: not valid JSON: {e}") from None
            if not isinstance(base, dict):
                raise RegistryError(f"{mpath}: expected a JSON object")
            model_file = source / str(base.get("file") or "model.onnx")
            if "/" in str(base.get("file", "")) or ".." in str(base.get("file", "")):
                raise RegistryError(f"{mpath}: 'file' must be a plain file name, got {base.get('file')!r}")
        elif source.is_file():
            model_file = source
        else:
            raise RegistryError(f"{source}: no such model file or directory")
        if not model_file.is_file():
            raise RegistryError(f"{model_file}: model file missing")

        doc = dict(base)
        for key, value in (("name", name), ("version", version), ("family", family), ("labels", labels),
                           ("thresholds", thresholds), ("decoder", decoder), ("description", description)):
            if value is not None:
                doc[key] = value
        if metrics:
            doc["metrics"] = {**(doc.get("metrics") or {}), **metrics}
        for key in ("name", "version", "family"):
            if not doc.get(key):
                raise RegistryError(f"{source}: no model {key}; give --{key}")
        check_name(doc["name"])
        new_version = check_version(doc["version"])
        if doc["family"] not in FAMILY_TASKS:
            raise RegistryError(f"{source}: unknown family {doc['family']!r}; known: {', '.join(FAMILY_TASKS)}")
        doc.setdefault("task", FAMILY_TASKS[doc["family"]])
        if "input" not in doc or input_overrides:
            spec = input_spec(model_file, doc["family"]) if "input" not in doc else dict(doc["input"])
            spec.update(input_overrides or {})
            doc["input"] = spec
        doc.setdefault("thresholds", {})
        doc.setdefault("decoder", {})

        existing = self.versions(doc["name"])
        if doc["version"] in existing:
            raise RegistryError(f"{doc['name']} {doc['version']}: already registered in {self.store.url}; "
                                "versions are immutable, register a new version")
        if parent is UNSET:
            # Lineage: the newest registered version below this one (a directory's own 'parent' counts
            # only if it names a registered version: it may come from another registry).
            older = [v for v in existing if check_version(v) < new_version]
            parent = base.get("parent") if base.get("parent") in existing else (older[-1] if older else None)
        if parent is not None:
            check_version(parent)
            if parent not in existing:
                raise RegistryError(f"parent {doc['name']} {parent} is not registered in {self.store.url}")
        doc["parent"] = parent
        doc["created_by"] = created_by or base.get("created_by") or _user()
        doc["created_at"] = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        doc.pop("sha256", None)  # computed from the bytes below

        with tempfile.TemporaryDirectory(prefix="ggv-register-") as tmp:
            work = Path(tmp) / "model"
            try:
                write_model_dir(work, model_file, doc)
                manifest = load_manifest(work)
                if check:
                    _check_runs(work)
            except ModelError as e:
                raise RegistryError(f"{source}: refused: {e}") from None
            stored = self.store.put(manifest.name, manifest.version, work, [manifest.file, MANIFEST_FILE])
        return manifest, stored


def _check_runs(model_dir: Path) -> None:
    """Load the model as a device would and run it once on a sample input (load_model's warm-up)."""
    from ggvision.model.loader import load_model

    loaded = load_model(model_dir, provider="cpu", threads=1)
    close = getattr(loaded, "close", None)
    if close is not None:
        close()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def copy_tree(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, dirs_exist_ok=True)
