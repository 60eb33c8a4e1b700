"""kill -9 at random moments, then a last run that must finish: the crash-safety harness of the Uplink's tests."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

import pytest


def kill_loop(child: Callable[[bool], None], rounds: int, delays: tuple[float, float], rng: random.Random,
              after_each: Callable[[], None], drain_timeout: float = 60.0,
              moment: Callable[[int], bool] | None = None) -> int:
    """Fork `child(until_empty=False)` `rounds` times and SIGKILL it after a random delay in `delays` (calling
    `after_each` after every kill), then fork `child(until_empty=True)` and require it to exit 0 within
    `drain_timeout`. The child must never return normally before it is killed. Returns the number of kills.
    `moment(round)`, when given, may wait for a chosen moment instead (it returns True when it did)."""
    kills = 0
    for _ in range(rounds):
        pid = os.fork()
        if pid == 0:
            child(False)
        if moment is None or not moment(kills):
            time.sleep(rng.uniform(*delays))  # the chaos schedule: kill at a random moment
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status), f"the uplink process ended before it was killed (status {status})"
        kills += 1
        after_each()
    pid = os.fork()
    if pid == 0:
        child(True)
    deadline = time.monotonic() + drain_timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the last uplink process did not drain the queue within {drain_timeout:.0f} s")
    after_each()
    assert os.WEXITSTATUS(status) == 0
    return kills


class AckPipe:
    """The ids a forked uplink process acknowledged, one per line on a pipe (the child writes to `wfd`)."""

    def __init__(self) -> None:
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        self.acked: set[str] = set()

    def read(self) -> None:
        try:
            while chunk := os.read(self.rfd, 65536):
                self.acked.update(x for x in chunk.decode().split("\n") if x)
        except BlockingIOError:
            pass
