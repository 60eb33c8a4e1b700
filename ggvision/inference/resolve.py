"""Where a configured model's artifacts are: a folder, or a model component's installed artifacts.

A component version's artifacts live where the nucleus installs them (ggvision/nucleus/artifacts.py, as
Greengrass does): {kernel:rootPath}/packages/artifacts/<component>/<version>/ for plain files, or
.../artifacts-unarchived/<component>/<version>/<zip stem>/ for a ZIP artifact. The version is the one
installed on the device (GetComponentDetails), unless the configuration pins one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..config.inference import ModelSource

MANIFEST = "manifest.json"


class ModelNotFound(Exception):
    """The model is not (yet) on the device: worth retrying later, unlike a refused model."""


def component_model_dir(packages: Path, component: str, version: str) -> Path:
    plain = packages / "artifacts" / component / version
    if (plain / MANIFEST).is_file():
        return plain
    unarchived = packages / "artifacts-unarchived" / component / version
    found = sorted(unarchived.glob(f"*/{MANIFEST}")) if unarchived.is_dir() else []
    if len(found) == 1:
        return found[0].parent
    if len(found) > 1:
        raise ModelNotFound(f"{component} {version}: more than one {MANIFEST} under {unarchived}")
    raise ModelNotFound(f"{component} {version}: no {MANIFEST} in {plain} or {unarchived}/*/ "
                        "(is it a model component with model.onnx + manifest.json artifacts?)")


def resolve(source: ModelSource, packages: Path | None, installed_version: Callable[[str], str]) -> tuple[Path, str]:
    """(model folder, version label) for `source`; ModelNotFound when it is not there."""
    if source.path is not None:
        p = Path(source.path)
        if not (p / MANIFEST).is_file():
            raise ModelNotFound(f"{p}: no {MANIFEST} there")
        return p, ""
    assert source.component is not None
    if packages is None:
        raise ModelNotFound(f"{source.component}: the packages folder is unknown (start with --packages)")
    version = source.version
    if version is None:
        try:
            version = installed_version(source.component)
        except Exception as e:  # ResourceNotFound / ComponentNotFound while it is not deployed yet
            raise ModelNotFound(f"{source.component}: not installed on this device ({type(e).__name__}: "
                                f"{getattr(e, 'message', '') or e})") from None
    return component_model_dir(packages, source.component, version), version
