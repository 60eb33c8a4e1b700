"""The suite's disk budget, as Health keeps it: count what the suite has on disk, decide the level, and say
what each class must give up (contract/disk.py has the classes and the message; docs/reliability.md the rule).

- `suite_bytes(root)` walks `root` and sums the space its files take (st_blocks, each inode once: the Uplink
  hard-links the segments Capture recorded, and those bytes are on disk once).
- `plan()` is the decision, a pure function: headroom = min(budget - used, free - reserve); `low` when the
  headroom is under `lowBytes`, `evicting` when it is under zero. Evicting asks for enough to get back to half
  of `lowBytes`, taken from the classes in EVICTION_ORDER, each only as far as its holders hold it (a class
  two holders share — video: Capture's recordings and the Uplink's queued segments, often the same inodes —
  counts as the larger of the two). Event records and alerts are never asked for.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.health import DiskBudgetConfig
from ..contract import disk


def suite_bytes(root: Path) -> int:
    """Bytes the files under `root` take on disk, each inode counted once; files that vanish meanwhile are
    skipped (a walk races with the suite's own deletions) and so are folders it may not read."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(root)]
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                        continue
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1:
                    if key in seen:
                        continue
                    seen.add(key)
                total += st.st_blocks * 512
    return total


@dataclass(frozen=True)
class Budget:
    used: int
    free: int
    budget: int
    reserve: int
    low: int
    headroom: int
    level: str
    evict: dict[str, int] = field(default_factory=dict)

    def to_message(self, root: str, now: float | None = None) -> dict[str, Any]:
        return {"schema": disk.SCHEMA, "timestamp": round(time.time() if now is None else now, 3), "root": root,
                "used_bytes": self.used, "budget_bytes": self.budget, "free_bytes": self.free,
                "reserve_bytes": self.reserve, "low_bytes": self.low, "headroom_bytes": self.headroom,
                "level": self.level, "evict": dict(self.evict)}


def plan(used: int, free: int, cfg: DiskBudgetConfig, held: dict[str, dict[str, int]]) -> Budget:
    """The level and what to give up, from the suite's bytes, the filesystem's free bytes and what each holder
    (component -> class -> bytes) reported it holds."""
    headroom = free - cfg.reserve_bytes
    if cfg.budget_bytes:
        headroom = min(headroom, cfg.budget_bytes - used)
    level = "ok" if headroom >= cfg.low_bytes else "low" if headroom >= 0 else "evicting"
    evict: dict[str, int] = {}
    if level == "evicting":
        need = cfg.low_bytes // 2 - headroom
        for cls in disk.EVICTION_ORDER:
            have = max((h.get(cls, 0) for h in held.values()), default=0)
            take = min(need, have)
            if take > 0:
                evict[cls] = take
                need -= take
            if need <= 0:
                break
    return Budget(used, free, cfg.budget_bytes, cfg.reserve_bytes, cfg.low_bytes, headroom, level, evict)


class DiskBudget:
    """Counts `root` every `periodS` (the walk is the costly part) and plans from the latest reports."""

    def __init__(self, cfg: DiskBudgetConfig, root: Path) -> None:
        self.cfg, self.root = cfg, root
        self.latest: Budget | None = None
        self._next = 0.0

    def due(self, now: float) -> bool:
        return self.cfg.enabled and now >= self._next

    def sample(self, held: dict[str, dict[str, int]], now: float) -> Budget:
        self._next = now + self.cfg.period_s
        used = suite_bytes(self.root)
        st = os.statvfs(self.root)
        self.latest = plan(used, st.f_bavail * st.f_frsize, self.cfg, held)
        return self.latest
