"""gglocal.packaging: gdk component build/publish (GDK 1.6.2 behaviour) without the gdk CLI.

Builds run on small gdk projects written into tmp_path. Publishing runs against moto's server
(S3, STS) over HTTP, with botocore's Stubber on the greengrassv2 client (moto has no GreengrassV2
backend); the Stubber checks every request against the service model.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any

import boto3
import jsonschema
import pytest
import yaml
from botocore.stub import ANY, Stubber
from typer.testing import CliRunner

from gglocal.packaging import (
    BuildError,
    GdkProject,
    ProjectError,
    PublishError,
    RecipeSchemas,
    build_all,
    build_project,
    discover_projects,
    load_project,
    publish_all,
)
from gglocal.packaging.cli import app
from gglocal.packaging.publish import next_patch

REPO = Path(__file__).resolve().parents[2]
SCHEMAS_DIR = REPO.parent / "shared" / "schemas"
HAVE_SCHEMAS = (SCHEMAS_DIR / "gdk-cli-v1.6.2_config_schema.json").is_file()
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-west-2"


def schemas() -> RecipeSchemas | None:
    return RecipeSchemas.load(SCHEMAS_DIR) if HAVE_SCHEMAS else None


def b64sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def write_config(folder: Path, name: str, *, version: str = "NEXT_PATCH", build: dict[str, Any] | None = None,
                 publish: dict[str, Any] | None = None) -> None:
    config = {
        "component": {name: {
            "author": "Example Corp",
            "version": version,
            "build": build or {"build_system": "zip"},
            "publish": publish or {"bucket": "pfx", "region": REGION},
        }},
        "gdk_version": "1.6.2",
    }
    (folder / "gdk-config.json").write_text(json.dumps(config, indent=2))


def recipe_text(artifact: str, *, extra: str = "", dependencies: dict[str, str] | None = None) -> str:
    deps = ""
    if dependencies:
        deps = "ComponentDependencies:\n" + "".join(
            f"  {n}:\n    VersionRequirement: \"{v}\"\n" for n, v in dependencies.items())
    return f"""RecipeFormatVersion: "2020-01-25"
ComponentName: "{{COMPONENT_NAME}}"
ComponentVersion: "{{COMPONENT_VERSION}}"
ComponentDescription: A test component.
ComponentPublisher: "{{COMPONENT_AUTHOR}}"
{deps}{extra}Manifests:
  - Platform:
      os: linux
    Artifacts:
      - URI: "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/{artifact}"
        Unarchive: ZIP
    Lifecycle:
      Run: "python3 -u {{artifacts:decompressedPath}}/{Path(artifact).stem}/main.py"
"""


def zip_project(parent: Path, folder: str = "HelloWorld", name: str = "com.example.Hello", *,
                artifact: str | None = None, **config: Any) -> GdkProject:
    """A zip project: main.py, a package, a tests/ folder, a hidden file and a log file."""
    d = parent / folder
    (d / "tests").mkdir(parents=True)
    (d / "pkg").mkdir()
    (d / "main.py").write_text("print('hello')\n")
    (d / "pkg" / "util.py").write_text("X = 1\n")
    (d / "tests" / "test_main.py").write_text("def test(): pass\n")
    (d / ".hidden").write_text("secret\n")
    (d / "debug.log").write_text("noise\n")
    (d / "recipe.yaml").write_text(recipe_text(artifact or f"{folder}.zip"))
    write_config(d, name, **config)
    return load_project(d)


def built_doc(project: GdkProject) -> dict[str, Any]:
    return yaml.safe_load((project.recipes_build_dir / "recipe.yaml").read_text())


def zip_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as z:
        return {n.rstrip("/") for n in z.namelist()}


# --------------------------------------------------------------------------- gdk-config.json


def test_load_project(tmp_path: Path) -> None:
    project = zip_project(tmp_path)
    assert (project.name, project.author, project.version) == ("com.example.Hello", "Example Corp", "NEXT_PATCH")
    assert project.build_system == "zip" and project.publish_bucket == "pfx" and project.publish_region == REGION
    assert project.recipe_file == project.dir / "recipe.yaml"
    assert project.artifacts_build_dir == project.dir / "greengrass-build/artifacts/com.example.Hello/NEXT_PATCH"


@pytest.mark.parametrize(("mutate", "expected"), [
    (lambda c: c["component"].update({"b.C": c["component"]["com.example.Hello"]}), "exactly one component"),
    (lambda c: c["component"]["com.example.Hello"].pop("author"), "component.com.example.Hello.author"),
    (lambda c: c["component"]["com.example.Hello"].update(version="1.0"), "NEXT_PATCH"),
    (lambda c: c["component"]["com.example.Hello"].update(build={"build_system": "custom"}),
     "custom_build_command: required"),
    (lambda c: c["component"]["com.example.Hello"].update(build={"build_system": "make"}), "build_system"),
    (lambda c: c["component"]["com.example.Hello"]["publish"].pop("bucket"), "publish.bucket"),
    (lambda c: c.pop("gdk_version"), "gdk_version: required"),
    (lambda c: c.update(gdk_version="9.0.0"), "newer than the GDK 1.6.2"),
])
def test_invalid_config_is_refused(tmp_path: Path, mutate: Any, expected: str) -> None:
    project = zip_project(tmp_path)
    config = json.loads(project.config_file.read_text())
    mutate(config)
    project.config_file.write_text(json.dumps(config))
    with pytest.raises(ProjectError) as info:
        load_project(project.dir)
    assert str(project.config_file) in str(info.value) and expected in str(info.value)


def test_recipe_json_xor_yaml(tmp_path: Path) -> None:
    project = zip_project(tmp_path)
    (project.dir / "recipe.json").write_text("{}")
    with pytest.raises(ProjectError, match="both recipe.json and recipe.yaml"):
        load_project(project.dir)
    (project.dir / "recipe.json").unlink()
    (project.dir / "recipe.yaml").unlink()
    with pytest.raises(ProjectError, match="no recipe.json or recipe.yaml"):
        load_project(project.dir)


def test_repository_gdk_configs_match_the_gdk_schema() -> None:
    if not HAVE_SCHEMAS:
        pytest.skip(f"{SCHEMAS_DIR} is not available (shared/ is not part of the repository)")
    schema = json.loads((SCHEMAS_DIR / "gdk-cli-v1.6.2_config_schema.json").read_text())
    configs = [REPO / "gdk-config.json", *sorted(REPO.glob("components/*/gdk-config.json"))]
    configs = [c for c in configs if c.is_file()]
    assert REPO / "gdk-config.json" in configs  # the suite project at the root
    for config in configs:
        jsonschema.validate(json.loads(config.read_text()), schema, cls=jsonschema.Draft7Validator)
        load_project(config.parent)  # our checks agree
    assert {p.config_file for p in discover_projects(REPO)} == set(configs)


# --------------------------------------------------------------------------- zip build


def test_zip_build_matches_gdk_layout(tmp_path: Path) -> None:
    project = zip_project(tmp_path)
    (project.dir / "greengrass-build" / "stale").mkdir(parents=True)  # removed: build starts clean
    built = build_project(project, schemas())

    gg = project.dir / "greengrass-build"
    files = sorted(p.relative_to(gg).as_posix() for p in gg.rglob("*") if p.is_file())
    assert files == ["artifacts/com.example.Hello/NEXT_PATCH/HelloWorld.zip", "recipes/recipe.yaml"]
    archive = gg / "artifacts/com.example.Hello/NEXT_PATCH/HelloWorld.zip"
    # Contents at the zip's root; GDK's default excludes drop tests/ and hidden files, not *.log.
    assert zip_names(archive) == {"main.py", "pkg", "pkg/util.py", "debug.log"}
    assert (project.dir / "zip-build" / "HelloWorld.zip").is_file()  # left behind, as GDK does

    doc = built_doc(project)
    assert doc["ComponentName"] == "com.example.Hello"
    assert doc["ComponentVersion"] == "NEXT_PATCH"
    assert doc["ComponentPublisher"] == "Example Corp"
    assert doc["RecipeFormatVersion"] == "2020-01-25"
    artifact = doc["Manifests"][0]["Artifacts"][0]
    assert artifact == {"URI": "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/HelloWorld.zip", "Unarchive": "ZIP"}
    # Only the three top-level fields and s3 URIs change; other text stays as written.
    assert doc["Manifests"][0]["Lifecycle"]["Run"] == "python3 -u {artifacts:decompressedPath}/HelloWorld/main.py"

    assert [a.name for a in built.artifacts] == ["HelloWorld.zip"]
    assert built.artifacts[0].sha256 == b64sha256(archive.read_bytes())
    assert built.recipe_path == gg / "recipes" / "recipe.yaml"


def test_zip_excludes_option_replaces_the_defaults(tmp_path: Path) -> None:
    project = zip_project(tmp_path, build={"build_system": "zip", "options": {"excludes": ["**/*.log", "pkg"]}},
                          version="2.0.0")
    build_project(project)
    archive = project.dir / "greengrass-build/artifacts/com.example.Hello/2.0.0/HelloWorld.zip"
    # gdk-config.json, greengrass-build and the recipe are always left out.
    assert zip_names(archive) == {"main.py", "tests", "tests/test_main.py", ".hidden"}


def test_zip_name_option(tmp_path: Path) -> None:
    named = zip_project(tmp_path / "a", artifact="bundle.zip",
                        build={"build_system": "zip", "options": {"zip_name": "bundle"}})
    build_project(named)
    archive = named.artifacts_build_dir / "bundle.zip"
    # Any build.options disables GDK's default excludes, so tests/ and .hidden are zipped too.
    assert ".hidden" in zip_names(archive) and "tests/test_main.py" in zip_names(archive)
    assert built_doc(named)["Manifests"][0]["Artifacts"][0]["URI"].endswith("/COMPONENT_VERSION/bundle.zip")

    by_component = zip_project(tmp_path / "b", artifact="com.example.Hello.zip",
                               build={"build_system": "zip", "options": {"zip_name": ""}})
    build_project(by_component)
    assert [p.name for p in by_component.artifacts_build_dir.iterdir()] == ["com.example.Hello.zip"]


def test_oversize_recipe_is_refused(tmp_path: Path) -> None:
    project = zip_project(tmp_path)
    text = recipe_text("HelloWorld.zip").replace("A test component.", "x" * 16_100)
    project.recipe_file.write_text(text)
    with pytest.raises(BuildError, match=r"recipe.yaml: recipe is \d+ bytes; .*at most 16000"):
        build_project(project)


def test_schema_violation_is_refused(tmp_path: Path) -> None:
    project = zip_project(tmp_path)
    project.recipe_file.write_text(recipe_text("HelloWorld.zip", extra="ComponentColour: blue\n"))
    with pytest.raises(BuildError) as info:
        build_project(project, schemas())
    message = str(info.value)
    assert "recipe.yaml" in message and "componentcolour" in message.lower()
    if HAVE_SCHEMAS:
        assert "gdk-cli-v1.6.2_recipe_schema.json" in message and "Additional properties" in message


def test_missing_local_artifact_is_refused(tmp_path: Path) -> None:
    project = zip_project(tmp_path, artifact="other.zip")
    with pytest.raises(BuildError, match=r"Manifests\[0\].Artifacts\[0\].URI.*no file 'other.zip'.*S3"):
        build_project(project)


# --------------------------------------------------------------------------- custom build


BUILD_SCRIPT = """
import pathlib, shutil
gg = pathlib.Path("greengrass-build")
assert (gg / "artifacts/com.example.Custom/1.4.0").is_dir(), "created before the command runs"
(gg / "artifacts/com.example.Custom/1.4.0/tool.bin").write_bytes(b"\\x00tool")
text = pathlib.Path("recipe.yaml").read_text().replace("{COMPONENT_NAME}", "com.example.Custom")
(gg / "recipes/recipe.yaml").write_text(text.replace("{COMPONENT_VERSION}", "1.4.0"))
"""


def test_custom_build_runs_its_command(tmp_path: Path) -> None:
    d = tmp_path / "custom"
    d.mkdir()
    (d / "build.py").write_text(BUILD_SCRIPT)
    (d / "recipe.yaml").write_text(recipe_text("tool.bin"))
    write_config(d, "com.example.Custom", version="1.4.0",
                 build={"build_system": "custom", "custom_build_command": [sys.executable, "build.py"]})
    built = build_project(load_project(d), schemas())
    assert [(a.name, a.sha256) for a in built.artifacts] == [("tool.bin", b64sha256(b"\x00tool"))]
    assert built.recipe_path == d / "greengrass-build/recipes/recipe.yaml"
    # GDK does not rewrite a custom build's recipe: the command's output is kept as written.
    assert "s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/tool.bin" in built.recipe_path.read_text()

    (d / "build.py").write_text("raise SystemExit(3)")
    with pytest.raises(BuildError, match="failed with exit status 3"):
        build_project(load_project(d))


# --------------------------------------------------------------------------- the repository


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """The real root (suite) project, copied with its recipe.yaml symlink, plus one zip component."""
    root = tmp_path / "repo"
    (root / "recipes").mkdir(parents=True)
    shutil.copy(REPO / "gdk-config.json", root)
    shutil.copy(REPO / "recipes" / "com.ggvision.Suite.yaml", root / "recipes")
    (root / "recipe.yaml").symlink_to("recipes/com.ggvision.Suite.yaml")
    zip_project(root / "components", "Hello", "com.example.Hello")
    return root


def test_build_all_root_suite_and_a_component(repo: Path) -> None:
    built = build_all(repo, schemas_dir=SCHEMAS_DIR if HAVE_SCHEMAS else None)
    assert [b.name for b in built] == ["com.ggvision.Suite", "com.example.Hello"]
    out = repo / "greengrass-build"
    assert all(b.out_dir == out for b in built)
    recipes = sorted(p.name for p in (out / "recipes").iterdir())
    # recipe.yaml: where `gdk component publish` at the root looks; com.ggvision.Suite.yaml is
    # also GDK's name, since it resolves the recipe.yaml symlink before taking the file name.
    assert recipes == ["com.example.Hello.yaml", "com.ggvision.Suite.yaml", "recipe.yaml"]
    suite = yaml.safe_load((out / "recipes" / "recipe.yaml").read_text())
    suite_version = json.loads((repo / "gdk-config.json").read_text())["component"]["com.ggvision.Suite"]["version"]
    assert suite["ComponentName"] == "com.ggvision.Suite" and suite["ComponentVersion"] == suite_version
    assert (out / "artifacts/com.ggvision.Suite" / suite_version).is_dir()
    merged_zip = out / "artifacts/com.example.Hello/NEXT_PATCH/Hello.zip"
    assert merged_zip.read_bytes() == (repo / "components/Hello/greengrass-build/artifacts/com.example.Hello"
                                       "/NEXT_PATCH/Hello.zip").read_bytes()
    assert built[1].artifacts[0].sha256 == b64sha256(merged_zip.read_bytes())


def test_build_all_does_not_recurse(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The root's custom_build_command is `make build`, i.e. build_all itself: build_all builds the
    # root in-process (the test above passes without a Makefile) and refuses to be re-entered.
    monkeypatch.setenv("GGVISION_BUILD_ALL", "/elsewhere")
    with pytest.raises(BuildError, match="already running"):
        build_all(repo)


def test_build_all_without_schemas_warns(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    build_all(repo)  # tmp_path has no ../shared/schemas
    # rich wraps the line at the console width, wherever the tmp path's length puts the break
    assert "skipping schema validation" in " ".join(capsys.readouterr().err.split())


def test_cli_build_prints_the_table(repo: Path) -> None:
    result = CliRunner().invoke(app, ["build", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "com.example.Hello" in result.output and "Hello.zip" in result.output
    digest = b64sha256((repo / "greengrass-build/artifacts/com.example.Hello/NEXT_PATCH/Hello.zip").read_bytes())
    assert digest[:12] in result.output.replace("\n", "")

    (repo / "components/Hello/recipe.yaml").write_text("Manifests: [")
    result = CliRunner().invoke(app, ["build", "--repo", str(repo)])
    assert result.exit_code == 1 and "invalid YAML" in result.output


# --------------------------------------------------------------------------- publish


@pytest.fixture
def session() -> boto3.Session:
    return boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)


class Clients:
    """S3/STS clients on moto's server; one stubbed greengrassv2 client."""

    def __init__(self, session: boto3.Session, url: str) -> None:
        self.session, self.url = session, url
        self.gg = session.client("greengrassv2", region_name=REGION)
        self.stub = Stubber(self.gg)
        self.sent: list[str] = []  # inlineRecipe of every CreateComponentVersion
        self.gg.meta.events.register("provide-client-params.greengrassv2.CreateComponentVersion",
                                     lambda params, **_: self.sent.append(params["inlineRecipe"]))

    def __call__(self, service: str, region: str) -> Any:
        if service == "greengrassv2":
            return self.gg
        return self.session.client(service, region_name=region, endpoint_url=self.url)

    def s3(self, region: str = REGION) -> Any:
        return self.session.client("s3", region_name=region, endpoint_url=self.url)

    def expect(self, name: str, existing: list[str], version: str) -> None:
        arn = f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{name}"
        listed = [{"componentName": name, "componentVersion": v, "arn": f"{arn}:versions:{v}"} for v in existing]
        self.stub.add_response("list_component_versions", {"componentVersions": listed}, {"arn": arn})
        self.stub.add_response("create_component_version", {
            "arn": f"{arn}:versions:{version}", "componentName": name, "componentVersion": version,
            "creationTimestamp": "2024-01-01T00:00:00Z", "status": {"componentState": "REQUESTED"},
        }, {"inlineRecipe": ANY})


def two_components(tmp_path: Path, prefix: str) -> list:
    """Alpha depends on Zeta, so Zeta must be published first despite the names' order."""
    alpha = zip_project(tmp_path, "alpha", "com.example.Alpha", publish={"bucket": prefix, "region": REGION})
    alpha.recipe_file.write_text(recipe_text("alpha.zip", dependencies={"com.example.Zeta": ">=1.0.0"}))
    zeta = zip_project(tmp_path, "zeta", "com.example.Zeta", publish={
        "bucket": prefix, "region": REGION,
        "options": {"file_upload_args": {"Metadata": {"built-by": "ggvision"}}}})
    return [build_project(alpha), build_project(zeta)]


def test_publish_resolves_next_patch_uploads_and_creates(tmp_path: Path, moto_url: str,
                                                         session: boto3.Session) -> None:
    built = two_components(tmp_path, "pubtest")
    clients = Clients(session, moto_url)
    clients.expect("com.example.Zeta", ["1.2.3", "1.1.9"], "1.2.4")
    clients.expect("com.example.Alpha", [], "1.0.0")
    with clients.stub:
        results = publish_all(built, session, client_factory=clients, schemas=schemas())
        clients.stub.assert_no_pending_responses()

    bucket = f"pubtest-{REGION}-{ACCOUNT}"
    assert [(r.name, r.version, r.bucket) for r in results] == [
        ("com.example.Zeta", "1.2.4", bucket), ("com.example.Alpha", "1.0.0", bucket)]
    assert results[0].arn == f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:com.example.Zeta:versions:1.2.4"
    assert results[0].keys == ("com.example.Zeta/1.2.4/zeta.zip",)

    zeta, alpha = (yaml.safe_load(text) for text in clients.sent)
    assert zeta["ComponentName"] == "com.example.Zeta" and zeta["ComponentVersion"] == "1.2.4"
    assert zeta["Manifests"][0]["Artifacts"][0]["URI"] == f"s3://{bucket}/com.example.Zeta/1.2.4/zeta.zip"
    assert alpha["ComponentVersion"] == "1.0.0"
    assert alpha["Manifests"][0]["Artifacts"][0]["URI"] == f"s3://{bucket}/com.example.Alpha/1.0.0/alpha.zip"
    # The sent recipe is the file GDK writes next to the built one.
    published = built[1].project.recipes_build_dir / "com.example.Zeta-1.2.4.yaml"
    assert results[0].recipe_path == published and published.read_text() == clients.sent[0]

    s3 = clients.s3()
    assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
    for b, r in zip(built, reversed(results), strict=True):
        obj = s3.get_object(Bucket=bucket, Key=r.keys[0])
        assert b64sha256(obj["Body"].read()) == b.artifacts[0].sha256
    assert s3.head_object(Bucket=bucket, Key=results[0].keys[0])["Metadata"] == {"built-by": "ggvision"}


def test_publish_explicit_version_and_given_bucket(tmp_path: Path, moto_url: str, session: boto3.Session) -> None:
    project = zip_project(tmp_path, version="3.1.0")
    clients = Clients(session, moto_url)
    clients.expect("com.example.Hello", ["9.9.9"], "3.1.0")  # an explicit version is used as is
    with clients.stub:
        [result] = publish_all([build_project(project)], session, bucket="my-artifacts", client_factory=clients)
    assert (result.version, result.bucket) == ("3.1.0", "my-artifacts")
    assert "s3://my-artifacts/com.example.Hello/3.1.0/HelloWorld.zip" in clients.sent[0]
    assert clients.s3().head_object(Bucket="my-artifacts", Key="com.example.Hello/3.1.0/HelloWorld.zip")


def test_publish_dry_run_creates_nothing(tmp_path: Path, moto_url: str, session: boto3.Session) -> None:
    project = zip_project(tmp_path)
    clients = Clients(session, moto_url)
    arn = f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:com.example.Hello"
    clients.stub.add_response("list_component_versions", {"componentVersions": []}, {"arn": arn})
    with clients.stub:
        [result] = publish_all([build_project(project)], session, client_factory=clients, dry_run=True)
        clients.stub.assert_no_pending_responses()
    assert result.dry_run and result.version == "1.0.0" and result.keys == ("com.example.Hello/1.0.0/HelloWorld.zip",)
    assert result.recipe_path.is_file()
    names = [b["Name"] for b in clients.s3().list_buckets()["Buckets"]]
    assert result.bucket not in names


def test_publish_refuses_a_bucket_in_another_region(tmp_path: Path, moto_url: str, session: boto3.Session) -> None:
    clients = Clients(session, moto_url)
    taken = f"elsewhere-{REGION}-{ACCOUNT}"
    clients.s3("eu-west-1").create_bucket(Bucket=taken, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    project = zip_project(tmp_path, publish={"bucket": "elsewhere", "region": REGION})
    arn = f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:com.example.Hello"
    clients.stub.add_response("list_component_versions", {"componentVersions": []}, {"arn": arn})
    with clients.stub, pytest.raises(PublishError, match=f"'{taken}' already exists in region eu-west-1, not {REGION}"):
        publish_all([build_project(project)], session, client_factory=clients)


def test_publish_refuses_a_bucket_owned_by_someone_else(tmp_path: Path, session: boto3.Session) -> None:
    s3 = session.client("s3", region_name=REGION)
    sts = session.client("sts", region_name=REGION)
    gg = session.client("greengrassv2", region_name=REGION)
    with Stubber(s3) as s3_stub, Stubber(sts) as sts_stub, Stubber(gg) as gg_stub:
        sts_stub.add_response("get_caller_identity", {"Account": ACCOUNT})
        gg_stub.add_response("list_component_versions", {"componentVersions": []})
        s3_stub.add_client_error("get_bucket_location", "AccessDenied", http_status_code=403)
        factory = {"s3": s3, "sts": sts, "greengrassv2": gg}
        with pytest.raises(PublishError, match="owned by someone else"):
            publish_all([build_project(zip_project(tmp_path))], session,
                        client_factory=lambda service, region: factory[service])


def test_publish_needs_a_region(tmp_path: Path, session: boto3.Session) -> None:
    project = zip_project(tmp_path, publish={"bucket": "pfx"})
    with pytest.raises(PublishError, match="no region for com.example.Hello"):
        publish_all([build_project(project)], session, client_factory=lambda s, r: pytest.fail("no AWS call"))


@pytest.mark.parametrize(("latest", "expected"), [("1.2.3", "1.2.4"), ("0.0.9", "0.0.10"),
                                                  ("2.0.0-rc.1+build.5", "2.0.1")])
def test_next_patch(latest: str, expected: str) -> None:
    assert next_patch(latest) == expected
