"""`ggvision dashboard` (what `make dashboard` runs) and the dashboard `ggvision run` starts alongside: the app
served on loopback on a runtime root's data, the backend chosen from what the root holds, bad options refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from dashboard_dev import edge_root
from harness import REPO, wait_until
from uplink_dev import free_port

from ggvision_cli.dashboard import dashboard_env
from ggvision_cli.run import start_dashboard, stop

GGVISION = [sys.executable, "-m", "ggvision_cli"]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def test_ggvision_dashboard_serves_the_app_on_loopback(tmp_path: Path) -> None:
    root = edge_root(tmp_path)
    port = free_port()
    log = open(tmp_path / "dash.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([*GGVISION, "dashboard", "--root", str(root), "--port", str(port)], cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: healthy(url) or proc.poll() is not None, 60, interval=0.2, what="the dashboard's health")
        assert proc.poll() is None, (tmp_path / "dash.log").read_text()[-2000:]
        assert b"<div id=\"root\">" in urllib.request.urlopen(url, timeout=5).read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
        log.close()
    assert f"dashboard: http://127.0.0.1:{port}" in (tmp_path / "dash.log").read_text()


def test_the_backend_follows_the_root_and_bad_options_are_refused(tmp_path: Path) -> None:
    root = edge_root(tmp_path)
    assert dashboard_env(root)["GGVISION_DASHBOARD_BACKEND"] == "edge"  # no local cloud running
    (root / "cloud").mkdir()
    (root / "cloud" / "cloud.json").write_text(json.dumps({
        "aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region": "us-east-1",
        "endpoint_url": "http://127.0.0.1:1", "table": "t", "data_bucket": "b"}))
    env = dashboard_env(root)
    assert env["GGVISION_DASHBOARD_BACKEND"] == "cloud" and env["GGVISION_DASHBOARD_SITES"] == "local"
    assert env["GGVISION_DASHBOARD_CLOUD_JSON"] == str(root / "cloud" / "cloud.json")
    with pytest.raises(ValueError, match="start `ggvision run` first"):
        dashboard_env(tmp_path, "cloud")
    r = subprocess.run([*GGVISION, "dashboard", "--root", str(root), "--backend", "s3"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--backend 's3' is not auto, edge or cloud" in r.stderr
    r = subprocess.run([*GGVISION, "dashboard", "--root", str(root), "--address", "0.0.0.0"], cwd=REPO,
                       capture_output=True, text=True, timeout=60,
                       env={k: v for k, v in os.environ.items() if k != "GGVISION_DASHBOARD_PASSWORD_HASH"})
    assert r.returncode == 2 and "needs a password" in r.stderr  # never on the LAN without one


def test_ggvision_run_starts_the_dashboard_alongside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = edge_root(tmp_path)
    proc = start_dashboard(root, "edge")
    assert proc is not None
    try:
        url = capsys.readouterr().err.split("dashboard: ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        wait_until(lambda: healthy(url) or proc.poll() is not None, 60, interval=0.2, what="the dashboard's health")
        assert proc.poll() is None, (root / "dashboard.log").read_text()[-2000:]
    finally:
        stop(proc)
    assert proc.poll() is not None
