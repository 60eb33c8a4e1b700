"""Recipe variable interpolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gglocal.nucleus.interpolation import (
    ComponentPaths,
    InterpolationContext,
    interpolate,
    interpolate_tree,
    json_pointer,
)


@pytest.fixture
def ctx(tmp_path: Path) -> InterpolationContext:
    own = ComponentPaths(
        artifacts_path=tmp_path / "packages/artifacts/com.example.App/1.0.0",
        decompressed_path=tmp_path / "packages/artifacts-unarchived/com.example.App/1.0.0",
        work_path=tmp_path / "work/com.example.App",
        configuration={
            "port": 8080, "name": "cam one", "ratio": 0.5, "on": True, "none": None,
            "nested": {"list": [1, "two", {"x": "y"}], "Key": "CaseKept"},
            "a/b": "slash", "m~n": "tilde", "": "empty-key", "unicode": "café",
        },
    )
    dep = ComponentPaths(
        artifacts_path=tmp_path / "packages/artifacts/com.example.Lib/2.0.0",
        decompressed_path=tmp_path / "packages/artifacts-unarchived/com.example.Lib/2.0.0",
        work_path=tmp_path / "work/com.example.Lib",
        configuration={"model": {"path": "/models/m.onnx"}, "threads": 4},
    )
    return InterpolationContext(component="com.example.App", paths=own, kernel_root=tmp_path,
                                thing_name="site-42-core", dependencies={"com.example.Lib": dep})


def test_own_path_variables(ctx: InterpolationContext, tmp_path: Path) -> None:
    text = "{artifacts:path}|{artifacts:decompressedPath}|{work:path}|{kernel:rootPath}|{iot:thingName}"
    assert interpolate(text, ctx).split("|") == [
        str(tmp_path / "packages/artifacts/com.example.App/1.0.0"),
        str(tmp_path / "packages/artifacts-unarchived/com.example.App/1.0.0"),
        str(tmp_path / "work/com.example.App"),
        str(tmp_path),
        "site-42-core",
    ]


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("/name", "cam one"),  # strings are inserted raw, without quotes
        ("/port", "8080"),
        ("/ratio", "0.5"),
        ("/on", "true"),
        ("/none", "null"),
        ("/nested/Key", "CaseKept"),
        ("/nested/list", '[1,"two",{"x":"y"}]'),  # containers as compact JSON
        ("/nested/list/1", "two"),
        ("/nested/list/2", '{"x":"y"}'),
        ("/a~1b", "slash"),
        ("/m~0n", "tilde"),
        ("/", "empty-key"),
        ("/unicode", "café"),
    ],
)
def test_configuration_pointer(ctx: InterpolationContext, pointer: str, expected: str) -> None:
    assert interpolate(f"--v={{configuration:{pointer}}}", ctx) == f"--v={expected}"


@pytest.mark.parametrize(
    "variable",
    [
        "{configuration:/missing}",
        "{configuration:/nested/list/9}",
        "{configuration:/nested/list/01}",
        "{configuration:/port/deeper}",
        "{configuration:/nested/key}",  # pointers are case-sensitive
        "{configuration:no-slash}",
    ],
)
def test_missing_configuration_left_unreplaced(ctx: InterpolationContext, variable: str) -> None:
    assert interpolate(f"x {variable} y", ctx) == f"x {variable} y"


def test_dependency_variables(ctx: InterpolationContext, tmp_path: Path) -> None:
    assert interpolate("{com.example.Lib:configuration:/model/path}", ctx) == "/models/m.onnx"
    assert interpolate("{com.example.Lib:configuration:/threads}", ctx) == "4"
    assert interpolate("{com.example.Lib:artifacts:path}", ctx) == str(
        tmp_path / "packages/artifacts/com.example.Lib/2.0.0")
    assert interpolate("{com.example.Lib:artifacts:decompressedPath}", ctx) == str(
        tmp_path / "packages/artifacts-unarchived/com.example.Lib/2.0.0")
    assert interpolate("{com.example.Lib:work:path}", ctx) == str(tmp_path / "work/com.example.Lib")


@pytest.mark.parametrize(
    "text",
    [
        "{com.example.NotADirectDep:artifacts:path}",
        "{com.example.Lib:configuration:/missing}",
        "{com.example.Lib:kernel:rootPath}",  # only configuration/artifacts/work exist for dependencies
        "{com.example.Lib:iot:thingName}",
        "{artifacts:unknown}",
        "{Artifacts:path}",  # namespaces are case-sensitive
        "{unknown:thing}",
        "{nocolon}",
        '{"json": "object"}',
        "${HOME}",
    ],
)
def test_unrecognised_variables_stay_literal(ctx: InterpolationContext, text: str) -> None:
    assert interpolate(text, ctx) == text


def test_several_variables_and_no_recursion(ctx: InterpolationContext) -> None:
    ctx.paths.configuration["trick"] = "{iot:thingName}"
    out = interpolate("a={configuration:/port} b={iot:thingName} c={configuration:/trick}", ctx)
    assert out == "a=8080 b=site-42-core c={iot:thingName}"


def test_interpolate_tree(ctx: InterpolationContext) -> None:
    tree = {
        "accessControl": {
            "aws.greengrass.ipc.pubsub": {
                "{iot:thingName}:pubsub:1": {"resources": ["ggvision/{iot:thingName}/#"], "count": 3}
            }
        },
        "flags": [True, None, 1.5, "{configuration:/name}"],
    }
    out = interpolate_tree(tree, ctx)
    assert out == {
        "accessControl": {
            "aws.greengrass.ipc.pubsub": {
                "{iot:thingName}:pubsub:1": {"resources": ["ggvision/site-42-core/#"], "count": 3}
            }
        },
        "flags": [True, None, 1.5, "cam one"],
    }
    assert tree["flags"][3] == "{configuration:/name}"  # input untouched


def test_json_pointer_helper() -> None:
    doc = {"a": [{"b": 1}]}
    assert json_pointer(doc, "") == doc
    assert json_pointer(doc, "/a/0/b") == 1
