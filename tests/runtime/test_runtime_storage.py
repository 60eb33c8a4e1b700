"""The local runtime on a full or read-only disk (docs/reliability.md): component logs rotate and are capped like
the nucleus' logging.fileSizeKB / logging.totalLogsSizeKB; a log that cannot be written never stops the runtime
from draining a component's output (its lines are dropped and counted, and the log says so once it works
again); the IoT Core stand-in's spool refuses what does not fit, and a full disk under it, with a clear error.
Real filesystems: a tmpfs filled to the last byte or remounted read-only (tests/fsfill.py)."""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path

import pytest
from fsfill import Tmpfs
from harness import AgentError, Runtime, wait_until, write_recipe

from gglocal.iotcore import spool as spool_mod
from gglocal.iotcore.broker import BrokerError, MosquittoBroker, find_mosquitto
from gglocal.iotcore.pki import ensure_pki
from gglocal.iotcore.spool import DiskSpool, SpoolFullError, SpoolStorageError
from gglocal.nucleus.logs import LogHub


@pytest.fixture
def fs(tmp_path: Path):
    t = Tmpfs(tmp_path / "fs", 4)
    try:
        yield t
    finally:
        t.umount()


def _lines(hub: LogHub, component: str) -> list[str]:
    files = [*hub.rotated(component), hub.path(component)]
    return [ln.split("] ", 1)[1] for f in files if f.exists() for ln in f.read_text().splitlines()]


# -- component logs ----------------------------------------------------------------------------------------

def test_logs_rotate_at_the_file_size_and_keep_the_newest_within_the_total(tmp_path: Path) -> None:
    hub = LogHub(tmp_path / "logs", console=None, file_size_kb=1, total_size_kb=4)
    for i in range(300):
        hub.line("com.example.Chatty", "stdout", f"line {i:04d} " + "x" * 60)
        hub.line("com.example.Quiet", "stdout", f"q {i}") if i % 100 == 0 else None
    hub.close()
    rotated = hub.rotated("com.example.Chatty")
    assert rotated and all(re.fullmatch(r"com\.example\.Chatty_\d{4}_\d\d_\d\d_\d\d_\d+\.log", p.name) for p in rotated)
    sizes = [p.stat().st_size for p in [*rotated, hub.path("com.example.Chatty")]]
    assert all(s <= 1024 for s in sizes), sizes
    assert sum(sizes) <= 4 * 1024, sizes
    kept = _lines(hub, "com.example.Chatty")
    numbers = [int(t.split()[1]) for t in kept]
    assert numbers == list(range(300 - len(numbers), 300)), "the newest lines, in order, none missing between"
    assert 30 <= len(numbers) < 300
    assert _lines(hub, "com.example.Quiet") == ["q 0", "q 100", "q 200"]  # another component keeps its own
    # a new hub (a runtime restart) continues the current file and rotates it when full
    hub = LogHub(tmp_path / "logs", console=None, file_size_kb=1, total_size_kb=4)
    for i in range(300, 330):
        hub.line("com.example.Chatty", "stdout", f"line {i:04d} " + "x" * 60)
    hub.close()
    numbers = [int(t.split()[1]) for t in _lines(hub, "com.example.Chatty")]
    assert numbers[-1] == 329 and numbers == list(range(numbers[0], 330))


def test_log_sizes_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one file"):
        LogHub(Path("/nonexistent"), console=None, file_size_kb=100, total_size_kb=10)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_log_that_cannot_be_written_drops_and_counts_lines_and_says_so_later(
        fs: Tmpfs, fault: str) -> None:
    console = io.StringIO()
    hub = LogHub(fs.path / "logs", console=console)
    hub.line("com.example.C", "stdout", "before")
    if fault == "full":
        fs.fill()
    else:
        hub.close()  # a tmpfs will not remount read-only under an open file; the hub opens it again
        fs.read_only()
    for i in range(100):
        hub.line("com.example.C", "stdout", f"while {i} " + "y" * 200)  # never raises
    dropped = hub.dropped["com.example.C"]  # the file's last page may still take a few (tmpfs: 4 KiB pages)
    assert dropped >= 50
    notices = [ln for ln in console.getvalue().splitlines() if ln.startswith("gglocal: cannot write")]
    want = "ENOSPC: No space left on device" if fault == "full" else "EROFS: Read-only file system"
    assert len(notices) == 1 and want in notices[0], notices  # once, not once per line
    assert sum("while" in ln for ln in console.getvalue().splitlines()) == 100  # the console still shows them
    if fault == "full":
        fs.free()
    else:
        fs.read_write()
    hub.line("com.example.C", "stdout", "after")
    hub.close()
    text = hub.path("com.example.C").read_text()
    assert "before" in text and "after" in text
    whole = [int(m.group(1)) for m in re.finditer(r"\] while (\d+) y{200}\n", text)]
    assert whole == list(range(100 - dropped)), "what was written came first; what was cut short is counted"
    assert re.search(r"\n\S+ \[nucleus\] \d+ lines of this log were dropped", text)  # on a line of its own
    assert f"{dropped} lines of this log were dropped: it could not be written ({want})" in text
    assert "can be written again" in console.getvalue()


# -- the IoT Core stand-in's spool -------------------------------------------------------------------------

def test_the_spool_refuses_what_does_not_fit_with_the_nucleus_reasons(tmp_path: Path) -> None:
    with DiskSpool(tmp_path / "spool.db", max_bytes=1000) as spool:
        with pytest.raises(SpoolFullError, match="larger than the whole spool"):
            spool.put("t/x", b"x" * 1001)
        spool.put("t/a", b"a" * 600)
        with pytest.raises(SpoolFullError, match="spool is full.*older messages are kept"):
            spool.put("t/b", b"b" * 600)
        assert len(spool) == 1


def test_a_full_disk_under_the_spool_is_a_clear_error(fs: Tmpfs) -> None:
    spool = DiskSpool(fs.path / "spool.db", max_bytes=1 << 20)
    first = spool.put("t/a", b"a" * 100)
    fs.fill()
    error = None
    for i in range(2000):  # SQLite's WAL may still have a page or two: sooner or later the disk says no
        try:
            spool.put(f"t/{i}", b"p" * 300)
        except SpoolStorageError as e:
            error = e
            break
    assert error is not None
    assert "cannot store the message: its disk is full (database or disk is full); message refused" in str(error)
    queued = len(spool)
    fs.free()
    spool.put("t/after", b"z")
    assert len(spool) == queued + 1 and spool.peek(1)[0].id == first
    spool.close()
    assert issubclass(SpoolStorageError, spool_mod.SpoolFullError)  # callers back off the same way


# -- under `ggvision nucleus` ------------------------------------------------------------------------------

def _have_mosquitto() -> bool:
    try:
        find_mosquitto()
    except BrokerError:
        return False
    return True


AGENT = "com.ggvision.test.Agent"
TALKER = "com.ggvision.test.Talker"
AGENT_ACL = {"aws.greengrass.ipc.mqttproxy": {
    f"{AGENT}:mqtt:1": {"operations": ["aws.greengrass#PublishToIoTCore"], "resources": ["ggvision/#"]}}}


@pytest.mark.skipif(not _have_mosquitto(), reason="mosquitto not installed (apt-get install mosquitto)")
@pytest.mark.timeout(120)
def test_a_full_root_never_stops_a_components_output_and_the_spool_says_why(tmp_path: Path) -> None:
    """The runtime's root on a tmpfs filled to the last byte: a component printing megabytes is drained to its
    end (its log drops the lines), PublishToIoTCore answers with the reason, and all of it recovers."""
    root = Tmpfs(tmp_path / "root", 48)
    pki = ensure_pki(tmp_path / "pki", "test-thing")
    broker = MosquittoBroker(tmp_path / "broker", pki)
    broker.start()
    go = tmp_path / "go.fifo"
    os.mkfifo(go)
    done = tmp_path / "talker.done"
    rt = Runtime(tmp_path, [AGENT], iot=True, config={AGENT: {"accessControl": AGENT_ACL}},
                 args=["--iot-endpoint", f"127.0.0.1:{broker.port}", "--iot-pki", str(tmp_path / "pki")])
    # 2.2 MB of output (far beyond a 64 KiB pipe buffer) once told to, then one more line when told again
    talker = tmp_path / "talker.py"
    talker.write_text("for i in range(20000):\n    print('talk %05d ' % i + 'x' * 100)\n")
    write_recipe({"RecipeFormatVersion": "2020-01-25", "ComponentName": TALKER, "ComponentVersion": "1.0.0",
                  "ComponentPublisher": "ggvision tests", "Manifests": [{"Lifecycle": {"Run": (
                      f"read a < {go}; python3 {talker}; touch {done}; read b < {go}; "
                      "echo after-the-disk-was-freed")}}]}, rt.recipes)
    try:
        rt.start(wait_for={AGENT: ("RUNNING",), TALKER: ("RUNNING",)})
        a = rt.agent()
        root.fill()
        with open(go, "w") as f:  # the talker starts printing
            f.write("go\n")
        wait_until(done.exists, 60, interval=0.1, what="the talker printed everything (its output was drained)")
        error = None
        for _ in range(2000):
            try:
                a.call("publish_iot", topic="ggvision/test-thing/results", b64=base64.b64encode(b"r" * 300).decode())
            except AgentError as e:
                error = e
                break
        assert error is not None and error.kind == "ServiceError", error
        assert "cannot store the message: its disk is full" in error.message, error.message
        assert rt.proc is not None and rt.proc.poll() is None  # the runtime is still up
        root.free()
        with open(go, "w") as f:
            f.write("again\n")
        rt.wait_state(TALKER, ("FINISHED",), 30)
        a.call("publish_iot", topic="ggvision/test-thing/results", b64=base64.b64encode(b"ok").decode())
        log = rt.log(TALKER)
        assert "after-the-disk-was-freed" in log
        dropped = re.search(r"(\d+) lines of this log were dropped: it could not be written \(ENOSPC", log)
        assert dropped and int(dropped.group(1)) >= 1, log[-2000:]
        out = rt.output()
        assert out.count(f"cannot write {rt.root / 'logs' / TALKER}.log") == 1
        assert "Traceback" not in out and "Task exception was never retrieved" not in out
    finally:
        rt.cleanup()
        broker.stop()
        root.umount()


def test_the_ipc_server_stops_cleanly_on_a_read_only_root(fs: Tmpfs) -> None:
    """A root the kernel turned read-only (a failed disk) must not fail the runtime's shutdown: the socket file
    stays (the next start on the repaired root replaces it), and so did the rehearsal in test_faults_storage.py
    find it (`ggvision nucleus` exited 2 on `Read-only file system: .../ipc.socket`)."""
    import asyncio

    from gglocal.ipc.server import IpcServer

    server = IpcServer(fs.path / "ipc.socket", {}, lambda token: None)

    async def run() -> None:
        await server.start()
        fs.read_only()
        await server.stop()

    asyncio.run(run())
    assert (fs.path / "ipc.socket").exists()
    fs.read_write()
    asyncio.run(run())  # the next start replaces the socket left behind
