from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Runtime


def _needs_mosquitto() -> None:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.skip("mosquitto is not installed (make test installs Debian's mosquitto)")


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    """One runtime with the two agent components, shared by a module's tests."""
    rt = Runtime(tmp_path_factory.mktemp("rt"), ["com.ggvision.test.Agent", "com.ggvision.test.Peer"])
    try:
        rt.start()
        yield rt
    finally:
        rt.cleanup()


@pytest.fixture
def mosquitto_available() -> None:
    _needs_mosquitto()
