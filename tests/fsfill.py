"""Real storage faults for tests: a small tmpfs that a test fills to the last byte, or remounts read-only.

`Tmpfs(path, size_mb)` mounts a tmpfs (root only: tests skip with the reason when mounting is refused);
`fill()` writes one filler file until the filesystem answers ENOSPC, then smaller and smaller writes down to
one byte, so nothing at all is left; `keep_full()` goes on doing so in a thread (a runaway writer: whatever the
suite frees is taken again at once) until `free()`, which removes the filler; `read_only()` / `read_write()`
remount.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
from pathlib import Path

import pytest


class Tmpfs:
    def __init__(self, path: Path, size_mb: int) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.filler = self.path / ".filler"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.topped_up = 0  # bytes taken again by keep_full()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(self.path)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs at {self.path} (needs root and mount rights): "
                        f"{proc.stderr.strip() or proc.returncode}")
        self.mounted = True

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> int:
        """Fill the filesystem to the last byte; returns the bytes the filler took."""
        written = self._top_up()
        assert self.free_bytes() == 0, f"{self.free_bytes()} bytes still free"
        return written

    def keep_full(self, every_s: float = 0.05) -> int:
        """Fill now, then keep taking whatever is freed (checked every `every_s`) until free()."""
        written = self.fill()
        self._stop.clear()

        def run() -> None:
            while not self._stop.wait(every_s):  # the fault itself, not a wait for an event
                self.topped_up += self._top_up()

        self._thread = threading.Thread(target=run, name="keep-full", daemon=True)
        self._thread.start()
        return written

    def _top_up(self) -> int:
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            chunk = 1 << 20
            while chunk >= 1:
                try:
                    written += os.write(fd, b"\0" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.filler.unlink(missing_ok=True)

    def _remount(self, mode: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.path)], check=True, capture_output=True)

    def read_only(self) -> None:
        self._remount("ro")

    def read_write(self) -> None:
        self._remount("rw")

    def umount(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.mounted:
            with contextlib.suppress(subprocess.CalledProcessError):
                self._remount("rw")
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False
