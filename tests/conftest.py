from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Runtime


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    """Streamlit's AppTest runs a page as ``sys.modules["__main__"]`` and leaves it
    there; a later ``multiprocessing`` spawn would then re-run that page in the child
    instead of the test module (it hung the frame-ring tests in CI). Put it back."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


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


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    """moto's S3 server (server mode, over HTTP on loopback) for a module's tests: boto3 talks to it as to AWS."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
