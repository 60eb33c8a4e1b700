"""Artifact installation: layout, digests, permissions, unzip, zip-slip, idempotency."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from gglocal.nucleus.artifacts import ArtifactError, artifact_mode, install_artifacts, sha256_digest_b64
from gglocal.nucleus.recipe import ResolvedRecipe
from gglocal.nucleus.recipeparser import parse_recipe

NAME, VERSION = "com.example.App", "1.0.0"
LINUX = {"os": "linux", "architecture": "amd64"}


# The modes the nucleus gives artifact files, worked out by hand from aws-greengrass-nucleus
# componentmanager/models/Permission.toFileSystemPermission (owner always reads; Read OWNER/ALL or any Execute
# -> group reads; Read ALL or Execute ALL -> others read; Execute OWNER/ALL -> owner and group execute;
# Execute ALL -> others execute) and util/Permissions.setArtifactPermission (owner write added when the nucleus
# is not root). (Read, Execute) -> (mode as root, mode as another user).
NUCLEUS_MODES = {
    ("NONE", "NONE"): (0o400, 0o600),
    ("OWNER", "NONE"): (0o440, 0o640),
    ("ALL", "NONE"): (0o444, 0o644),
    ("NONE", "OWNER"): (0o550, 0o750),
    ("OWNER", "OWNER"): (0o550, 0o750),
    ("ALL", "OWNER"): (0o554, 0o754),
    ("NONE", "ALL"): (0o555, 0o755),
    ("OWNER", "ALL"): (0o555, 0o755),
    ("ALL", "ALL"): (0o555, 0o755),
}


def nucleus_mode(read: str = "OWNER", execute: str = "NONE") -> int:
    """What the nucleus would set here (defaults: component-common Permission, Read OWNER / Execute NONE)."""
    as_root, as_user = NUCLEUS_MODES[(read, execute)]
    return as_root if os.geteuid() == 0 else as_user


def b64sha(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def resolved(artifacts: list[dict]) -> ResolvedRecipe:
    return parse_recipe({
        "RecipeFormatVersion": "2020-01-25", "ComponentName": NAME, "ComponentVersion": VERSION,
        "Manifests": [{"Lifecycle": {"Run": "true"}, "Artifacts": artifacts}],
    }).resolve(LINUX)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts-src"
    (folder / NAME / VERSION).mkdir(parents=True)
    return folder


def put(source: Path, filename: str, data: bytes) -> Path:
    path = source / NAME / VERSION / filename
    path.write_bytes(data)
    return path


def make_zip(source: Path, filename: str, members: dict[str, bytes]) -> Path:
    path = source / NAME / VERSION / filename
    with zipfile.ZipFile(path, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return path


def test_layout_permissions_and_uri_schemes(tmp_path: Path, source: Path) -> None:
    put(source, "run.sh", b"#!/bin/sh\necho hi\n")
    put(source, "model.onnx", b"\x00model")
    put(source, "lib.py", b"print(1)\n")
    root = tmp_path / "root"
    paths = install_artifacts(resolved([
        {"URI": "s3://bucket/deep/prefix/run.sh", "Permission": {"Execute": "OWNER"}},
        {"URI": "greengrass:model.onnx", "Permission": {"Read": "ALL", "Execute": "ALL"}},
        {"URI": "file:///somewhere/lib.py"},
        {"URI": "docker:public.ecr.aws/x/y:latest"},
    ]), source, root)

    assert paths.artifacts_path == root / "packages/artifacts" / NAME / VERSION
    assert paths.decompressed_path == root / "packages/artifacts-unarchived" / NAME / VERSION
    assert paths.work_path == root / "work" / NAME
    assert paths.decompressed_path.is_dir()
    assert stat.S_IMODE(paths.work_path.stat().st_mode) == 0o700
    assert sorted(p.name for p in paths.artifacts_path.iterdir()) == ["lib.py", "model.onnx", "run.sh"]
    assert (paths.artifacts_path / "model.onnx").read_bytes() == b"\x00model"

    def mode(name: str) -> int:
        return stat.S_IMODE((paths.artifacts_path / name).stat().st_mode)

    assert mode("run.sh") == nucleus_mode("OWNER", "OWNER")
    assert mode("model.onnx") == nucleus_mode("ALL", "ALL")
    assert mode("lib.py") == nucleus_mode()  # no Permission: Read OWNER, Execute NONE


@pytest.mark.parametrize("superuser", [True, False], ids=["runtime-as-root", "runtime-as-user"])
@pytest.mark.parametrize(("read", "execute"), sorted(NUCLEUS_MODES))
def test_permission_modes_are_the_nucleus(tmp_path: Path, source: Path, monkeypatch: pytest.MonkeyPatch,
                                          read: str, execute: str, superuser: bool) -> None:
    """Every Read x Execute pair gets the nucleus' mode (Permission.toFileSystemPermission: Read OWNER is owner
    *and group* read, any Execute implies group read; Permissions.setArtifactPermission: +owner write when the
    nucleus is not root), on the file, on the ZIP itself and on each file unpacked from it, whose folders
    are all 0755 whatever the Permission (Permissions.setArtifactPermission uses OWNER_RWX_EVERYONE_RX for
    directories; developer guide, component-recipe-reference, Permission)."""
    monkeypatch.setattr(os, "geteuid", lambda: 0 if superuser else 1000)
    want = NUCLEUS_MODES[(read, execute)][0 if superuser else 1]
    put(source, "tool.bin", b"\x7fELF")
    make_zip(source, "pkg.zip", {"bin/run": b"#!/bin/sh\n", "top.txt": b"t", "deep/er/x.py": b""})
    permission = {"Read": read.lower(), "execute": execute}  # enum values and keys in any case
    paths = install_artifacts(resolved([
        {"URI": "s3://b/tool.bin", "Permission": permission},
        {"URI": "s3://b/pkg.zip", "Unarchive": "ZIP", "Permission": permission},
    ]), source, tmp_path / "root")

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    assert artifact_mode(read, execute, superuser=superuser) == want
    assert mode(paths.artifacts_path / "tool.bin") == want
    assert mode(paths.artifacts_path / "pkg.zip") == want
    unpacked = paths.decompressed_path / "pkg"
    files = [p for p in unpacked.rglob("*") if p.is_file()]
    folders = [unpacked, *(p for p in unpacked.rglob("*") if p.is_dir())]
    assert len(files) == 3 and len(folders) == 4
    assert {mode(f) for f in files} == {want}
    assert {mode(d) for d in folders} == {0o755}
    # NucleusPaths: the store's <name> and <name>/<version> folders are 0755 too, the work folder 0700
    for store in (paths.artifacts_path, paths.decompressed_path):
        assert mode(store) == mode(store.parent) == 0o755
    assert mode(paths.work_path) == 0o700


def test_default_permission_is_read_owner_execute_none(tmp_path: Path, source: Path) -> None:
    """No Permission, or one naming only Execute, leaves Read at OWNER (component-common Permission's
    @Builder.Default read = OWNER, execute = NONE; developer guide: "Defaults to OWNER" / "Defaults to NONE")."""
    put(source, "a.txt", b"a")
    put(source, "b.sh", b"b")
    paths = install_artifacts(resolved([
        {"URI": "s3://b/a.txt"},
        {"URI": "s3://b/b.sh", "Permission": {"Execute": "OWNER"}},
    ]), source, tmp_path / "root")
    assert stat.S_IMODE((paths.artifacts_path / "a.txt").stat().st_mode) == nucleus_mode("OWNER", "NONE")
    assert stat.S_IMODE((paths.artifacts_path / "b.sh").stat().st_mode) == nucleus_mode("OWNER", "OWNER")


def test_missing_file_names_component_uri_and_path(tmp_path: Path, source: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        install_artifacts(resolved([{"URI": "s3://b/absent.bin"}]), source, tmp_path / "root")
    msg = str(info.value)
    assert f"{NAME}@{VERSION}" in msg and "s3://b/absent.bin" in msg
    assert str(source / NAME / VERSION / "absent.bin") in msg


def test_digest_verified(tmp_path: Path, source: Path) -> None:
    data = b"weights" * 1000
    put(source, "w.bin", data)
    assert sha256_digest_b64(source / NAME / VERSION / "w.bin") == b64sha(data)
    art = {"URI": "s3://b/w.bin", "Digest": b64sha(data), "Algorithm": "SHA-256"}
    paths = install_artifacts(resolved([art]), source, tmp_path / "root")
    assert (paths.artifacts_path / "w.bin").read_bytes() == data


def test_digest_mismatch_refused(tmp_path: Path, source: Path) -> None:
    put(source, "w.bin", b"tampered")
    expected = b64sha(b"original")
    root = tmp_path / "root"
    with pytest.raises(ArtifactError) as info:
        install_artifacts(resolved([{"URI": "s3://b/w.bin", "Digest": expected}]), source, root)
    msg = str(info.value)
    assert "digest mismatch" in msg and expected in msg and b64sha(b"tampered") in msg
    assert not (root / "packages/artifacts" / NAME / VERSION / "w.bin").exists()


def test_unsupported_digest_algorithm(tmp_path: Path, source: Path) -> None:
    put(source, "w.bin", b"x")
    art = {"URI": "s3://b/w.bin", "Digest": b64sha(b"x"), "Algorithm": "MD5"}
    with pytest.raises(ArtifactError, match="unsupported digest algorithm"):
        install_artifacts(resolved([art]), source, tmp_path / "root")


def test_reinstall_is_idempotent_and_skips_identical_copy(tmp_path: Path, source: Path) -> None:
    put(source, "a.txt", b"same")
    make_zip(source, "pkg.zip", {"inner/x.txt": b"x"})
    recipe = resolved([{"URI": "s3://b/a.txt"}, {"URI": "s3://b/pkg.zip", "Unarchive": "ZIP"}])
    root = tmp_path / "root"
    paths = install_artifacts(recipe, source, root)
    installed = paths.artifacts_path / "a.txt"
    unpacked = paths.decompressed_path / "pkg" / "inner" / "x.txt"
    first = (installed.stat().st_ino, installed.stat().st_mtime_ns, unpacked.stat().st_ino)

    again = install_artifacts(recipe, source, root)
    assert again == paths
    assert (installed.stat().st_ino, installed.stat().st_mtime_ns, unpacked.stat().st_ino) == first
    # no temp files left behind
    assert sorted(p.name for p in paths.artifacts_path.iterdir()) == ["a.txt", "pkg.zip"]

    # Changed source content is copied and re-unpacked.
    put(source, "a.txt", b"changed")
    make_zip(source, "pkg.zip", {"inner/y.txt": b"y"})
    install_artifacts(recipe, source, root)
    assert installed.read_bytes() == b"changed"
    assert sorted(p.name for p in (paths.decompressed_path / "pkg" / "inner").iterdir()) == ["y.txt"]


def test_reinstall_without_source_uses_installed_files(tmp_path: Path, source: Path) -> None:
    put(source, "a.txt", b"data")
    root = tmp_path / "root"
    install_artifacts(resolved([{"URI": "s3://b/a.txt"}]), source, root)
    install_artifacts(resolved([{"URI": "s3://b/a.txt", "Digest": b64sha(b"data")}]), None, root)
    with pytest.raises(ArtifactError, match="no artifact folder"):
        install_artifacts(resolved([{"URI": "s3://b/other.txt"}]), None, root)


def test_zip_unarchived_into_stem_folder(tmp_path: Path, source: Path) -> None:
    make_zip(source, "Bundle.zip", {"app/main.py": b"print('hi')\n", "README": b"r", "app/sub/": b""})
    paths = install_artifacts(resolved([
        {"URI": "s3://b/Bundle.zip", "Unarchive": "zip", "Permission": {"Read": "ALL", "Execute": "ALL"}},
    ]), source, tmp_path / "root")
    target = paths.decompressed_path / "Bundle"
    assert (target / "app" / "main.py").read_bytes() == b"print('hi')\n"
    assert (target / "README").read_bytes() == b"r"
    assert (target / "app" / "sub").is_dir()
    assert stat.S_IMODE((target / "app" / "main.py").stat().st_mode) == nucleus_mode("ALL", "ALL")
    assert (paths.artifacts_path / "Bundle.zip").is_file()  # the archive itself is kept too
    assert sorted(p.name for p in paths.decompressed_path.iterdir()) == ["Bundle"]


@pytest.mark.parametrize("evil", ["../escape.txt", "a/../../escape.txt", "/abs/escape.txt", "..\\win.txt"])
def test_zip_slip_refused(tmp_path: Path, source: Path, evil: str) -> None:
    make_zip(source, "evil.zip", {"ok.txt": b"fine", evil: b"pwned"})
    root = tmp_path / "root"
    with pytest.raises(ArtifactError, match="refusing to unpack"):
        install_artifacts(resolved([{"URI": "s3://b/evil.zip", "Unarchive": "ZIP"}]), source, root)
    unarchived = root / "packages/artifacts-unarchived" / NAME / VERSION
    assert not (unarchived / "evil").exists()  # nothing half-unpacked
    assert not list(unarchived.iterdir())
    assert not list(tmp_path.rglob("escape.txt")) and not list(tmp_path.rglob("win.txt"))


def test_zip_symlink_refused(tmp_path: Path, source: Path) -> None:
    path = source / NAME / VERSION / "link.zip"
    with zipfile.ZipFile(path, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ArtifactError, match="symbolic link"):
        install_artifacts(resolved([{"URI": "s3://b/link.zip", "Unarchive": "ZIP"}]), source, tmp_path / "r")


def test_corrupt_zip(tmp_path: Path, source: Path) -> None:
    put(source, "bad.zip", b"not a zip")
    with pytest.raises(ArtifactError, match="not a valid ZIP"):
        install_artifacts(resolved([{"URI": "s3://b/bad.zip", "Unarchive": "ZIP"}]), source, tmp_path / "r")


def test_no_artifacts_still_creates_folders(tmp_path: Path) -> None:
    paths = install_artifacts(resolved([]), None, tmp_path / "root")
    assert paths.artifacts_path.is_dir() and paths.decompressed_path.is_dir() and paths.work_path.is_dir()
