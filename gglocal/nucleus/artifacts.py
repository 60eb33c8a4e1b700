"""Installing a component's artifacts into the nucleus directory layout.

Layout under the runtime root (same as the Java nucleus)::

    packages/artifacts/<name>/<version>/<file>
    packages/artifacts-unarchived/<name>/<version>/<zip stem>/...
    work/<name>/                                   (0o700)

Artifacts come from a local folder in the Greengrass CLI ``--artifactDir`` layout
(``<dir>/<name>/<version>/<file>``), matched by file name whatever the URI scheme; ``docker:`` URIs
are images, not files, and are skipped.

File modes are the nucleus' (aws-greengrass-nucleus: componentmanager/models/Permission.toFileSystemPermission,
util/Permissions.setArtifactPermission, NucleusPaths): see `artifact_mode`. Folders in the store, and every
folder of an unpacked ZIP, are 0755; the work folder is 0700.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .recipe import Artifact, ResolvedRecipe

_CHUNK = 1 << 20
_STATE_DIR = Path("packages") / ".ggvision-unarchived"  # markers: which zip content was unpacked
_STORE_DIR_MODE = 0o755  # Permissions.OWNER_RWX_EVERYONE_RX, for every folder of the artifact store


class ArtifactError(RuntimeError):
    """An artifact is missing, corrupt, or unsafe to unpack."""


@dataclass(frozen=True)
class ArtifactPaths:
    artifacts_path: Path
    decompressed_path: Path
    work_path: Path


def sha256_digest_b64(path: str | os.PathLike[str]) -> str:
    """Greengrass' artifact Digest: base64 of the raw SHA-256 of the file."""
    return base64.b64encode(_sha256(Path(path))).decode("ascii")


def _sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.digest()


def component_paths(root: Path, name: str, version: str) -> ArtifactPaths:
    """Where a component's files live, without creating anything."""
    packages = root / "packages"
    return ArtifactPaths(packages / "artifacts" / name / version,
                         packages / "artifacts-unarchived" / name / version,
                         root / "work" / name)


def install_artifacts(resolved: ResolvedRecipe, source_dir: Path | None, root: Path) -> ArtifactPaths:
    """Copy, verify and unpack the resolved manifest's artifacts; create the work folder.

    Idempotent: files already in place with the same content are not copied again and ZIPs
    already unpacked from the same content are not unpacked again. With ``source_dir=None`` only
    artifacts already installed can be used (e.g. after a restart).
    """
    name, version = resolved.recipe.name, resolved.recipe.version
    paths = component_paths(Path(root), name, version)
    paths.artifacts_path.mkdir(parents=True, exist_ok=True)
    paths.decompressed_path.mkdir(parents=True, exist_ok=True)
    paths.work_path.mkdir(parents=True, exist_ok=True)
    # NucleusPaths.artifactPath / unarchiveArtifactPath: <name> and <name>/<version> are 0755 (everyone may
    # look in, for dependents' {Dep:artifacts:path}); NucleusPaths.workPath: the work folder is 0700.
    for folder in (paths.artifacts_path, paths.decompressed_path):
        os.chmod(folder.parent, _STORE_DIR_MODE)
        os.chmod(folder, _STORE_DIR_MODE)
    os.chmod(paths.work_path, 0o700)

    for artifact in resolved.artifacts:
        if artifact.scheme == "docker":
            continue
        dest = paths.artifacts_path / artifact.filename
        _install_file(artifact, name, version, source_dir, dest)
        if artifact.unarchive == "ZIP":
            _unarchive(artifact, name, version, dest, paths.decompressed_path / artifact.stem, Path(root))
    return paths


def _label(name: str, version: str, artifact: Artifact) -> str:
    return f"{name}@{version}: artifact {artifact.uri}"


def artifact_mode(read: str, execute: str, *, superuser: bool) -> int:
    """The mode the nucleus gives an artifact file (and each file unpacked from it) for its ``Permission``.

    Permission.toFileSystemPermission ("user group is considered to be owner"): the owner may always
    read; Read OWNER or ALL, or any Execute, lets the group read; Read ALL or Execute ALL lets others
    read; Execute OWNER or ALL sets the owner's and the group's execute bit, Execute ALL also the others'.
    Permissions.setArtifactPermission then adds the owner's write bit when the nucleus is not running as
    root, so that it can delete the file later. Defaults (no Permission): Read OWNER, Execute NONE.
    """
    any_exec = execute in ("OWNER", "ALL")
    mode = stat.S_IRUSR
    if not superuser:
        mode |= stat.S_IWUSR
    if any_exec:
        mode |= stat.S_IXUSR | stat.S_IXGRP
    if read in ("OWNER", "ALL") or any_exec:
        mode |= stat.S_IRGRP
    if read == "ALL" or execute == "ALL":
        mode |= stat.S_IROTH
    if execute == "ALL":
        mode |= stat.S_IXOTH
    return mode


def _file_mode(artifact: Artifact) -> int:
    return artifact_mode(artifact.read, artifact.execute, superuser=os.geteuid() == 0)


def _check_digest(artifact: Artifact, actual: str, label: str, where: Path) -> None:
    if artifact.digest is None:
        return
    algorithm = (artifact.algorithm or "SHA-256").upper().replace("_", "-")
    if algorithm not in ("SHA-256", "SHA256"):
        raise ArtifactError(f"{label}: unsupported digest algorithm {artifact.algorithm!r} (only SHA-256)")
    if actual != artifact.digest.strip():
        raise ArtifactError(f"{label}: digest mismatch for {where}: expected {artifact.digest.strip()}, "
                            f"got {actual} (SHA-256, base64)")


def _install_file(artifact: Artifact, name: str, version: str, source_dir: Path | None, dest: Path) -> None:
    label = _label(name, version, artifact)
    current = base64.b64encode(_sha256(dest)).decode("ascii") if dest.is_file() else None

    if source_dir is None:
        if current is None:
            raise ArtifactError(f"{label}: not installed at {dest} and no artifact folder was given")
        _check_digest(artifact, current, label, dest)
        os.chmod(dest, _file_mode(artifact))
        return

    src = Path(source_dir) / name / version / artifact.filename
    if not src.is_file():
        raise ArtifactError(f"{label}: file not found; looked for {src}")
    wanted = sha256_digest_b64(src)
    _check_digest(artifact, wanted, label, src)
    if current != wanted:
        _atomic_copy(src, dest)
    os.chmod(dest, _file_mode(artifact))


def _atomic_copy(src: Path, dest: Path) -> None:
    """Copy through a temp file in the destination folder so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _safe_members(archive: zipfile.ZipFile, target: Path, label: str) -> list[zipfile.ZipInfo]:
    """All members, after checking none escapes ``target`` (zip-slip) or is a symlink."""
    base = target.resolve()
    members = archive.infolist()
    for info in members:
        name = info.filename.replace("\\", "/")
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":"):
            raise ArtifactError(f"{label}: refusing to unpack {info.filename!r}: it would escape {target}")
        if not (base / name).resolve().is_relative_to(base):
            raise ArtifactError(f"{label}: refusing to unpack {info.filename!r}: it would escape {target}")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise ArtifactError(f"{label}: refusing to unpack symbolic link {info.filename!r}")
    return members


def _unarchive(artifact: Artifact, name: str, version: str, zip_path: Path, target: Path, root: Path) -> None:
    label = _label(name, version, artifact)
    marker = root / _STATE_DIR / name / version / f"{artifact.filename}.sha256"
    digest = sha256_digest_b64(zip_path)
    if target.is_dir() and marker.is_file() and marker.read_text().strip() == digest:
        return  # already unpacked from this exact archive

    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ArtifactError(f"{label}: {zip_path} is not a valid ZIP file: {exc}") from None
    # Unpack beside the target, then swap it in, so a failure never leaves a half-filled folder.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        with archive:
            members = _safe_members(archive, staging, label)
            archive.extractall(staging, members)
        # Permissions.setArtifactPermission on the unpack folder: every folder 0755 whatever the Permission
        # (the developer guide: "sets the folder's access permissions to ALL for Read and Execute"), every
        # file the artifact's mode.
        file_mode = _file_mode(artifact)
        for dirpath, dirnames, filenames in os.walk(staging):
            for d in dirnames:
                os.chmod(os.path.join(dirpath, d), _STORE_DIR_MODE)
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), file_mode)
        os.chmod(staging, _STORE_DIR_MODE)
        if target.exists():
            shutil.rmtree(target)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(digest + "\n")
