"""A wall clock a test can step for the processes it starts: libfaketime (Debian package faketime), its offset
read from a file, the monotonic clock left alone (as an NTP or operator step leaves it).

libfaketime 0.9.10 with "don't fake the monotonic clock" breaks Python >= 3.11's time.sleep: it rewrites the
absolute deadline of clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) into a negative time and the call fails
with EINVAL (wolfcw/libfaketime#426). A ten-line preload, compiled here with the system C compiler and loaded
ahead of libfaketime, passes monotonic sleeps straight to the kernel.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
_SLEEP_FIX = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
int clock_nanosleep(clockid_t id, int flags, const struct timespec *req, struct timespec *rem) {
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (id == CLOCK_MONOTONIC || id == CLOCK_BOOTTIME)
        return syscall(SYS_clock_nanosleep, id, flags, req, rem) == 0 ? 0 : errno;
    if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(id, flags, req, rem);
}
"""


class SteppedClock:
    """env() for a process whose wall clock this object steps: step(-3600) = an hour back from the real time."""

    def __init__(self, folder: Path) -> None:
        if not LIBFAKETIME.exists():
            pytest.skip(f"{LIBFAKETIME} is absent (Debian package faketime)")
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            pytest.skip("no C compiler for libfaketime's sleep fix (Debian package gcc)")
        folder.mkdir(parents=True, exist_ok=True)
        src, self.fix = folder / "sleepfix.c", folder / "sleepfix.so"
        src.write_text(_SLEEP_FIX)
        subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(self.fix), str(src), "-ldl"], check=True,
                       timeout=60)
        self.file = folder / "faketime.rc"
        self.offset = 0.0
        self.step(0)

    def step(self, offset_s: float) -> None:
        """Set the offset from the real time; the processes see it within a second (FAKETIME_CACHE_DURATION)."""
        self.offset = offset_s
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(f"{offset_s:+.0f}\n")
        tmp.replace(self.file)

    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": f"{self.fix} {LIBFAKETIME}", "FAKETIME_TIMESTAMP_FILE": str(self.file),
                "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
