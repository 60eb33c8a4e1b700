"""Host collectors: CPU, load, temperatures, memory, disk space and I/O, network, component processes, probes.

Each collector keeps what it needs between samples (counter deltas, RSS windows, probe history) and
is called from one thread (the Health tick); the values are plain floats for the exporter.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger("ggvision.health.collectors")

SOCKET_ENV = "AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT"


# -- CPU, memory, temperatures -------------------------------------------------------------
@dataclass
class HostSample:
    cpu_all: float  # ratio 0..1
    cpu_per_core: list[float]
    load1: float
    temperatures: dict[str, float]  # "chip/label" -> °C
    memory_available: float
    memory_total: float
    swap_used: float


class HostCollector:
    def __init__(self) -> None:
        # psutil measures since its previous call (separately for overall and per core): prime both
        psutil.cpu_percent()
        psutil.cpu_percent(percpu=True)

    def sample(self) -> HostSample:
        cpu_all = psutil.cpu_percent() / 100.0
        per_core = [p / 100.0 for p in psutil.cpu_percent(percpu=True)]
        temps: dict[str, float] = {}
        try:
            for chip, entries in (psutil.sensors_temperatures() or {}).items():
                for i, e in enumerate(entries):
                    key = f"{chip}/{e.label}" if e.label else f"{chip}/{i}"
                    temps[key if key not in temps else f"{key}/{i}"] = float(e.current)  # labels can repeat
        except (AttributeError, OSError):  # not exposed on this platform / in this container
            pass
        vm = psutil.virtual_memory()
        return HostSample(cpu_all, per_core, os.getloadavg()[0], temps, float(vm.available), float(vm.total),
                          float(psutil.swap_memory().used))


# -- disk ----------------------------------------------------------------------------------
@dataclass
class DiskSample:
    path: str
    free: float
    total: float
    write_bytes_per_s: float | None  # None on the first sample (no delta yet) or without /proc/diskstats
    write_latency_s: float | None  # mean time per completed write over the interval; 0 without writes


class DiskCollector:
    """Space of the data folder's filesystem; write rate and latency of the machine's disks (psutil deltas)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._last: tuple[float, Any] | None = None  # (monotonic time, psutil sdiskio)

    def sample(self, now: float | None = None) -> DiskSample:
        now = time.monotonic() if now is None else now
        usage = psutil.disk_usage(self.path)
        rate = latency = None
        try:
            io = psutil.disk_io_counters(perdisk=False)
        except (RuntimeError, OSError):
            io = None
        if io is not None:
            if self._last is not None:
                t0, io0 = self._last
                dt = now - t0
                dw = io.write_count - io0.write_count
                if dt > 0:
                    rate = max(0.0, (io.write_bytes - io0.write_bytes) / dt)
                latency = (io.write_time - io0.write_time) / 1000.0 / dw if dw > 0 else 0.0
            self._last = (now, io)
        return DiskSample(self.path, float(usage.free), float(usage.total), rate, latency)


# -- network -------------------------------------------------------------------------------
def network_sent_bytes() -> float:
    """Bytes sent on every interface but loopback since boot (a counter)."""
    try:
        per = psutil.net_io_counters(pernic=True)
    except OSError:
        return 0.0
    return float(sum(c.bytes_sent for nic, c in per.items() if nic != "lo" and not nic.startswith("lo")))


@dataclass
class ProbeResult:
    up: bool
    latency_s: float | None  # of the last successful connect
    loss_ratio: float  # failed attempts among the last `window`


class Prober:
    """TCP connect probes: latency of the handshake, loss over the last N attempts, up = last attempt worked."""

    def __init__(self, endpoints: Iterable[tuple[str, int]], timeout_s: float, window: int) -> None:
        self.endpoints = list(endpoints)
        self.timeout_s = timeout_s
        self.history: dict[str, deque[bool]] = {f"{h}:{p}": deque(maxlen=window) for h, p in self.endpoints}
        self.latency: dict[str, float | None] = {k: None for k in self.history}
        self._pool = ThreadPoolExecutor(max_workers=min(8, max(1, len(self.endpoints))),
                                        thread_name_prefix="health-probe") if self.endpoints else None

    def _connect(self, host: str, port: int) -> float | None:
        t0 = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=self.timeout_s):
                return time.perf_counter() - t0
        except OSError:
            return None

    def probe(self) -> dict[str, ProbeResult]:
        if self._pool is None:
            return {}
        futures = {f"{h}:{p}": self._pool.submit(self._connect, h, p) for h, p in self.endpoints}
        out = {}
        for key, fut in futures.items():
            lat = fut.result()  # each attempt ends within the timeout (DNS aside)
            self.history[key].append(lat is not None)
            if lat is not None:
                self.latency[key] = lat
            h = self.history[key]
            out[key] = ProbeResult(lat is not None, self.latency[key], 1.0 - sum(h) / len(h))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


# -- component processes ---------------------------------------------------------------------
class RssTrend:
    """Least-squares slope of RSS over the last N samples (bytes per hour): the leak signal."""

    def __init__(self, window: int, min_samples: int = 3) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=window)
        self.min_samples = min_samples

    def add(self, t: float, rss: float) -> None:
        self.samples.append((t, rss))

    def slope_per_hour(self) -> float | None:
        n = len(self.samples)
        if n < self.min_samples:
            return None
        mt = sum(t for t, _ in self.samples) / n
        mr = sum(r for _, r in self.samples) / n
        var = sum((t - mt) ** 2 for t, _ in self.samples)
        if var <= 0:
            return None
        cov = sum((t - mt) * (r - mr) for t, r in self.samples)
        return cov / var * 3600.0


@dataclass
class ComponentProcs:
    rss: float
    pids: set[tuple[int, float]]  # (pid, create_time) of every process of the component
    started: float  # epoch seconds of the oldest process
    growth_per_hour: float | None = None


@dataclass
class _Known:
    name: str | None  # None: not one of ours (cached so its environment is read once)


@dataclass
class ProcessCollector:
    """Processes of this nucleus' components: their environment names our IPC socket and their cwd is
    `<root>/work/<component>` (Greengrass starts every lifecycle step there). RSS is summed per component,
    child processes included.

    A restart is a new lifecycle process: a root (a child of the nucleus; without a known nucleus, a
    process whose parent is not one of the component's) that was not there before, for a component
    that already had one. It starts a fresh leak window. Seen this way, a Shutdown step or an Install
    step watched before Run also count once each.
    """

    socket_path: str
    work_root: Path
    window: int = 60
    nucleus_pid: int | None = None
    _known: dict[tuple[int, float], _Known] = field(default_factory=dict)
    _trend: dict[str, RssTrend] = field(default_factory=dict)
    _seen: dict[str, set[tuple[int, float]]] = field(default_factory=dict)  # alive processes seen per component
    restarts: dict[str, int] = field(default_factory=dict)

    def set_window(self, window: int) -> None:
        self.window = window
        self._trend.clear()  # slopes start over with the new window

    def classify(self, p: psutil.Process) -> str | None:
        """The component a process belongs to, or None."""
        try:
            if p.environ().get(SOCKET_ENV) != self.socket_path:
                return None
            cwd = Path(p.cwd())
        except (psutil.Error, OSError):  # another user's process, or gone
            return None
        try:
            rel = cwd.relative_to(self.work_root)
        except ValueError:
            return None
        return rel.parts[0] if rel.parts else None

    def sample(self, now: float | None = None) -> dict[str, ComponentProcs]:
        now = time.monotonic() if now is None else now
        found: dict[str, ComponentProcs] = {}
        parents: dict[tuple[int, float], int] = {}
        alive: set[tuple[int, float]] = set()
        for p in psutil.process_iter(["create_time", "ppid"]):
            key = (p.pid, p.info["create_time"] or 0.0)
            alive.add(key)
            known = self._known.get(key)
            if known is None:
                known = self._known[key] = _Known(self.classify(p))
            if known.name is None:
                continue
            try:
                rss = float(p.memory_info().rss)
            except psutil.Error:
                continue
            parents[key] = p.info["ppid"]
            c = found.get(known.name)
            if c is None:
                found[known.name] = ComponentProcs(rss, {key}, key[1])
            else:
                c.rss += rss
                c.pids.add(key)
                c.started = min(c.started, key[1])
        for key in [k for k in self._known if k not in alive]:
            del self._known[key]
        for name, c in found.items():
            pids = {pid for pid, _ in c.pids}
            roots = {k for k in c.pids if (parents[k] == self.nucleus_pid if self.nucleus_pid is not None
                                           else parents[k] not in pids)}
            seen = self._seen.get(name)
            if seen is not None and roots - seen:  # a new lifecycle process: restarted
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self._trend.pop(name, None)
            self._seen[name] = c.pids & alive
            trend = self._trend.setdefault(name, RssTrend(self.window))
            trend.add(now, c.rss)
            c.growth_per_hour = trend.slope_per_hour()
        for name in [n for n in self._trend if n not in found]:  # stopped: the next generation starts fresh
            del self._trend[name]
        for name in [n for n in self._seen if n not in found]:
            self._seen[name] = set()  # had processes: the next one is a restart
        return found

    @classmethod
    def from_environment(cls, window: int = 60) -> ProcessCollector | None:
        """For a component process: our socket path, `<root>/work` and the nucleus (None outside a nucleus)."""
        sock = os.environ.get(SOCKET_ENV)
        if not sock:
            return None
        pc = cls(sock, Path.cwd().resolve().parent, window)
        try:  # the nucleus: the first ancestor that is not part of this component
            p = psutil.Process()
            while (parent := p.parent()) is not None and pc.classify(parent) is not None:
                p = parent
            pc.nucleus_pid = p.ppid()
        except psutil.Error:
            pass
        return pc
