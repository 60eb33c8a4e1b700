"""Model registry: register (verified, described, stored), list/show/diff, build, publish; refusals.

Storage backends: a local folder, and S3 over HTTP against moto's server with bucket versioning on.
Publishing uses moto's S3 and botocore's Stubber on greengrassv2 (moto has no GreengrassV2 backend);
the Stubber validates every request against the service model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from botocore.stub import ANY, Stubber
from onnx_graphs import mean_color_model
from typer.testing import CliRunner

from ggvision.model.manifest import sha256_file
from model_registry.cli import app
from model_registry.names import RegistryError
from model_registry.publish import build, publish
from model_registry.registry import Registry
from model_registry.storage import LocalStore, S3Store

REGION = "us-east-1"
ACCOUNT = "123456789012"
LABELS = ["blue", "green", "red"]


def onnx_file(tmp_path: Path, name: str = "m.onnx", size: int = 32) -> Path:
    path = tmp_path / name
    path.write_bytes(mean_color_model(3, size).SerializeToString())
    return path


def register(reg: Registry, tmp_path: Path, version: str, **kw: Any) -> Any:
    kw.setdefault("metrics", {"top1": 0.9})
    return reg.register(onnx_file(tmp_path, f"m-{version}.onnx"), name="colors", version=version,
                        family="classification", labels=LABELS, input_overrides={"color": "BGR"}, **kw)


# --------------------------------------------------------------------------- local folder


def test_register_describes_checks_and_stores(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    m, stored = register(reg, tmp_path, "1.0.0", created_by="alice", description="first")
    assert (m.name, m.version, m.family, m.task, m.parent) == ("colors", "1.0.0", "classification",
                                                              "classification", None)
    assert m.input.name == "images" and m.input.shape == (-1, 3, 32, 32) and m.input.dtype == "float32"
    assert m.labels == tuple(LABELS) and m.metrics == {"top1": 0.9} and m.created_by == "alice"
    assert m.created_at.endswith("Z")
    folder = Path(stored.location)
    assert folder == tmp_path / "store" / "colors" / "1.0.0"
    assert sha256_file(folder / "model.onnx") == m.sha256 == sha256_file(tmp_path / "m-1.0.0.onnx")
    # Lineage: the next version's parent defaults to the newest older one.
    m2, _ = register(reg, tmp_path, "1.1.0", metrics={"top1": 0.93})
    assert m2.parent == "1.0.0"
    m3, _ = register(reg, tmp_path, "1.0.1", parent=None)
    assert m3.parent is None
    assert reg.versions("colors") == ["1.0.0", "1.0.1", "1.1.0"] and reg.names() == ["colors"]


def test_register_from_a_model_directory(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    _, first = register(reg, tmp_path, "1.0.0")
    # A model directory (what training writes): its manifest is kept, command-line values override it.
    m, _ = reg.register(Path(first.location), version="2.0.0", metrics={"top1": 0.95})
    assert m.version == "2.0.0" and m.parent == "1.0.0" and m.metrics == {"top1": 0.95}
    assert m.labels == tuple(LABELS)


def test_diff_shows_digest_labels_and_metric_deltas(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    register(reg, tmp_path, "1.0.0")
    reg.register(onnx_file(tmp_path, "other.onnx", size=48), name="colors", version="1.1.0", family="classification",
                 labels=["blue", "green", "crimson"], metrics={"top1": 0.95})
    d = reg.diff("colors", "1.0.0", "1.1.0")
    assert d["labels"] == {"added": ["crimson"], "removed": ["red"], "order_changed": False}
    assert d["metrics"]["top1"]["delta"] == pytest.approx(0.05)
    assert d["input"]["shape"] == {"a": [-1, 3, 32, 32], "b": [-1, 3, 48, 48]}
    assert "sha256" in d and d["parent"] == {"a": None, "b": "1.0.0"}
    assert "created_at" not in d


@pytest.mark.parametrize("kw, message", [
    ({"name": "../evil"}, "model name '../evil'"),
    ({"name": "a/b"}, "model name 'a/b'"),
    ({"name": "Colors"}, "model name 'Colors'"),
    ({"name": "a..b"}, "model name 'a..b'"),
    ({"version": "1.0"}, "not a semantic version"),
    ({"version": "1.0.0/../../x"}, "version '1.0.0/../../x'"),
    ({"family": "magic"}, "unknown family 'magic'"),
    ({"labels": ["a", "b"]}, "refused"),  # 3 outputs, 2 labels: the model does not fit its manifest
    ({"parent": "0.9.0"}, "parent colors 0.9.0 is not registered"),
])
def test_refusals_name_what_is_wrong(tmp_path: Path, kw: dict, message: str) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    args: dict[str, Any] = {"name": "colors", "version": "1.0.0", "family": "classification", "labels": LABELS}
    args.update(kw)
    with pytest.raises(RegistryError, match=message.replace("(", r"\(").replace(".", r"\.")):
        reg.register(onnx_file(tmp_path), **args)
    assert not (tmp_path / "store" / "colors").exists() or reg.versions("colors") == []


def test_invalid_model_and_duplicate_version_are_refused(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model at all")
    with pytest.raises(RegistryError, match="junk.onnx: ONNX Runtime cannot load it"):
        reg.register(junk, name="colors", version="1.0.0", family="classification", labels=LABELS)
    register(reg, tmp_path, "1.0.0")
    before = sha256_file(tmp_path / "store" / "colors" / "1.0.0" / "model.onnx")
    with pytest.raises(RegistryError, match="colors 1.0.0: already registered.*immutable"):
        reg.register(onnx_file(tmp_path, "new.onnx", size=48), name="colors", version="1.0.0",
                     family="classification", labels=LABELS)
    assert sha256_file(tmp_path / "store" / "colors" / "1.0.0" / "model.onnx") == before


def test_fetch_detects_an_altered_model(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    _, stored = register(reg, tmp_path, "1.0.0")
    (Path(stored.location) / "model.onnx").write_bytes(mean_color_model(3, 16).SerializeToString())
    with pytest.raises(RegistryError, match="altered"):
        reg.fetch("colors", "1.0.0", tmp_path / "out")


def test_build_makes_the_model_component(tmp_path: Path) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    m, _ = register(reg, tmp_path, "1.2.0")
    recipe = build(reg, "colors", "1.2.0", tmp_path / "gb")
    assert recipe["ComponentName"] == "com.ggvision.Model.Colors" and recipe["ComponentVersion"] == "1.2.0"
    art = tmp_path / "gb" / "artifacts" / "com.ggvision.Model.Colors" / "1.2.0"
    assert sha256_file(art / "model.onnx") == m.sha256
    assert (tmp_path / "gb" / "recipes" / "com.ggvision.Model.Colors-1.2.0.yaml").is_file()
    assert all(a["Digest"] and a["Algorithm"] == "SHA-256" for a in recipe["Manifests"][0]["Artifacts"])


def test_cli_register_list_show_diff_build(tmp_path: Path) -> None:
    runner = CliRunner()
    store = str(tmp_path / "store")
    model = onnx_file(tmp_path)
    r = runner.invoke(app, ["register", str(model), "--name", "colors", "--version", "1.0.0", "--family",
                            "classification", "--labels", "blue,green,red", "--metric", "top1=0.9", "--store", store])
    assert r.exit_code == 0, r.output
    assert "registered colors 1.0.0" in r.output
    r = runner.invoke(app, ["register", str(model), "--name", "colors", "--version", "1.1.0", "--family",
                            "classification", "--labels", "blue,green,red", "--metric", "top1=0.92", "--store", store])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["register", str(model), "--name", "colors", "--version", "1.1.0", "--family",
                            "classification", "--labels", "blue,green,red", "--store", store])
    assert r.exit_code == 1 and "already registered" in r.output
    r = runner.invoke(app, ["register", str(model), "--name", "../x", "--version", "1.0.0", "--family",
                            "classification", "--labels", "a", "--store", store])
    assert r.exit_code == 1 and "model name '../x'" in r.output
    r = runner.invoke(app, ["list", "--store", store], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "1.0.0" in r.output and "1.1.0" in r.output
    r = runner.invoke(app, ["show", "colors", "--json", "--store", store])
    assert r.exit_code == 0 and json.loads(r.output)["version"] == "1.1.0"
    r = runner.invoke(app, ["diff", "colors", "1.0.0", "1.1.0", "--store", store], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "metrics.top1" in r.output and "+0.02" in r.output
    r = runner.invoke(app, ["build", "colors", "1.1.0", "--out", str(tmp_path / "gb"), "--store", store])
    assert r.exit_code == 0 and "com.ggvision.Model.Colors 1.1.0" in r.output


# --------------------------------------------------------------------------- S3 (moto server over HTTP)


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


def s3_client(session: boto3.Session, url: str) -> Any:
    return session.client("s3", region_name=REGION, endpoint_url=url)


def test_s3_store_versioned_bucket(tmp_path: Path, moto_url: str, session: boto3.Session) -> None:
    s3 = s3_client(session, moto_url)
    s3.create_bucket(Bucket="models-v")
    s3.put_bucket_versioning(Bucket="models-v", VersioningConfiguration={"Status": "Enabled"})
    reg = Registry(S3Store("models-v", "registry", client=s3))
    m, stored = register(reg, tmp_path, "1.0.0")
    assert stored.location == "s3://models-v/registry/colors/1.0.0/"
    assert set(stored.object_versions) == {"model.onnx", "manifest.json"} and all(stored.object_versions.values())
    m2, _ = register(reg, tmp_path, "1.1.0")
    assert m2.parent == "1.0.0"
    assert reg.names() == ["colors"] and reg.versions("colors") == ["1.0.0", "1.1.0"]
    assert reg.manifest("colors", "1.0.0").sha256 == m.sha256
    out = reg.fetch("colors", "1.0.0", tmp_path / "fetched")
    assert sha256_file(out / "model.onnx") == m.sha256
    with pytest.raises(RegistryError, match="already registered"):
        register(reg, tmp_path, "1.0.0")
    # A concurrent register that listed before the other one wrote: the conditional put still refuses.
    reg.store.versions = lambda name: []  # type: ignore[method-assign]
    with pytest.raises(RegistryError, match="already exists"):
        reg.store.put("colors", "1.0.0", out, ["model.onnx"])
    versions = s3.list_object_versions(Bucket="models-v", Prefix="registry/colors/1.0.0/model.onnx")["Versions"]
    assert len(versions) == 1
    assert reg.describe("colors", "1.1.0").object_versions["manifest.json"]


def test_s3_store_refuses_an_unversioned_bucket(tmp_path: Path, moto_url: str, session: boto3.Session) -> None:
    s3 = s3_client(session, moto_url)
    s3.create_bucket(Bucket="models-plain")
    reg = Registry(S3Store("models-plain", client=s3))
    with pytest.raises(RegistryError, match="bucket versioning is off"):
        register(reg, tmp_path, "1.0.0")


def test_cli_with_s3_store(tmp_path: Path, moto_url: str, session: boto3.Session,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = s3_client(session, moto_url)
    s3.create_bucket(Bucket="models-cli")
    s3.put_bucket_versioning(Bucket="models-cli", VersioningConfiguration={"Status": "Enabled"})
    for k, v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                 ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(k, v)
    r = CliRunner().invoke(app, ["register", str(onnx_file(tmp_path)), "--name", "colors", "--version", "3.0.0",
                                 "--family", "classification", "--labels", "blue,green,red",
                                 "--store", "s3://models-cli/reg", "--endpoint-url", moto_url])
    assert r.exit_code == 0, r.output
    assert "s3://models-cli/reg/colors/3.0.0/" in r.output.replace("\n", "")


def test_publish_uploads_and_creates_the_component_version(tmp_path: Path, moto_url: str,
                                                           session: boto3.Session) -> None:
    reg = Registry(LocalStore(tmp_path / "store"))
    m, _ = register(reg, tmp_path, "1.3.0")
    s3 = s3_client(session, moto_url)
    s3.create_bucket(Bucket="ggv-components")
    gg = session.client("greengrassv2", region_name=REGION)
    sent: list[bytes] = []
    gg.meta.events.register("provide-client-params.greengrassv2.CreateComponentVersion",
                            lambda params, **_: sent.append(params["inlineRecipe"]))
    arn = f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:com.ggvision.Model.Colors:versions:1.3.0"
    with Stubber(gg) as stub:
        stub.add_response("create_component_version", {
            "arn": arn, "componentName": "com.ggvision.Model.Colors", "componentVersion": "1.3.0",
            "creationTimestamp": "2026-01-01T00:00:00Z", "status": {"componentState": "REQUESTED"}},
            {"inlineRecipe": ANY})
        p = publish(reg, "colors", "1.3.0", bucket="ggv-components", region=REGION,
                    client_factory=lambda service, region: gg if service == "greengrassv2" else s3)
        stub.assert_no_pending_responses()
    assert p.arn == arn and p.keys == ("com.ggvision.Model.Colors/1.3.0/model.onnx",
                                       "com.ggvision.Model.Colors/1.3.0/manifest.json")
    recipe = yaml.safe_load(sent[0])
    uris = [a["URI"] for a in recipe["Manifests"][0]["Artifacts"]]
    assert uris == [f"s3://ggv-components/{k}" for k in p.keys]
    import base64
    import hashlib

    body = s3.get_object(Bucket="ggv-components", Key=p.keys[0])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == m.sha256
    assert recipe["Manifests"][0]["Artifacts"][0]["Digest"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
