"""Which CPUs a component's threads run on: `cpus` (every component's configuration) and Inference's `modelCpus`
(its model threads), so that a box whose model runs on the CPU can give the model a core to itself.

Why an affinity and not a priority: the kernel shares the CPU between components first — the nucleus puts each in
its own cgroup, `ggvision nucleus` each in its own session (an autogroup) — so a nice value only counts inside a
component. With the model thread on a CPU of its own and every other thread of the suite on the others, the suite's
model stopped waiting for the CPU (6 ms per frame → 0.1 at 6 cameras, docs/performance.md). Any process may set
its own threads' affinity (sched_setaffinity needs no privilege); on a kernel without it (not Linux) a setting is
refused with a clear error, never a crash.

A setting is a Linux cpu list ("1", "0-3", "0,2-3") or a list of CPU numbers; absent or empty means every CPU the
process was started with. CPUs the process may not use (outside its cgroup's cpuset or the box) are refused as a
whole: the threads stay where they were, and the error says which CPUs are there.
"""

from __future__ import annotations

import logging
import os
import threading

from ..config.cpulist import cpu_list

log = logging.getLogger("ggvision.cpus")

_lock = threading.Lock()
_pinned: dict[int, frozenset[int] | None] = {}  # native thread id -> its own CPUs (None: the process's)
_process: frozenset[int] | None = None  # what `cpus` says now (None: every CPU allowed at start)


def _allowed_at_start() -> frozenset[int]:
    try:
        return frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return frozenset()


ALLOWED = _allowed_at_start()  # read at import, before any setting narrows it


def _check(what: str, cpus: tuple[int, ...] | None) -> tuple[frozenset[int] | None, str | None]:
    if cpus is None:
        return None, None
    if not ALLOWED:
        return None, f"{what} {cpu_list(cpus)}: this system does not let a process choose its CPUs"
    missing = set(cpus) - ALLOWED
    if missing:
        return None, (f"{what} {cpu_list(cpus)}: CPU {cpu_list(missing)} is not available to this component "
                      f"(it may use {cpu_list(ALLOWED)}); its threads stay where they are")
    return frozenset(cpus), None


def _set(tid: int, cpus: frozenset[int] | None) -> None:
    try:
        os.sched_setaffinity(tid, cpus or ALLOWED)
    except OSError:  # the thread ended meanwhile
        pass


def apply_process(cpus: tuple[int, ...] | None) -> str | None:
    """Every thread of this process that is not pinned on its own (`pin_thread`) to `cpus`; threads started later
    inherit it from the thread that starts them. Returns the error text (and changes nothing) when refused."""
    global _process
    want, err = _check("cpus", cpus)
    if err:
        log.error("%s", err)
        return err
    with _lock:
        if want == _process:
            return None
        _process = want
        for name in os.listdir("/proc/self/task"):
            tid = int(name)
            if tid in _pinned:
                _set(tid, _pinned[tid] if _pinned[tid] is not None else want)
            else:
                _set(tid, want)
    log.info("threads on CPU %s", cpu_list(want or ALLOWED))
    return None


def pin_thread(cpus: tuple[int, ...] | None, what: str = "modelCpus") -> str | None:
    """The calling thread on `cpus` (None: back to the process's `cpus`); it then keeps them whatever `cpus`
    becomes. Returns the error text (and changes nothing) when refused."""
    want, err = _check(what, cpus)
    if err:
        log.error("%s", err)
        return err
    tid = threading.get_native_id()
    with _lock:
        if tid in _pinned and _pinned[tid] == want:
            return None
        _pinned[tid] = want
        _set(tid, want if want is not None else _process)
    return None


def unpin_thread() -> None:
    """The calling thread ends: forget it."""
    with _lock:
        _pinned.pop(threading.get_native_id(), None)

