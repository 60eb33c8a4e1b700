"""Issue 17's "done when", as a new user does it: `ggvision run` is running; the user adds an RTSP camera (with a
password) with the two commands `ggvision run` printed — `camera add` into the site file it wrote, `site apply
--deploy --runtime` — and within a minute the camera's detections flow on `ggvision/v1/detections/{camera}`, the
topic the live view's camera rows count (gglocal/nucleus/dashboard.py), with no component restarted and the
password in no log and no file but Secrets Manager.

What runs is `ggvision run --no-cloud --secrets-endpoint-url` (the real command, its IoT Core stand-in on mosquitto)
on a build output made of the product's own Capture, Inference, Filter and Uplink recipes under their product
names — only Run points at this checkout's python instead of com.ggvision.Runtime's virtualenv, whose install would
take minutes — with moto's server over HTTP as the local cloud's Secrets Manager (`python -m cloud.local` is that
same server with stacks this path never touches), and a real RTSP server with basic auth on loopback
(tests/rtsp_server.py) serving a synthetic H.264 stream."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from capture_dev import synthetic_video
from harness import REPO, Runtime, wait_until
from suite_dev import AGENT, write_suite
from test_secrets_rotation import USER, RtspServer, _free_port, _product_secret_policy
from uplink_dev import MotoProcess

from gglocal.iotcore.broker import BrokerError, find_mosquitto
from ggvision.contract import secrets, shadows

PASSWORD = "new-Cam:pa55/word"
CAMERA, DEMO = "gate", "door"  # the camera added; the demo camera `ggvision run` started with
PRODUCT = {"capture": "com.ggvision.Capture", "inference": "com.ggvision.Inference", "filter": "com.ggvision.Filter",
           "uplink": "com.ggvision.Uplink"}  # the Uplink: `ggvision run` resets its sink at start
WITHIN_S = 60.0


def _skip_without_tools() -> None:
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    if not Path("/usr/bin/python3").exists() or subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True,
                                                               timeout=30).returncode:
        pytest.skip("GstRtspServer is unavailable (Debian packages python3-gi gir1.2-gst-rtsp-server-1.0)")
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed (Debian package ffmpeg)")
    try:
        find_mosquitto()
    except BrokerError:
        pytest.skip("mosquitto is not installed")


def _build_output(rt: Runtime) -> None:
    """rt.tmp as a build output (recipes/ + artifacts/<name>/<version>/): the product's recipes, renamed back."""
    names = write_suite(rt, tuple(PRODUCT),
                        overrides={"capture": {"cameras": {DEMO: {"record": {"enabled": False}}}}})
    rt.write_component(AGENT)
    for part, dev in names.items():
        path = next(rt.recipes.glob(f"{dev}*.json"))
        if part == "capture":
            _product_secret_policy(path)
        doc = json.loads(path.read_text())
        doc["ComponentName"] = PRODUCT[part]
        path.unlink()
        (rt.recipes / f"{PRODUCT[part]}-{doc['ComponentVersion']}.json").write_text(json.dumps(doc))


def _printed_commands(out: str) -> tuple[str, str]:
    add = re.search(r"^\s*(printf .*ggvision camera add .*)$", out, re.M)
    apply = re.search(r"^\s*(ggvision site apply .*)$", out, re.M)
    assert add and apply, out[-3000:]
    return add.group(1), apply.group(1)


def _starts(rt: Runtime) -> dict[str, int]:
    return {name: rt.log(name).count("run: starting") for name in PRODUCT.values()}


@pytest.mark.timeout(240)
def test_a_new_user_adds_an_rtsp_camera_to_a_running_ggvision_run_with_two_commands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _skip_without_tools()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"):
        monkeypatch.setenv(k, env[k])
    rt = Runtime(tmp_path, [AGENT])
    _build_output(rt)
    video = synthetic_video(tmp_path / "cam.ts", [(320, 240, 120.0)], fps=10)
    port = _free_port()
    moto = MotoProcess(tmp_path / "moto.log")
    server = RtspServer(video, port, PASSWORD)
    site = tmp_path / "site.yaml"  # `ggvision run`'s default: beside --root
    log = open(tmp_path / "run.out", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "ggvision_cli", "run", "--no-cloud", "--root", str(rt.root),
                             "--build", str(tmp_path), "--secrets-endpoint-url", moto.url, "--no-dashboard"],
                            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cli = rt.root / "cli_ipc_info" / "cli.json"
        wait_until(lambda: cli.exists() or proc.poll() is not None, 60, what="the runtime up")
        assert proc.poll() is None, (tmp_path / "run.out").read_text(errors="replace")[-3000:]
        for name in (AGENT, *PRODUCT.values()):
            rt.wait_state(name, ("RUNNING",), 90)
        assert site.exists() and DEMO in yaml.safe_load(site.read_text())["sites"]["local"]["devices"][
            "ggvision-local"]["cameras"]
        agent = rt.agent()
        agent.call("subscribe", id="new", topic=f"ggvision/v1/detections/{CAMERA}")
        agent.call("subscribe", id="demo", topic=f"ggvision/v1/detections/{DEMO}")
        assert agent.call("events", id="demo", count=1, timeout=60), "the demo camera has no detections"
        starts = _starts(rt)
        add, apply = _printed_commands((tmp_path / "run.out").read_text(errors="replace"))
        add = add.replace("--name CAM", f"--name {CAMERA}").replace(
            "rtsp://HOST/PATH", f"rtsp://127.0.0.1:{port}/cam").replace("--user USER", f"--user {USER}")

        t0 = time.monotonic()
        outputs = []
        for command in (add, apply):
            done = subprocess.run(["bash", "-c", command], cwd=REPO, env={**env, "CAM_PASSWORD": PASSWORD},
                                  capture_output=True, text=True, timeout=120)
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == 0, f"{command}\n{outputs[-1]}"
        got = agent.call("events", id="new", count=3, timeout=max(1.0, WITHIN_S - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        assert len(got) >= 3, f"no detections for {CAMERA} within {WITHIN_S:.0f} s\n{outputs}\n" \
                              f"{rt.log(PRODUCT['capture'])[-3000:]}"
        messages = [e["json"] for e in got if "json" in e]
        assert messages and all(m.get("camera") == CAMERA for m in messages), messages[:2]

        assert _starts(rt) == starts  # the same component processes all along
        assert agent.call("events", id="demo", count=1, timeout=30), "the demo camera stopped"
        cam = yaml.safe_load(site.read_text())["sites"]["local"]["devices"]["ggvision-local"]["cameras"][CAMERA]
        assert cam["capture"]["source"] == {"type": "rtsp", "url": f"rtsp://127.0.0.1:{port}/cam",
                                            "credentialsSecret": f"ggvision/ggvision-local/cameras/{CAMERA}"}
        doc = json.loads((tmp_path / "deployments" / "dev.json").read_text())["components"]
        assert shadows.SHADOW_MANAGER in doc and secrets.SECRET_MANAGER in doc
        texts = [site.read_text(), (tmp_path / "run.out").read_text(errors="replace"), *outputs,
                 *(p.read_text(errors="replace") for p in (rt.root / "logs").glob("*.log"))]
        for text in texts:
            for secret in (PASSWORD, PASSWORD.replace(":", "%3A").replace("/", "%2F")):
                assert secret not in text
        print(f"\ncamera {CAMERA}: first detections {elapsed:.1f} s after the first command "
              f"({len(messages)} messages; labels "
              f"{sorted({d.get('label') for m in messages for d in m.get('detections', [])})})")
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as a user stops `ggvision run`
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        rt.cleanup()
        server.stop()
        moto.stop()


def test_the_docs_show_the_two_commands_ggvision_run_prints() -> None:
    """docs/sites.md ("Adding a camera to `make run`") and the README ("Adding your site") show what `ggvision run`
    prints for its default root and the local cloud, with a user's values put in for CAM, HOST/PATH and USER."""
    from ggvision_cli.run import CLOUD_KEYS, THING
    from ggvision_cli.sitefile import two_commands

    printed = two_commands(Path(".ggvision/site.yaml"), Path(".ggvision/root"), THING, "http://127.0.0.1:PORT",
                           "us-east-1", CLOUD_KEYS)
    user = [printed[0].replace("--name CAM", "--name door").replace("rtsp://HOST/PATH", "rtsp://10.0.0.5/stream1")
            .replace("--user USER", "--user admin"), printed[1]]
    docs = (REPO / "docs" / "sites.md").read_text().split("## Adding a camera to `make run`", 1)[1]
    readme = (REPO / "README.md").read_text().split("## Adding your site", 1)[1].split("\n## ", 1)[0]
    for text in (docs, readme):
        for command in user:
            assert command in text, command
    # every option the section names is one of `ggvision run`'s, `camera add`'s or `site apply`'s
    import typer.main

    from ggvision_cli import app as ggvision_app

    top = typer.main.get_command(ggvision_app)
    commands = [top.commands["run"], top.commands["camera"].commands["add"],  # type: ignore[attr-defined]
                top.commands["site"].commands["apply"]]  # type: ignore[attr-defined]
    options = {o for c in commands for p in c.params for o in (*p.opts, *p.secondary_opts)}
    named = set(re.findall(r"(--[a-z][a-z-]+)", docs.split("\n## ", 1)[0]))
    assert named and named <= options, named - options
