"""The suite's disk budget: what the suite keeps on disk, in which order it is given up, and the
`disk-budget/1.0` message in which Health tells the components that hold it how much to give up.

Classes, least valuable first (docs/reliability.md, "The disk budget"):

    video       continuous segments: Capture's local recordings and the Uplink's queued `segments` objects
    clips       event clips waiting in the Uplink's queue
    snapshots   event snapshots waiting in the Uplink's queue
    results     result objects waiting in the Uplink's queue
    records     event records, alerts and every other message: never given up for space

`disk-budget/1.0` (Health -> Capture, Filter, Uplink, on topics.DISK_BUDGET, every `diskBudget.periodS`):

    {"schema": "disk-budget/1.0", "timestamp": epoch s, "root": the folder counted,
     "used_bytes", "budget_bytes" (0: no cap of its own), "free_bytes", "reserve_bytes", "low_bytes",
     "headroom_bytes": min(budget - used, free - reserve) (negative: over), "level": ok | low | evicting,
     "evict": {class: bytes}}   # what each holder of that class gives up now, oldest first

A holder's metrics message carries `"disk": {"held": {class: bytes}, "evicted": {class: bytes}}` (what it holds
now; what the budget made it give up since it started), which is how Health knows what each class can yield.
"""

from __future__ import annotations

from typing import Any

from . import keys

EVICTION_ORDER = ("video", "clips", "snapshots", "results")
RECORDS = "records"
CLASSES = (*EVICTION_ORDER, RECORDS)
LEVELS = ("ok", "low", "evicting")
SCHEMA = "disk-budget/1.0"
_BY_KIND = {keys.SEGMENTS: "video", keys.CLIPS: "clips", keys.IMAGES: "snapshots", keys.RESULTS: "results"}


def object_class(kind: str) -> str:
    """The class of an uploaded object of a contract.keys kind."""
    return _BY_KIND.get(kind, "results")


def parse_evict(msg: Any) -> dict[str, int]:
    """The `evict` amounts of a disk-budget/1.0 message; ValueError naming the field if it is not one."""
    if not isinstance(msg, dict) or msg.get("schema") != SCHEMA:
        raise ValueError(f"schema: expected {SCHEMA!r}")
    evict = msg.get("evict", {})
    if not isinstance(evict, dict):
        raise ValueError("evict: expected an object of class -> bytes")
    out = {}
    for cls, n in evict.items():
        if cls not in EVICTION_ORDER:
            raise ValueError(f"evict.{str(cls)[:32]}: not a class that can be evicted ({', '.join(EVICTION_ORDER)})")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"evict.{cls}: expected a whole number of bytes, got {n!r}")
        if n:
            out[cls] = n
    return out


def parse_held(block: Any) -> tuple[dict[str, int], dict[str, int]]:
    """A metrics message's `disk` block -> (held, evicted) bytes by class; ValueError naming the field."""
    if not isinstance(block, dict):
        raise ValueError("disk: expected an object")
    out = []
    for name in ("held", "evicted"):
        part = block.get(name, {})
        if not isinstance(part, dict):
            raise ValueError(f"disk.{name}: expected an object of class -> bytes")
        vals = {}
        for cls, n in part.items():
            if cls not in CLASSES or not isinstance(n, int | float) or isinstance(n, bool) or n < 0:
                raise ValueError(f"disk.{name}.{str(cls)[:32]}: expected a known class with bytes >= 0")
            vals[cls] = int(n)
        out.append(vals)
    return out[0], out[1]
