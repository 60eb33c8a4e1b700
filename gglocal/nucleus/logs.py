"""Component logs: one file per component under <root>/logs, plus a merged console view."""

from __future__ import annotations

import logging
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from typing import TextIO

_COLOURS = [31, 32, 33, 34, 35, 36, 91, 92, 93, 94, 95, 96]


class LogHub:
    def __init__(self, log_dir: Path, console: TextIO | None = sys.stderr, colour: bool | None = None) -> None:
        self.dir = log_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, TextIO] = {}
        self.console = console
        self.colour = console is not None and (colour if colour is not None else console.isatty())
        self.recent: deque[tuple[str, str, str]] = deque(maxlen=200)  # (time, component, text) for dashboards

    def path(self, component: str) -> Path:
        return self.dir / f"{component}.log"

    def _file(self, component: str) -> TextIO:
        f = self._files.get(component)
        if f is None:
            f = open(self.path(component), "a", buffering=1, encoding="utf-8")  # noqa: SIM115
            self._files[component] = f
        return f

    def line(self, component: str, stream: str, text: str) -> None:
        """One line of a component's output (stream: stdout, stderr or nucleus)."""
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self._file(component).write(f"{stamp} [{stream}] {text}\n")
        self.recent.append((time.strftime("%H:%M:%S", time.localtime(now)), component, text))
        if self.console is not None:
            short = time.strftime("%H:%M:%S", time.localtime(now))
            name = component
            if self.colour:
                c = _COLOURS[zlib.crc32(component.encode()) % len(_COLOURS)]
                name = f"\x1b[{c}m{component}\x1b[0m"
            try:
                self.console.write(f"{short} {name} | {text}\n")
            except ValueError:  # console closed during shutdown
                pass
            except OSError:  # e.g. `| tee` killed by the same Ctrl-C: the files keep everything, the runtime
                self.console = None  # must still stop its components cleanly, so the console is dropped

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


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
