"""Component logs: one file per component under <root>/logs, rotated and capped, plus a merged console view.

Like the nucleus' file logs (developer guide, greengrass-nucleus-component, `logging`): a component's current
file is `<component>.log`; once it would exceed `file_size_kb` (the nucleus' `logging.fileSizeKB`, default
1024) it is renamed `<component>_YYYY_MM_DD_HH_<n>.log` and a new one begins; the oldest rotated files of a
component are deleted while its files together exceed `total_size_kb` (`logging.totalLogsSizeKB`, default
10240). The runtime's own log is the component `gglocal.nucleus`.

A log that cannot be written (full disk, read-only or forbidden folder) never stops the runtime from draining
a component's output: the line is dropped and counted (`dropped`), the console says so once per component when
it begins, and the file says how many lines it lost once it can be written again (tried again with each
line: a failed append costs a system call or two). `line()` never raises.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import TextIO

_COLOURS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96]
DEFAULT_FILE_SIZE_KB = 1024  # the nucleus' logging.fileSizeKB default
DEFAULT_TOTAL_SIZE_KB = 10240  # the nucleus' logging.totalLogsSizeKB default


class _Log:
    """One component's current file and what happened to it."""

    def __init__(self) -> None:
        self.file: TextIO | None = None
        self.size = 0
        self.dropped = 0  # lines lost since the file last worked
        self.dropped_total = 0
        self.error = ""  # why it cannot be written ('' while it works)


class LogHub:
    def __init__(self, log_dir: Path, console: TextIO | None = sys.stderr, colour: bool | None = None,
                 file_size_kb: int = DEFAULT_FILE_SIZE_KB, total_size_kb: int = DEFAULT_TOTAL_SIZE_KB) -> None:
        if file_size_kb <= 0 or total_size_kb <= 0:
            raise ValueError("log file sizes must be positive (KB)")
        if total_size_kb < file_size_kb:
            raise ValueError(f"the total log size per component ({total_size_kb} KB) must be at least one file "
                             f"({file_size_kb} KB)")
        self.dir = log_dir
        self.file_bytes = file_size_kb * 1024
        self.total_bytes = total_size_kb * 1024
        self._logs: dict[str, _Log] = {}
        self.console = console
        self.colour = console is not None and (colour if colour is not None else console.isatty())
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=200)  # (time, component, text) for dashboards
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # the files will say why once they can be written; the console says it now
            self._say(f"gglocal: cannot create the log folder {self.dir}: {e}")

    def path(self, component: str) -> Path:
        return self.dir / f"{component}.log"

    def rotated(self, component: str) -> list[Path]:
        """A component's rotated files, oldest first."""
        pat = re.compile(re.escape(component) + r"_(\d{4})_(\d\d)_(\d\d)_(\d\d)_(\d+)\.log")
        found = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        for name in names:
            m = pat.fullmatch(name)
            if m:
                found.append((tuple(int(g) for g in m.groups()), self.dir / name))
        return [p for _, p in sorted(found)]

    @property
    def dropped(self) -> dict[str, int]:
        """Lines dropped per component because its log could not be written."""
        return {c: lg.dropped_total for c, lg in self._logs.items() if lg.dropped_total}

    def line(self, component: str, stream: str, text: str) -> None:
        """One line of a component's output (stream: stdout, stderr or nucleus). Never raises."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self._write(component, f"{stamp} [{stream}] {text}\n", stamp)
        self.recent.append((time.strftime("%H:%M:%S", time.localtime(now)), component, text))
        if self.console is not None:
            short = time.strftime("%H:%M:%S", time.localtime(now))
            name = component
            if self.colour:
                c = _COLOURS[zlib.crc32(component.encode()) % len(_COLOURS)]
                name = f"\x1b[{c}m{component}\x1b[0m"
            self._say(f"{short} {name} | {text}")

    def _say(self, text: str) -> None:
        if self.console is None:
            return
        try:
            self.console.write(text + "\n")
        except ValueError:  # console closed during shutdown
            pass
        except OSError:  # e.g. `| tee` killed by the same Ctrl-C: the files keep everything, the runtime
            self.console = None  # must still stop its components cleanly, so the console is dropped

    # -- files --------------------------------------------------------------------------------
    def _write(self, component: str, record: str, stamp: str) -> None:
        lg = self._logs.get(component)
        if lg is None:
            lg = self._logs[component] = _Log()
        try:
            if lg.dropped:  # it works again: say first what was lost (after a line cut short, on its own line)
                cut = "" if _ends_a_line(self.path(component)) else "\n"
                note = (f"{cut}{stamp} [nucleus] {lg.dropped} lines of this log were dropped: it could not be "
                        f"written ({lg.error})\n")
                self._append(component, lg, note)
                lg.dropped = 0
            self._append(component, lg, record)
        except OSError as e:
            self._close(lg)
            self._drop(component, lg, e)
            return
        if lg.error:
            self._say(f"gglocal: {self.path(component)} can be written again")
            lg.error = ""

    def _append(self, component: str, lg: _Log, text: str) -> None:
        data = text.encode("utf-8", errors="replace")
        if lg.file is not None and lg.size > 0 and lg.size + len(data) > self.file_bytes:
            self._rotate(component, lg)
        if lg.file is None:
            path = self.path(component)
            lg.file = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
            lg.size = path.stat().st_size
            if lg.size > 0 and lg.size + len(data) > self.file_bytes:  # a big file from an earlier run
                self._rotate(component, lg)
                lg.file = open(path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115
                lg.size = 0
        lg.file.write(text)
        lg.file.flush()
        lg.size += len(data)

    def _rotate(self, component: str, lg: _Log) -> None:
        """The current file becomes <component>_YYYY_MM_DD_HH_<n>.log; the oldest go while over the total."""
        self._close(lg)
        hour = time.strftime("%Y_%m_%d_%H", time.gmtime())
        prefix = f"{component}_{hour}_"
        # after the newest of this hour (never a freed lower number: the names must sort by age)
        n = max((int(p.name[len(prefix):-4]) for p in self.rotated(component) if p.name.startswith(prefix)),
                default=-1) + 1
        os.replace(self.path(component), self.dir / f"{component}_{hour}_{n}.log")
        lg.size = 0
        rotated = self.rotated(component)
        total = sum(_size(p) for p in rotated)
        # the new current file may grow to file_bytes: keep the rotated ones within what is left
        while rotated and total + self.file_bytes > self.total_bytes:
            oldest = rotated.pop(0)
            total -= _size(oldest)
            try:
                oldest.unlink()
            except FileNotFoundError:
                pass

    def _drop(self, component: str, lg: _Log, e: OSError) -> None:
        lg.dropped += 1
        lg.dropped_total += 1
        first = not lg.error
        lg.error = f"{errno.errorcode.get(e.errno or 0, 'error')}: {e.strerror or e}"
        if first:
            self._say(f"gglocal: cannot write {self.path(component)} ({lg.error}): dropping its lines, "
                      "counted, until it can; the component's output is still drained")

    @staticmethod
    def _close(lg: _Log) -> None:
        if lg.file is not None:
            try:
                lg.file.close()
            except OSError:  # what was still buffered is lost with the line that failed
                pass
            lg.file = None

    def close(self) -> None:
        for lg in self._logs.values():
            self._close(lg)


def _ends_a_line(p: Path) -> bool:
    """Whether the file is empty or its last byte ends a line (a write cut short by a full disk does not)."""
    try:
        with open(p, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return True


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


class HubHandler(logging.Handler):
    """Routes the runtime's own logging into the hub as the 'gglocal.nucleus' component."""

    def __init__(self, hub: LogHub, name: str = "gglocal.nucleus") -> None:
        super().__init__()
        self.hub = hub
        self.component = name

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.hub.line(self.component, record.levelname.lower(), self.format(record))
        except Exception:
            self.handleError(record)
