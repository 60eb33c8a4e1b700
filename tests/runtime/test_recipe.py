"""Recipe loading: formats, case-insensitivity, validation messages, manifests, lifecycles."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from gglocal.nucleus.lifecyclesteps import LifecycleStep
from gglocal.nucleus.platforms import current_platform
from gglocal.nucleus.recipe import Artifact
from gglocal.nucleus.recipeparser import load_recipe, load_recipe_dir, parse_recipe
from gglocal.nucleus.recipereader import RecipeError

LINUX = {"os": "linux", "architecture": "amd64"}

YAML_RECIPE = """\
RecipeFormatVersion: 2020-01-25
ComponentName: com.example.Hello
ComponentVersion: 1.2.3
ComponentDescription: says hello
ComponentPublisher: Example
ComponentConfiguration:
  DefaultConfiguration:
    Message: Hi
    camelCase: {InnerKey: 1}
ComponentDependencies:
  com.example.Base:
    VersionRequirement: ^1.0.0
    DependencyType: SOFT
Manifests:
  - Name: Linux
    Platform:
      os: linux
    Lifecycle:
      Setenv:
        Greeting_Var: hello
      Install:
        Script: pip install x
        Timeout: 300
        RequiresPrivilege: "true"
        Skipif: onpath pip
      Run: python3 {artifacts:path}/hello.py
    Artifacts:
      - URI: s3://bucket/path/hello.py
        Permission:
          Read: ALL
          Execute: OWNER
      - URI: greengrass:bundle.zip
        Unarchive: ZIP
        Digest: abc=
        Algorithm: SHA-256
"""


def minimal(**extra: object) -> dict:
    recipe = {"RecipeFormatVersion": "2020-01-25", "ComponentName": "com.example.A",
              "ComponentVersion": "1.0.0", "Manifests": [{"Lifecycle": {"Run": "echo run"}}]}
    recipe.update(extra)
    return recipe


def error_of(data: object, source: str = "recipes/x.yaml") -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, source)  # type: ignore[arg-type]
    return str(info.value)


# --------------------------------------------------------------------------- formats and keys


def test_yaml_file_loads_fully(tmp_path: Path) -> None:
    path = tmp_path / "hello.yaml"
    path.write_text(YAML_RECIPE)
    recipe = load_recipe(path)
    assert (recipe.name, recipe.version, recipe.source) == ("com.example.Hello", "1.2.3", str(path))
    assert recipe.description == "says hello" and recipe.publisher == "Example"
    assert recipe.default_configuration == {"Message": "Hi", "camelCase": {"InnerKey": 1}}
    dep = recipe.dependencies["com.example.Base"]
    assert (dep.version_requirement, dep.dependency_type) == ("^1.0.0", "SOFT")

    resolved = recipe.resolve(LINUX)
    install = resolved.steps["install"]
    assert install == LifecycleStep("pip install x", 300.0, "onpath pip", {}, True)
    assert resolved.steps["run"].script == "python3 {artifacts:path}/hello.py"
    assert resolved.steps["run"].timeout is None
    assert resolved.setenv == {"Greeting_Var": "hello"}
    hello, bundle = resolved.artifacts
    assert (hello.filename, hello.read, hello.execute) == ("hello.py", "ALL", "OWNER")
    assert hello.unarchive == "NONE"
    assert (bundle.filename, bundle.stem, bundle.unarchive) == ("bundle.zip", "bundle", "ZIP")
    assert (bundle.digest, bundle.algorithm) == ("abc=", "SHA-256")


def test_json_text_and_bytes_give_same_recipe(tmp_path: Path) -> None:
    data = minimal()
    as_json = parse_recipe(json.dumps(data), "a.json")
    as_bytes = parse_recipe(json.dumps(data).encode(), "b.json")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    from_file = load_recipe(path)
    for recipe in (as_json, as_bytes, from_file):
        assert recipe.resolve(LINUX).steps["run"].script == "echo run"


def test_keys_are_case_insensitive_but_user_data_keeps_case() -> None:
    data = {
        "recipeFormatVersion": "2020-01-25",
        "COMPONENTNAME": "com.example.Case",
        "componentversion": "2.0.0",
        "componentConfiguration": {"DEFAULTCONFIGURATION": {"MixedCase": {"lowerKey": "v"}}},
        "componentdependencies": {"Some.Dep": {"versionrequirement": "1.0.0", "DEPENDENCYTYPE": "soft"}},
        "MANIFESTS": [{
            "PLATFORM": {"OS": "Linux", "MyCustom": "Value"},
            "lifecycle": {"setenv": {"MyVar": "1"}, "RUN": {"SCRIPT": "go", "timeOut": "5",
                                                            "SetEnv": {"StepVar": "x"}}},
            "artifacts": [{"uri": "s3://b/Tool.ZIP", "UNARCHIVE": "zip",
                           "permission": {"READ": "all", "execute": "owner"}}],
        }],
    }
    recipe = parse_recipe(data)
    assert recipe.name == "com.example.Case"
    assert recipe.default_configuration == {"MixedCase": {"lowerKey": "v"}}
    assert recipe.dependencies["Some.Dep"].dependency_type == "SOFT"
    manifest = recipe.manifests[0]
    assert manifest.platform == {"os": "Linux", "MyCustom": "Value"}
    resolved = recipe.resolve({"os": "linux", "architecture": "amd64", "MyCustom": "value"})
    assert resolved.setenv == {"MyVar": "1"}
    assert resolved.steps["run"] == LifecycleStep("go", 5.0, None, {"StepVar": "x"}, False)
    art = resolved.artifacts[0]
    assert (art.unarchive, art.read, art.execute, art.stem) == ("ZIP", "ALL", "OWNER", "Tool")


def test_unquoted_yaml_date_is_accepted() -> None:
    recipe = parse_recipe("RecipeFormatVersion: 2020-01-25\nComponentName: a\nComponentVersion: 1.0.0\n"
                          "Manifests: []\nComponentConfiguration:\n"
                          "  DefaultConfiguration:\n    day: 2021-02-03\n")
    assert recipe.default_configuration == {"day": "2021-02-03"}  # stays a string, as in the nucleus


def test_duplicate_keys_differing_by_case_rejected() -> None:
    msg = error_of(minimal(componentName="other"))
    assert "recipes/x.yaml" in msg and "duplicate key" in msg


# --------------------------------------------------------------------------- validation messages


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"RecipeFormatVersion": "2021-01-01"}, "RecipeFormatVersion: expected '2020-01-25'"),
        ({"ComponentName": "bad name!"}, "ComponentName: 'bad name!' must match"),
        ({"ComponentName": "a" * 129}, "at most 128"),
        ({"ComponentVersion": "1.0"}, "ComponentVersion: expected a semantic version"),
        ({"ComponentVersion": 1.0}, "ComponentVersion: expected a string, got 1.0"),
        ({"Manifests": {"Lifecycle": {}}}, "Manifests: expected a list"),
        ({"Bogus": 1}, "Bogus: unknown top-level key"),
        ({"ComponentDependencies": {"x.Y": {"VersionRequirement": "not a range"}}},
         "ComponentDependencies.x.Y.VersionRequirement: not an npm-style version range"),
        ({"ComponentDependencies": {"x.Y": {"DependencyType": "MAYBE"}}},
         "ComponentDependencies.x.Y.DependencyType: expected one of HARD, SOFT"),
        ({"Manifests": [{"Artifacts": [{"URI": "s3://b/a.zip", "Unarchive": "TAR"}]}]},
         "Manifests[0].Artifacts[0].Unarchive: expected one of NONE, ZIP"),
        ({"Manifests": [{"Artifacts": [{"URI": "s3://b/a", "Permission": {"Execute": "GROUP"}}]}]},
         "Manifests[0].Artifacts[0].Permission.Execute: expected one of NONE, OWNER, ALL"),
        ({"Manifests": [{"Artifacts": [{"URI": "s3://b/a"}, {"URI": "s3://c/a"}]}]},
         "Manifests[0].Artifacts[1]: file name 'a' is already used"),
        ({"Manifests": [{"Artifacts": [{"Unarchive": "ZIP"}]}]}, "Manifests[0].Artifacts[0].URI: required"),
        ({"Manifests": [{"Lifecycle": {"Run": {"Script": "x", "Timeout": "abc"}}}]},
         "Manifests[0].Lifecycle.Run.Timeout: expected a number, got 'abc'"),
        ({"Manifests": [{"Lifecycle": {"Run": {"Script": "x", "Timeout": True}}}]},
         "Manifests[0].Lifecycle.Run.Timeout: expected a number"),
        ({"Manifests": [{"Lifecycle": {"Run": {"Timeout": 3}}}]},
         "Manifests[0].Lifecycle.Run.Script: required"),
        ({"Manifests": [{"Lifecycle": {"Run": {"Script": "x", "Skipif": ["onpath", "x"]}}}]},
         "Manifests[0].Lifecycle.Run.Skipif: expected a string"),
        ({"Manifests": [{"Lifecycle": {"Runn": "x"}}]}, "Manifests[0].Lifecycle.Runn: unknown lifecycle key"),
        ({"Manifests": [{"Lifecycle": {"Run": {"Script": "x", "RequiresPrivilege": "yes"}}}]},
         "Manifests[0].Lifecycle.Run.RequiresPrivilege: expected true or false"),
        ({"Manifests": [{"Platform": {"os": "/[/"}}]},
         "Manifests[0].Platform.os: invalid regular expression"),
    ],
)
def test_errors_name_file_and_key_path(change: dict, fragment: str) -> None:
    msg = error_of(minimal(**change))
    assert msg.startswith("recipes/x.yaml: "), msg
    assert fragment in msg, msg


def test_missing_required_key() -> None:
    data = minimal()
    del data["ComponentVersion"]
    assert "ComponentVersion: required key is missing" in error_of(data)


def test_startup_and_run_together_rejected() -> None:
    msg = error_of(minimal(Manifests=[{"Lifecycle": {"Startup": "a", "Run": "b"}}]))
    assert "Manifests[0]" in msg and "Startup and Run" in msg


def test_startup_and_run_via_global_selections_rejected() -> None:
    data = minimal(Manifests=[{"Selections": ["a", "b"]}],
                   Lifecycle={"a": {"Startup": "s"}, "b": {"Run": "r"}})
    assert "Startup and Run" in error_of(data)


def test_bad_file_in_directory_is_named(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps(minimal()))
    bad = tmp_path / "bad.yaml"
    bad.write_text("RecipeFormatVersion: 2020-01-25\nComponentName: b\nComponentVersion: x\nManifests: []\n")
    with pytest.raises(RecipeError, match=r"bad\.yaml: ComponentVersion"):
        load_recipe_dir(tmp_path)


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("a: [1, 2\n")
    with pytest.raises(RecipeError, match="broken.yaml"):
        load_recipe(path)


def test_load_recipe_dir_reads_all_formats(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(minimal(ComponentName="A")))
    (tmp_path / "b.yaml").write_text(YAML_RECIPE)
    (tmp_path / "c.yml").write_text("RecipeFormatVersion: '2020-01-25'\nComponentName: C\n"
                                    "ComponentVersion: 0.1.0\nManifests: []\n")
    (tmp_path / "notes.txt").write_text("ignored")
    names = [r.name for r in load_recipe_dir(tmp_path)]
    assert names == ["A", "com.example.Hello", "C"]


# --------------------------------------------------------------------------- manifests


def platform_recipe() -> dict:
    return minimal(Manifests=[
        {"Name": "win", "Platform": {"os": "windows"}, "Lifecycle": {"Run": "win"}},
        {"Name": "arm", "Platform": {"os": "linux", "architecture": "/aarch64|arm.*/"},
         "Lifecycle": {"Run": "arm"}},
        {"Name": "any-linux", "Platform": {"os": "LINUX", "architecture": "*"},
         "Lifecycle": {"Run": "linux"}},
        {"Name": "darwin", "Platform": {"os": "darwin"}, "Lifecycle": {"Run": "mac"}},
    ])


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ({"os": "windows", "architecture": "amd64"}, "win"),
        ({"os": "linux", "architecture": "aarch64"}, "arm"),
        ({"os": "linux", "architecture": "armv7l"}, "arm"),
        ({"os": "linux", "architecture": "amd64"}, "any-linux"),  # regex must match fully: no partial hit
        ({"os": "Linux", "architecture": "x86"}, "any-linux"),
        ({"os": "darwin", "architecture": "aarch64"}, "darwin"),
    ],
)
def test_first_matching_manifest_wins(device: dict[str, str], expected: str) -> None:
    assert parse_recipe(platform_recipe()).resolve(device).manifest.name == expected


def test_no_matching_manifest_error() -> None:
    recipe = parse_recipe(platform_recipe(), "recipes/p.json")
    with pytest.raises(RecipeError) as info:
        recipe.resolve({"os": "freebsd", "architecture": "amd64"})
    msg = str(info.value)
    assert msg.startswith("recipes/p.json: ")
    assert "no manifest matches platform {os: freebsd, architecture: amd64}" in msg


def test_platformless_manifest_matches_everything() -> None:
    recipe = parse_recipe(minimal())
    assert recipe.resolve({"os": "anything", "architecture": "z80"}).steps["run"].script == "echo run"


def test_custom_platform_key_must_be_present() -> None:
    recipe = parse_recipe(minimal(Manifests=[
        {"Platform": {"os": "linux", "gpu": "nvidia"}, "Lifecycle": {"Run": "gpu"}},
        {"Lifecycle": {"Run": "cpu"}},
    ]))
    assert recipe.resolve({**LINUX, "gpu": "NVIDIA"}).steps["run"].script == "gpu"
    assert recipe.resolve(LINUX).steps["run"].script == "cpu"


# --------------------------------------------------------------------------- global lifecycle


def global_recipe(selections: list[str] | None) -> dict:
    manifest: dict = {"Platform": {"os": "linux"}}
    if selections is not None:
        manifest["Selections"] = selections
    return minimal(Manifests=[manifest], Lifecycle={
        "Setenv": {"TOP": "1"},
        "all": {"Install": "install-all", "Run": "run-all", "Setenv": {"WHO": "all"}},
        "gpu": {"Run": {"Script": "run-gpu", "Timeout": 10}, "Setenv": {"WHO": "gpu"}},
    })


def test_global_lifecycle_default_selection_is_all() -> None:
    resolved = parse_recipe(global_recipe(None)).resolve(LINUX)
    assert {k: v.script for k, v in resolved.steps.items()} == {"install": "install-all", "run": "run-all"}
    assert resolved.setenv == {"TOP": "1", "WHO": "all"}


def test_global_lifecycle_first_selection_wins_per_step() -> None:
    resolved = parse_recipe(global_recipe(["GPU", "all"])).resolve(LINUX)
    assert resolved.steps["run"] == LifecycleStep("run-gpu", 10.0)
    assert resolved.steps["install"].script == "install-all"
    assert resolved.setenv == {"TOP": "1", "WHO": "gpu"}


def test_global_lifecycle_unselected_sections_ignored() -> None:
    resolved = parse_recipe(global_recipe(["gpu"])).resolve(LINUX)
    assert set(resolved.steps) == {"run"}


def test_manifest_lifecycle_takes_precedence_over_global() -> None:
    data = global_recipe(["gpu"])
    data["Manifests"][0]["Lifecycle"] = {"Run": "own"}
    resolved = parse_recipe(data).resolve(LINUX)
    assert {k: v.script for k, v in resolved.steps.items()} == {"run": "own"}


def test_global_lifecycle_with_direct_steps_used_as_is() -> None:
    data = minimal(Manifests=[{"Selections": ["linux"]}],
                   Lifecycle={"Install": {"Script": "i", "Timeout": 7}, "Run": "r", "Setenv": {"A": 2}})
    resolved = parse_recipe(data).resolve(LINUX)
    assert resolved.steps["install"] == LifecycleStep("i", 7.0)
    assert resolved.steps["run"].script == "r"
    assert resolved.setenv == {"A": "2"}


def test_global_step_with_selection_keys_inside() -> None:
    data = minimal(Manifests=[{"Platform": {"os": "linux"}, "Selections": ["linux"]}, {}],
                   Lifecycle={"Run": {"linux": "run-linux", "all": "run-any"},
                              "Install": {"Script": {"linux": "inst-linux", "all": "inst-any"},
                                          "Timeout": 9}})
    recipe = parse_recipe(data)
    linux = recipe.resolve(LINUX)
    assert linux.steps["run"].script == "run-linux"
    assert linux.steps["install"] == LifecycleStep("inst-linux", 9.0)
    other = recipe.resolve({"os": "windows"})
    assert other.steps["run"].script == "run-any" and other.steps["install"].script == "inst-any"


def test_global_lifecycle_errors_use_key_path() -> None:
    data = minimal(Manifests=[{}], Lifecycle={"all": {"Run": {"Script": "x", "Timeout": "soon"}}})
    assert "Lifecycle.all.Run.Timeout: expected a number" in error_of(data)


# --------------------------------------------------------------------------- artifacts model


@pytest.mark.parametrize(
    ("uri", "filename", "stem"),
    [
        ("s3://bucket/a/b/model.zip", "model.zip", "model"),
        ("greengrass:Bundle.ZIP", "Bundle.ZIP", "Bundle"),
        ("file:///opt/x/run.sh", "run.sh", "run"),
        ("s3://bucket/archive.tar.gz", "archive.tar.gz", "archive.tar"),
        ("s3://bucket/.hidden.zip", ".hidden.zip", ".hidden.zip"),
        ("s3://bucket/noext", "noext", "noext"),
    ],
)
def test_artifact_filename_and_stem(uri: str, filename: str, stem: str) -> None:
    """The unpack folder is the file name without its last extension, as the nucleus' ComponentManager.getFileName
    cuts it (``substring(0, lastIndexOf('.'))`` when ``indexOf('.') > 0``), not only a ``.zip`` suffix."""
    art = Artifact(uri)
    assert (art.filename, art.stem) == (filename, stem)


def test_artifact_uri_without_filename_rejected() -> None:
    assert "does not end in a file name" in error_of(minimal(Manifests=[{"Artifacts": [{"URI": "s3://b/dir/"}]}]))


def test_docker_artifacts_allowed() -> None:
    recipe = parse_recipe(minimal(Manifests=[{"Artifacts": [{"URI": "docker:repo/img:1"},
                                                            {"URI": "docker:repo/other:1"}]}]))
    assert [a.scheme for a in recipe.manifests[0].artifacts] == ["docker", "docker"]


# --------------------------------------------------------------------------- helpers


def test_current_platform_on_this_machine() -> None:
    assert current_platform()["os"] == platform.system().lower()


@pytest.mark.parametrize(
    ("machine", "arch"),
    [("x86_64", "amd64"), ("AMD64", "amd64"), ("aarch64", "aarch64"), ("arm64", "aarch64"),
     ("armv7l", "arm"), ("armv6l", "arm"), ("i686", "x86"), ("riscv64", "riscv64")],
)
def test_current_platform_uses_nucleus_names(
    monkeypatch: pytest.MonkeyPatch, machine: str, arch: str
) -> None:
    import gglocal.nucleus.platforms as platforms_mod

    monkeypatch.setattr(platforms_mod._platform, "machine", lambda: machine)
    monkeypatch.setattr(platforms_mod._platform, "system", lambda: "Linux")
    assert current_platform() == {"os": "linux", "architecture": arch}


def test_skipif_form_is_checked_when_the_step_runs_not_when_the_recipe_is_read() -> None:
    """The nucleus reads a recipe without looking at Skipif (GreengrassService: "TODO ... skipif will require
    validation"); GenericExternalService.shouldSkip rejects a bad form only when the step is about to run."""
    doc = minimal(Manifests=[{"Lifecycle": {"Install": {"Script": "x", "Skipif": "maybe x"},
                                            "Run": {"Script": "y", "Skipif": "! exists /tmp/f",
                                                    "BootstrapOnRollback": True}}}])
    steps = parse_recipe(doc, "recipes/x.yaml").resolve(LINUX).steps
    assert steps["install"].skipif == "maybe x"
    assert steps["run"].skipif == "! exists /tmp/f"
