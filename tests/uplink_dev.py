"""The product Uplink recipe adapted to run from the development venv under the test runtime, and moto's
server mode in a subprocess that a test can pause (an S3 outage that keeps the bucket's state)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
from harness import dev_recipe, wait_until, write_recipe

NAME = "com.ggvision.test.UplinkDev"
BUCKET = "ggvision-test-bucket"


def uplink_dev_recipe(out_dir: Path, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Uplink; only the name, Run (no Runtime venv) and the configuration
    given differ."""
    doc = dev_recipe("com.ggvision.Uplink", NAME)
    doc["ComponentConfiguration"]["DefaultConfiguration"].update(config)
    return write_recipe(doc, out_dir)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoProcess:
    """`moto_server` on a loopback port. pause() = SIGSTOP: connections hang like a dropped VPN (the kernel
    still accepts them, nobody answers) and the bucket's state survives; resume() = SIGCONT."""

    def __init__(self, log: Path, launcher: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        """`launcher`: the command that runs moto's server (default `python -m moto.server`), given -H and -p."""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log, "ab")  # noqa: SIM115
        cmd = launcher or [sys.executable, "-m", "moto.server"]
        self.proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=env)

        def up() -> bool:
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1)
                return True
            except OSError:
                return self.proc.poll() is not None

        wait_until(up, 30, interval=0.1, what="moto server")
        assert self.proc.poll() is None, "moto server exited"

    def client(self, service: str = "s3") -> Any:
        return boto3.client(service, endpoint_url=self.url, region_name="us-east-1", aws_access_key_id="testing",
                            aws_secret_access_key="testing")

    def pause(self) -> None:
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def aws_test_env() -> None:
    """Credentials for moto (any value works); never real ones."""
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI"):
        os.environ.pop(k, None)


def drained(queue_dir: Path) -> bool:
    """Whether the Uplink queue at `queue_dir` holds nothing any more (read from its index, read-only)."""
    from ggvision.uplink.queue import open_readonly, read_stats

    db = open_readonly(queue_dir)
    try:
        return sum(read_stats(db, time.time())["backlog_items"].values()) == 0
    finally:
        db.close()
