"""Real faults for the whole-suite rehearsals (tests/test_faults_*.py, docs/reliability.md).

- `Ext4Image`: the runtime's root on an ext4 filesystem in a loop-mounted image, mounted `errors=remount-ro`;
  `fail()` raises a filesystem error through the kernel (ext4's `trigger_fs_error`, the path an I/O error
  takes), so the kernel itself turns the filesystem read-only under every open file (EROFS), as on a site box
  whose disk failed. ext4 keeps it read-only until it is unmounted: `repair()` is what an operator does after
  stopping the suite (e2fsck, mount again). Root only (tests skip, saying why, where loop mounts are refused).
- `power_cut(rt)`: every process of a `harness.Runtime` (the runtime and all its components and their children)
  frozen with SIGSTOP and then killed with SIGKILL: nothing runs between the first and the last kill, so no
  component sees a SIGTERM (the runtime's children would get one from PR_SET_PDEATHSIG if the runtime died
  first). What a power cut does not do here: unsynced page-cache writes survive (the kernel keeps running).
- `TcpLink`: a TCP relay on loopback between a client and a server, standing in for the site's WAN link.
  `down()` freezes it as a dropped VPN does (bytes are neither delivered nor answered, new connections are
  accepted and never served); `up()` closes every connection of the outage (their peers reconnect) and serves
  new ones again. `rate_bps` paces the client → server direction (an uplink of that many bytes per second), so a
  test can catch an upload in flight (`uploading()`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest


class Ext4Image:
    def __init__(self, image: Path, mountpoint: Path, size_mb: int) -> None:
        self.image, self.path = Path(image), Path(mountpoint)
        self.path.mkdir(parents=True, exist_ok=True)
        self.mounted = False
        if shutil.which("mkfs.ext4") is None or shutil.which("e2fsck") is None:
            pytest.skip("mkfs.ext4 / e2fsck not installed (Debian's e2fsprogs)")
        with open(self.image, "wb") as f:
            f.truncate(size_mb << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", str(self.image)], check=True, capture_output=True)
        self._mount()

    def _mount(self) -> None:
        proc = subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(self.image), str(self.path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot loop-mount an ext4 image at {self.path} (needs root and loop devices): "
                        f"{proc.stderr.strip() or proc.returncode}")
        self.mounted = True
        dev = subprocess.run(["findmnt", "-no", "SOURCE", str(self.path)], capture_output=True, text=True,
                             check=True).stdout.strip()
        self.trigger = Path("/sys/fs/ext4") / Path(dev).name / "trigger_fs_error"

    def read_only(self) -> bool:
        """Whether creating a file there fails with EROFS (mount options do not always say: `emergency_ro`)."""
        probe = self.path / ".probe"
        try:
            probe.touch()
        except OSError as e:
            if e.errno == errno.EROFS:
                return True
            raise
        probe.unlink()
        return False

    def fail(self) -> None:
        """A filesystem error: the kernel remounts the filesystem read-only (errors=remount-ro)."""
        if not self.trigger.exists():
            pytest.skip(f"{self.trigger} missing: this kernel cannot inject an ext4 error")
        self.trigger.write_text("ggvision fault rehearsal: injected filesystem error\n")

    def repair(self) -> None:
        """After the suite stopped: unmount, e2fsck, mount again read-write."""
        self.umount()
        proc = subprocess.run(["e2fsck", "-fy", str(self.image)], capture_output=True, text=True)
        assert proc.returncode in (0, 1), f"e2fsck exited {proc.returncode}: {proc.stdout}{proc.stderr}"
        self._mount()

    def umount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.path)], check=True, capture_output=True)
            self.mounted = False

    def cleanup(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False
        self.image.unlink(missing_ok=True)


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(d))
    return out


def process_tree(pid: int) -> list[int]:
    """`pid` and every descendant of it (components run in their own sessions: a process group is not enough)."""
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def power_cut(rt: Any) -> int:
    """Kill the runtime and every process under it at once (see the module docstring); returns how many died.
    `rt` is then ready for `rt.launch()` on the same root."""
    assert rt.proc is not None
    stopped: set[int] = set()
    while True:  # freeze until no new process appears (a process may fork while we walk the tree)
        new = [p for p in process_tree(rt.proc.pid) if p not in stopped]
        if not new:
            break
        for p in new:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
            stopped.add(p)
    for p in stopped:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)
    rt.proc.wait()
    for p in stopped:  # wait until the kernel has taken every one (their files are closed by then)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{p}").exists() and _state(p) not in ("Z", "X", None) and time.monotonic() < deadline:
            time.sleep(0.01)
    rt.proc = None
    if rt._client is not None:
        with contextlib.suppress(Exception):
            rt._client.close()
        rt._client = None
    rt.out.close()
    return len(stopped)


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


class TcpLink:
    def __init__(self, upstream: tuple[str, int], rate_bps: float = 0.0) -> None:
        self.upstream = upstream
        self.rate_bps = rate_bps
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._conns: list[dict[str, Any]] = []  # {"c": client, "s": server | None, "pending": bytes sent since
        # the last answer, "outage": opened or frozen during an outage}
        self._closed = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, name="tcplink", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            conn: dict[str, Any] = {"c": c, "s": None, "pending": 0, "outage": not self._up.is_set()}
            with self._lock:
                self._conns.append(conn)
            if conn["outage"]:
                continue  # accepted and never served, like a SYN into a dropped tunnel; closed by up()
            try:
                conn["s"] = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._pump, args=(conn, "c", "s"), daemon=True).start()
            threading.Thread(target=self._pump, args=(conn, "s", "c"), daemon=True).start()

    def _pump(self, conn: dict[str, Any], src: str, dst: str) -> None:
        a, b = conn[src], conn[dst]
        try:
            while True:
                data = a.recv(16384 if src == "c" and self.rate_bps else 65536)
                if not data:
                    break
                if not self._up.is_set():
                    conn["outage"] = True
                    self._up.wait()  # frozen: delivered never (up() closes the connection)
                    break
                if src == "c":
                    conn["pending"] += len(data)
                    if self.rate_bps:
                        time.sleep(len(data) / self.rate_bps)  # the link's pace, not a wait for an event
                else:
                    conn["pending"] = 0
                b.sendall(data)
        except OSError:
            pass
        finally:
            conn["closed"] = True
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def uploading(self, min_bytes: int = 32768) -> bool:
        """Whether a request of at least `min_bytes` is on its way through the link and not answered yet."""
        with self._lock:
            return any(c["pending"] >= min_bytes and c["s"] is not None and not c.get("closed")
                       for c in self._conns)

    def down(self) -> None:
        self._up.clear()

    def up(self) -> None:
        with self._lock:
            gone = [c for c in self._conns if c["outage"]]
            self._conns = [c for c in self._conns if not c["outage"]]
        for c in gone:
            for s in (c["c"], c["s"]):
                if s is not None:
                    with contextlib.suppress(OSError):
                        s.close()
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self._up.set()
        self.listener.close()
        with self._lock:
            for c in self._conns:
                for s in (c["c"], c["s"]):
                    if s is not None:
                        with contextlib.suppress(OSError):
                            s.close()
